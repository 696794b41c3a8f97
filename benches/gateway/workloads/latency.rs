//! Latency at low load: a single-message publish on each path (beside it the
//! gRPC hop alone and the floor of that hop), and publish-to-deliver through
//! a subscription.

use super::Bench;
use crate::{
    messages::{age, create_topic, grpc_message, id, now_micros, rid, sdk_message},
    processes::{FLOOR_SERVER, Helper, tonic_endpoint},
    report::Row,
};
use futures_util::future::BoxFuture;
use iggy::prelude::{IggyClient, MessageClient, Partitioning};
use iggy_grpc::proto::{
    self, messaging_service_client::MessagingServiceClient, partitioning, subscribe_response::Kind,
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tonic::transport::Channel;

/// Single-message publish latency at a fixed rate; beside it the gRPC hop
/// alone (a health check the gateway answers without Iggy) and the floor of
/// that hop (the same check against a bare tonic server).
pub async fn single(bench: &Bench) -> Vec<Row> {
    create_topic(bench.admin(), "bench", "single", 1).await;
    let floor = Helper::start(FLOOR_SERVER, "1").await;
    let floor_channel = tonic_endpoint(&format!("http://127.0.0.1:{}", floor.port))
        .connect()
        .await
        .expect("the bare tonic server");
    let grpc = MessagingServiceClient::new(bench.channels[0].clone());
    let (paths, calls): (Vec<_>, Vec<_>) = [
        (
            ("single publish", "direct"),
            sdk_publish(&bench.tcp_clients[0]),
        ),
        (("single publish", "gateway"), gateway_publish(&grpc)),
        (
            ("health check (no Iggy)", "gateway"),
            health_check(bench.channels[0].clone()),
        ),
        (
            ("health check (bare tonic)", "floor"),
            health_check(floor_channel),
        ),
        (
            ("single publish", "http"),
            sdk_publish(&bench.http_clients[0]),
        ),
    ]
    .into_iter()
    .unzip();
    let timed = latency_turns(bench.settings.seconds, 200, calls).await;
    paths
        .into_iter()
        .zip(timed)
        .map(|((workload, mode), (achieved, latencies))| {
            Row::latency(workload, mode, achieved, &latencies)
        })
        .collect()
}

/// Publish-to-deliver latency at 100 msgs/s, published through the gateway
/// and directly (an external producer), delivered by a gateway subscription.
pub async fn deliver(bench: &Bench) -> Vec<Row> {
    let mut rows = Vec::new();
    let seconds = bench.settings.seconds;
    let direct = &bench.tcp_clients[0];
    let mut publisher = MessagingServiceClient::new(bench.channels[0].clone());
    for (mode, topic) in [("gateway", "live-gateway"), ("direct", "live-direct")] {
        create_topic(bench.admin(), "bench", topic, 1).await;
        let channel = bench.channels[1 % bench.channels.len()].clone();
        let mut subscriber = MessagingServiceClient::new(channel)
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
                        latencies.push(age(&message.payload, now));
                    }
                }
            }
            latencies
        });
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        for _ in 0..count {
            ticker.tick().await;
            if mode == "gateway" {
                publisher
                    .publish(proto::PublishRequest {
                        stream: rid("bench"),
                        topic: rid(topic),
                        partitioning: None,
                        message: grpc_message(),
                        idempotent: false,
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
        rows.push(Row::latency(workload, "gateway", 100.0, &latencies));
    }
    rows
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
                    idempotent: false,
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
