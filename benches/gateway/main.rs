//! `cargo bench --bench gateway`: the gateway's cost over talking to Iggy
//! directly, measured side by side in one run against one Iggy server, and
//! printed as one table (docs/performance.md explains the method).
//!
//! The paths to Iggy: `direct` (the Iggy SDK over TCP), `gateway` (this
//! crate's binary in its own process, with a tonic client), `http` (Iggy's
//! HTTP API through the SDK's HTTP transport), `relay` (the SDK through a
//! bare byte relay in its own process: what any gateway that runs as a
//! process of its own pays on this machine before doing any work) and, for
//! batched publish, `bare` (tonic's stock codec forwarding to the SDK,
//! nothing else: what the stack alone allows). Every process of the run
//! uses jemalloc, the gateway's allocator.
//!
//! The workloads (`workloads/`): batched publish; single-message publish
//! latency beside the gRPC hop alone and its floor on a bare tonic server;
//! publish-to-deliver latency; the Iggy poll rate of an idle subscription;
//! subscribe throughput (on the gateway over gRPC and as Server-Sent
//! Events); unary Poll against an SDK poll loop; batched publish from a raw
//! HTTP/2 client in 16 KiB and 1 MiB frames, and as JSON; the
//! gateway's memory while a subscriber reads 1,000x slower than the
//! publisher; 1,000 to 10,000 idle subscribers on one replica. Throughput rows also show the CPU microseconds per message
//! used by the clients (this process), the process in the middle (gateway,
//! relay or bare gateway) and iggy-server.
//!
//! Sizes come from the environment: BENCH_CLIENTS (4), BENCH_BATCHES (100
//! calls of 1,000 x 1 KiB per client), BENCH_READ_MESSAGES (1,000,000),
//! BENCH_SECONDS (5: per latency workload), BENCH_SLOW_SECONDS (20),
//! BENCH_ROUNDS (3: each throughput workload runs each path this many
//! times, the paths taking turns, and reports each path's best round).
//! BENCH_ONLY (a comma-separated subset of publish, single, deliver, idle,
//! read, poll, frames, slow, scale) runs only those workloads; BENCH_SCALE
//! (1000,5000,10000) the subscriber counts of `scale`; BENCH_PATHS (a
//! subset of the path names) likewise for the throughput workloads.
//! BENCH_FRAME sets the tonic clients' HTTP/2 max frame size (tonic's
//! default, 16 KiB, when unset). BENCH_GATEWAY_BIN runs another build of the
//! gateway (this crate's own binary when unset), to compare two builds.

mod bare;
mod measure;
mod messages;
mod processes;
mod report;
mod workloads;

