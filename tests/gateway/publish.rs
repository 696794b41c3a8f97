//! Publishing against a real Iggy. What the gateway stored is read back with
//! the Iggy SDK directly, not through the gateway.

use crate::support::{
    Env, TestBody, TestGateway, bad_request_field, by_name as name, error_reason, expect_code,
    new_topic, sdk_client, stored,
};
use bytes::Bytes;
use iggy::prelude::{Identifier, IggyMessage, MessageClient, PartitionClient, Partitioning};
use iggy_grpc::{
    Config,
    messaging::{headers, key_partition},
    proto::{self, BatchMessage, batch_entry_result::Outcome, header_value::Kind, partitioning},
};
use std::collections::HashMap;
use tonic::Code;
use uuid::Uuid;

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        (
            "publish::message_round_trips_with_id_headers_and_offset",
            |env| Box::pin(round_trip(env)),
        ),
        ("publish::balanced_rotates_and_ids_are_generated", |env| {
            Box::pin(balanced(env))
        }),
        ("publish::keys_land_where_sdk_producers_put_them", |env| {
            Box::pin(keys_match_sdk(env))
        }),
        ("publish::batch_keeps_order_and_answers_per_entry", |env| {
            Box::pin(batch_order(env))
        }),
        ("publish::batch_reports_a_failing_group_per_entry", |env| {
            Box::pin(batch_partial(env))
        }),
        ("publish::bad_input_is_refused_and_nothing_stored", |env| {
            Box::pin(bad_input(env))
        }),
        ("publish::requests_over_the_size_limit_are_refused", |env| {
            Box::pin(size_limit(env))
        }),
        ("publish::partition_changes_are_followed", |env| {
            Box::pin(partition_changes(env))
        }),
        ("publish::events_are_stored_as_json_with_headers", |env| {
            Box::pin(events(env))
        }),
    ]
}

fn key(value: &str) -> Option<proto::Partitioning> {
    Some(proto::Partitioning {
        kind: Some(partitioning::Kind::Key(Bytes::from(value.to_owned()))),
    })
}

fn partition(id: u32) -> Option<proto::Partitioning> {
    Some(proto::Partitioning {
        kind: Some(partitioning::Kind::PartitionId(id)),
    })
}

fn message(payload: &str) -> Option<proto::Message> {
    Some(proto::Message {
        id: String::new(),
        payload: Bytes::from(payload.to_owned()),
        headers: HashMap::new(),
    })
}

fn id_of(message: &IggyMessage) -> String {
    Uuid::from_u128(message.header.id).hyphenated().to_string()
}

async fn round_trip(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 3).await;
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let sent_headers: HashMap<String, proto::HeaderValue> = [
        ("trace", Kind::StringValue("abc".into())),
        ("raw", Kind::BytesValue(Bytes::from_static(b"\x01\x02"))),
        ("retry", Kind::BoolValue(false)),
        ("attempt", Kind::Int32Value(-3)),
        ("big", Kind::Int64Value(1 << 50)),
        ("count", Kind::Uint32Value(9)),
        ("huge", Kind::Uint64Value(u64::MAX)),
        ("ratio", Kind::FloatValue(0.5)),
        ("score", Kind::DoubleValue(1e-9)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), proto::HeaderValue { kind: Some(v) }))
    .collect();

    let result = gateway
        .messaging()
        .publish(proto::PublishRequest {
            stream: name(&stream),
            topic: name(&topic),
            partitioning: key("customer-7"),
            message: Some(proto::Message {
                id: id.into(),
                payload: Bytes::from_static(b"hello iggy"),
                headers: sent_headers.clone(),
            }),
            idempotent: false,
        })
        .await
        .expect("publish")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(result.id, id);
    assert_eq!(result.partition_id, key_partition(b"customer-7", 3));
    assert_eq!(result.offset, Some(0), "Iggy confirms the offset");

    let messages = stored(&iggy, &stream, &topic, result.partition_id).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(id_of(&messages[0]), id);
    assert_eq!(messages[0].payload.as_ref(), b"hello iggy");
    let typed = messages[0]
        .user_headers_map()
        .expect("headers")
        .expect("some");
    assert_eq!(
        headers::from_iggy(&typed),
        sent_headers,
        "typed headers survive both ways"
    );
}

