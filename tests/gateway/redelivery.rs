//! Redelivery on Consume streams: nacks with a delay, ack deadlines and
//! their extension, ack results, and dead letters after exactly N attempts,
//! also when the attempts are served by different replicas and gateways
//! that were restarted in between.

use crate::{
    consume::{Consuming, Received},
    subscribe::{fill, request},
    support::{
        Env, TestBody, bad_request_field, by_name, error_reason, expect_code, sdk_client, stored,
        stored_offset,
    },
    support::{Event, Subscription},
};
use iggy::prelude::{Consumer, HeaderKey, Identifier, IggyMessage, TopicClient};
use iggy_grpc::proto::{self, AckMode, AckOutcome, FlowControl, consume_request, consumer};
use std::time::{Duration, Instant};
use tonic::Code;

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        (
            "redelivery::a_nacked_message_comes_again_no_sooner_than_its_delay",
            |env| Box::pin(nack_with_delay(env, false)),
        ),
        (
            "redelivery::a_group_members_nacked_message_comes_again",
            |env| Box::pin(nack_with_delay(env, true)),
        ),
        (
            "redelivery::an_expired_deadline_delivers_again_and_an_extension_holds_it",
            |env| Box::pin(deadlines(env)),
        ),
        (
            "redelivery::a_poison_message_is_a_dead_letter_after_exactly_n_attempts_on_any_replica",
            |env| Box::pin(dead_letter(env)),
        ),
        (
            "redelivery::subscribe_clients_nack_and_ack_through_any_replica",
            |env| Box::pin(unary(env)),
        ),
        ("redelivery::every_rule_has_its_refusal", |env| {
            Box::pin(refusals(env))
        }),
    ]
}

