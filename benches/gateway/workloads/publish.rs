//! Batched publish: each client sends 1,000 x 1 KiB per call to a partition
//! of its own, on every path, the paths taking turns round by round.

use super::Bench;
use crate::{
    measure::{measure, take_turns},
    messages::{BATCH, batch_request, create_topic, id, idempotent_batch_request, sdk_message},
    report::Row,
};
use iggy::prelude::{IggyClient, IggyMessage, MessageClient, Partitioning, TopicClient};
use iggy_grpc::proto::{PublishBatchRequest, messaging_service_client::MessagingServiceClient};
use std::{sync::Arc, time::Instant};
use tonic::transport::Channel;

/// The paths compared: beside direct, gateway and http, `relay` is the
/// direct SDK client through a bare byte relay in its own process (the floor
/// of any gateway that runs as a process of its own), and `bare` the
/// generated service on tonic's stock codec forwarding to the SDK (what the
/// stack alone allows); `idempotent` is the gateway with every batch
/// published idempotently (each message with an id of its own).
const PATHS: [&str; 6] = ["direct", "relay", "bare", "gateway", "idempotent", "http"];

pub async fn run(bench: &Bench) -> Vec<Row> {
    let (clients, batches) = (bench.settings.clients, bench.settings.batches);
    let messages = (clients * batches * BATCH as u64) as f64;
    let samples = take_turns(bench.settings.rounds, &PATHS, async |mode, round| {
        let topic = format!("pub-{mode}-{round}");
        create_topic(bench.admin(), "bench", &topic, clients as u32).await;
        let sample = measure(bench.pids(mode), messages, async {
            match mode {
                "direct" => publish_sdk(&bench.tcp_clients, "bench", &topic, batches).await,
                "relay" => publish_sdk(&bench.relay_clients, "bench", &topic, batches).await,
                "gateway" => {
                    publish_gateway(&bench.channels, "bench", &topic, batches, batch_request).await
                }
                "idempotent" => {
                    let (channels, request) = (&bench.channels, idempotent_batch_request);
                    publish_gateway(channels, "bench", &topic, batches, request).await
                }
                "bare" => {
                    publish_gateway(
                        &bench.bare_channels,
                        "bench",
                        &topic,
                        batches,
                        batch_request,
                    )
                    .await
                }
                _ => publish_sdk(&bench.http_clients, "bench", &topic, batches).await,
            }
        })
        .await;
        // Iggy's data is in memory, and on this VM writing into memory that
        // was not just freed costs iggy-server about twice as much per
        // message as writing into memory freed a moment ago. Kept, each
        // turn's 400 MB would leave the next path only such memory, and the
        // paths run later in a round would pay for it. Deleted, every turn
        // writes into the memory the one before freed.
        bench
            .admin()
            .delete_topic(&id("bench"), &id(&topic))
            .await
            .expect("delete topic");
        sample
    })
    .await;
    samples.rows("batched publish").collect()
}

/// Batched publish over the SDK (TCP or HTTP): each client sends `batches`
/// calls of 1,000 x 1 KiB to its own partition, all clients at once.
pub async fn publish_sdk(
    clients: &[Arc<IggyClient>],
    stream: &str,
    topic: &str,
    batches: u64,
) -> f64 {
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

/// The same batched publish through a gateway (ours or the bare one), each
/// call's request made by `request`.
async fn publish_gateway(
    channels: &[Channel],
    stream: &str,
    topic: &str,
    batches: u64,
    request: fn(&str, &str, u32) -> PublishBatchRequest,
) -> f64 {
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
                    .publish_batch(request(&stream, &topic, index as u32))
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
