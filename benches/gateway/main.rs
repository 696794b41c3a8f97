//! `cargo bench --bench gateway`: the gateway's cost over talking to Iggy
//! directly, measured side by side in one run against one Iggy server:
//! (a) the Iggy SDK over TCP, (b) the gateway with a tonic client, (c) Iggy's
//! HTTP API through the SDK's HTTP transport; for throughput also the SDK
//! through a bare byte relay in its own process (`relay`), what any gateway
//! that runs as a process of its own pays on this machine before doing any
//! work; for batched publish also a bare gateway (`bare`: the generated
//! service forwarding to the SDK, nothing else), what the stack alone allows.
//! Beside the single-publish
//! latency, a health check through the gateway times the gRPC hop alone (no
//! Iggy call in it), and the same check against a bare tonic server (the
//! health service alone, in its own process) times the floor of that hop:
//! what any gateway served by tonic pays with this client on this machine.
//! Also the subscription figures:
//! publish-to-deliver latency, the poll rate of an idle subscription, and
//! memory while a subscriber reads 1,000x slower than the publisher.
//!
//! Sizes come from the environment: BENCH_CLIENTS (4), BENCH_BATCHES (100 calls
//! of 1,000 x 1 KiB per client), BENCH_READ_MESSAGES (1,000,000),
//! BENCH_SECONDS (5: per latency workload; for single-message latency, the
//! one-second turns each path takes), BENCH_SLOW_SECONDS (20), BENCH_ROUNDS
//! (3: the throughput workloads run each path this many times, the paths
//! taking turns, and report each path's best round).
//! BENCH_ONLY (a comma-separated subset of publish, single, deliver, idle,
//! read, slow) runs only those workloads, e.g. under a profiler; BENCH_PATHS
//! (a subset of direct, relay, bare, gateway, http) likewise for batched
//! publish and read.
//! BENCH_FRAME sets the tonic clients' HTTP/2 max frame size (tonic's
//! default, 16 KiB, when unset). BENCH_GATEWAY_BIN runs another build of the
//! gateway (this crate's own binary when unset), to compare two builds.
//!
//! The gateway is the `iggy-grpc` binary in its own process, as deployed. The
//! throughput rows also show where the CPU went: microseconds per message used
//! by the clients (this process), the gateway (the relay, on the relay path)
//! and iggy-server. Everything shares the machine's cores, so a path's rate is
//! bounded by its total; the cores each path kept busy, in all and in
//! iggy-server, show whether the cores or Iggy's one shard bound it.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use iggy::prelude::{
    Client, Consumer, Identifier, IggyClient, IggyMessage, MessageClient, Partitioning,
    PollingStrategy, StreamClient, TopicClient, TopicCreateOptions, UserClient,
};
use iggy_grpc::{
    iggy::{
        IggyTarget,
        embedded::{EmbeddedIggy, EmbeddedOptions},
    },
    proto::{
        self, BatchMessage, ResourceId, messaging_service_client::MessagingServiceClient,
        partitioning, resource_id, start_position, subscribe_response::Kind,
    },
};
use std::{
    env,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tonic::transport::Channel;

mod bare;

/// The clients (direct SDK, tonic, HTTP) run on mimalloc, which makes the
/// direct SDK client faster than glibc's allocator does, so the baseline the
/// gateway is compared with is the harder one. (The gateway binary runs on
/// jemalloc; over 4 interleaved runs the direct client spent 0.78 us per
/// message on mimalloc and 0.86 on jemalloc.)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAYLOAD: usize = 1024;
const BATCH: usize = 1000;

/// The ways to reach Iggy that the throughput workloads compare: beside the
/// three the issue names, `relay` is the direct SDK client through a bare
/// byte relay in its own process, the floor of any gateway that runs as a
/// process of its own on this machine (every byte crosses it twice more).
const READ_PATHS: [&str; 4] = ["direct", "relay", "gateway", "http"];

/// Batched publish also runs through `bare`: the crate's generated service
/// answering `PublishBatch` with the SDK and nothing else (see `bare.rs`),
/// what the stack alone allows a gateway built on tonic and the Iggy SDK.
const PUBLISH_PATHS: [&str; 5] = ["direct", "relay", "bare", "gateway", "http"];

/// One round of a throughput workload on one path: msgs/s and the CPU
/// microseconds per message of clients, gateway and iggy-server.
type Sample = (f64, [f64; 3]);

/// A throughput workload's rounds, per path in the order first run.
#[derive(Default)]
struct Rounds(Vec<(&'static str, Vec<Sample>)>);

impl Rounds {
    fn add(&mut self, mode: &'static str, sample: Sample) {
        match self.0.iter_mut().find(|(name, _)| *name == mode) {
            Some((_, samples)) => samples.push(sample),
            None => self.0.push((mode, vec![sample])),
        }
    }

    /// One row per path: its fastest round, with that round's CPU costs.
    /// The best round is the one least disturbed by the rest of the machine
    /// (iggy-server has slow spells of its own, which slow the direct path
    /// most), so comparing best rounds does not flatter the gateway.
    fn rows(&self, workload: &'static str) -> impl Iterator<Item = Row> + '_ {
        self.0.iter().map(move |(mode, samples)| {
            let (rate, cpu) = samples
                .iter()
                .copied()
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap_or((0.0, [0.0; 3]));
            Row {
                workload,
                mode,
                msgs_per_s: rate,
                latency: None,
                cpu: Some(cpu),
                rounds: samples.iter().map(|(rate, _)| *rate).collect(),
            }
        })
    }
}

/// Runs `run` (given the path and the round) on each of `paths` that
/// BENCH_PATHS selects, `rounds` times, the paths taking turns.
async fn take_turns(
    rounds: u64,
    paths: &[&'static str],
    mut run: impl AsyncFnMut(&'static str, u64) -> Sample,
) -> Rounds {
    let mut samples = Rounds::default();
    for round in 0..rounds {
        for &mode in paths {
            if selected("BENCH_PATHS", mode) {
                samples.add(mode, run(mode, round).await);
            }
        }
    }
    samples
}

/// One run of a throughput workload: once iggy-server is idle, runs
/// `workload` (which returns msgs/s) and charges the gateway and iggy-server
/// (`pids`) and this process the CPU each used per message.
async fn measure(pids: (u32, u32), messages: f64, workload: impl Future<Output = f64>) -> Sample {
    let (gateway_pid, iggy_pid) = pids;
    settle(iggy_pid).await;
    let before = Cpu::now(gateway_pid, iggy_pid);
    let rate = workload.await;
    (
        rate,
        Cpu::now(gateway_pid, iggy_pid).per_message_since(before, messages),
    )
}

fn setting(name: &str, default: u64) -> u64 {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// True when the workload (or path) is selected by `variable` (all when unset).
fn selected(variable: &str, name: &str) -> bool {
    env::var(variable).map_or(true, |list| list.split(',').any(|item| item.trim() == name))
}

fn id(name: &str) -> Identifier {
    Identifier::named(name).expect("identifier")
}

fn rid(name: &str) -> Option<ResourceId> {
    Some(ResourceId {
        kind: Some(resource_id::Kind::Name(name.into())),
    })
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A payload of `PAYLOAD` bytes starting with the send time.
fn payload() -> Bytes {
    let mut bytes = vec![b'x'; PAYLOAD];
    bytes[..8].copy_from_slice(&now_micros().to_le_bytes());
    Bytes::from(bytes)
}

/// A 1 KiB message for the SDK paths.
fn sdk_message() -> IggyMessage {
    IggyMessage::builder()
        .payload(payload())
        .build()
        .expect("message")
}

/// The same 1 KiB message for the gateway path.
fn grpc_message() -> Option<proto::Message> {
    Some(proto::Message {
        id: String::new(),
        payload: payload(),
        headers: Default::default(),
    })
}

/// A memory figure of process `pid` from /proc/PID/status, in KiB:
/// `VmRSS` (now) or `VmHWM` (peak).
fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The gateway binary (`iggy-grpc`, built by `cargo bench`), run as users
/// run it: its own process and runtime, default logging, loopback ports.
struct GatewayProcess {
    child: tokio::process::Child,
    pid: u32,
    address: String,
    metrics_port: u16,
}

impl GatewayProcess {
    fn start(iggy_url: &str, pool_size: u16) -> Self {
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

    /// Subscription polls so far, from the gateway's /metrics.
    async fn polls(&self) -> u64 {
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
            .find_map(|line| line.strip_prefix("iggy_grpc_subscription_polls_total "))
            .and_then(|value| value.trim().parse().ok())
            .expect("the subscription poll counter")
    }
}

/// Set in the environment of the bench binary run again as the bare tonic
/// server that times the floor of the gRPC hop.
const FLOOR_SERVER: &str = "BENCH_FLOOR_SERVER";

/// Runs a helper process's `serve` on a multi-thread runtime like the
/// gateway's, given a loopback listener whose port it prints first, for the
/// benchmark (see [`Helper`]) to read.
fn serve_on_loopback<F: Future<Output = ()>>(serve: impl FnOnce(tokio::net::TcpListener) -> F) {
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
fn serve_floor() {
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
fn tonic_endpoint(address: &str) -> tonic::transport::Endpoint {
    Channel::from_shared(address.to_owned())
        .expect("uri")
        .max_frame_size(env::var("BENCH_FRAME").ok().and_then(|v| v.parse().ok()))
}

/// Set (to Iggy's TCP address) when this binary runs as the byte relay.
const RELAY_TO: &str = "BENCH_RELAY_TO";

/// Set (to Iggy's connection string) when this binary runs as the bare
/// gateway.
const BARE_GATEWAY: &str = "BENCH_BARE_GATEWAY";

/// Relay buffers: a 1 MiB batch crosses in a few reads and writes.
const RELAY_BUFFER: usize = 1024 * 1024;

/// The byte relay: each connection is piped to a new connection to Iggy,
/// both ways, with no parsing.
fn serve_relay(upstream: String) {
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
struct Helper {
    child: tokio::process::Child,
    port: u16,
}

impl Helper {
    async fn start(variable: &str, value: &str) -> Self {
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

    fn pid(&self) -> u32 {
        self.child.id().expect("the helper is running")
    }
}

/// CPU seconds (user + system) used so far by a process, from
/// /proc/PID/stat (fields 14 and 15, in USER_HZ = 100 ticks per second).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it never do.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<f64>().ok());
    // After the name: state is field 3, so utime (14) and stime (15) sit at 11 and 12.
    ticks(11).unwrap_or(0.0) / 100.0 + ticks(12).unwrap_or(0.0) / 100.0
}

/// Waits (at most 15 s) until iggy-server is idle: after a large write it
/// goes on persisting for a while, and the path measured next would pay for
/// the one measured before.
async fn settle(iggy_pid: u32) {
    let pid = iggy_pid.to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let before = cpu_seconds(&pid);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if cpu_seconds(&pid) - before < 0.01 {
            return; // under 5% of a core
        }
    }
}

/// CPU seconds used so far by the bench process (the clients), the gateway
/// and iggy-server.
#[derive(Clone, Copy)]
struct Cpu([f64; 3]);

impl Cpu {
    fn now(gateway_pid: u32, iggy_pid: u32) -> Self {
        Self([
            cpu_seconds("self"),
            cpu_seconds(&gateway_pid.to_string()),
            cpu_seconds(&iggy_pid.to_string()),
        ])
    }

    /// Microseconds of CPU per message since `start`: clients, gateway, iggy.
    fn per_message_since(self, start: Cpu, messages: f64) -> [f64; 3] {
        [0, 1, 2].map(|i| (self.0[i] - start.0[i]) * 1e6 / messages)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Row {
    workload: &'static str,
    mode: &'static str,
    msgs_per_s: f64,
    latency: Option<(Duration, Duration, Duration)>,
    /// CPU microseconds per message: clients, gateway, iggy-server.
    cpu: Option<[f64; 3]>,
    /// The rate of each round, in the order run (throughput rows only).
    rounds: Vec<f64>,
}

/// The row of `workload` on path `mode`, if it was measured.
fn find_row<'a>(rows: &'a [Row], workload: &str, mode: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|row| row.workload == workload && row.mode == mode)
}

async fn create_topic(client: &IggyClient, stream: &str, topic: &str, partitions: u32) {
    let _ = client.create_stream(stream).await;
    client
        .create_topic(
            &id(stream),
            topic,
            &TopicCreateOptions {
                partitions_count: Some(partitions),
                ..Default::default()
            },
        )
        .await
        .expect("create topic");
}

/// Batched publish over the SDK (TCP or HTTP): each client sends `batches`
/// calls of 1,000 x 1 KiB to its own partition, all clients at once.
async fn publish_sdk(clients: &[Arc<IggyClient>], stream: &str, topic: &str, batches: u64) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, client) in clients.iter().enumerate() {
        let (client, stream, topic) = (Arc::clone(client), id(stream), id(topic));
        tasks.push(tokio::spawn(async move {
            for _ in 0..batches {
                let mut messages: Vec<IggyMessage> = (0..BATCH).map(|_| sdk_message()).collect();
                client
                    .send_messages(
                        &stream,
                        &topic,
                        &Partitioning::partition_id(index as u32),
                        &mut messages,
                    )
                    .await
                    .expect("send");
            }
        }));
    }
    for task in tasks {
        task.await.expect("publisher");
    }
    (clients.len() as u64 * batches * BATCH as u64) as f64 / started.elapsed().as_secs_f64()
}

fn batch_request(stream: &str, topic: &str, partition: u32) -> proto::PublishBatchRequest {
    proto::PublishBatchRequest {
        stream: rid(stream),
        topic: rid(topic),
        partitioning: Some(proto::Partitioning {
            kind: Some(partitioning::Kind::PartitionId(partition)),
        }),
        messages: (0..BATCH)
            .map(|_| BatchMessage {
                message: grpc_message(),
                partitioning: None,
            })
            .collect(),
    }
}

/// The same batched publish through the gateway.
async fn publish_gateway(channels: &[Channel], stream: &str, topic: &str, batches: u64) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, channel) in channels.iter().enumerate() {
        let mut client = MessagingServiceClient::new(channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let (stream, topic) = (stream.to_owned(), topic.to_owned());
        tasks.push(tokio::spawn(async move {
            for _ in 0..batches {
                let results = client
                    .publish_batch(batch_request(&stream, &topic, index as u32))
                    .await
                    .expect("publish batch")
                    .into_inner()
                    .results;
                assert_eq!(results.len(), BATCH);
            }
        }));
    }
    for task in tasks {
        task.await.expect("publisher");
    }
    (channels.len() as u64 * batches * BATCH as u64) as f64 / started.elapsed().as_secs_f64()
}

/// One call of a latency workload's path, made afresh each time.
type Call = Box<dyn FnMut() -> BoxFuture<'static, ()> + Send>;

/// Times single calls at a fixed `rate` (calls per second) on each of
/// `paths`, the paths taking turns of `rate` calls (a second) for `seconds`
/// turns each, so a slow spell of the machine falls on all of them alike.
/// The calls run in a task on the runtime's workers, as a service's handlers
/// would, like the throughput workloads' clients. Returns each path's
/// achieved rate and sorted latencies, in the order given.
async fn latency_turns(seconds: u64, rate: u64, mut paths: Vec<Call>) -> Vec<(f64, Vec<Duration>)> {
    tokio::spawn(async move {
        let mut latencies = vec![Vec::new(); paths.len()];
        let mut timed = vec![Duration::ZERO; paths.len()];
        for _ in 0..seconds {
            for (path, call) in paths.iter_mut().enumerate() {
                let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let started = Instant::now();
                for _ in 0..rate {
                    ticker.tick().await;
                    let sent = Instant::now();
                    call().await;
                    latencies[path].push(sent.elapsed());
                }
                timed[path] += started.elapsed();
            }
        }
        latencies
            .into_iter()
            .zip(timed)
            .map(|(mut latencies, timed)| {
                latencies.sort_unstable();
                (latencies.len() as f64 / timed.as_secs_f64(), latencies)
            })
            .collect()
    })
    .await
    .expect("latency workload")
}

/// A single-message publish over the SDK (TCP or HTTP).
fn sdk_publish(client: &Arc<IggyClient>) -> Call {
    let client = Arc::clone(client);
    Box::new(move || {
        let client = Arc::clone(&client);
        Box::pin(async move {
            client
                .send_messages(
                    &id("bench"),
                    &id("single"),
                    &Partitioning::partition_id(0),
                    &mut [sdk_message()],
                )
                .await
                .expect("send");
        })
    })
}

/// A single-message publish through the gateway.
fn gateway_publish(client: &MessagingServiceClient<Channel>) -> Call {
    let client = client.clone();
    Box::new(move || {
        let mut client = client.clone();
        Box::pin(async move {
            client
                .publish(proto::PublishRequest {
                    stream: rid("bench"),
                    topic: rid("single"),
                    partitioning: Some(proto::Partitioning {
                        kind: Some(partitioning::Kind::PartitionId(0)),
                    }),
                    message: grpc_message(),
                })
                .await
                .expect("publish");
        })
    })
}

/// A gRPC health check over `channel`: the hop alone, no Iggy call.
fn health_check(channel: Channel) -> Call {
    let client = tonic_health::pb::health_client::HealthClient::new(channel);
    Box::new(move || {
        let mut client = client.clone();
        Box::pin(async move {
            client
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .expect("check");
        })
    })
}

/// A table row for a latency workload (latencies sorted).
fn latency_row(workload: &'static str, mode: &'static str, rate: f64, sorted: &[Duration]) -> Row {
    Row {
        workload,
        mode,
        msgs_per_s: rate,
        latency: Some((
            percentile(sorted, 0.5),
            percentile(sorted, 0.99),
            percentile(sorted, 0.999),
        )),
        cpu: None,
        rounds: Vec::new(),
    }
}

/// Reads `count` messages of one partition from offset 0 with the SDK.
async fn read_sdk(client: &IggyClient, stream: &str, topic: &str, count: u64) -> f64 {
    let consumer = Consumer::new(id("bench-reader"));
    let started = Instant::now();
    let mut next = 0u64;
    while next < count {
        let polled = client
            .poll_messages(
                &id(stream),
                &id(topic),
                Some(0),
                &consumer,
                &PollingStrategy::offset(next),
                BATCH as u32,
                false,
            )
            .await
            .expect("poll");
        next += polled.messages.len() as u64;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Reads `count` messages from offset 0 through a gateway subscription.
async fn read_gateway(channel: &Channel, stream: &str, topic: &str, count: u64) -> f64 {
    let mut client =
        MessagingServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let started = Instant::now();
    let mut stream_ = client
        .subscribe(proto::SubscribeRequest {
            stream: rid(stream),
            topic: rid(topic),
            partition_id: Some(0),
            consumer: Some(proto::Consumer {
                kind: Some(proto::consumer::Kind::Name("bench-reader".into())),
            }),
            start: Some(proto::StartPosition {
                kind: Some(start_position::Kind::Offset(0)),
            }),
            ack_mode: proto::AckMode::None as i32,
            batch_size: BATCH as u32,
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut received = 0u64;
    while received < count {
        if let Some(Kind::Batch(batch)) =
            stream_.message().await.expect("stream").expect("open").kind
        {
            received += batch.messages.len() as u64;
        }
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// The Iggy connections of the gateway (its pool) and of the bare gateway
/// for `clients` concurrent clients: two per client, at least eight.
fn pool_size(clients: u64) -> u16 {
    (clients.max(4) * 2).try_into().unwrap_or(u16::MAX)
}

/// `count` SDK clients over TCP, each connected and logged in with
/// `connection_string`.
async fn sdk_tcp_clients(connection_string: &str, count: u64) -> Vec<Arc<IggyClient>> {
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
    let clients = setting("BENCH_CLIENTS", 4);
    let batches = setting("BENCH_BATCHES", 100);
    let read_messages = setting("BENCH_READ_MESSAGES", 1_000_000);
    let seconds = setting("BENCH_SECONDS", 5);
    let slow_seconds = setting("BENCH_SLOW_SECONDS", 20);
    let rounds = setting("BENCH_ROUNDS", 3);

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
    let admin_client = &tcp_clients[0];
    let (gateway_pid, iggy_pid) = (
        gateway.pid,
        iggy.current_pid().expect("iggy-server is running"),
    );
    let bare = Helper::start(BARE_GATEWAY, &iggy.connection_string()).await;
    let bare_channels: Vec<Channel> = (0..clients)
        .map(|_| tonic_endpoint(&format!("http://127.0.0.1:{}", bare.port)).connect_lazy())
        .collect();
    // The process between the clients and Iggy whose CPU a path is charged
    // (the "g" of c+g+i): the relay or the bare gateway on their paths, else
    // the gateway (idle on the direct and http paths).
    let (relay_pid, bare_pid) = (relay.pid(), bare.pid());
    let middle_pid = |mode: &str| match mode {
        "relay" => relay_pid,
        "bare" => bare_pid,
        _ => gateway_pid,
    };
    let mut rows: Vec<Row> = Vec::new();

    let direct = Arc::clone(&tcp_clients[0]);
    let grpc = MessagingServiceClient::new(channels[0].clone());
    let mut idle_rate = None;

    if selected("BENCH_ONLY", "publish") {
        // 1. Batched publish, the paths taking turns round by round, so a
        //    slow spell of the machine falls on all of them.
        let partitions = clients as u32;
        let messages = (clients * batches * BATCH as u64) as f64;
        let samples = take_turns(rounds, &PUBLISH_PATHS, async |mode, round| {
            let topic = format!("pub-{mode}-{round}");
            create_topic(admin_client, "bench", &topic, partitions).await;
            let sample = measure((middle_pid(mode), iggy_pid), messages, async {
                match mode {
                    "direct" => publish_sdk(&tcp_clients, "bench", &topic, batches).await,
                    "relay" => publish_sdk(&relay_clients, "bench", &topic, batches).await,
                    "gateway" => publish_gateway(&channels, "bench", &topic, batches).await,
                    "bare" => publish_gateway(&bare_channels, "bench", &topic, batches).await,
                    _ => publish_sdk(&http_clients, "bench", &topic, batches).await,
                }
            })
            .await;
            // Iggy's data is in memory, and on this VM writing into memory
            // that was not just freed (never touched, or handed back to the
            // host) costs iggy-server about twice as much per message as
            // writing into memory freed a moment ago. Kept, each turn's
            // 400 MB would leave the next path only such memory, and the
            // paths run later in a round (the gateway after direct and
            // relay) would pay for it. Deleted, every turn writes into the
            // memory the one before freed.
            admin_client
                .delete_topic(&id("bench"), &id(&topic))
                .await
                .expect("delete topic");
            sample
        })
        .await;
        rows.extend(samples.rows("batched publish"));
    }

    if selected("BENCH_ONLY", "single") {
        // 2. Single-message publish latency at a fixed rate; beside it the
        //    gRPC hop alone (a health check the gateway answers without
        //    Iggy) and the floor of that hop (the same check against a bare
        //    tonic server).
        create_topic(admin_client, "bench", "single", 1).await;
        let floor = Helper::start(FLOOR_SERVER, "1").await;
        let floor_channel = tonic_endpoint(&format!("http://127.0.0.1:{}", floor.port))
            .connect()
            .await
            .expect("the bare tonic server");
        let (paths, calls): (Vec<_>, Vec<_>) = [
            (("single publish", "direct"), sdk_publish(&direct)),
            (("single publish", "gateway"), gateway_publish(&grpc)),
            (
                ("health check (no Iggy)", "gateway"),
                health_check(channels[0].clone()),
            ),
            (
                ("health check (bare tonic)", "floor"),
                health_check(floor_channel),
            ),
            (("single publish", "http"), sdk_publish(&http_clients[0])),
        ]
        .into_iter()
        .unzip();
        let timed = latency_turns(seconds, 200, calls).await;
        for ((workload, mode), (achieved, latencies)) in paths.into_iter().zip(timed) {
            rows.push(latency_row(workload, mode, achieved, &latencies));
        }
    }

    if selected("BENCH_ONLY", "deliver") {
        // 3. Publish-to-deliver latency at low load (100 msgs/s), published
        //    through the gateway and directly (an external producer).
        for (mode, topic) in [("gateway", "live-gateway"), ("direct", "live-direct")] {
            create_topic(admin_client, "bench", topic, 1).await;
            let mut subscriber = MessagingServiceClient::new(channels[1 % channels.len()].clone())
                .subscribe(proto::SubscribeRequest {
                    stream: rid("bench"),
                    topic: rid(topic),
                    consumer: Some(proto::Consumer {
                        kind: Some(proto::consumer::Kind::Name("live".into())),
                    }),
                    ack_mode: proto::AckMode::None as i32,
                    ..Default::default()
                })
                .await
                .expect("subscribe")
                .into_inner();
            let _ = subscriber.message().await; // subscribed
            let count = seconds * 100;
            let receiver = tokio::spawn(async move {
                let mut latencies = Vec::new();
                while (latencies.len() as u64) < count {
                    if let Some(Kind::Batch(batch)) = subscriber
                        .message()
                        .await
                        .expect("stream")
                        .expect("open")
                        .kind
                    {
                        let now = now_micros();
                        for message in batch.messages {
                            let mut sent = [0u8; 8];
                            sent.copy_from_slice(&message.payload[..8]);
                            latencies.push(Duration::from_micros(
                                now.saturating_sub(u64::from_le_bytes(sent)),
                            ));
                        }
                    }
                }
                latencies
            });
            let mut ticker = tokio::time::interval(Duration::from_millis(10));
            let mut publisher = grpc.clone();
            for _ in 0..count {
                ticker.tick().await;
                if mode == "gateway" {
                    publisher
                        .publish(proto::PublishRequest {
                            stream: rid("bench"),
                            topic: rid(topic),
                            partitioning: None,
                            message: grpc_message(),
                        })
                        .await
                        .expect("publish");
                } else {
                    direct
                        .send_messages(
                            &id("bench"),
                            &id(topic),
                            &Partitioning::partition_id(0),
                            &mut [sdk_message()],
                        )
                        .await
                        .expect("send");
                }
            }
            let mut latencies = receiver.await.expect("receiver");
            latencies.sort_unstable();
            let workload = if mode == "gateway" {
                "publish->deliver (via gateway)"
            } else {
                "publish->deliver (external)"
            };
            rows.push(latency_row(workload, "gateway", 100.0, &latencies));
        }
    }

    if selected("BENCH_ONLY", "idle") {
        // 4. Poll rate of an idle subscription.
        create_topic(admin_client, "bench", "idle", 1).await;
        let mut idle = MessagingServiceClient::new(channels[0].clone())
            .subscribe(proto::SubscribeRequest {
                stream: rid("bench"),
                topic: rid("idle"),
                consumer: Some(proto::Consumer {
                    kind: Some(proto::consumer::Kind::Name("idle".into())),
                }),
                ..Default::default()
            })
            .await
            .expect("subscribe")
            .into_inner();
        let _ = idle.message().await;
        tokio::time::sleep(Duration::from_secs(1)).await; // let the backoff reach its cap
        let polls_before = gateway.polls().await;
        let idle_started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        idle_rate = Some(
            (gateway.polls().await - polls_before) as f64 / idle_started.elapsed().as_secs_f64(),
        );
        drop(idle);
    }

    if selected("BENCH_ONLY", "read") {
        // 5. Subscribe throughput (after the latency workloads: filling the topic
        //    leaves Iggy flushing for a while): read N x 1 KiB from offset 0.
        create_topic(admin_client, "bench", "read", 1).await;
        let fill_batches = read_messages.div_ceil(BATCH as u64);
        publish_sdk(&tcp_clients[..1], "bench", "read", fill_batches).await;
        let total = fill_batches * BATCH as u64;
        let samples = take_turns(rounds, &READ_PATHS, async |mode, _| {
            measure((middle_pid(mode), iggy_pid), total as f64, async {
                match mode {
                    "direct" => read_sdk(&tcp_clients[0], "bench", "read", total).await,
                    "relay" => read_sdk(&relay_clients[0], "bench", "read", total).await,
                    "gateway" => read_gateway(&channels[0], "bench", "read", total).await,
                    _ => read_sdk(&http_clients[0], "bench", "read", total).await,
                }
            })
            .await
        })
        .await;
        rows.extend(samples.rows("subscribe read"));
    }

    let slow_line = if selected("BENCH_ONLY", "slow") {
        // 6. Memory while a subscriber reads 1,000x slower than the publisher.
        create_topic(admin_client, "bench", "slow", 1).await;
        let mut slow = MessagingServiceClient::new(channels[0].clone())
            .subscribe(proto::SubscribeRequest {
                stream: rid("bench"),
                topic: rid("slow"),
                consumer: Some(proto::Consumer {
                    kind: Some(proto::consumer::Kind::Name("slow".into())),
                }),
                batch_size: 1,
                ack_mode: proto::AckMode::None as i32,
                ..Default::default()
            })
            .await
            .expect("subscribe")
            .into_inner();
        let _ = slow.message().await;
        let publish_rate = 2_000u64; // messages per second, 1 KiB each
        let read_every = Duration::from_micros(1_000_000 * 1_000 / publish_rate); // 1,000x slower
        let rss_start = memory_kib(gateway_pid, "VmRSS");
        let mut rss_samples = Vec::new();
        let started = Instant::now();
        let mut published = 0u64;
        let mut read = 0u64;
        let mut next_read = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        while started.elapsed() < Duration::from_secs(slow_seconds) {
            ticker.tick().await;
            let mut messages: Vec<IggyMessage> =
                (0..publish_rate / 10).map(|_| sdk_message()).collect();
            direct
                .send_messages(
                    &id("bench"),
                    &id("slow"),
                    &Partitioning::partition_id(0),
                    &mut messages,
                )
                .await
                .expect("send");
            published += publish_rate / 10;
            if Instant::now() >= next_read {
                let _ = slow.message().await;
                read += 1;
                next_read += read_every;
            }
            if published.is_multiple_of(publish_rate) {
                rss_samples.push(memory_kib(gateway_pid, "VmRSS"));
            }
        }
        let rss_max = rss_samples.iter().copied().fold(rss_start, u64::max);
        let rss_end = rss_samples.last().copied().unwrap_or(rss_start);
        Some(format!(
            "slow subscriber ({publish_rate} msgs/s published, {read} read in {slow_seconds}s, {published} published): RSS start {} MiB, max {} MiB, end {} MiB",
            rss_start / 1024,
            rss_max / 1024,
            rss_end / 1024
        ))
    } else {
        None
    };

    // Report.
    println!("\niggy-grpc benchmark (iggy-server on loopback, {clients} clients, 1 KiB messages)");
    println!("throughput rows: each path's best of {rounds} rounds, the paths taking turns");
    println!(
        "{:<32} {:<8} {:>12} {:>10} {:>10} {:>10} {:>10} {:>9} {:>18}",
        "workload", "path", "msgs/s", "MB/s", "p50", "p99", "p999", "vs direct", "cpu us/msg c+g+i"
    );
    for row in &rows {
        let direct_rate = find_row(&rows, row.workload, "direct").map(|r| r.msgs_per_s);
        let ratio = match (row.latency, direct_rate) {
            (None, Some(direct)) if row.mode != "direct" => {
                format!("{:.2}", row.msgs_per_s / direct)
            }
            _ => String::from("-"),
        };
        let (p50, p99, p999) = row
            .latency
            .map(|(a, b, c)| {
                (
                    format!("{:.2}ms", a.as_secs_f64() * 1e3),
                    format!("{:.2}ms", b.as_secs_f64() * 1e3),
                    format!("{:.2}ms", c.as_secs_f64() * 1e3),
                )
            })
            .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
        let cpu = row.cpu.map_or_else(
            || String::from("-"),
            |[clients, gateway, iggy]| format!("{clients:.2}+{gateway:.2}+{iggy:.2}"),
        );
        println!(
            "{:<32} {:<8} {:>12.0} {:>10.1} {:>10} {:>10} {:>10} {:>9} {:>18}",
            row.workload,
            row.mode,
            row.msgs_per_s,
            row.msgs_per_s * PAYLOAD as f64 / 1e6,
            p50,
            p99,
            p999,
            ratio,
            cpu
        );
    }
    let single =
        |mode| find_row(&rows, "single publish", mode).and_then(|r| r.latency.map(|l| l.0));
    if let (Some(gw), Some(direct)) = (single("gateway"), single("direct")) {
        println!(
            "single publish p50: gateway - direct = {:+.3} ms",
            (gw.as_secs_f64() - direct.as_secs_f64()) * 1e3
        );
    }
    if let Some((hop, ..)) =
        find_row(&rows, "health check (no Iggy)", "gateway").and_then(|r| r.latency)
    {
        println!(
            "the gRPC hop alone (client -> gateway -> client, no Iggy call): p50 {:.3} ms",
            hop.as_secs_f64() * 1e3
        );
        if let Some((floor, ..)) =
            find_row(&rows, "health check (bare tonic)", "floor").and_then(|r| r.latency)
        {
            println!(
                "the same hop to a bare tonic server (its floor): p50 {:.3} ms; the gateway adds {:+.3} ms",
                floor.as_secs_f64() * 1e3,
                (hop.as_secs_f64() - floor.as_secs_f64()) * 1e3
            );
        }
    }
    for workload in ["batched publish", "subscribe read"] {
        let rounds = |mode| find_row(&rows, workload, mode).map_or(&[][..], |r| &r.rounds);
        for mode in ["bare", "gateway"] {
            let by_round: Vec<String> = rounds(mode)
                .iter()
                .zip(rounds("direct"))
                .map(|(path, direct)| format!("{:.2}", path / direct))
                .collect();
            if !by_round.is_empty() {
                println!(
                    "{workload}: {mode} / direct by round = {}",
                    by_round.join(" ")
                );
            }
        }
        let rate = |mode| find_row(&rows, workload, mode).map(|r| r.msgs_per_s);
        if let (Some(gateway), Some(http)) = (rate("gateway"), rate("http")) {
            println!("{workload}: gateway / http = {:.2}", gateway / http);
        }
        // The gateway against the two paths that show what it cannot avoid.
        for (mode, what, short) in [
            (
                "relay",
                "a bare byte relay in its own process (the floor of any gateway process)",
                "the relay",
            ),
            (
                "bare",
                "a bare gateway (the generated service and the SDK, nothing else: what the stack alone allows)",
                "it",
            ),
        ] {
            if let (Some(floor), Some(direct), Some(gateway)) =
                (rate(mode), rate("direct"), rate("gateway"))
            {
                println!(
                    "{workload}: {what} reaches {:.2} of direct; the gateway reaches {:.2} of {short}",
                    floor / direct,
                    gateway / floor
                );
            }
        }
        // What bounds each path: Iggy near 1.0 means its one shard is full;
        // all near the machine's core count means the cores are.
        let busy: Vec<String> = PUBLISH_PATHS
            .iter()
            .filter_map(|mode| {
                let row = find_row(&rows, workload, mode)?;
                let [clients, gateway, iggy] = row.cpu?;
                let cores = |us_per_message: f64| row.msgs_per_s * us_per_message / 1e6;
                Some(format!(
                    "{mode} {:.2} / {:.2}",
                    cores(clients + gateway + iggy),
                    cores(iggy)
                ))
            })
            .collect();
        if !busy.is_empty() {
            println!(
                "{workload}: cores busy, all / iggy-server: {}",
                busy.join(", ")
            );
        }
    }
    if let Some(idle_rate) = idle_rate {
        println!("idle subscription: {idle_rate:.1} polls/s");
    }
    if let Some(line) = slow_line {
        println!("{line}");
    }
    println!(
        "peak RSS of the gateway process: {} MiB",
        memory_kib(gateway_pid, "VmHWM") / 1024
    );

    let _ = gateway.child.kill().await;
    iggy.stop().await;
    if let Some(data_dir) = data_dir {
        let _ = std::fs::remove_dir_all(data_dir);
    }
}
