//! Many idle subscribers on one replica (BENCH_SCALE: 1,000, 5,000 and
//! 10,000 by default, each count a run of its own on a topic of its own):
//! how long they take to open, in bursts of 1,000 calls at once, what they
//! cost Iggy and the gateway while idle, how fast a native producer's
//! message reaches a subscriber meanwhile, and how long one message takes
//! to reach them all. Iggy's ping latency, gateway health, the pools'
//! reconnects and the streams' ends are watched the whole time.

use super::Bench;
use crate::{
    messages::{age, create_topic, id, now_micros, rid, sdk_message},
    processes::{memory_kib, tonic_endpoint},
    report::Row,
};
use iggy::prelude::{IggyClient, MessageClient, Partitioning, SystemClient};
use iggy_grpc::proto::{
    self, messaging_service_client::MessagingServiceClient, subscribe_response::Kind,
};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::Notify;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Streams per client connection: under the gateway's 256 at once.
const STREAMS_PER_CONNECTION: usize = 200;
/// Subscribe calls sent at once: a burst as a fleet of clients restarting
/// together makes.
const BURST: usize = 1_000;
/// Publish rate of the latency probe, messages per second.
const PROBE_RATE: u64 = 100;

/// What every idle subscriber's reading task reports.
#[derive(Default)]
struct Subscribers {
    /// Streams that ended (by error or end of stream) while they should not.
    ended: AtomicU64,
    /// Subscribers that received the fan-out message.
    received: AtomicU64,
    /// Told whenever `received` grows.
    progress: Notify,
}

