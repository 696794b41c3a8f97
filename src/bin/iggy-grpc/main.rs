//! The `iggy-grpc` binary: parses the flags, binds the listener, optionally
//! starts an embedded Iggy, and serves until SIGTERM/SIGINT.

mod args;

use args::{Args, LogFormat};
use clap::Parser;
use iggy_grpc::{
    ServeError,
    edge::http2_refusals,
    iggy::{
        IggyTarget,
        embedded::{EmbeddedError, EmbeddedIggy, EmbeddedOptions},
    },
};
use std::{
    io::IsTerminal,
    net::{Ipv4Addr, SocketAddr},
    process::ExitCode,
    time::Duration,
};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tracing::{error, info};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// jemalloc reuses freed memory: each batch moves ~1 MiB buffers (the gRPC
/// message, the Iggy request), which glibc's allocator returned to the kernel
/// and page-faulted back in on every call, and for which mimalloc kept
/// zeroing fresh 2 MiB pages (the gateway spent 21% more CPU per published
/// message on it).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// sysexits.h EX_CONFIG: the configuration is unusable.
const EXIT_CONFIG: u8 = 78;
/// sysexits.h EX_UNAVAILABLE: a service the gateway needs is not available.
const EXIT_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) if !error.use_stderr() => {
            // --help and --version
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            let rendered = error.render().to_string();
            let line = rendered.lines().next().unwrap_or("invalid configuration");
            eprintln!("iggy-grpc: {}", line.trim_start_matches("error: "));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("iggy-grpc: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    if args.health_check {
        return runtime.block_on(health_check(args.listen));
    }
    let _log_writer = init_logging(args.log_format);
    runtime.block_on(run(args))
}

/// The log filter when RUST_LOG is unset: the gateway at info; the SDK's own
/// per-attempt connect and heartbeat errors are left out, since the pool
/// reports connection changes itself.
/// (Targets match by prefix, so `iggy=warn` alone would quiet `iggy_grpc`
/// too: the gateway's own target is named explicitly.)
const DEFAULT_LOG_FILTER: &str =
    "info,iggy=warn,iggy_grpc=info,iggy::tcp::tcp_client=off,iggy::clients::client=off";

/// Text logs are coloured only on a terminal (and without `NO_COLOR`): a
/// pipe or file to a log collector gets plain lines, with no escape codes.
///
/// Lines are written to stdout by a thread of their own, so a call's
/// `call finished` line costs its worker a queue push, not a `write`. Past
/// the queue's bound (128k lines behind) lines are dropped rather than
/// stalling calls. The returned guard writes what is queued when dropped.
fn init_logging(format: LogFormat) -> WorkerGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(writer);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(http2_refusals::layer())
        .init();
    guard
}

async fn run(args: Args) -> ExitCode {
    let mut config = args.config();
    if !args.embedded
        && let Err(error) = IggyTarget::parse(&config.iggy_url)
    {
        eprintln!("iggy-grpc: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("iggy-grpc: cannot listen on {}: {error}", args.listen);
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let bound = listener.local_addr().unwrap_or(args.listen);
    info!(listen = %bound, "listening");

    let embedded = if args.embedded {
        let options = EmbeddedOptions {
            binary: args.iggy_server_bin.clone(),
            data_dir: args.data_dir.clone(),
            ..EmbeddedOptions::default()
        };
        match EmbeddedIggy::start(options).await {
            Ok(embedded) => {
                config.iggy_url = embedded.connection_string();
                Some(embedded)
            }
            Err(error @ EmbeddedError::BinaryNotFound) => {
                eprintln!("iggy-grpc: {error}");
                return ExitCode::from(EXIT_CONFIG);
            }
            Err(error) => {
                eprintln!("iggy-grpc: {error}");
                return ExitCode::from(EXIT_UNAVAILABLE);
            }
        }
    } else {
        None
    };

    let served = iggy_grpc::serve(listener, config, shutdown_signal()).await;
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is_configuration() => {
            eprintln!("iggy-grpc: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error @ ServeError::MetricsListen { .. }) => {
            eprintln!("iggy-grpc: {error}");
            ExitCode::from(EXIT_UNAVAILABLE)
        }
        Err(error) => {
            error!(%error, "gateway failed");
            ExitCode::FAILURE
        }
    }
}

/// Asks the gateway at `listen` for its overall health: exit 0 when
/// SERVING, 1 otherwise (unreachable, NOT_SERVING, or no answer in 5 s).
async fn health_check(listen: SocketAddr) -> ExitCode {
    let target = if listen.ip().is_unspecified() {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
    } else {
        listen
    };
    let check = async {
        let channel = Channel::from_shared(format!("http://{target}"))
            .map_err(|error| error.to_string())?
            .connect()
            .await
            .map_err(|error| error.to_string())?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|response| response.into_inner().status())
            .map_err(|status| status.message().to_owned())
    };
    match tokio::time::timeout(Duration::from_secs(5), check).await {
        Ok(Ok(ServingStatus::Serving)) => {
            println!("SERVING");
            ExitCode::SUCCESS
        }
        Ok(Ok(status)) => {
            println!("{}", status.as_str_name());
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("iggy-grpc: health check of {target} failed: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("iggy-grpc: health check of {target} got no answer in 5s");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(error) => {
                error!(%error, "cannot listen for SIGTERM; only SIGINT stops the gateway");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    info!("shutdown signal received");
}
