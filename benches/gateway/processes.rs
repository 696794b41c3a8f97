//! The processes a run starts beside itself: the gateway binary, and this
//! bench binary run again as a helper (the bare tonic server that times the
//! floor of the gRPC hop, the byte relay, the bare gateway).

use iggy::prelude::IggyClient;
use iggy_grpc::iggy::IggyTarget;
use std::{env, sync::Arc, time::Duration};
use tonic::transport::Channel;

/// A memory figure of process `pid` from /proc/PID/status, in KiB:
/// `VmRSS` (now) or `VmHWM` (peak).
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The gateway binary (`iggy-grpc`, built by `cargo bench`), run as users
/// run it: its own process and runtime, default logging, loopback ports.
pub struct GatewayProcess {
    pub child: tokio::process::Child,
    pub pid: u32,
    /// Its gRPC address, as a URI.
    pub address: String,
    metrics_port: u16,
}

impl GatewayProcess {
    pub fn start(iggy_url: &str, pool_size: u16) -> Self {
        let (port, metrics_port) = (free_port(), free_port());
        let binary = env::var("BENCH_GATEWAY_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_iggy-grpc").to_owned());
        let child = tokio::process::Command::new(binary)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--iggy-url", iggy_url])
            .args(["--pool-size", &pool_size.to_string()])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the iggy-grpc binary");
        let pid = child.id().expect("gateway pid");
        Self {
            child,
            pid,
            address: format!("http://127.0.0.1:{port}"),
            metrics_port,
        }
    }

    /// Stops the gateway as an orchestrator does, with SIGTERM (so a
    /// profiler wrapping it, e.g. callgrind through BENCH_GATEWAY_BIN, writes
    /// its figures), and kills it if it has not exited within 30 s.
    pub async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Subscription polls so far, from the gateway's /metrics.
    pub async fn polls(&self) -> u64 {
        self.metric("iggy_grpc_subscription_polls_total").await
    }

    /// Subscriptions open now, from the gateway's /metrics.
    pub async fn active_subscriptions(&self) -> u64 {
        self.metric("iggy_grpc_active_subscriptions").await
    }

    /// Iggy connections the gateway's pools replaced so far.
    pub async fn reconnects(&self) -> u64 {
        self.metric("iggy_grpc_iggy_reconnects_total").await
    }

    /// One unlabelled counter or gauge of the gateway's /metrics.
    async fn metric(&self, name: &str) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .await
            .expect("metrics endpoint");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .expect("scrape");
        let mut body = String::new();
        stream.read_to_string(&mut body).await.expect("scrape");
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("the gateway's {name}"))
    }
}

/// Set in the environment of the bench binary run again as the bare tonic
/// server that times the floor of the gRPC hop.
pub const FLOOR_SERVER: &str = "BENCH_FLOOR_SERVER";

/// Runs a helper process's `serve` on a multi-thread runtime like the
/// gateway's, given a loopback listener whose port it prints first, for the
/// benchmark (see [`Helper`]) to read.
pub fn serve_on_loopback<F: Future<Output = ()>>(serve: impl FnOnce(tokio::net::TcpListener) -> F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        println!("{}", listener.local_addr().expect("bound").port());
        serve(listener).await;
    });
}

/// The bare tonic server: the health service alone, no layers, in its own
/// process (this bench binary run again).
pub fn serve_floor() {
    serve_on_loopback(async |listener| {
        let (_reporter, health) = tonic_health::server::health_reporter();
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await
            .expect("serve");
    });
}

/// How every tonic client of the benchmark connects to `address` (the
/// gateway or the bare server), so the hop and its floor use the same client
/// settings: BENCH_FRAME sets the HTTP/2 max frame size.
pub fn tonic_endpoint(address: &str) -> tonic::transport::Endpoint {
    Channel::from_shared(address.to_owned())
        .expect("uri")
        .max_frame_size(env::var("BENCH_FRAME").ok().and_then(|v| v.parse().ok()))
}

/// Set (to Iggy's TCP address) when this binary runs as the byte relay.
pub const RELAY_TO: &str = "BENCH_RELAY_TO";

/// Set (to Iggy's connection string) when this binary runs as the bare
/// gateway.
pub const BARE_GATEWAY: &str = "BENCH_BARE_GATEWAY";

/// Relay buffers: a 1 MiB batch crosses in a few reads and writes.
const RELAY_BUFFER: usize = 1024 * 1024;

/// The byte relay: each connection is piped to a new connection to Iggy,
/// both ways, with no parsing.
pub fn serve_relay(upstream: String) {
    serve_on_loopback(async |listener| {
        loop {
            let (mut client, _) = listener.accept().await.expect("accept");
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut iggy = tokio::net::TcpStream::connect(&upstream)
                    .await
                    .expect("connect to Iggy");
                for socket in [&client, &iggy] {
                    socket.set_nodelay(true).expect("TCP_NODELAY");
                }
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut iggy,
                    RELAY_BUFFER,
                    RELAY_BUFFER,
                )
                .await;
            });
        }
    });
}

/// A helper process (the bare tonic server or the relay): this binary run
/// again with `variable` set, serving on the loopback port it prints first.
/// Killed when dropped.
pub struct Helper {
    child: tokio::process::Child,
    pub port: u16,
}

impl Helper {
    pub async fn start(variable: &str, value: &str) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env::current_exe().expect("bench binary"))
            .env(variable, value)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a helper process");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut port = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut port)
            .await
            .expect("the helper's port");
        Self {
            port: port.trim().parse().expect("a port number"),
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the helper is running")
    }
}

/// The Iggy connections of the gateway (its pool) and of the bare gateway
/// for `clients` concurrent clients: two per client, at least eight.
pub fn pool_size(clients: u64) -> u16 {
    (clients.max(4) * 2).try_into().unwrap_or(u16::MAX)
}

/// `count` SDK clients over TCP, each connected and logged in with
/// `connection_string`.
pub async fn sdk_tcp_clients(connection_string: &str, count: u64) -> Vec<Arc<IggyClient>> {
    let target = IggyTarget::parse(connection_string).expect("target");
    let mut clients = Vec::new();
    for _ in 0..count {
        clients.push(Arc::new(
            target
                .connect(Duration::from_secs(10))
                .await
                .expect("tcp client"),
        ));
    }
    clients
}