async fn balanced(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 3).await;
    let mut messaging = gateway.messaging();
    let mut partitions = Vec::new();
    for i in 0..6 {
        let result = messaging
            .publish(proto::PublishRequest {
                stream: name(&stream),
                topic: name(&topic),
                partitioning: None,
                message: message(&format!("m{i}")),
                idempotent: false,
            })
            .await
            .expect("publish")
            .into_inner()
            .result
            .expect("result");
        let id = Uuid::parse_str(&result.id).expect("a UUID");
        assert_eq!(id.get_version_num(), 4, "generated ids are UUIDv4");
        partitions.push(result.partition_id);
    }
    let mut distinct = partitions.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct,
        vec![0, 1, 2],
        "balanced spreads over every partition: {partitions:?}"
    );
    assert_eq!(partitions[0..3], partitions[3..6], "in a steady rotation");
}

async fn keys_match_sdk(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 5).await;
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let mut messaging = gateway.messaging();
    for customer in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let through_gateway = messaging
            .publish(proto::PublishRequest {
                stream: name(&stream),
                topic: name(&topic),
                partitioning: key(customer),
                message: message("via gateway"),
                idempotent: false,
            })
            .await
            .expect("publish")
            .into_inner()
            .result
            .expect("result");
        let sdk_id: u128 = Uuid::new_v4().as_u128();
        let mut direct = vec![
            IggyMessage::builder()
                .id(sdk_id)
                .payload(Bytes::from_static(b"via sdk"))
                .build()
                .expect("message"),
        ];
        iggy.send_messages(
            &Identifier::named(&stream).expect("id"),
            &Identifier::named(&topic).expect("id"),
            &Partitioning::messages_key_str(customer).expect("key"),
            &mut direct,
        )
        .await
        .expect("send with the SDK");
        let mut sdk_partition = None;
        for partition in 0..5 {
            if stored(&iggy, &stream, &topic, partition)
                .await
                .iter()
                .any(|m| m.header.id == sdk_id)
            {
                sdk_partition = Some(partition);
            }
        }
        assert_eq!(
            Some(through_gateway.partition_id),
            sdk_partition,
            "key {customer}: gateway and SDK producer agree"
        );
    }
}

async fn batch_order(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 4).await;
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let entries: Vec<BatchMessage> = (0..40)
        .map(|i| BatchMessage {
            message: message(&format!("entry-{i}")),
            partitioning: match i % 5 {
                0 => partition(3),
                1 => None, // the request default: balanced
                _ => key(&format!("key-{}", i % 3)),
            },
        })
        .collect();
    let results = gateway
        .messaging()
        .publish_batch(proto::PublishBatchRequest {
            stream: name(&stream),
            topic: name(&topic),
            partitioning: None,
            messages: entries,
            idempotent: false,
        })
        .await
        .expect("batch")
        .into_inner()
        .results;
    assert_eq!(results.len(), 40, "one result per entry");
    let mut expected: HashMap<u32, Vec<String>> = HashMap::new();
    for (i, result) in results.iter().enumerate() {
        let Some(Outcome::Stored(stored)) = &result.outcome else {
            panic!("entry {i} not stored: {result:?}");
        };
        match i % 5 {
            0 => assert_eq!(stored.partition_id, 3),
            1 => {}
            _ => assert_eq!(
                stored.partition_id,
                key_partition(format!("key-{}", i % 3).as_bytes(), 4)
            ),
        }
        expected
            .entry(stored.partition_id)
            .or_default()
            .push(format!("entry-{i}"));
    }
    for (partition, payloads) in expected {
        let in_iggy: Vec<String> = stored(&iggy, &stream, &topic, partition)
            .await
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect();
        assert_eq!(
            in_iggy, payloads,
            "partition {partition} holds its entries in request order"
        );
    }
    let offsets: Vec<Option<u64>> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Some(Outcome::Stored(s)) if s.partition_id == 3 => Some(s.offset),
            _ => None,
        })
        .collect();
    let expected_offsets: Vec<Option<u64>> = (0..offsets.len() as u64).map(Some).collect();
    assert_eq!(
        offsets, expected_offsets,
        "offsets within a partition are consecutive"
    );
}