fn seconds(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// A manual-ack Consume start for `reader` with `redelivery`.
fn start(
    stream: &str,
    topic: &str,
    reader: &str,
    redelivery: proto::Redelivery,
) -> proto::ConsumeStart {
    let who = consumer::Kind::Name(reader.to_owned());
    start_as(stream, topic, who, redelivery)
}

/// The same for a named consumer or a consumer group (created if missing).
fn start_as(
    stream: &str,
    topic: &str,
    who: consumer::Kind,
    redelivery: proto::Redelivery,
) -> proto::ConsumeStart {
    let group = matches!(who, consumer::Kind::Group(_));
    let mut subscription = request(stream, topic, Some(proto::Consumer { kind: Some(who) }));
    subscription.create_group = group;
    subscription.ack_mode = AckMode::Manual as i32;
    subscription.flow_control = Some(FlowControl {
        max_in_flight_messages: 100,
        max_in_flight_bytes: 0,
    });
    subscription.heartbeat_interval = seconds(2);
    subscription.redelivery = Some(redelivery);
    proto::ConsumeStart {
        subscription: Some(subscription),
        initial_credit: None,
    }
}

fn ack(offset: u64) -> consume_request::Kind {
    consume_request::Kind::Ack(proto::ConsumeAck {
        partition_id: 0,
        offset,
    })
}

fn nack(offset: u64, delay: Option<prost_types::Duration>, reason: &str) -> consume_request::Kind {
    consume_request::Kind::Nack(proto::ConsumeNack {
        partition_id: 0,
        offset,
        delay,
        reason: reason.to_owned(),
    })
}

fn outcome(result: &proto::AckResult) -> AckOutcome {
    AckOutcome::try_from(result.outcome).unwrap_or(AckOutcome::Unspecified)
}

async fn nack_with_delay(env: Env, as_group: bool) {
    let gateway = env.gateway().await;
    let (stream, topic) = crate::support::new_topic(&env, &gateway, 1).await;
    fill(&gateway, &stream, &topic, 1, 3, "m").await;
    let reader = env.unique("reader");
    let who = if as_group {
        consumer::Kind::Group(reader.clone())
    } else {
        consumer::Kind::Name(reader.clone())
    };
    let mut consuming = Consuming::open_on(
        gateway.channel(),
        start_as(&stream, &topic, who, proto::Redelivery::default()),
    )
    .await
    .expect("consume");
    let first = consuming.messages(3).await;
    assert!(first.iter().all(|m| m.delivery_attempt == 1));

    let nacked_at = Instant::now();
    consuming.send(nack(1, seconds(1), "try later")).await;
    assert_eq!(outcome(&consuming.ack_result().await), AckOutcome::Ok);
    // Everything up to 2 is done: 0 and 2; 1 was handed to redelivery.
    consuming.send(ack(2)).await;
    assert_eq!(outcome(&consuming.ack_result().await), AckOutcome::Ok);

    let again = consuming.messages(1).await;
    assert!(
        nacked_at.elapsed() >= Duration::from_secs(1),
        "delivered again after {:?}",
        nacked_at.elapsed()
    );
    let (copy, original) = (&again[0], &first[1]);
    assert_eq!(
        (
            copy.partition_id,
            copy.offset,
            &copy.id,
            &copy.payload,
            copy.timestamp_micros
        ),
        (
            original.partition_id,
            original.offset,
            &original.id,
            &original.payload,
            original.timestamp_micros
        ),
        "the copy is delivered as the message it copies"
    );
    assert_eq!(copy.delivery_attempt, 2);
    let headers: Vec<(&String, Option<&proto::header_value::Kind>)> = copy
        .headers
        .iter()
        .map(|(name, value)| (name, value.kind.as_ref()))
        .collect();
    let reason = proto::header_value::Kind::StringValue("try later".into());
    assert_eq!(
        headers,
        vec![(&"iggy-grpc-nack-reason".to_owned(), Some(&reason))],
        "the last nack's reason, and no other gateway header"
    );

    consuming.send(ack(1)).await;
    assert_eq!(outcome(&consuming.ack_result().await), AckOutcome::Ok);
    consuming.send(ack(1)).await;
    let twice = consuming.ack_result().await;
    assert_eq!(outcome(&twice), AckOutcome::AlreadySettled, "{twice:?}");
    let reader = if as_group {
        Consumer::group(Identifier::named(&reader).expect("id"))
    } else {
        Consumer::new(Identifier::named(&reader).expect("id"))
    };
    assert_eq!(
        stored_offset(&env, &reader, &stream, &topic, 0).await,
        Some(2),
        "the stored offset moved past the nacked message"
    );
}

async fn deadlines(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = crate::support::new_topic(&env, &gateway, 1).await;
    fill(&gateway, &stream, &topic, 1, 2, "m").await;
    let reader = env.unique("reader");
    let redelivery = proto::Redelivery {
        ack_deadline: seconds(1),
        ..Default::default()
    };
    let mut consuming = Consuming::open_on(
        gateway.channel(),
        start(&stream, &topic, &reader, redelivery),
    )
    .await
    .expect("consume");
    let delivered_at = Instant::now();
    let first = consuming.messages(2).await;
    // Message 1 gets 30 s more; message 0 is left to expire.
    consuming
        .send(consume_request::Kind::Extend(proto::DeadlineExtension {
            partition_id: 0,
            offset: 1,
            extension: seconds(30),
        }))
        .await;
    assert_eq!(outcome(&consuming.ack_result().await), AckOutcome::Ok);
    let again = consuming.messages(1).await;
    assert!(delivered_at.elapsed() >= Duration::from_secs(1));
    assert_eq!((again[0].offset, again[0].delivery_attempt), (0, 2));
    assert_eq!(again[0].id, first[0].id);
    // The extended one stays out: next comes the 2 s heartbeat, not a copy.
    match consuming.next().await {
        Received::Heartbeat => {}
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    consuming.send(ack(1)).await;
    assert_eq!(outcome(&consuming.ack_result().await), AckOutcome::Ok);
    consuming.send(ack(0)).await;
    let settled = consuming.ack_result().await;
    assert_eq!(outcome(&settled), AckOutcome::AlreadySettled, "{settled:?}");
}

/// One poison message, max_attempts 3: attempt 1 on replica A, attempt 2
/// on replica B, attempt 3 on a gateway started afterwards (a restart, as
/// far as the gateway's memory goes); each nacks it and leaves. The dead
/// letter then holds it, once, with its origin, and nothing comes again.
async fn dead_letter(env: Env) {
    let setup = env.gateway().await;
    let (stream, topic) = crate::support::new_topic(&env, &setup, 1).await;
    let dead = env.unique("dead");
    let client = sdk_client(&env.iggy.connection_string).await;
    client
        .create_topic(
            &Identifier::named(&stream).expect("id"),
            &dead,
            &iggy::prelude::TopicCreateOptions {
                partitions_count: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("dead-letter topic");
    fill(&setup, &stream, &topic, 1, 1, "poison").await;
    let reader = env.unique("reader");
    let redelivery = proto::Redelivery {
        max_attempts: 3,
        dead_letter_topic: by_name(&dead),
        ..Default::default()
    };
    let mut original_id = String::new();
    for attempt in 1..=3u32 {
        let replica = env.gateway().await;
        let mut consuming = Consuming::open_on(
            replica.channel(),
            start(&stream, &topic, &reader, redelivery.clone()),
        )
        .await
        .expect("consume");
        let message = consuming.messages(1).await.remove(0);
        assert_eq!((message.offset, message.delivery_attempt), (0, attempt));
        if attempt == 1 {
            original_id = message.id.clone();
        }
        assert_eq!(message.id, original_id);
        consuming
            .send(nack(0, None, &format!("bad input {attempt}")))
            .await;
        assert_eq!(outcome(&consuming.ack_result().await), AckOutcome::Ok);
    }

    let letters = stored(&client, &stream, &dead, 0).await;
    assert_eq!(letters.len(), 1, "one dead letter");
    let letter = &letters[0];
    assert_eq!(&letter.payload[..], b"poison-0-0");
    let header = |message: &IggyMessage, name: &str| {
        let headers = message.user_headers_map().expect("headers").expect("some");
        headers
            .get(&HeaderKey::try_from(name).expect("key"))
            .unwrap_or_else(|| panic!("no {name} header"))
            .clone()
    };
    assert_eq!(
        header(letter, "iggy-grpc-origin-stream")
            .as_str()
            .expect("text"),
        stream
    );
    assert_eq!(
        header(letter, "iggy-grpc-origin-topic")
            .as_str()
            .expect("text"),
        topic
    );
    assert_eq!(
        header(letter, "iggy-grpc-origin-partition")
            .as_uint32()
            .expect("u32"),
        0
    );
    assert_eq!(
        header(letter, "iggy-grpc-origin-offset")
            .as_uint64()
            .expect("u64"),
        0
    );
    assert_eq!(
        header(letter, "iggy-grpc-origin-message-id")
            .as_str()
            .expect("text"),
        original_id
    );
    assert_eq!(
        header(letter, "iggy-grpc-attempts")
            .as_uint32()
            .expect("u32"),
        3
    );
    assert_eq!(
        header(letter, "iggy-grpc-nack-reason")
            .as_str()
            .expect("text"),
        "bad input 3"
    );

    // Settled everywhere: a new stream gets nothing, only a heartbeat.
    let last = env.gateway().await;
    let mut after = Consuming::open_on(last.channel(), start(&stream, &topic, &reader, redelivery))
        .await
        .expect("consume after");
    match after.next().await {
        Received::Heartbeat => {}
        other => panic!("nothing should come again, got {other:?}"),
    }
}

async fn refusals(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = crate::support::new_topic(&env, &gateway, 1).await;
    fill(&gateway, &stream, &topic, 1, 1, "m").await;
    let reader = env.unique("reader");
    let refused = |redelivery: proto::Redelivery, auto: bool| {
        let mut start = start(&stream, &topic, &reader, redelivery);
        if auto && let Some(subscription) = start.subscription.as_mut() {
            subscription.ack_mode = AckMode::Auto as i32;
        }
        let channel = gateway.channel();
        async move { Consuming::open_on(channel, start).await.map(|_| ()) }
    };
    let cases = [
        (
            proto::Redelivery {
                max_attempts: 1,
                dead_letter_topic: by_name("dead"),
                ..Default::default()
            },
            false,
            "start.subscription.redelivery.max_attempts",
        ),
        (
            proto::Redelivery {
                max_attempts: 3,
                ..Default::default()
            },
            false,
            "start.subscription.redelivery.dead_letter_topic",
        ),
        (
            proto::Redelivery {
                ack_deadline: seconds(601),
                ..Default::default()
            },
            false,
            "start.subscription.redelivery.ack_deadline",
        ),
        (
            proto::Redelivery::default(),
            true,
            "start.subscription.redelivery",
        ),
    ];
    for (redelivery, auto, field) in cases {
        let status = expect_code(refused(redelivery, auto).await, Code::InvalidArgument);
        assert_eq!(
            bad_request_field(&status).as_deref(),
            Some(field),
            "{status:?}"
        );
    }
    let missing = expect_code(
        refused(
            proto::Redelivery {
                max_attempts: 3,
                dead_letter_topic: by_name("no-such-dead-letter-topic"),
                ..Default::default()
            },
            false,
        )
        .await,
        Code::NotFound,
    );
    assert_eq!(
        error_reason(&missing).as_deref(),
        Some("TOPIC_NAME_NOT_FOUND")
    );

    let mut consuming = Consuming::open_on(
        gateway.channel(),
        start(&stream, &topic, &reader, proto::Redelivery::default()),
    )
    .await
    .expect("consume");
    consuming.messages(1).await;
    for (request, reason) in [
        (nack(0, seconds(3601), ""), "INVALID_NACK_DELAY"),
        (
            consume_request::Kind::Extend(proto::DeadlineExtension {
                partition_id: 0,
                offset: 0,
                extension: None,
            }),
            "INVALID_EXTENSION",
        ),
    ] {
        consuming.send(request).await;
        let result = consuming.ack_result().await;
        assert_eq!(outcome(&result), AckOutcome::Invalid, "{result:?}");
        assert_eq!(result.reason, reason);
    }
    consuming.send(nack(5, None, "")).await;
    assert_eq!(
        outcome(&consuming.ack_result().await),
        AckOutcome::NotDelivered
    );
    // Nothing refused changed anything: message 0 is still out, and acks.
    consuming.send(ack(0)).await;
    assert_eq!(outcome(&consuming.ack_result().await), AckOutcome::Ok);
}

/// A Subscribe client (no stream to send on): its stream is on replica A,
/// every Nack and Ack goes to replica B, and they still take: the nacked
/// message comes again, and once acked nothing comes back at its deadline.
async fn unary(env: Env) {
    let holder = env.gateway().await;
    let other = env.gateway().await;
    let (stream, topic) = crate::support::new_topic(&env, &holder, 1).await;
    fill(&holder, &stream, &topic, 1, 3, "m").await;
    let reader = env.unique("reader");
    let mut subscription_request = start(
        &stream,
        &topic,
        &reader,
        proto::Redelivery {
            ack_deadline: seconds(2),
            ..Default::default()
        },
    )
    .subscription
    .expect("request");
    subscription_request.heartbeat_interval = seconds(3);
    let mut subscription = Subscription::open(&mut holder.messaging(), subscription_request)
        .await
        .expect("subscribe");
    assert_eq!(subscription.take(3).await.len(), 3);

    let mut messaging = other.messaging();
    messaging
        .nack(proto::NackRequest {
            subscription_id: subscription.id.clone(),
            partition_id: 0,
            offset: 1,
            delay: None,
            reason: "bad".into(),
        })
        .await
        .expect("nack on the other replica");
    let again = subscription.take(1).await;
    assert_eq!((again[0].offset, again[0].delivery_attempt), (1, 2));
    messaging
        .ack(proto::AckRequest {
            subscription_id: subscription.id.clone(),
            partition_id: 0,
            offset: 2,
            ..Default::default()
        })
        .await
        .expect("ack on the other replica");
    // Settled: past the 2 s deadline, the next thing is the 3 s heartbeat.
    match subscription.next_event().await {
        Event::Heartbeat(_) => {}
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    let reader = Consumer::new(Identifier::named(&reader).expect("id"));
    assert_eq!(
        stored_offset(&env, &reader, &stream, &topic, 0).await,
        Some(2)
    );

    let bad_delay = expect_code(
        messaging
            .nack(proto::NackRequest {
                subscription_id: subscription.id.clone(),
                partition_id: 0,
                offset: 1,
                delay: seconds(7200),
                reason: String::new(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(bad_request_field(&bad_delay).as_deref(), Some("delay"));

    // A subscription without redelivery: FAILED_PRECONDITION.
    let mut plain = request(
        &stream,
        &topic,
        Some(proto::Consumer {
            kind: Some(consumer::Kind::Name(env.unique("plain"))),
        }),
    );
    plain.ack_mode = AckMode::Manual as i32;
    let plain = Subscription::open(&mut holder.messaging(), plain)
        .await
        .expect("plain subscribe");
    let refused = expect_code(
        messaging
            .extend_ack_deadline(proto::ExtendAckDeadlineRequest {
                subscription_id: plain.id.clone(),
                partition_id: 0,
                offset: 0,
                extension: seconds(10),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(error_reason(&refused).as_deref(), Some("NOT_REDELIVERING"));
}
