//! Idempotent publish: an id already stored in its partition within the
//! window is answered as a duplicate naming the first copy, on any replica
//! and after a restart, and never stored again.

use crate::support::{
    Env, TestBody, TestGateway, bad_request_field, by_name, expect_code, new_topic, private_iggy,
    sdk_client, stored,
};
use bytes::Bytes;
use iggy_grpc::{messaging::key_partition, proto};
use std::collections::BTreeMap;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        (
            "idempotent::a_repeat_on_any_replica_or_after_a_restart_names_the_first_copy",
            |env| Box::pin(repeat_anywhere(env)),
        ),
        ("idempotent::a_batch_stores_each_id_once", |env| {
            Box::pin(batch(env))
        }),
        (
            "idempotent::an_entry_without_an_id_is_invalid_argument_naming_it",
            |env| Box::pin(without_id(env)),
        ),
        (
            "idempotent::a_retry_after_an_unknown_outcome_is_stored_once",
            |env| Box::pin(after_unknown_outcome(env)),
        ),
    ]
}

const PARTITIONS: u32 = 3;

fn message(id: Uuid, payload: &str) -> proto::Message {
    proto::Message {
        id: id.to_string(),
        payload: Bytes::from(payload.to_owned()),
        headers: Default::default(),
    }
}

fn publish(stream: &str, topic: &str, id: Uuid) -> proto::PublishRequest {
    proto::PublishRequest {
        stream: by_name(stream),
        topic: by_name(topic),
        partitioning: None,
        message: Some(message(id, "once")),
        idempotent: true,
    }
}

/// Every stored message of the topic, by id: how many copies, and where.
async fn copies(
    connection_string: &str,
    stream: &str,
    topic: &str,
) -> BTreeMap<u128, Vec<(u32, u64)>> {
    let client = sdk_client(connection_string).await;
    let mut copies: BTreeMap<u128, Vec<(u32, u64)>> = BTreeMap::new();
    for partition in 0..PARTITIONS {
        for message in stored(&client, stream, topic, partition).await {
            copies
                .entry(message.header.id)
                .or_default()
                .push((partition, message.header.offset));
        }
    }
    copies
}

async fn repeat_anywhere(env: Env) {
    let first = env.gateway().await;
    let (stream, topic) = new_topic(&env, &first, PARTITIONS).await;
    let id = Uuid::new_v4();
    let stored_first = first
        .messaging()
        .publish(publish(&stream, &topic, id))
        .await
        .expect("first publish")
        .into_inner()
        .result
        .expect("result");
    assert!(!stored_first.duplicate);
    assert_eq!(
        stored_first.partition_id,
        key_partition(&id.as_u128().to_le_bytes(), PARTITIONS),
        "a balanced idempotent publish goes to the partition of its id"
    );
    assert!(stored_first.offset.is_some());

    // The same replica, another one, and a fresh one (as after a restart):
    // each reads the partition, not its own memory.
    let other = env.gateway().await;
    let restarted = env.gateway().await;
    for (name, gateway) in [
        ("same", &first),
        ("other", &other),
        ("restarted", &restarted),
    ] {
        let again = gateway
            .messaging()
            .publish(publish(&stream, &topic, id))
            .await
            .unwrap_or_else(|status| panic!("repeat on the {name} replica: {status:?}"))
            .into_inner()
            .result
            .expect("result");
        assert!(again.duplicate, "the {name} replica stored a repeat");
        assert_eq!(
            (again.partition_id, again.offset, again.id.as_str()),
            (
                stored_first.partition_id,
                stored_first.offset,
                stored_first.id.as_str()
            ),
            "the {name} replica names the first copy"
        );
    }
    // A publish of the same id without `idempotent` is stored as asked.
    let mut plain = publish(&stream, &topic, id);
    plain.idempotent = false;
    other
        .messaging()
        .publish(plain)
        .await
        .expect("plain publish");

    let copies = copies(&env.iggy.connection_string, &stream, &topic).await;
    assert_eq!(
        copies.get(&id.as_u128()).map(Vec::len),
        Some(2),
        "{copies:?}"
    );
    let first_copy = (
        stored_first.partition_id,
        stored_first.offset.unwrap_or(u64::MAX),
    );
    assert!(copies[&id.as_u128()].contains(&first_copy), "{copies:?}");
}

