//! Batched publish from a raw HTTP/2 client (the h2 crate, no gRPC stack):
//! each call's body is encoded once and sent as DATA frames of 16 KiB (the
//! HTTP/2 default many gRPC stacks keep) or 1 MiB, so the client costs
//! little and the gateway's CPU per message for the two frame sizes can be
//! compared with Iggy's in the same run. The same batch as JSON to the
//! HTTP route (`POST …/messages:batch`), in 16 KiB frames, gives what the
//! JSON mapping costs beside gRPC.

use super::Bench;
use crate::{
    measure::{measure, take_turns},
    messages::{BATCH, batch_request, create_topic, id},
    report::Row,
};
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use iggy::prelude::TopicClient;
use prost::Message as _;
use std::time::Instant;
use tonic::codegen::http;

const PATHS: [&str; 3] = ["16KiB frames", "1MiB frames", "JSON 16KiB frames"];

/// What a call's body is, and so where it goes and what answers it.
#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    /// A gRPC PublishBatch call.
    Grpc,
    /// The same request as JSON to the HTTP route.
    Json,
}

pub async fn run(bench: &Bench) -> Vec<Row> {
    let (clients, batches) = (bench.settings.clients, bench.settings.batches);
    let messages = (clients * batches * BATCH as u64) as f64;
    let address = bench.gateway.address.clone();
    let samples = take_turns(bench.settings.rounds, &PATHS, async |mode, round| {
        let frame = if mode == PATHS[1] { 1 << 20 } else { 16 << 10 };
        let encoding = if mode == PATHS[2] {
            Encoding::Json
        } else {
            Encoding::Grpc
        };
        let topic = format!("frames-{}-{round}", frame >> 10);
        create_topic(bench.admin(), "bench", &topic, clients as u32).await;
        let sample = measure(bench.pids("gateway"), messages, async {
            publish(&address, &topic, clients, batches, frame, encoding).await
        })
        .await;
        bench
            .admin()
            .delete_topic(&id("bench"), &id(&topic))
            .await
            .expect("delete topic");
        sample
    })
    .await;
    samples.rows("publish, raw HTTP/2 client").collect()
}

/// `clients` connections at once, each sending `batches` PublishBatch calls
/// to a partition of its own in DATA frames of `frame` bytes.
async fn publish(
    address: &str,
    topic: &str,
    clients: u64,
    batches: u64,
    frame: usize,
    encoding: Encoding,
) -> f64 {
    let authority = address.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for partition in 0..clients as u32 {
        let (path, body) = match encoding {
            Encoding::Grpc => (
                "/iggy.gateway.v1.MessagingService/PublishBatch".to_owned(),
                grpc_body(topic, partition),
            ),
            Encoding::Json => (
                format!("/v1/streams/bench/topics/{topic}/messages:batch"),
                json_body(topic, partition),
            ),
        };
        let authority = authority.clone();
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(&authority)
                .await
                .expect("connect");
            tcp.set_nodelay(true).expect("TCP_NODELAY");
            let (client, connection) = h2::client::handshake(tcp).await.expect("handshake");
            tokio::spawn(connection);
            let mut client = client;
            for _ in 0..batches {
                client = client.ready().await.expect("ready");
                call(
                    &mut client,
                    &authority,
                    &path,
                    body.clone(),
                    frame,
                    encoding,
                )
                .await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("publisher");
    }
    (clients * batches * BATCH as u64) as f64 / started.elapsed().as_secs_f64()
}

/// A gRPC-framed PublishBatch request of one batch.
fn grpc_body(topic: &str, partition: u32) -> Bytes {
    let message = batch_request("bench", topic, partition).encode_to_vec();
    let mut body = BytesMut::with_capacity(5 + message.len());
    body.put_u8(0);
    body.put_u32(u32::try_from(message.len()).expect("a batch under 4 GiB"));
    body.put_slice(&message);
    body.freeze()
}

/// The same batch in the protobuf JSON mapping (payloads in base64).
fn json_body(topic: &str, partition: u32) -> Bytes {
    let request = batch_request("bench", topic, partition);
    let base64 = base64::engine::general_purpose::STANDARD;
    let messages: Vec<serde_json::Value> = request
        .messages
        .iter()
        .filter_map(|entry| entry.message.as_ref())
        .map(|message| serde_json::json!({"message": {"payload": base64.encode(&message.payload)}}))
        .collect();
    let body =
        serde_json::json!({"partitioning": {"partitionId": partition}, "messages": messages});
    Bytes::from(serde_json::to_vec(&body).expect("JSON"))
}

/// One PublishBatch call; panics unless it answers OK.
async fn call(
    client: &mut h2::client::SendRequest<Bytes>,
    authority: &str,
    path: &str,
    body: Bytes,
    frame: usize,
    encoding: Encoding,
) {
    let content_type = match encoding {
        Encoding::Grpc => "application/grpc",
        Encoding::Json => "application/json",
    };
    let request = http::Request::post(format!("http://{authority}{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut send) = client.send_request(request, false).expect("send headers");
    let mut rest = body;
    while !rest.is_empty() {
        let chunk = rest.split_to(frame.min(rest.len()));
        send.send_data(chunk, rest.is_empty()).expect("send data");
    }
    let response = response.await.expect("response");
    let http_status = response.status();
    let mut answer = response.into_body();
    while let Some(data) = answer.data().await {
        let data = data.expect("answer data");
        let _ = answer.flow_control().release_capacity(data.len());
    }
    if encoding == Encoding::Json {
        assert_eq!(
            http_status,
            http::StatusCode::OK,
            "the JSON batch answered {http_status}"
        );
        return;
    }
    let trailers = answer
        .trailers()
        .await
        .expect("trailers")
        .unwrap_or_default();
    let status = trailers.get("grpc-status").and_then(|v| v.to_str().ok());
    assert_eq!(status, Some("0"), "PublishBatch answered {trailers:?}");
}