/// Runs the sizes of BENCH_SCALE in turn on one gateway, closing each
/// size's subscribers before the next opens.
pub async fn run(bench: &Bench) -> Vec<Row> {
    let sizes: Vec<usize> = std::env::var("BENCH_SCALE")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![1_000, 5_000, 10_000]);
    let Some(&largest) = sizes.iter().max() else {
        return Vec::new();
    };
    create_topic(bench.admin(), "bench", "scale-probe", 1).await;
    let channels: Vec<Channel> = (0..largest.div_ceil(STREAMS_PER_CONNECTION) + 1)
        .map(|_| tonic_endpoint(&bench.gateway.address).connect_lazy())
        .collect();
    let pings = Arc::new(Mutex::new(Vec::new()));
    let pinger = tokio::spawn(ping_iggy(
        Arc::clone(&bench.tcp_clients[0]),
        Arc::clone(&pings),
    ));
    let health_changes = Arc::new(AtomicU64::new(0));
    let health = tokio::spawn(watch_health(
        channels[0].clone(),
        Arc::clone(&health_changes),
    ));
    let subscribers = Arc::new(Subscribers::default());
    // The latency probe is one of the subscribers, on a topic of its own.
    let mut probe = open(&channels[0], "scale-probe", "probe".to_owned())
        .await
        .expect("the probe subscribes");

    let mut rows = Vec::new();
    for size in sizes {
        let label = |what: &str| -> &'static str {
            // Row names are static; a run makes a handful of them.
            format!("{size} subscribers: {what}").leak()
        };
        let idle_topic = format!("scale-idle-{size}");
        create_topic(bench.admin(), "bench", &idle_topic, 1).await;
        let mut open_count = 1usize; // the probe
        let mut readers = Vec::new();
        take_sorted(&pings);
        let reconnects_before = bench.gateway.reconnects().await;
        let started = Instant::now();
        let mut refused = 0u64;
        while open_count < size {
            let wave = (size - open_count).min(BURST);
            let opens = (open_count..open_count + wave).map(|index| {
                let channel = channels[1 + index / STREAMS_PER_CONNECTION].clone();
                let topic = &idle_topic;
                async move { open(&channel, topic, format!("idle-{index}")).await }
            });
            for opened in futures_util::future::join_all(opens).await {
                match opened {
                    Ok(stream) => {
                        readers.push(tokio::spawn(read_idle(stream, Arc::clone(&subscribers))));
                        open_count += 1;
                    }
                    Err(status) => {
                        refused += 1;
                        eprintln!("a subscribe was refused: {status:?}");
                    }
                }
            }
            if refused > 0 {
                break;
            }
        }
        let open_seconds = started.elapsed().as_secs_f64();
        rows.push(Row::figure(
            label("open, total"),
            "gateway",
            open_seconds,
            "s",
        ));
        rows.push(Row::figure(
            label("refused"),
            "gateway",
            refused as f64,
            "calls",
        ));

        rows.push(Row::latency(
            label("Iggy ping, opening"),
            "iggy",
            50.0,
            &take_sorted(&pings),
        ));

        // Idle: what they cost while nothing happens, once the new ones have
        // read what the topic already held.
        settle(bench).await;
        take_sorted(&pings);
        let polls_before = bench.gateway.polls().await;
        let idle_started = Instant::now();
        tokio::time::sleep(Duration::from_secs(bench.settings.seconds)).await;
        let polls = (bench.gateway.polls().await - polls_before) as f64
            / idle_started.elapsed().as_secs_f64();
        rows.push(Row::figure(
            label("idle Iggy polls"),
            "gateway",
            polls,
            "polls/s",
        ));
        let rss = memory_kib(bench.gateway.pid, "VmRSS") as f64 / 1024.0;
        rows.push(Row::figure(label("gateway RSS"), "gateway", rss, "MiB"));

        // A native producer's messages to the probe while the rest idle.
        let latencies =
            probe_latency(&bench.tcp_clients[0], &mut probe, bench.settings.seconds).await;
        rows.push(Row::latency(
            label("native publish->deliver"),
            "gateway",
            PROBE_RATE as f64,
            &latencies,
        ));

        rows.push(Row::latency(
            label("Iggy ping, idle"),
            "iggy",
            50.0,
            &take_sorted(&pings),
        ));

        // One message to the idle topic: every subscriber reads it.
        let idle_subscribers = (open_count - 1) as u64;
        subscribers.received.store(0, Ordering::SeqCst);
        let sent = Instant::now();
        bench.tcp_clients[0]
            .send_messages(
                &id("bench"),
                &id(&idle_topic),
                &Partitioning::partition_id(0),
                &mut [sdk_message()],
            )
            .await
            .expect("send to the idle topic");
        while subscribers.received.load(Ordering::SeqCst) < idle_subscribers {
            let progressed = subscribers.progress.notified();
            if tokio::time::timeout(Duration::from_secs(30), progressed)
                .await
                .is_err()
            {
                eprintln!(
                    "fan-out stalled at {} of {idle_subscribers}",
                    subscribers.received.load(Ordering::SeqCst)
                );
                break;
            }
        }
        rows.push(Row::figure(
            label("one message to all"),
            "gateway",
            sent.elapsed().as_secs_f64() * 1000.0,
            "ms",
        ));

        rows.push(Row::figure(
            label("streams ended"),
            "gateway",
            subscribers.ended.load(Ordering::SeqCst) as f64,
            "streams",
        ));
        rows.push(Row::figure(
            label("pool reconnects"),
            "gateway",
            (bench.gateway.reconnects().await - reconnects_before) as f64,
            "connections",
        ));
        rows.push(Row::figure(
            label("health changes"),
            "gateway",
            health_changes.load(Ordering::SeqCst) as f64,
            "changes",
        ));
        for reader in readers {
            reader.abort();
        }
        // Their sessions end once they notice (the probe stays).
        while bench.gateway.active_subscriptions().await > 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        subscribers.ended.store(0, Ordering::SeqCst);
    }
    pinger.abort();
    health.abort();
    rows
}