async fn batch_partial(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 2).await;
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let entries = vec![
        BatchMessage {
            message: message("good-0"),
            partitioning: partition(0),
        },
        BatchMessage {
            message: message("lost"),
            partitioning: partition(99),
        },
        BatchMessage {
            message: message("good-1"),
            partitioning: partition(1),
        },
    ];
    let results = gateway
        .messaging()
        .publish_batch(proto::PublishBatchRequest {
            stream: name(&stream),
            topic: name(&topic),
            partitioning: None,
            messages: entries,
            idempotent: false,
        })
        .await
        .expect("batch")
        .into_inner()
        .results;
    assert!(matches!(&results[0].outcome, Some(Outcome::Stored(s)) if s.partition_id == 0));
    assert!(matches!(&results[2].outcome, Some(Outcome::Stored(s)) if s.partition_id == 1));
    let Some(Outcome::Error(error)) = &results[1].outcome else {
        panic!("entry 1 should fail: {:?}", results[1]);
    };
    assert_eq!(error.code, Code::NotFound as i32, "{error:?}");
    assert_eq!(error.reason, "PARTITION_NOT_FOUND");
    assert_eq!(stored(&iggy, &stream, &topic, 0).await.len(), 1);
    assert_eq!(stored(&iggy, &stream, &topic, 1).await.len(), 1);
}

