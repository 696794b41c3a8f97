//! What the proto's comments promise, the gateway checks: each rule a
//! comment in `proto/` states is refused with INVALID_ARGUMENT and a
//! BadRequest naming the field, before Iggy is called (one case per rule).

use crate::support::{Env, TestBody, bad_request_field, by_name, new_topic};
use bytes::Bytes;
use iggy_grpc::proto::{self, header_value, partitioning};
use std::collections::HashMap;
use tonic::{Code, Status};

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![(
        "proto_rules::every_stated_rule_is_checked_before_iggy",
        |env| Box::pin(every_stated_rule(env)),
    )]
}

fn message_with(headers: HashMap<String, proto::HeaderValue>, payload: &[u8]) -> proto::Message {
    proto::Message {
        id: String::new(),
        payload: Bytes::copy_from_slice(payload),
        headers,
    }
}

fn header(kind: Option<header_value::Kind>) -> HashMap<String, proto::HeaderValue> {
    HashMap::from([("k".to_owned(), proto::HeaderValue { kind })])
}

fn order(items: Vec<proto::LineItem>, currency: &str) -> proto::Event {
    proto::Event {
        payload: Some(proto::event::Payload::Order(proto::OrderEvent {
            kind: proto::order_event::Kind::Created as i32,
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items,
            total: "1".into(),
            currency: currency.into(),
        })),
        ..Default::default()
    }
}

fn line(sku: &str) -> proto::LineItem {
    proto::LineItem {
        sku: sku.into(),
        quantity: 1,
        unit_price: "1".into(),
    }
}

