//! What subscriptions cost while nothing or little happens: the poll rate
//! of an idle subscription, and the gateway's memory while a subscriber
//! reads 1,000x slower than the publisher.

use super::Bench;
use crate::{
    messages::{create_topic, id, rid, sdk_message},
    processes::memory_kib,
    report::Row,
};
use iggy::prelude::{IggyMessage, MessageClient, Partitioning};
use iggy_grpc::proto::{self, messaging_service_client::MessagingServiceClient};
use std::time::{Duration, Instant};

/// Iggy polls per second of idle subscriptions to one topic (1, then 100),
/// from the gateway's `iggy_grpc_subscription_polls_total`, which counts
/// the subscriptions' polls and their topic's watcher.
pub async fn idle(bench: &Bench) -> Vec<Row> {
    let mut rows = Vec::new();
    for (count, workload) in [
        (1, "idle: Iggy polls, 1 subscriber"),
        (100, "idle: Iggy polls, 100 on 1 topic"),
    ] {
        let topic = format!("idle-{count}");
        create_topic(bench.admin(), "bench", &topic, 1).await;
        let mut streams = Vec::new();
        for index in 0..count {
            let channel = bench.channels[index % bench.channels.len()].clone();
            let mut idle = MessagingServiceClient::new(channel)
                .subscribe(proto::SubscribeRequest {
                    stream: rid("bench"),
                    topic: rid(&topic),
                    consumer: Some(proto::Consumer {
                        kind: Some(proto::consumer::Kind::Name(format!("idle-{index}"))),
                    }),
                    ..Default::default()
                })
                .await
                .expect("subscribe")
                .into_inner();
            let _ = idle.message().await;
            streams.push(idle);
        }
        tokio::time::sleep(Duration::from_secs(1)).await; // let the backoffs reach their caps
        let polls_before = bench.gateway.polls().await;
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(bench.settings.seconds)).await;
        let rate =
            (bench.gateway.polls().await - polls_before) as f64 / started.elapsed().as_secs_f64();
        drop(streams);
        rows.push(Row::figure(workload, "gateway", rate, "polls/s"));
    }
    rows
}

/// The gateway's resident memory while a subscriber takes one message per
/// 1,000 published (2,000 msgs/s of 1 KiB, published directly).
pub async fn slow(bench: &Bench) -> Vec<Row> {
    create_topic(bench.admin(), "bench", "slow", 1).await;
    let mut slow = MessagingServiceClient::new(bench.channels[0].clone())
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
    let gateway_pid = bench.gateway.pid;
    let publish_rate = 2_000u64;
    let read_every = Duration::from_micros(1_000_000 * 1_000 / publish_rate);
    let rss_start = memory_kib(gateway_pid, "VmRSS");
    let mut rss_samples = Vec::new();
    let started = Instant::now();
    let mut published = 0u64;
    let mut next_read = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < Duration::from_secs(bench.settings.slow_seconds) {
        ticker.tick().await;
        let mut messages: Vec<IggyMessage> =
            (0..publish_rate / 10).map(|_| sdk_message()).collect();
        bench.tcp_clients[0]
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
            next_read += read_every;
        }
        if published.is_multiple_of(publish_rate) {
            rss_samples.push(memory_kib(gateway_pid, "VmRSS"));
        }
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let rss_max = rss_samples.iter().copied().fold(rss_start, u64::max);
    let rss_end = rss_samples.last().copied().unwrap_or(rss_start);
    vec![
        Row::figure(
            "slow subscriber: gateway RSS start",
            "gateway",
            mib(rss_start),
            "MiB",
        ),
        Row::figure(
            "slow subscriber: gateway RSS max",
            "gateway",
            mib(rss_max),
            "MiB",
        ),
        Row::figure(
            "slow subscriber: gateway RSS end",
            "gateway",
            mib(rss_end),
            "MiB",
        ),
    ]
}