use iggy::prelude::{Client, IggyClient, UserClient};
use iggy_grpc::{
    iggy::embedded::{EmbeddedIggy, EmbeddedOptions},
    proto,
};
use measure::{selected, setting};
use processes::{
    BARE_GATEWAY, FLOOR_SERVER, GatewayProcess, Helper, RELAY_TO, memory_kib, pool_size,
    sdk_tcp_clients, serve_floor, serve_on_loopback, serve_relay, tonic_endpoint,
};
use report::Row;
use std::{
    env,
    sync::Arc,
    time::{Duration, Instant},
};
use tonic::transport::Channel;
use workloads::{Bench, Settings};

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    if env::var_os(FLOOR_SERVER).is_some() {
        return serve_floor();
    }
    if let Ok(upstream) = env::var(RELAY_TO) {
        return serve_relay(upstream);
    }
    if let Ok(iggy) = env::var(BARE_GATEWAY) {
        let connections = pool_size(setting("BENCH_CLIENTS", 4));
        return serve_on_loopback(async |listener| bare::serve(listener, &iggy, connections).await);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let settings = Settings {
        clients: setting("BENCH_CLIENTS", 4),
        batches: setting("BENCH_BATCHES", 100),
        read_messages: setting("BENCH_READ_MESSAGES", 1_000_000),
        seconds: setting("BENCH_SECONDS", 5),
        slow_seconds: setting("BENCH_SLOW_SECONDS", 20),
        rounds: setting("BENCH_ROUNDS", 3),
    };
    // Iggy keeps its data in memory (tmpfs) when the machine has one, so the
    // disk writeback of earlier runs does not skew this run's figures.
    let data_dir = std::path::Path::new("/dev/shm").is_dir().then(|| {
        std::path::PathBuf::from(format!("/dev/shm/iggy-grpc-bench-{}", std::process::id()))
    });
    let iggy = EmbeddedIggy::start(EmbeddedOptions {
        http: true,
        data_dir: data_dir.clone(),
        ..EmbeddedOptions::default()
    })
    .await
    .expect("start iggy-server (put it on PATH or set IGGY_SERVER_BIN)");
    let bench = connect(&iggy, settings).await;
    let (clients, rounds) = (bench.settings.clients, bench.settings.rounds);

    let mut rows: Vec<Row> = Vec::new();
    if selected("BENCH_ONLY", "publish") {
        rows.extend(workloads::publish::run(&bench).await);
    }
    if selected("BENCH_ONLY", "single") {
        rows.extend(workloads::latency::single(&bench).await);
    }
    if selected("BENCH_ONLY", "deliver") {
        rows.extend(workloads::latency::deliver(&bench).await);
    }
    if selected("BENCH_ONLY", "idle") {
        rows.extend(workloads::subscriptions::idle(&bench).await);
    }
    if selected("BENCH_ONLY", "read") {
        rows.extend(workloads::read::run(&bench).await);
    }
    if selected("BENCH_ONLY", "poll") {
        rows.extend(workloads::poll::run(&bench).await);
    }
    if selected("BENCH_ONLY", "frames") {
        rows.extend(workloads::frames::run(&bench).await);
    }
    if selected("BENCH_ONLY", "slow") {
        rows.extend(workloads::subscriptions::slow(&bench).await);
    }
    if selected("BENCH_ONLY", "scale") {
        rows.extend(workloads::scale::run(&bench).await);
    }
    let peak = memory_kib(bench.gateway.pid, "VmHWM") as f64 / 1024.0;
    rows.push(Row::figure("gateway peak RSS", "gateway", peak, "MiB"));
    report::print(&rows, clients, rounds);

    let Bench { gateway, .. } = bench;
    gateway.stop().await;
    iggy.stop().await;
    if let Some(data_dir) = data_dir {
        let _ = std::fs::remove_dir_all(data_dir);
    }
}

/// Starts the gateway, the relay and the bare gateway, and connects every
/// path's clients.
async fn connect(iggy: &EmbeddedIggy, settings: Settings) -> Bench {
    let clients = settings.clients;
    let iggy_address = iggy.tcp_address().to_string();
    let tcp_clients = sdk_tcp_clients(&iggy.connection_string(), clients).await;
    // The SDK clients of the relay path: the same connection, through the relay.
    let relay = Helper::start(RELAY_TO, &iggy_address).await;
    let relay_clients = sdk_tcp_clients(
        &iggy
            .connection_string()
            .replace(&iggy_address, &format!("127.0.0.1:{}", relay.port)),
        clients,
    )
    .await;
    let (user, password) = iggy.credentials();
    let http_url = format!("http://{}", iggy.http_address().expect("http enabled"));
    let mut http_clients = Vec::new();
    for _ in 0..clients {
        let client = IggyClient::builder()
            .with_http()
            .with_api_url(http_url.clone())
            .build()
            .expect("http client");
        client.connect().await.expect("http connect");
        client.login_user(user, password).await.expect("http login");
        http_clients.push(Arc::new(client));
    }

    let mut gateway = GatewayProcess::start(&iggy.connection_string(), pool_size(clients));
    let channels: Vec<Channel> = (0..clients)
        .map(|_| tonic_endpoint(&gateway.address).connect_lazy())
        .collect();
    // Ready once a ping through the gateway answers.
    let mut admin = proto::admin_service_client::AdminServiceClient::new(channels[0].clone());
    let started = Instant::now();
    while admin.ping(proto::PingRequest {}).await.is_err() {
        if let Ok(Some(status)) = gateway.child.try_wait() {
            panic!("the gateway exited before it was ready: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway was not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bare = Helper::start(BARE_GATEWAY, &iggy.connection_string()).await;
    let bare_channels: Vec<Channel> = (0..clients)
        .map(|_| tonic_endpoint(&format!("http://127.0.0.1:{}", bare.port)).connect_lazy())
        .collect();
    Bench {
        settings,
        iggy_pid: iggy.current_pid().expect("iggy-server is running"),
        gateway,
        tcp_clients,
        relay_clients,
        http_clients,
        channels,
        bare_channels,
        relay,
        bare,
    }
}
