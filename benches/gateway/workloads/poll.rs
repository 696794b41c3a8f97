//! Unary Poll: each client polls its own partition 100 messages at a time,
//! by offset, through the gateway's `Poll` and with the SDK's
//! `poll_messages` (the loop a client without the gateway would write).

use super::{Bench, publish::publish_sdk};
use crate::{
    measure::{measure, take_turns},
    messages::{BATCH, create_topic, id, rid},
    report::Row,
};
use iggy::prelude::{Consumer, IggyClient, MessageClient, PollingStrategy};
use iggy_grpc::proto::{self, messaging_service_client::MessagingServiceClient, start_position};
use std::{sync::Arc, time::Instant};
use tonic::transport::Channel;

const PATHS: [&str; 3] = ["direct", "relay", "gateway"];
/// Messages per poll.
const POLL: u32 = 100;
/// Batches of 1,000 published to each partition before the rounds.
const FILL_BATCHES: u64 = 20;

pub async fn run(bench: &Bench) -> Vec<Row> {
    let clients = bench.settings.clients;
    create_topic(bench.admin(), "bench", "poll", clients as u32).await;
    publish_sdk(&bench.tcp_clients, "bench", "poll", FILL_BATCHES).await;
    let per_partition = FILL_BATCHES * BATCH as u64;
    let total = (clients * per_partition) as f64;
    let samples = take_turns(bench.settings.rounds, &PATHS, async |mode, _| {
        measure(bench.pids(mode), total, async {
            match mode {
                "direct" => poll_sdk(&bench.tcp_clients, per_partition).await,
                "relay" => poll_sdk(&bench.relay_clients, per_partition).await,
                _ => poll_gateway(&bench.channels, per_partition).await,
            }
        })
        .await
    })
    .await;
    samples.rows("unary poll").collect()
}

/// Each SDK client reads `count` messages of its partition, `POLL` at a time.
async fn poll_sdk(clients: &[Arc<IggyClient>], count: u64) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (partition, client) in clients.iter().enumerate() {
        let client = Arc::clone(client);
        tasks.push(tokio::spawn(async move {
            let consumer = Consumer::new(id("bench-poller"));
            let mut next = 0u64;
            while next < count {
                let polled = client
                    .poll_messages(
                        &id("bench"),
                        &id("poll"),
                        Some(partition as u32),
                        &consumer,
                        &PollingStrategy::offset(next),
                        POLL,
                        false,
                    )
                    .await
                    .expect("poll");
                next += polled.messages.len() as u64;
            }
        }));
    }
    for task in tasks {
        task.await.expect("poller");
    }
    (clients.len() as u64 * count) as f64 / started.elapsed().as_secs_f64()
}

/// The same through the gateway's unary `Poll`, one channel per client.
async fn poll_gateway(channels: &[Channel], count: u64) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (partition, channel) in channels.iter().enumerate() {
        let mut client =
            MessagingServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
        tasks.push(tokio::spawn(async move {
            let mut next = 0u64;
            while next < count {
                let polled = client
                    .poll(proto::PollRequest {
                        stream: rid("bench"),
                        topic: rid("poll"),
                        partition_id: Some(partition as u32),
                        consumer: Some(proto::Consumer {
                            kind: Some(proto::consumer::Kind::Name("bench-poller".into())),
                        }),
                        start: Some(proto::StartPosition {
                            kind: Some(start_position::Kind::Offset(next)),
                        }),
                        ack_mode: proto::AckMode::None as i32,
                        batch_size: POLL,
                    })
                    .await
                    .expect("poll")
                    .into_inner();
                next += polled.messages.len() as u64;
            }
        }));
    }
    for task in tasks {
        task.await.expect("poller");
    }
    (channels.len() as u64 * count) as f64 / started.elapsed().as_secs_f64()
}
