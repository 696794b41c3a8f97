//! A publish whose outcome is unknown is never answered OK: a deadline that
//! passes while Iggy works, or a connection cut after the write, is reported
//! with reason OUTCOME_UNKNOWN, and a retry with the same id is safe.

use crate::support::{
    Env, TestBody, TestGateway, by_name as name, error_reason, expect_code, new_topic,
    private_iggy, sdk_client, stored, wait_for_index_files,
};
use bytes::Bytes;
use iggy_grpc::proto::{self, partitioning};
use std::time::Duration;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        (
            "outcome::deadline_while_iggy_works_is_outcome_unknown",
            |env| Box::pin(deadline(env)),
        ),
        (
            "outcome::connection_cut_after_the_write_is_outcome_unknown",
            |env| Box::pin(cut(env)),
        ),
    ]
}

const ID: &str = "3b241101-e2bb-4255-8caf-4136c566a962";

fn publish(stream: &str, topic: &str) -> proto::PublishRequest {
    proto::PublishRequest {
        stream: name(stream),
        topic: name(topic),
        // An explicit partition: the send is the only Iggy call.
        partitioning: Some(proto::Partitioning {
            kind: Some(partitioning::Kind::PartitionId(0)),
        }),
        message: Some(proto::Message {
            id: ID.into(),
            payload: Bytes::from_static(b"maybe stored"),
            headers: Default::default(),
        }),
        idempotent: false,
    }
}

async fn deadline(env: Env) {
    let iggy = private_iggy().await;
    let gateway = TestGateway::start_ready(&iggy.connection_string()).await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;

    iggy.freeze().await.expect("freeze iggy-server");
    let mut request = Request::new(publish(&stream, &topic));
    request
        .metadata_mut()
        .insert("grpc-timeout", "300m".parse().expect("ascii"));
    let status = expect_code(
        gateway.messaging().publish(request).await,
        Code::DeadlineExceeded,
    );
    assert_eq!(error_reason(&status).as_deref(), Some("OUTCOME_UNKNOWN"));
    assert!(
        status.message().contains("same message ids"),
        "{}",
        status.message()
    );
    iggy.thaw().expect("thaw iggy-server");

    // The advised retry with the same id succeeds; every stored copy carries
    // that id, so a consumer can drop the duplicate.
    gateway.wait_for_health("", ServingStatus::Serving).await;
    gateway
        .messaging()
        .publish(publish(&stream, &topic))
        .await
        .expect("retry after the deadline");
    let client = sdk_client(&iggy.connection_string()).await;
    let stored = stored(&client, &stream, &topic, 0).await;
    assert!(
        !stored.is_empty() && stored.len() <= 2,
        "{} copies",
        stored.len()
    );
    assert!(
        stored
            .iter()
            .all(|m| m.header.id == uuid::Uuid::parse_str(ID).expect("uuid").as_u128())
    );
    gateway.stop().await.expect("stop");
    iggy.stop().await;
}

/// True once the server side of a connection to `port` holds at least
/// `bytes` the (frozen) server has not read: the request is on the wire.
fn request_waiting_at(port: u16, bytes: u64) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 4
            && fields[1].ends_with(&local)
            && fields[3] == "01"
            && fields[4]
                .split(':')
                .nth(1)
                .and_then(|rx| u64::from_str_radix(rx, 16).ok())
                .is_some_and(|rx| rx >= bytes)
    })
}

async fn cut(env: Env) {
    let iggy = private_iggy().await;
    let gateway = TestGateway::start_ready(&iggy.connection_string()).await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    // iggy-server 0.9.0-edge.5 cannot restart after a crash that leaves a
    // partition's segment without its sparse index (a brand-new partition):
    // persist one message first so the kill below tests the gateway, not
    // that recovery bug.
    gateway
        .messaging()
        .publish(publish(&stream, &topic))
        .await
        .expect("first message");
    wait_for_index_files(iggy.data_dir()).await;

    iggy.freeze().await.expect("freeze iggy-server");
    let mut messaging = gateway.messaging();
    let mut request = publish(&stream, &topic);
    // A payload larger than any ping or heartbeat, so the bytes waiting in
    // the frozen server's socket can only be this publish.
    const PAYLOAD: usize = 16 * 1024;
    if let Some(message) = request.message.as_mut() {
        message.payload = Bytes::from(vec![b'x'; PAYLOAD]);
    }
    let pending = tokio::spawn(async move { messaging.publish(request).await });
    let port = iggy.tcp_address().port();
    while !pending.is_finished() && !request_waiting_at(port, PAYLOAD as u64) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    iggy.kill().expect("kill the frozen server");
    let status = expect_code(pending.await.expect("publish task"), Code::Unavailable);
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("OUTCOME_UNKNOWN"),
        "{status:?}"
    );

    iggy.wait_ready().await;
    gateway.wait_for_health("", ServingStatus::Serving).await;
    gateway
        .messaging()
        .publish(publish(&stream, &topic))
        .await
        .expect("retry after recovery");
    gateway.stop().await.expect("stop");
    iggy.stop().await;
}