async fn batch(env: Env) {
    let gateway = env.gateway().await;
    let other = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, PARTITIONS).await;
    let [a, b, c, d] = [0; 4].map(|_| Uuid::new_v4());
    let request = |ids: &[Uuid]| proto::PublishBatchRequest {
        stream: by_name(&stream),
        topic: by_name(&topic),
        partitioning: None,
        messages: ids
            .iter()
            .map(|id| proto::BatchMessage {
                message: Some(message(*id, "entry")),
                partitioning: None,
            })
            .collect(),
        idempotent: true,
    };
    let results = |response: proto::PublishBatchResponse| -> Vec<proto::PublishResult> {
        response
            .results
            .into_iter()
            .map(|result| match result.outcome {
                Some(proto::batch_entry_result::Outcome::Stored(stored)) => stored,
                other => panic!("an entry was not stored: {other:?}"),
            })
            .collect()
    };

    let first = results(
        gateway
            .messaging()
            .publish_batch(request(&[a, b, a, c]))
            .await
            .expect("first batch")
            .into_inner(),
    );
    let duplicates: Vec<bool> = first.iter().map(|r| r.duplicate).collect();
    assert_eq!(duplicates, [false, false, true, false]);
    assert_eq!(
        (first[2].partition_id, first[2].offset),
        (first[0].partition_id, first[0].offset),
        "a repeat within the batch names the entry stored"
    );

    let second = results(
        other
            .messaging()
            .publish_batch(request(&[c, d]))
            .await
            .expect("second batch on another replica")
            .into_inner(),
    );
    assert!(second[0].duplicate);
    assert_eq!(
        (second[0].partition_id, second[0].offset),
        (first[3].partition_id, first[3].offset)
    );
    assert!(!second[1].duplicate);

    let copies = copies(&env.iggy.connection_string, &stream, &topic).await;
    for id in [a, b, c, d] {
        assert_eq!(
            copies.get(&id.as_u128()).map(Vec::len),
            Some(1),
            "{id}: {copies:?}"
        );
    }
    assert_eq!(copies.len(), 4, "nothing else was stored");
}

async fn without_id(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let mut single = publish(&stream, &topic, Uuid::new_v4());
    if let Some(message) = single.message.as_mut() {
        message.id.clear();
    }
    let status = expect_code(
        gateway.messaging().publish(single).await,
        Code::InvalidArgument,
    );
    assert_eq!(bad_request_field(&status).as_deref(), Some("message.id"));

    let entry = |id: &str| proto::BatchMessage {
        message: Some(proto::Message {
            id: id.to_owned(),
            payload: Bytes::from_static(b"entry"),
            headers: Default::default(),
        }),
        partitioning: None,
    };
    let status = expect_code(
        gateway
            .messaging()
            .publish_batch(proto::PublishBatchRequest {
                stream: by_name(&stream),
                topic: by_name(&topic),
                partitioning: None,
                messages: vec![entry(&Uuid::new_v4().to_string()), entry("")],
                idempotent: true,
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        bad_request_field(&status).as_deref(),
        Some("messages[1].message.id")
    );
    let client = sdk_client(&env.iggy.connection_string).await;
    assert!(
        stored(&client, &stream, &topic, 0).await.is_empty(),
        "a refused call stores nothing"
    );
}

/// Iggy freezes while the first attempt is on its way: the caller's
/// deadline passes (OUTCOME_UNKNOWN), and the retry with the same id,
/// once Iggy is back, is stored once in all.
async fn after_unknown_outcome(env: Env) {
    let iggy = private_iggy().await;
    let gateway = TestGateway::start_ready(&iggy.connection_string()).await;
    let (stream, topic) = new_topic(&env, &gateway, PARTITIONS).await;
    let id = Uuid::new_v4();

    iggy.freeze().await.expect("freeze iggy-server");
    let mut request = Request::new(publish(&stream, &topic, id));
    request
        .metadata_mut()
        .insert("grpc-timeout", "300m".parse().expect("ascii"));
    let status = expect_code(
        gateway.messaging().publish(request).await,
        Code::DeadlineExceeded,
    );
    assert_eq!(
        crate::support::error_reason(&status).as_deref(),
        Some("OUTCOME_UNKNOWN")
    );
    iggy.thaw().expect("thaw iggy-server");

    gateway.wait_for_health("", ServingStatus::Serving).await;
    let retry = gateway
        .messaging()
        .publish(publish(&stream, &topic, id))
        .await
        .expect("retry")
        .into_inner()
        .result
        .expect("result");
    let copies = copies(&iggy.connection_string(), &stream, &topic).await;
    let stored = copies.get(&id.as_u128()).cloned().unwrap_or_default();
    assert_eq!(stored.len(), 1, "stored once in all: {copies:?}");
    assert_eq!(
        stored[0],
        (retry.partition_id, retry.offset.unwrap_or(u64::MAX)),
        "the retry names the one copy"
    );
    gateway.stop().await.expect("stop");
    iggy.stop().await;
}