async fn bad_input(env: Env) {
    let mut config = Config::for_connection_string(env.iggy.connection_string.clone());
    config.publish.max_payload_bytes = 1024;
    config.publish.max_batch_messages = 5;
    let gateway = TestGateway::start_ready_with(config).await;
    let (stream, topic) = new_topic(&env, &gateway, 2).await;
    let mut messaging = gateway.messaging();
    let publish = |message: Option<proto::Message>, partitioning: Option<proto::Partitioning>| {
        proto::PublishRequest {
            stream: name(&stream),
            topic: name(&topic),
            partitioning,
            message,
            idempotent: false,
        }
    };
    let with = |id: &str, payload: Vec<u8>, headers: Vec<(&str, Kind)>| {
        Some(proto::Message {
            id: id.into(),
            payload: Bytes::from(payload),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), proto::HeaderValue { kind: Some(v) }))
                .collect(),
        })
    };
    let cases: Vec<(&str, proto::PublishRequest, Code, Option<&str>)> = vec![
        (
            "empty payload",
            publish(with("", vec![], vec![]), None),
            Code::InvalidArgument,
            Some("message.payload"),
        ),
        (
            "oversized payload",
            publish(with("", vec![7; 1025], vec![]), None),
            Code::InvalidArgument,
            Some("message.payload"),
        ),
        (
            "bad uuid",
            publish(with("12345", b"x".to_vec(), vec![]), None),
            Code::InvalidArgument,
            Some("message.id"),
        ),
        (
            "empty header",
            publish(
                with(
                    "",
                    b"x".to_vec(),
                    vec![("h", Kind::StringValue(String::new()))],
                ),
                None,
            ),
            Code::InvalidArgument,
            Some("message.headers[\"h\"]"),
        ),
        (
            "no message",
            publish(None, None),
            Code::InvalidArgument,
            Some("message"),
        ),
        (
            "empty key",
            publish(message("x"), key("")),
            Code::InvalidArgument,
            Some("partitioning.key"),
        ),
        (
            "partition out of range",
            publish(message("x"), partition(7)),
            Code::NotFound,
            None,
        ),
    ];
    for (case, request, code, field) in cases {
        let status = expect_code(messaging.publish(request).await, code);
        assert_eq!(bad_request_field(&status).as_deref(), field, "{case}");
        assert!(error_reason(&status).is_some(), "{case}: has a reason");
        if case == "partition out of range" {
            assert_eq!(
                error_reason(&status).as_deref(),
                Some("PARTITION_NOT_FOUND")
            );
        }
    }
    let unknown_topic = expect_code(
        messaging
            .publish(proto::PublishRequest {
                stream: name(&stream),
                topic: name(&env.unique("missing")),
                partitioning: None,
                message: message("x"),
                idempotent: false,
            })
            .await,
        Code::NotFound,
    );
    assert!(error_reason(&unknown_topic).is_some());
    expect_code(
        messaging
            .publish(proto::PublishRequest {
                stream: name(&env.unique("missing")),
                topic: name(&topic),
                partitioning: partition(0),
                message: message("x"),
                idempotent: false,
            })
            .await,
        Code::NotFound,
    );
    let oversized_batch = expect_code(
        messaging
            .publish_batch(proto::PublishBatchRequest {
                stream: name(&stream),
                topic: name(&topic),
                partitioning: None,
                messages: (0..6)
                    .map(|_| BatchMessage {
                        message: message("x"),
                        partitioning: None,
                    })
                    .collect(),
                idempotent: false,
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        bad_request_field(&oversized_batch).as_deref(),
        Some("messages")
    );
    let one_bad_entry = expect_code(
        messaging
            .publish_batch(proto::PublishBatchRequest {
                stream: name(&stream),
                topic: name(&topic),
                partitioning: None,
                messages: vec![
                    BatchMessage {
                        message: message("fine"),
                        partitioning: None,
                    },
                    BatchMessage {
                        message: with("nope", b"x".to_vec(), vec![]),
                        partitioning: None,
                    },
                ],
                idempotent: false,
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        bad_request_field(&one_bad_entry).as_deref(),
        Some("messages[1].message.id")
    );

    let iggy = sdk_client(&env.iggy.connection_string).await;
    for partition in 0..2 {
        assert!(
            stored(&iggy, &stream, &topic, partition).await.is_empty(),
            "nothing stored"
        );
    }
}

/// `--max-request-bytes` holds for the batched publish (whose body the
/// gateway reads itself) as for every other call (decoded by tonic).
async fn size_limit(env: Env) {
    let mut config = Config::for_connection_string(env.iggy.connection_string.clone());
    config.transport.max_request_bytes = 64 * 1024;
    let gateway = TestGateway::start_ready_with(config).await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let batch = |count: usize| proto::PublishBatchRequest {
        stream: name(&stream),
        topic: name(&topic),
        partitioning: partition(0),
        messages: (0..count)
            .map(|index| BatchMessage {
                message: message(&format!("{index:04}{}", "x".repeat(1020))),
                partitioning: None,
            })
            .collect(),
        idempotent: false,
    };
    let mut client = gateway.messaging();
    let refused = expect_code(client.publish_batch(batch(100)).await, Code::OutOfRange);
    assert!(refused.message().contains("65536 bytes"), "{refused:?}");
    let refused = expect_code(
        client
            .publish(proto::PublishRequest {
                stream: name(&stream),
                topic: name(&topic),
                partitioning: partition(0),
                message: message(&"x".repeat(100 * 1024)),
                idempotent: false,
            })
            .await,
        Code::OutOfRange,
    );
    assert!(refused.message().contains("65536"), "{refused:?}");
    assert!(stored(&iggy, &stream, &topic, 0).await.is_empty());

    // Under the limit the batch is stored whole, each payload intact.
    let accepted = batch(50);
    let sent: Vec<Bytes> = accepted
        .messages
        .iter()
        .filter_map(|entry| entry.message.as_ref().map(|m| m.payload.clone()))
        .collect();
    client
        .publish_batch(accepted)
        .await
        .expect("under the limit");
    let payloads: Vec<Bytes> = stored(&iggy, &stream, &topic, 0)
        .await
        .into_iter()
        .map(|message| message.payload)
        .collect();
    assert_eq!(payloads, sent);
}

async fn partition_changes(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 2).await;
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let mut messaging = gateway.messaging();
    let keys: Vec<String> = (0..20).map(|i| format!("account-{i}")).collect();
    let publish_keyed = |key_text: String| proto::PublishRequest {
        stream: name(&stream),
        topic: name(&topic),
        partitioning: key(&key_text),
        message: message(&key_text),
        idempotent: false,
    };

    // Grown through the gateway: the new count applies at once.
    gateway
        .admin()
        .create_partitions(proto::CreatePartitionsRequest {
            stream: name(&stream),
            topic: name(&topic),
            partitions_count: 3,
        })
        .await
        .expect("add partitions");
    for key_text in &keys {
        let result = messaging
            .publish(publish_keyed(key_text.clone()))
            .await
            .expect("publish")
            .into_inner();
        assert_eq!(
            result.result.expect("result").partition_id,
            key_partition(key_text.as_bytes(), 5)
        );
    }

    // Shrunk directly in Iggy, behind the gateway's back, while the gateway
    // still trusts its cached count: no publish fails and none lands on a
    // removed partition.
    iggy.delete_partitions(
        &Identifier::named(&stream).expect("id"),
        &Identifier::named(&topic).expect("id"),
        3,
    )
    .await
    .expect("remove partitions directly");
    for key_text in &keys {
        let result = messaging
            .publish(publish_keyed(key_text.clone()))
            .await
            .unwrap_or_else(|status| panic!("{key_text}: {status:?}"))
            .into_inner()
            .result
            .expect("result");
        assert!(
            result.partition_id < 2,
            "{key_text} went to removed partition {}",
            result.partition_id
        );
    }
    for _ in 0..6 {
        let result = messaging
            .publish(proto::PublishRequest {
                stream: name(&stream),
                topic: name(&topic),
                partitioning: None,
                message: message("balanced"),
                idempotent: false,
            })
            .await
            .expect("balanced publish after shrinking")
            .into_inner()
            .result
            .expect("result");
        assert!(result.partition_id < 2);
    }

    // Once the cached count is re-read (at once with a zero TTL), direct
    // changes in either direction route keys over the new count exactly.
    let mut config = Config::for_connection_string(env.iggy.connection_string.clone());
    config.partition_cache_ttl = std::time::Duration::ZERO;
    let fresh = TestGateway::start_with(config).await;
    fresh
        .wait_for_health(
            "",
            tonic_health::pb::health_check_response::ServingStatus::Serving,
        )
        .await;
    let mut fresh_messaging = fresh.messaging();
    for (change, count) in [(4_i32, 6), (-3, 3)] {
        let (stream_id, topic_id) = (
            Identifier::named(&stream).expect("id"),
            Identifier::named(&topic).expect("id"),
        );
        if change > 0 {
            iggy.create_partitions(&stream_id, &topic_id, change.unsigned_abs())
                .await
                .expect("add directly");
        } else {
            iggy.delete_partitions(&stream_id, &topic_id, change.unsigned_abs())
                .await
                .expect("remove directly");
        }
        for key_text in &keys {
            let result = fresh_messaging
                .publish(publish_keyed(key_text.clone()))
                .await
                .unwrap_or_else(|status| panic!("{key_text}: {status:?}"))
                .into_inner()
                .result
                .expect("result");
            assert_eq!(
                result.partition_id,
                key_partition(key_text.as_bytes(), count),
                "{key_text}"
            );
        }
    }
}

async fn events(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 4).await;
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let order = |kind: proto::order_event::Kind, total: &str| proto::Event {
        source: "checkout".into(),
        correlation_id: "flow-9".into(),
        payload: Some(proto::event::Payload::Order(proto::OrderEvent {
            kind: kind as i32,
            order_id: "order-1001".into(),
            customer_id: "c-7".into(),
            items: vec![
                proto::LineItem {
                    sku: "pen".into(),
                    quantity: 3,
                    unit_price: "0.10".into(),
                },
                proto::LineItem {
                    sku: "ink".into(),
                    quantity: 1,
                    unit_price: "0.20".into(),
                },
            ],
            total: total.into(),
            currency: "EUR".into(),
        })),
        ..Default::default()
    };
    let mut messaging = gateway.messaging();
    let created = messaging
        .publish_event(proto::PublishEventRequest {
            stream: name(&stream),
            topic: name(&topic),
            partitioning: None,
            event: Some(order(proto::order_event::Kind::Created, "0.50")),
        })
        .await
        .expect("publish event")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(
        created.partition_id,
        key_partition(b"order-1001", 4),
        "keyed by the order id"
    );
    let batch = messaging
        .publish_event_batch(proto::PublishEventBatchRequest {
            stream: name(&stream),
            topic: name(&topic),
            events: vec![
                order(proto::order_event::Kind::Updated, "0.5"),
                order(proto::order_event::Kind::Shipped, "0.500"),
            ],
        })
        .await
        .expect("event batch")
        .into_inner()
        .results;
    assert!(batch.iter().all(
        |r| matches!(&r.outcome, Some(Outcome::Stored(s)) if s.partition_id == created.partition_id)
    ));

    let messages = stored(&iggy, &stream, &topic, created.partition_id).await;
    let types: Vec<String> = messages
        .iter()
        .map(|m| {
            let document: serde_json::Value =
                serde_json::from_slice(&m.payload).expect("JSON payload");
            document["type"].as_str().expect("type").to_owned()
        })
        .collect();
    assert_eq!(
        types,
        vec!["order.created", "order.updated", "order.shipped"],
        "one aggregate, in order"
    );
    let first: serde_json::Value = serde_json::from_slice(&messages[0].payload).expect("json");
    assert_eq!(first["id"], created.id.as_str());
    assert_eq!(first["source"], "checkout");
    assert_eq!(first["correlationid"], "flow-9");
    assert_eq!(first["data"]["total"], "0.50");
    assert_eq!(first["data"]["items"][0]["unit_price"], "0.10");
    assert_eq!(
        id_of(&messages[0]),
        created.id,
        "message id is the event id"
    );
    let typed = messages[0]
        .user_headers_map()
        .expect("headers")
        .expect("some");
    let header = |k: &str| {
        typed
            .get(&iggy::prelude::HeaderKey::try_from(k).expect("key"))
            .map(|v| v.as_str().expect("string").to_owned())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("event-type").as_deref(), Some("order.created"));

    // A total that is not the exact sum, and one written as a float.
    for total in ["0.49", "5e-1"] {
        let refused = expect_code(
            messaging
                .publish_event(proto::PublishEventRequest {
                    stream: name(&stream),
                    topic: name(&topic),
                    partitioning: None,
                    event: Some(order(proto::order_event::Kind::Created, total)),
                })
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(
            bad_request_field(&refused).as_deref(),
            Some("event.order.total"),
            "total {total}"
        );
    }
    assert_eq!(
        stored(&iggy, &stream, &topic, created.partition_id)
            .await
            .len(),
        3,
        "nothing more stored"
    );

    // A user event is keyed by its user id; a free-form event needs a type.
    let user = messaging
        .publish_event(proto::PublishEventRequest {
            stream: name(&stream),
            topic: name(&topic),
            partitioning: None,
            event: Some(proto::Event {
                payload: Some(proto::event::Payload::User(proto::UserEvent {
                    kind: proto::user_event::Kind::LoggedIn as i32,
                    user_id: "user-5".into(),
                    email: "five@example.com".into(),
                    display_name: "Five".into(),
                })),
                ..Default::default()
            }),
        })
        .await
        .expect("user event")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(user.partition_id, key_partition(b"user-5", 4));
    let data = prost_types::Struct {
        fields: [(
            "sku".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("pen".into())),
            },
        )]
        .into(),
    };
    let free_form = messaging
        .publish_event(proto::PublishEventRequest {
            stream: name(&stream),
            topic: name(&topic),
            partitioning: Some(proto::Partitioning {
                kind: Some(partitioning::Kind::PartitionId(2)),
            }),
            event: Some(proto::Event {
                r#type: "inventory.counted".into(),
                payload: Some(proto::event::Payload::Data(data)),
                ..Default::default()
            }),
        })
        .await
        .expect("free-form event")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(free_form.partition_id, 2);
    let user_document: serde_json::Value = serde_json::from_slice(
        &stored(&iggy, &stream, &topic, user.partition_id)
            .await
            .iter()
            .find(|m| id_of(m) == user.id)
            .expect("user event stored")
            .payload,
    )
    .expect("json");
    assert_eq!(user_document["type"], "user.logged_in");
    assert_eq!(user_document["data"]["email"], "five@example.com");
    let data_document: serde_json::Value = serde_json::from_slice(
        &stored(&iggy, &stream, &topic, 2)
            .await
            .last()
            .expect("stored")
            .payload,
    )
    .expect("json");
    assert_eq!(data_document["type"], "inventory.counted");
    assert_eq!(data_document["data"]["sku"], "pen");
}