async fn every_stated_rule(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let mut messaging = gateway.messaging();
    let mut admin = gateway.admin();
    let publish =
        |message: proto::Message, partitioning: Option<partitioning::Kind>| proto::PublishRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            partitioning: partitioning.map(|kind| proto::Partitioning { kind: Some(kind) }),
            message: Some(message),
            idempotent: false,
        };
    let event = |event: proto::Event| proto::PublishEventRequest {
        stream: by_name(&stream),
        topic: by_name(&topic),
        partitioning: None,
        event: Some(event),
    };
    let long = "x".repeat(256);
    let mut results: Vec<(&str, &str, Result<(), Status>)> = Vec::new();

    // common.proto
    let cases = [
        (
            "payload: 1 byte at least",
            "message.payload",
            publish(message_with(HashMap::new(), b""), None),
        ),
        (
            "header text: up to 255 bytes",
            "message.headers[\"k\"]",
            publish(
                message_with(
                    header(Some(header_value::Kind::StringValue(long.clone()))),
                    b"p",
                ),
                None,
            ),
        ),
        (
            "header bytes: up to 255 bytes",
            "message.headers[\"k\"]",
            publish(
                message_with(
                    header(Some(header_value::Kind::BytesValue(Bytes::from(vec![
                        0;
                        256
                    ])))),
                    b"p",
                ),
                None,
            ),
        ),
        (
            "header value: exactly one kind",
            "message.headers[\"k\"]",
            publish(message_with(header(None), b"p"), None),
        ),
        (
            "key: 1-255 bytes (empty)",
            "partitioning.key",
            publish(
                message_with(HashMap::new(), b"p"),
                Some(partitioning::Kind::Key(Bytes::new())),
            ),
        ),
        (
            "key: 1-255 bytes (256)",
            "partitioning.key",
            publish(
                message_with(HashMap::new(), b"p"),
                Some(partitioning::Kind::Key(Bytes::from(vec![1; 256]))),
            ),
        ),
    ];
    for (rule, field, request) in cases {
        results.push((rule, field, messaging.publish(request).await.map(drop)));
    }
    let mut unnamed = publish(message_with(HashMap::new(), b"p"), None);
    unnamed.stream = Some(proto::ResourceId { kind: None });
    results.push((
        "resource id: exactly one of name, id",
        "stream",
        messaging.publish(unnamed).await.map(drop),
    ));
    let mut too_long = publish(message_with(HashMap::new(), b"p"), None);
    too_long.topic = by_name(&long);
    results.push((
        "name: 1-255 bytes",
        "topic.name",
        messaging.publish(too_long).await.map(drop),
    ));

    // messaging.proto
    let empty_batch = proto::PublishBatchRequest {
        stream: by_name(&stream),
        topic: by_name(&topic),
        partitioning: None,
        messages: Vec::new(),
        idempotent: false,
    };
    results.push((
        "batch: 1 entry at least",
        "messages",
        messaging.publish_batch(empty_batch).await.map(drop),
    ));
    let no_consumer_kind = proto::PollRequest {
        stream: by_name(&stream),
        topic: by_name(&topic),
        consumer: Some(proto::Consumer { kind: None }),
        ..Default::default()
    };
    results.push((
        "consumer: exactly one of name, group",
        "consumer",
        messaging.poll(no_consumer_kind).await.map(drop),
    ));
    let bad_heartbeat = proto::SubscribeRequest {
        stream: by_name(&stream),
        topic: by_name(&topic),
        consumer: Some(proto::Consumer {
            kind: Some(proto::consumer::Kind::Name("c".into())),
        }),
        heartbeat_interval: Some(prost_types::Duration {
            seconds: 5,
            nanos: 1_000_000_000,
        }),
        ..Default::default()
    };
    let subscribed = match messaging.subscribe(bad_heartbeat).await {
        Ok(mut stream) => stream.get_mut().message().await.map(drop),
        Err(status) => Err(status),
    };
    results.push((
        "duration: nanos below 10^9",
        "heartbeat_interval.nanos",
        subscribed,
    ));

    // events.proto
    let untyped = proto::Event {
        payload: Some(proto::event::Payload::Data(prost_types::Struct::default())),
        ..Default::default()
    };
    let unspecified_user = proto::Event {
        payload: Some(proto::event::Payload::User(proto::UserEvent {
            user_id: "u".into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut late = order(vec![line("s")], "EUR");
    late.time = Some(prost_types::Timestamp {
        seconds: 253_402_300_800,
        nanos: 0,
    });
    let cases = [
        ("data: type is then required", "event.type", untyped),
        (
            "user event kind: required",
            "event.user.kind",
            unspecified_user,
        ),
        (
            "order: at least one line",
            "event.order.items",
            order(Vec::new(), "EUR"),
        ),
        (
            "line: sku non-empty",
            "event.order.items[0].sku",
            order(vec![line("")], "EUR"),
        ),
        (
            "currency: ISO 4217",
            "event.order.currency",
            order(vec![line("s")], "euro"),
        ),
        ("time: years 1-9999", "event.time.seconds", late),
    ];
    for (rule, field, request) in cases {
        results.push((
            rule,
            field,
            messaging.publish_event(event(request)).await.map(drop),
        ));
    }

    // admin.proto
    let create = |name: &str| proto::CreateTopicRequest {
        stream: by_name(&stream),
        name: name.into(),
        partitions_count: 1,
        ..Default::default()
    };
    let mut empty_expiry = create("t1");
    empty_expiry.message_expiry = Some(proto::MessageExpiry { kind: None });
    let mut empty_size = create("t2");
    empty_size.max_topic_size = Some(proto::MaxTopicSize { kind: None });
    let mut sub_second = create("t3");
    sub_second.message_expiry = Some(proto::MessageExpiry {
        kind: Some(proto::message_expiry::Kind::After(prost_types::Duration {
            seconds: 0,
            nanos: 500_000_000,
        })),
    });
    let mut no_partitions = create("t4");
    no_partitions.partitions_count = 0;
    let mut never_saved = create("t5");
    never_saved.messages_required_to_save = Some(0);
    let cases = [
        ("expiry: exactly one kind", "message_expiry", empty_expiry),
        ("max size: exactly one kind", "max_topic_size", empty_size),
        (
            "expiry: whole seconds at least",
            "message_expiry.after",
            sub_second,
        ),
        ("partitions: 1 at least", "partitions_count", no_partitions),
        (
            "messages required to save: 1 at least",
            "messages_required_to_save",
            never_saved,
        ),
    ];
    for (rule, field, request) in cases {
        results.push((rule, field, admin.create_topic(request).await.map(drop)));
    }

    let mut failures = Vec::new();
    for (rule, field, result) in results {
        match result {
            Err(status) if status.code() == Code::InvalidArgument => {
                let named = bad_request_field(&status);
                if named.as_deref() != Some(field) {
                    failures.push(format!(
                        "{rule}: names {named:?}, not {field:?} ({})",
                        status.message()
                    ));
                }
            }
            other => failures.push(format!("{rule}: {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "rules not kept:\n{}",
        failures.join("\n")
    );
    // Nothing refused reached Iggy: the topic holds no message.
    let iggy = crate::support::sdk_client(&env.iggy.connection_string).await;
    assert!(
        crate::support::stored(&iggy, &stream, &topic, 0)
            .await
            .is_empty()
    );
    gateway.stop().await.expect("clean stop");
}
