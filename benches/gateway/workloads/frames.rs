//! Batched publish from a raw HTTP/2 client (the h2 crate, no gRPC stack):
//! each call's body is encoded once and sent as DATA frames of 16 KiB (the
//! HTTP/2 default many gRPC stacks keep) or 1 MiB, so the client costs
//! little and the gateway's CPU per message for the two frame sizes can be
//! compared with Iggy's in the same run.

use super::Bench;
use crate::{
    measure::{measure, take_turns},
    messages::{BATCH, batch_request, create_topic, id},
    report::Row,
};
use bytes::{BufMut, Bytes, BytesMut};
use iggy::prelude::TopicClient;
use prost::Message as _;
use std::time::Instant;
use tonic::codegen::http;

const PATHS: [&str; 2] = ["16KiB frames", "1MiB frames"];

pub async fn run(bench: &Bench) -> Vec<Row> {
    let (clients, batches) = (bench.settings.clients, bench.settings.batches);
    let messages = (clients * batches * BATCH as u64) as f64;
    let address = bench.gateway.address.clone();
    let samples = take_turns(bench.settings.rounds, &PATHS, async |mode, round| {
        let frame = if mode == PATHS[0] { 16 << 10 } else { 1 << 20 };
        let topic = format!("frames-{}-{round}", frame >> 10);
        create_topic(bench.admin(), "bench", &topic, clients as u32).await;
        let sample = measure(bench.pids("gateway"), messages, async {
            publish(&address, &topic, clients, batches, frame).await
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
async fn publish(address: &str, topic: &str, clients: u64, batches: u64, frame: usize) -> f64 {
    let authority = address.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for partition in 0..clients as u32 {
        let message = batch_request("bench", topic, partition).encode_to_vec();
        let mut body = BytesMut::with_capacity(5 + message.len());
        body.put_u8(0);
        body.put_u32(u32::try_from(message.len()).expect("a batch under 4 GiB"));
        body.put_slice(&message);
        let (body, authority) = (body.freeze(), authority.clone());
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
                call(&mut client, &authority, body.clone(), frame).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("publisher");
    }
    (clients * batches * BATCH as u64) as f64 / started.elapsed().as_secs_f64()
}

/// One PublishBatch call; panics unless it answers OK.
async fn call(
    client: &mut h2::client::SendRequest<Bytes>,
    authority: &str,
    body: Bytes,
    frame: usize,
) {
    let request = http::Request::post(format!(
        "http://{authority}/iggy.gateway.v1.MessagingService/PublishBatch"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .expect("request");
    let (response, mut send) = client.send_request(request, false).expect("send headers");
    let mut rest = body;
    while !rest.is_empty() {
        let chunk = rest.split_to(frame.min(rest.len()));
        send.send_data(chunk, rest.is_empty()).expect("send data");
    }
    let mut answer = response.await.expect("response").into_body();
    while let Some(data) = answer.data().await {
        let data = data.expect("answer data");
        let _ = answer.flow_control().release_capacity(data.len());
    }
    let trailers = answer
        .trailers()
        .await
        .expect("trailers")
        .unwrap_or_default();
    let status = trailers.get("grpc-status").and_then(|v| v.to_str().ok());
    assert_eq!(status, Some("0"), "PublishBatch answered {trailers:?}");
}
