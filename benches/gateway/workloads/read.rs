//! Subscribe throughput: N x 1 KiB read from offset 0 of one partition, on
//! every path the paths taking turns (the SDK polling 1,000 at a time; the
//! gateway through one subscription, over gRPC and as Server-Sent Events
//! of JSON batches read by a raw HTTP/2 client).

use super::{Bench, publish::publish_sdk};
use crate::{
    measure::{measure, take_turns},
    messages::{BATCH, create_topic, id, rid},
    report::Row,
};
use iggy::prelude::{Consumer, IggyClient, MessageClient, PollingStrategy};
use iggy_grpc::proto::{
    self, messaging_service_client::MessagingServiceClient, start_position,
    subscribe_response::Kind,
};
use std::time::Instant;
use tonic::{codegen::http, transport::Channel};

const PATHS: [&str; 5] = ["direct", "relay", "gateway", "sse", "http"];

pub async fn run(bench: &Bench) -> Vec<Row> {
    create_topic(bench.admin(), "bench", "read", 1).await;
    let fill_batches = bench.settings.read_messages.div_ceil(BATCH as u64);
    publish_sdk(&bench.tcp_clients[..1], "bench", "read", fill_batches).await;
    let total = fill_batches * BATCH as u64;
    let samples = take_turns(bench.settings.rounds, &PATHS, async |mode, _| {
        measure(bench.pids(mode), total as f64, async {
            match mode {
                "direct" => read_sdk(&bench.tcp_clients[0], "bench", "read", total).await,
                "relay" => read_sdk(&bench.relay_clients[0], "bench", "read", total).await,
                "gateway" => read_gateway(&bench.channels[0], "bench", "read", total).await,
                "sse" => read_sse(&bench.gateway.address, "bench", "read", total).await,
                _ => read_sdk(&bench.http_clients[0], "bench", "read", total).await,
            }
        })
        .await
    })
    .await;
    samples.rows("subscribe read").collect()
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

/// Reads `count` messages from offset 0 as Server-Sent Events, counting
/// the messages of each `batch` event's JSON.
async fn read_sse(address: &str, stream: &str, topic: &str, count: u64) -> f64 {
    #[derive(serde::Deserialize)]
    struct Batch {
        messages: Vec<serde::de::IgnoredAny>,
    }
    let authority = address.trim_start_matches("http://");
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let (client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(connection);
    let request = http::Request::get(format!(
        "http://{authority}/v1/streams/{stream}/topics/{topic}/subscribe?\
         consumer.name=bench-reader&partitionId=0&start.offset=0&ackMode=ACK_MODE_NONE&batchSize={BATCH}"
    ))
    .header("accept", "text/event-stream")
    .body(())
    .expect("request");
    let (response, _) = client
        .ready()
        .await
        .expect("ready")
        .send_request(request, true)
        .expect("send");
    let response = response.await.expect("response");
    assert_eq!(response.status(), http::StatusCode::OK);
    let mut body = response.into_body();
    // `scanned`: how much of `pending` holds no event end.
    let (mut pending, mut scanned, mut received) = (Vec::<u8>::new(), 0, 0u64);
    while received < count {
        let data = body.data().await.expect("open").expect("event data");
        let _ = body.flow_control().release_capacity(data.len());
        pending.extend_from_slice(&data);
        while let Some(end) = pending[scanned..]
            .windows(2)
            .position(|pair| pair == b"\n\n")
            .map(|at| scanned + at)
        {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            scanned = 0;
            if event.starts_with(b"event: batch\n") {
                let data = event
                    .split(|byte| *byte == b'\n')
                    .find_map(|line| line.strip_prefix(b"data: "))
                    .expect("a data line");
                let batch: Batch = serde_json::from_slice(data).expect("a batch");
                received += batch.messages.len() as u64;
            }
        }
        scanned = pending.len().saturating_sub(1);
    }
    count as f64 / started.elapsed().as_secs_f64()
}