/// Waits until the subscriptions' Iggy polls have calmed down to the idle
/// rate (at most 30 s): new ones first read what the topic already holds.
async fn settle(bench: &Bench) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut before = bench.gateway.polls().await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = bench.gateway.polls().await;
        if now - before < 50 || Instant::now() > deadline {
            return;
        }
        before = now;
    }
}

/// The ping round trips kept so far, sorted; the list starts afresh.
fn take_sorted(pings: &Mutex<Vec<Duration>>) -> Vec<Duration> {
    let mut taken = std::mem::take(&mut *pings.lock().unwrap_or_else(|e| e.into_inner()));
    taken.sort_unstable();
    taken
}

/// Opens an auto-ack named-consumer subscription and waits for `Subscribed`.
async fn open(
    channel: &Channel,
    topic: &str,
    consumer: String,
) -> Result<tonic::Streaming<proto::SubscribeResponse>, tonic::Status> {
    let mut stream = MessagingServiceClient::new(channel.clone())
        .subscribe(proto::SubscribeRequest {
            stream: rid("bench"),
            topic: rid(topic),
            consumer: Some(proto::Consumer {
                kind: Some(proto::consumer::Kind::Name(consumer)),
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    match stream.message().await? {
        Some(_subscribed) => Ok(stream),
        None => Err(tonic::Status::unavailable("ended before Subscribed")),
    }
}

/// Reads an idle subscriber's stream: counts the batches it receives and
/// whether it ends.
async fn read_idle(
    mut stream: tonic::Streaming<proto::SubscribeResponse>,
    subscribers: Arc<Subscribers>,
) {
    loop {
        match stream.message().await {
            Ok(Some(proto::SubscribeResponse {
                kind: Some(Kind::Batch(_)),
            })) => {
                subscribers.received.fetch_add(1, Ordering::SeqCst);
                subscribers.progress.notify_waiters();
            }
            Ok(Some(_heartbeat)) => {}
            Ok(None) | Err(_) => {
                subscribers.ended.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// Publish-to-delivery latency of messages sent straight to Iggy at
/// [`PROBE_RATE`] for `seconds`, as the probe subscriber receives them.
async fn probe_latency(
    iggy: &IggyClient,
    probe: &mut tonic::Streaming<proto::SubscribeResponse>,
    seconds: u64,
) -> Vec<Duration> {
    let count = seconds * PROBE_RATE;
    let mut latencies = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / PROBE_RATE));
    let mut sent = 0;
    while (latencies.len() as u64) < count {
        tokio::select! {
            _ = ticker.tick(), if sent < count => {
                iggy.send_messages(
                    &id("bench"),
                    &id("scale-probe"),
                    &Partitioning::partition_id(0),
                    &mut [sdk_message()],
                )
                .await
                .expect("send to the probe topic");
                sent += 1;
            }
            response = probe.message() => {
                let response = response.expect("probe stream").expect("probe open");
                if let Some(Kind::Batch(batch)) = response.kind {
                    let now = now_micros();
                    for message in batch.messages {
                        latencies.push(age(&message.payload, now));
                    }
                }
            }
        }
    }
    latencies.sort_unstable();
    latencies
}

/// Pings Iggy directly every 20 ms, keeping each round trip.
async fn ping_iggy(iggy: Arc<IggyClient>, pings: Arc<Mutex<Vec<Duration>>>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    loop {
        ticker.tick().await;
        let started = Instant::now();
        if iggy.ping().await.is_ok() {
            pings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(started.elapsed());
        }
    }
}

/// Counts every change of the gateway's overall health after the first
/// answer (SERVING).
async fn watch_health(channel: Channel, changes: Arc<AtomicU64>) {
    let mut health = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch health")
        .into_inner();
    let first = health.message().await.expect("health").expect("status");
    assert_eq!(first.status(), ServingStatus::Serving);
    while let Ok(Some(_)) = health.message().await {
        changes.fetch_add(1, Ordering::SeqCst);
    }
}
