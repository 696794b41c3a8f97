//! Subscribe, Poll and Ack against a real Iggy: start positions, resume
//! tokens, ack modes, flow control, consumer groups, cancellation, heartbeats.
//! Every check compares exact message sets and per-partition order.

use crate::support::{
    Env, Event, Subscription, TestBody, TestGateway, by_name as name, error_reason, expect_code,
    new_topic, purge_topic, sdk_client,
};
use bytes::Bytes;
use iggy_grpc::{
    Config,
    proto::{
        self, AckMode, BatchMessage, DeliveredMessage, FlowControl, StartPosition,
        admin_service_client::AdminServiceClient, consumer, partitioning, start_position,
    },
};
use std::collections::{BTreeMap, BTreeSet};
use tonic::{Code, transport::Channel};

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        ("subscribe::reads_every_partition_fairly_in_order", |env| {
            Box::pin(every_partition(env))
        }),
        ("subscribe::start_positions", |env| {
            Box::pin(start_positions(env))
        }),
        ("subscribe::resume_token_continues_exactly", |env| {
            Box::pin(resume(env))
        }),
        (
            "subscribe::a_token_from_a_time_or_the_last_message_names_every_partition",
            |env| Box::pin(resume_from_time_or_last(env)),
        ),
        (
            "subscribe::a_reader_far_behind_gets_client_sized_batches",
            |env| Box::pin(catching_up(env)),
        ),
        ("subscribe::auto_ack_stores_what_was_delivered", |env| {
            Box::pin(auto_ack(env))
        }),
        ("subscribe::manual_ack_flow_control_and_redelivery", |env| {
            Box::pin(manual_ack(env))
        }),
        ("subscribe::ack_mode_none_stores_nothing", |env| {
            Box::pin(ack_none(env))
        }),
        ("subscribe::groups_split_partitions_and_take_over", |env| {
            Box::pin(groups(env))
        }),
        (
            "subscribe::cancel_leaves_the_group_and_frees_the_slot",
            |env| Box::pin(cancel(env)),
        ),
        (
            "subscribe::live_messages_arrive_and_heartbeats_carry_positions",
            |env| Box::pin(live(env)),
        ),
        ("subscribe::poll_with_each_ack_mode", |env| {
            Box::pin(poll(env))
        }),
        (
            "subscribe::an_idle_subscriber_follows_new_partitions_and_a_deleted_topic",
            |env| Box::pin(topic_changes(env)),
        ),
        (
            "subscribe::a_burst_of_subscribes_opens_without_flipping_health",
            |env| Box::pin(burst(env)),
        ),
        (
            "subscribe::idle_subscribers_get_messages_from_a_native_producer",
            |env| Box::pin(native_producer(env)),
        ),
        (
            "subscribe::poll_sees_partitions_and_topics_changed_in_iggy",
            |env| Box::pin(poll_after_direct_changes(env)),
        ),
        ("subscribe::bad_requests_are_refused", |env| {
            Box::pin(bad_requests(env))
        }),
        (
            "subscribe::a_purged_topic_does_not_hide_new_messages",
            |env| Box::pin(purged(env)),
        ),
        (
            "subscribe::an_idle_subscriber_meets_a_purge_and_a_native_producer",
            |env| Box::pin(purged_then_native(env)),
        ),
        (
            "subscribe::acks_of_purged_messages_succeed_and_free_room",
            |env| Box::pin(purged_manual(env)),
        ),
    ]
}

pub fn named(value: &str) -> Option<proto::Consumer> {
    Some(proto::Consumer {
        kind: Some(consumer::Kind::Name(value.into())),
    })
}

pub fn group(value: &str) -> Option<proto::Consumer> {
    Some(proto::Consumer {
        kind: Some(consumer::Kind::Group(value.into())),
    })
}

pub fn start(kind: start_position::Kind) -> Option<StartPosition> {
    Some(StartPosition { kind: Some(kind) })
}

/// Publishes `per_partition` messages to each partition, payload
/// `"{label}-{partition}-{i}"`, in one batch.
pub async fn fill(
    gateway: &TestGateway,
    stream: &str,
    topic: &str,
    partitions: u32,
    per_partition: u32,
    label: &str,
) {
    let messages = (0..per_partition)
        .flat_map(|i| (0..partitions).map(move |p| (p, i)))
        .map(|(p, i)| BatchMessage {
            message: Some(proto::Message {
                id: String::new(),
                payload: Bytes::from(format!("{label}-{p}-{i}")),
                headers: Default::default(),
            }),
            partitioning: Some(proto::Partitioning {
                kind: Some(partitioning::Kind::PartitionId(p)),
            }),
        })
        .collect();
    let results = gateway
        .messaging()
        .publish_batch(proto::PublishBatchRequest {
            stream: name(stream),
            topic: name(topic),
            partitioning: None,
            messages,
            idempotent: false,
        })
        .await
        .expect("publish")
        .into_inner()
        .results;
    assert!(
        results.iter().all(|r| matches!(
            r.outcome,
            Some(proto::batch_entry_result::Outcome::Stored(_))
        )),
        "{results:?}"
    );
}

pub fn request(stream: &str, topic: &str, who: Option<proto::Consumer>) -> proto::SubscribeRequest {
    proto::SubscribeRequest {
        stream: name(stream),
        topic: name(topic),
        consumer: who,
        ..Default::default()
    }
}

pub fn payloads(messages: &[DeliveredMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

/// Asserts offsets rise by one within each partition.
pub fn assert_in_order(messages: &[DeliveredMessage]) {
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for message in messages {
        if let Some(previous) = last.insert(message.partition_id, message.offset) {
            assert_eq!(
                message.offset,
                previous + 1,
                "partition {} out of order",
                message.partition_id
            );
        }
    }
}

fn expected(label: &str, partitions: u32, per_partition: u32) -> BTreeSet<String> {
    (0..partitions)
        .flat_map(|p| (0..per_partition).map(move |i| format!("{label}-{p}-{i}")))
        .collect()
}

/// The wall clock, as Iggy stamps messages.
fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as u64
}

async fn stored_offset(
    admin: &mut AdminServiceClient<Channel>,
    stream: &str,
    topic: &str,
    who: Option<proto::Consumer>,
    partition: u32,
) -> Option<u64> {
    admin
        .get_consumer_offset(proto::GetConsumerOffsetRequest {
            stream: name(stream),
            topic: name(topic),
            consumer: who,
            partition_id: Some(partition),
        })
        .await
        .expect("offset")
        .into_inner()
        .offset
        .map(|o| o.stored_offset)
}

/// Waits (re-reading on a short interval, bounded by the test timeout) until
/// the stored offset of `partition` is `wanted`.
async fn until_stored(
    admin: &mut AdminServiceClient<Channel>,
    stream: &str,
    topic: &str,
    who: Option<proto::Consumer>,
    partition: u32,
    wanted: u64,
) {
    while stored_offset(admin, stream, topic, who.clone(), partition).await != Some(wanted) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn every_partition(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 3).await;
    fill(&gateway, &stream, &topic, 3, 10, "m").await;
    let mut request = request(&stream, &topic, named(&env.unique("reader")));
    request.start = start(start_position::Kind::First(()));
    request.batch_size = 2;
    let mut subscription = Subscription::open(&mut gateway.messaging(), request)
        .await
        .expect("subscribe");
    assert_eq!(subscription.partitions, vec![0, 1, 2]);
    let messages = subscription.take(30).await;
    assert_eq!(messages.len(), 30);
    assert_eq!(
        payloads(&messages).into_iter().collect::<BTreeSet<_>>(),
        expected("m", 3, 10)
    );
    assert_in_order(&messages);
    let first_six: BTreeSet<u32> = messages[..6].iter().map(|m| m.partition_id).collect();
    assert_eq!(
        first_six.len(),
        3,
        "partitions take turns, not partition 0 until empty"
    );
    for message in &messages {
        assert!(uuid::Uuid::parse_str(&message.id).is_ok());
        assert!(message.timestamp_micros > 0);
    }
}

async fn start_positions(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    fill(&gateway, &stream, &topic, 1, 5, "early").await;
    let between = now_micros();
    fill(&gateway, &stream, &topic, 1, 5, "late").await;
    let mut messaging = gateway.messaging();

    let mut at_offset = request(&stream, &topic, named(&env.unique("r")));
    at_offset.start = start(start_position::Kind::Offset(7));
    at_offset.partition_id = Some(0);
    let got = Subscription::open(&mut messaging, at_offset)
        .await
        .expect("subscribe")
        .take(3)
        .await;
    assert_eq!(payloads(&got), vec!["late-0-2", "late-0-3", "late-0-4"]);

    let mut at_time = request(&stream, &topic, named(&env.unique("r")));
    at_time.start = start(start_position::Kind::TimestampMicros(between));
    let got = Subscription::open(&mut messaging, at_time)
        .await
        .expect("subscribe")
        .take(5)
        .await;
    assert_eq!(
        payloads(&got),
        (0..5).map(|i| format!("late-0-{i}")).collect::<Vec<_>>()
    );

    let mut at_last = request(&stream, &topic, named(&env.unique("r")));
    at_last.start = start(start_position::Kind::Last(()));
    let mut last = Subscription::open(&mut messaging, at_last)
        .await
        .expect("subscribe");
    assert_eq!(
        payloads(&last.take(1).await),
        vec!["late-0-4"],
        "only the newest"
    );
    fill(&gateway, &stream, &topic, 1, 1, "after").await;
    assert_eq!(
        payloads(&last.take(1).await),
        vec!["after-0-0"],
        "then new ones"
    );

    let reader = env.unique("r");
    gateway
        .admin()
        .store_consumer_offset(proto::StoreConsumerOffsetRequest {
            stream: name(&stream),
            topic: name(&topic),
            consumer: named(&reader),
            partition_id: Some(0),
            offset: 3,
        })
        .await
        .expect("store");
    let got = Subscription::open(&mut messaging, request(&stream, &topic, named(&reader)))
        .await
        .expect("subscribe next")
        .take(1)
        .await;
    assert_eq!(got[0].offset, 4, "`next` starts after the stored offset");
}

/// A reader far behind one partition: the gateway reads several batches per
/// Iggy poll, yet the client gets batches of its own size, each with a
/// resume token for exactly that batch.
async fn catching_up(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    fill(&gateway, &stream, &topic, 1, 40, "m").await;
    let mut messaging = gateway.messaging();
    let mut first = request(&stream, &topic, named(&env.unique("r")));
    first.start = start(start_position::Kind::First(()));
    first.ack_mode = AckMode::None as i32;
    first.batch_size = 3;
    let mut subscription = Subscription::open(&mut messaging, first.clone())
        .await
        .expect("subscribe");
    let mut before = Vec::new();
    for _ in 0..5 {
        match subscription.next_event().await {
            Event::Batch(batch) => {
                assert_eq!(batch.messages.len(), 3, "the client's batch size");
                before.extend(batch.messages);
            }
            other => panic!("expected a batch, got {other:?}"),
        }
    }
    let token = subscription.last_token.clone().expect("token");
    drop(subscription);

    let mut again = first;
    again.start = start(start_position::Kind::ResumeToken(token));
    let mut resumed = Subscription::open(&mut messaging, again)
        .await
        .expect("resume");
    let after = resumed.take(25).await;
    assert_eq!(
        after.first().map(|m| m.offset),
        Some(15),
        "resumes right after the last batch taken, not after what was read ahead"
    );
    let mut all = before;
    all.extend(after);
    assert_eq!(all.len(), 40, "nothing twice");
    assert_in_order(&all);
    assert_eq!(
        payloads(&all).into_iter().collect::<BTreeSet<_>>(),
        expected("m", 1, 40),
        "nothing missed"
    );
}

async fn resume(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 2).await;
    fill(&gateway, &stream, &topic, 2, 10, "m").await;
    let mut messaging = gateway.messaging();
    let mut first = request(&stream, &topic, named(&env.unique("r")));
    first.start = start(start_position::Kind::First(()));
    first.ack_mode = AckMode::None as i32;
    first.batch_size = 1;
    let mut subscription = Subscription::open(&mut messaging, first.clone())
        .await
        .expect("subscribe");
    let before = subscription.take(7).await;
    let token = subscription.last_token.clone().expect("token");
    drop(subscription);

    let mut again = first;
    again.start = start(start_position::Kind::ResumeToken(token));
    again.batch_size = 100;
    let mut resumed = Subscription::open(&mut messaging, again)
        .await
        .expect("resume");
    let after = resumed.take(13).await;
    let mut all = before.clone();
    all.extend(after.iter().cloned());
    assert_eq!(all.len(), 20, "nothing twice");
    assert_eq!(
        payloads(&all).into_iter().collect::<BTreeSet<_>>(),
        expected("m", 2, 10),
        "nothing missed"
    );
    let mut resumed_per_partition = after.clone();
    resumed_per_partition.sort_by_key(|m| (m.partition_id, m.offset));
    assert_in_order(&resumed_per_partition);

    let (other_stream, other_topic) = new_topic(&env, &gateway, 2).await;
    let mut foreign = request(&other_stream, &other_topic, named("r"));
    foreign.start = start(start_position::Kind::ResumeToken(
        resumed.last_token.clone().expect("token"),
    ));
    let status = expect_code(
        Subscription::open(&mut messaging, foreign)
            .await
            .map(|s| s.id),
        Code::InvalidArgument,
    );
    assert!(
        status.message().contains("another stream or topic"),
        "{}",
        status.message()
    );
}

/// A token taken before a subscription or poll that starts at a time or at
/// the newest message has read every partition still resumes each one from
/// that start: none of the older messages comes, none of the newer is missed.
async fn resume_from_time_or_last(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 3).await;
    fill(&gateway, &stream, &topic, 3, 3, "early").await;
    let between = now_micros();
    fill(&gateway, &stream, &topic, 3, 3, "late").await;
    let mut messaging = gateway.messaging();
    let reader = env.unique("r");
    let late = expected("late", 3, 3);
    let newest: BTreeSet<String> = (0..3).map(|p| format!("late-{p}-2")).collect();

    // Poll: a batch of 2 fills from one partition and leaves the others
    // unread, so its token must say where they start.
    for (kind, want) in [
        (start_position::Kind::TimestampMicros(between), &late),
        (start_position::Kind::Last(()), &newest),
    ] {
        let mut got = Vec::new();
        let mut start_at = start(kind.clone());
        for _ in 0..20 {
            let polled = messaging
                .poll(proto::PollRequest {
                    stream: name(&stream),
                    topic: name(&topic),
                    partition_id: None,
                    consumer: named(&reader),
                    start: start_at,
                    ack_mode: AckMode::None as i32,
                    batch_size: 2,
                })
                .await
                .expect("poll")
                .into_inner();
            if polled.messages.is_empty() {
                break;
            }
            got.extend(polled.messages);
            start_at = start(start_position::Kind::ResumeToken(polled.resume_token));
        }
        assert_eq!(
            got.len(),
            want.len(),
            "poll from {kind:?}: {:?}",
            payloads(&got)
        );
        assert_eq!(&payloads(&got).into_iter().collect::<BTreeSet<_>>(), want);
    }

    // Subscribe: the first batch comes from one partition; resuming from its
    // token delivers the rest from the same start, then new messages.
    let (mut since_between, mut newest) = (late, newest);
    for from_time in [true, false] {
        let kind = if from_time {
            start_position::Kind::TimestampMicros(between)
        } else {
            start_position::Kind::Last(())
        };
        let mut first = request(&stream, &topic, named(&reader));
        first.start = start(kind.clone());
        first.ack_mode = AckMode::None as i32;
        first.batch_size = 1;
        let mut subscription = Subscription::open(&mut messaging, first.clone())
            .await
            .expect("subscribe");
        let Event::Batch(batch) = subscription.next_event().await else {
            panic!("expected a batch first");
        };
        drop(subscription);
        let mut got = batch.messages;
        let mut again = first;
        again.start = start(start_position::Kind::ResumeToken(batch.resume_token));
        again.batch_size = 100;
        let mut resumed = Subscription::open(&mut messaging, again)
            .await
            .expect("resume");
        let after = env.unique("after");
        fill(&gateway, &stream, &topic, 3, 1, &after).await;
        let mut want = if from_time {
            since_between.clone()
        } else {
            newest.clone()
        };
        want.extend(expected(&after, 3, 1));
        got.extend(resumed.take(want.len() - got.len()).await);
        assert_eq!(got.len(), want.len(), "from {kind:?}: {:?}", payloads(&got));
        assert_eq!(payloads(&got).into_iter().collect::<BTreeSet<_>>(), want);
        newest = expected(&after, 3, 1);
        since_between.extend(newest.iter().cloned());
    }
}

async fn auto_ack(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    fill(&gateway, &stream, &topic, 1, 10, "m").await;
    let reader = env.unique("r");
    let mut subscription = Subscription::open(
        &mut gateway.messaging(),
        request(&stream, &topic, named(&reader)),
    )
    .await
    .expect("subscribe");
    assert_eq!(subscription.take(10).await.len(), 10);
    let mut admin = gateway.admin();
    until_stored(&mut admin, &stream, &topic, named(&reader), 0, 9).await;
    drop(subscription);
    fill(&gateway, &stream, &topic, 1, 2, "more").await;
    let next = Subscription::open(
        &mut gateway.messaging(),
        request(&stream, &topic, named(&reader)),
    )
    .await
    .expect("subscribe again")
    .take(2)
    .await;
    assert_eq!(
        payloads(&next),
        vec!["more-0-0", "more-0-1"],
        "continues after what was delivered"
    );
}

async fn manual_ack(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    fill(&gateway, &stream, &topic, 1, 12, "m").await;
    let reader = env.unique("r");
    let mut messaging = gateway.messaging();
    let mut manual = request(&stream, &topic, named(&reader));
    manual.ack_mode = AckMode::Manual as i32;
    manual.flow_control = Some(FlowControl {
        max_in_flight_messages: 5,
        max_in_flight_bytes: 0,
    });
    manual.heartbeat_interval = Some(prost_types::Duration {
        seconds: 1,
        nanos: 0,
    });
    manual.batch_size = 5;
    let mut subscription = Subscription::open(&mut messaging, manual.clone())
        .await
        .expect("subscribe");
    let first = subscription.take(5).await;
    assert_eq!(
        first.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    // Five unacknowledged: delivery pauses; the stream stays alive with heartbeats.
    assert!(matches!(
        subscription.next_quiet_event().await,
        Event::Heartbeat(_)
    ));

    let ack = |offset: u64, id: &str| proto::AckRequest {
        subscription_id: id.to_owned(),
        partition_id: 0,
        offset,
        ..Default::default()
    };
    // Blocked at offsets 0..=4: offset 5 was never delivered.
    let never_delivered = expect_code(
        messaging.ack(ack(5, &subscription.id)).await,
        Code::FailedPrecondition,
    );
    assert_eq!(
        error_reason(&never_delivered).as_deref(),
        Some("OFFSET_NOT_DELIVERED")
    );
    let unknown = expect_code(
        messaging.ack(ack(1, "no-such-subscription")).await,
        Code::NotFound,
    );
    assert_eq!(
        error_reason(&unknown).as_deref(),
        Some("SUBSCRIPTION_NOT_FOUND")
    );
    messaging
        .ack(ack(2, &subscription.id))
        .await
        .expect("ack 0..=2");
    let second = subscription.take(3).await;
    assert_eq!(
        second.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![5, 6, 7],
        "three freed, three more"
    );
    messaging
        .ack(ack(7, &subscription.id))
        .await
        .expect("ack up to 7");
    let more = subscription.take(4).await;
    assert_eq!(
        more.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![8, 9, 10, 11]
    );
    let mut admin = gateway.admin();
    until_stored(&mut admin, &stream, &topic, named(&reader), 0, 7).await;
    drop(subscription); // dies without acking 8..=11

    let mut again = Subscription::open(&mut messaging, manual)
        .await
        .expect("subscribe again");
    let redelivered = again.take(4).await;
    assert_eq!(
        redelivered.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![8, 9, 10, 11],
        "unacked come again"
    );
}

async fn ack_none(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    fill(&gateway, &stream, &topic, 1, 4, "m").await;
    let reader = env.unique("r");
    let mut none = request(&stream, &topic, named(&reader));
    none.ack_mode = AckMode::None as i32;
    let mut subscription = Subscription::open(&mut gateway.messaging(), none.clone())
        .await
        .expect("subscribe");
    assert_eq!(subscription.take(4).await.len(), 4);
    let status = expect_code(
        gateway
            .messaging()
            .ack(proto::AckRequest {
                subscription_id: subscription.id.clone(),
                partition_id: 0,
                offset: 1,
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(error_reason(&status).as_deref(), Some("NOT_MANUAL_ACK"));
    // The id says so on any replica, and after the stream ended.
    let other = env.gateway().await;
    let id = subscription.id.clone();
    drop(subscription);
    let elsewhere = expect_code(
        other
            .messaging()
            .ack(proto::AckRequest {
                subscription_id: id,
                partition_id: 0,
                offset: 1,
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(error_reason(&elsewhere).as_deref(), Some("NOT_MANUAL_ACK"));
    let again = Subscription::open(&mut gateway.messaging(), none)
        .await
        .expect("again")
        .take(4)
        .await;
    assert_eq!(
        again.len(),
        4,
        "nothing was stored, so everything comes again"
    );
    assert_eq!(
        stored_offset(&mut gateway.admin(), &stream, &topic, named(&reader), 0).await,
        None
    );
}

async fn groups(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 4).await;
    let group_name = env.unique("group");
    let mut messaging = gateway.messaging();
    let mut join = request(&stream, &topic, group(&group_name));
    join.create_group = true;
    let mut a = Subscription::open(&mut messaging, join.clone())
        .await
        .expect("member a");
    let mut b = Subscription::open(&mut messaging, join.clone())
        .await
        .expect("member b");

    fill(&gateway, &stream, &topic, 4, 10, "one").await;
    // Together the members receive every message exactly once.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut by_member: [BTreeSet<u32>; 2] = [BTreeSet::new(), BTreeSet::new()];
    while seen.len() < 40 {
        let (index, event) = tokio::select! {
            event = a.next_event() => (0, event),
            event = b.next_event() => (1, event),
        };
        match event {
            Event::Batch(batch) => {
                assert_in_order(&batch.messages);
                for message in batch.messages {
                    by_member[index].insert(message.partition_id);
                    *seen
                        .entry(String::from_utf8_lossy(&message.payload).into_owned())
                        .or_default() += 1;
                }
            }
            Event::Heartbeat(_) => {}
            other => panic!("member ended: {other:?}"),
        }
    }
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        expected("one", 4, 10)
    );
    assert!(
        seen.values().all(|count| *count == 1),
        "no message twice: {seen:?}"
    );
    assert!(
        by_member[0].is_disjoint(&by_member[1]),
        "members split the partitions: {by_member:?}"
    );
    assert!(
        !by_member[0].is_empty() && !by_member[1].is_empty(),
        "both members got partitions: {by_member:?}"
    );

    // B leaves; A takes over B's partitions and receives what follows.
    drop(b);
    fill(&gateway, &stream, &topic, 4, 5, "two").await;
    let mut after: Vec<DeliveredMessage> = Vec::new();
    while after.len() < 20 {
        match a.next_event().await {
            Event::Batch(batch) => after.extend(batch.messages),
            Event::Heartbeat(_) => {}
            other => panic!("member a ended: {other:?}"),
        }
    }
    assert_eq!(
        payloads(&after).into_iter().collect::<BTreeSet<_>>(),
        expected("two", 4, 5),
        "nothing old again, nothing missed"
    );
    assert_eq!(after.len(), 20);
}

async fn cancel(env: Env) {
    let mut config = Config::for_connection_string(env.iggy.connection_string.clone());
    config.subscribe.max_subscriptions = 1;
    let gateway = TestGateway::start_ready_with(config).await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let group_name = env.unique("group");
    let mut join = request(&stream, &topic, group(&group_name));
    join.create_group = true;
    let mut messaging = gateway.messaging();
    let subscription = Subscription::open(&mut messaging, join.clone())
        .await
        .expect("subscribe");
    let members = |admin: &mut AdminServiceClient<Channel>| {
        let mut admin = admin.clone();
        let (stream, topic, group_name) = (stream.clone(), topic.clone(), group_name.clone());
        async move {
            admin
                .get_consumer_group(proto::GetConsumerGroupRequest {
                    stream: name(&stream),
                    topic: name(&topic),
                    group: name(&group_name),
                })
                .await
                .expect("group")
                .into_inner()
                .group
                .and_then(|g| g.group)
                .expect("group")
                .members_count
        }
    };
    let mut admin = gateway.admin();
    assert_eq!(members(&mut admin).await, 1);
    let refused = expect_code(
        Subscription::open(&mut messaging, join.clone())
            .await
            .map(|s| s.id),
        Code::ResourceExhausted,
    );
    assert_eq!(
        error_reason(&refused).as_deref(),
        Some("TOO_MANY_SUBSCRIPTIONS")
    );

    drop(subscription);
    while members(&mut admin).await != 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The slot is free again once the session has ended.
    let again = loop {
        match Subscription::open(&mut messaging, join.clone()).await {
            Ok(subscription) => break subscription,
            Err(status) if status.code() == Code::ResourceExhausted => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    assert_eq!(members(&mut admin).await, 1);
    drop(again);
}

async fn live(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 2).await;
    let mut live = request(&stream, &topic, named(&env.unique("r")));
    live.heartbeat_interval = Some(prost_types::Duration {
        seconds: 1,
        nanos: 0,
    });
    let mut subscription = Subscription::open(&mut gateway.messaging(), live)
        .await
        .expect("subscribe");
    // Idle: a heartbeat with the positions.
    let Event::Heartbeat(idle) = subscription.next_quiet_event().await else {
        panic!("expected a heartbeat")
    };
    assert_eq!(
        idle.positions
            .iter()
            .map(|p| (p.partition_id, p.next_offset))
            .collect::<Vec<_>>(),
        vec![(0, 0), (1, 0)]
    );
    fill(&gateway, &stream, &topic, 2, 3, "live").await;
    let got = subscription.take(6).await;
    assert_eq!(
        payloads(&got).into_iter().collect::<BTreeSet<_>>(),
        expected("live", 2, 3)
    );
    let Event::Heartbeat(after) = subscription.next_quiet_event().await else {
        panic!("expected a heartbeat")
    };
    assert_eq!(
        after
            .positions
            .iter()
            .map(|p| (p.partition_id, p.next_offset))
            .collect::<Vec<_>>(),
        vec![(0, 3), (1, 3)]
    );
    assert_eq!(Some(after.resume_token), subscription.last_token);
}

async fn poll(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 2).await;
    fill(&gateway, &stream, &topic, 2, 5, "p").await;
    let mut messaging = gateway.messaging();
    let reader = env.unique("r");
    let poll_request = |ack_mode: AckMode, start_at: Option<StartPosition>| proto::PollRequest {
        stream: name(&stream),
        topic: name(&topic),
        partition_id: None,
        consumer: named(&reader),
        start: start_at,
        ack_mode: ack_mode as i32,
        batch_size: 6,
    };
    let peek = messaging
        .poll(poll_request(AckMode::None, None))
        .await
        .expect("poll")
        .into_inner();
    assert_eq!(peek.messages.len(), 6);
    let peek_again = messaging
        .poll(poll_request(AckMode::None, None))
        .await
        .expect("poll")
        .into_inner();
    assert_eq!(
        peek_again.messages.len(),
        6,
        "NONE stores nothing: the same count again"
    );

    let first = messaging
        .poll(poll_request(AckMode::Auto, None))
        .await
        .expect("poll")
        .into_inner();
    let second = messaging
        .poll(poll_request(AckMode::Auto, None))
        .await
        .expect("poll")
        .into_inner();
    let mut both = first.messages.clone();
    both.extend(second.messages.iter().cloned());
    assert_eq!(both.len(), 10, "AUTO continues after what it returned");
    assert_eq!(
        payloads(&both).into_iter().collect::<BTreeSet<_>>(),
        expected("p", 2, 5)
    );

    let from_token = messaging
        .poll(poll_request(
            AckMode::None,
            start(start_position::Kind::ResumeToken(first.resume_token)),
        ))
        .await
        .expect("poll from token")
        .into_inner();
    assert_eq!(
        payloads(&from_token.messages)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        payloads(&second.messages)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        "a token continues exactly after its poll"
    );

    let group_name = env.unique("group");
    gateway
        .admin()
        .create_consumer_group(proto::CreateConsumerGroupRequest {
            stream: name(&stream),
            topic: name(&topic),
            name: group_name.clone(),
        })
        .await
        .expect("group");
    let mut group_poll = poll_request(AckMode::Auto, None);
    group_poll.consumer = group(&group_name);
    group_poll.batch_size = 100;
    let polled = messaging
        .poll(group_poll)
        .await
        .expect("group poll")
        .into_inner();
    assert_eq!(
        polled.messages.len(),
        10,
        "a lone member reads every partition"
    );
}

async fn bad_requests(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let mut messaging = gateway.messaging();
    let mut cases: Vec<(&str, proto::SubscribeRequest, Code)> = Vec::new();
    cases.push((
        "consumer",
        request(&stream, &topic, None),
        Code::InvalidArgument,
    ));
    let mut group_with_partition = request(&stream, &topic, group("g"));
    group_with_partition.partition_id = Some(0);
    cases.push(("partition_id", group_with_partition, Code::InvalidArgument));
    let mut huge_batch = request(&stream, &topic, named("r"));
    huge_batch.batch_size = 1_000_000;
    cases.push(("batch_size", huge_batch, Code::InvalidArgument));
    let mut bad_token = request(&stream, &topic, named("r"));
    bad_token.start = start(start_position::Kind::ResumeToken("###".into()));
    cases.push(("start.resume_token", bad_token, Code::InvalidArgument));
    let mut bad_heartbeat = request(&stream, &topic, named("r"));
    bad_heartbeat.heartbeat_interval = Some(prost_types::Duration {
        seconds: 0,
        nanos: 1000,
    });
    cases.push(("heartbeat_interval", bad_heartbeat, Code::InvalidArgument));
    for (field, case, code) in cases {
        let status = expect_code(
            Subscription::open(&mut messaging, case).await.map(|s| s.id),
            code,
        );
        assert_eq!(
            crate::support::bad_request_field(&status).as_deref(),
            Some(field)
        );
    }
    let mut missing_partition = request(&stream, &topic, named("r"));
    missing_partition.partition_id = Some(5);
    expect_code(
        Subscription::open(&mut messaging, missing_partition)
            .await
            .map(|s| s.id),
        Code::NotFound,
    );
    expect_code(
        Subscription::open(
            &mut messaging,
            request(&stream, &env.unique("missing"), named("r")),
        )
        .await
        .map(|s| s.id),
        Code::NotFound,
    );
    let no_group = expect_code(
        Subscription::open(
            &mut messaging,
            request(&stream, &topic, group(&env.unique("absent"))),
        )
        .await
        .map(|s| s.id),
        Code::NotFound,
    );
    assert!(error_reason(&no_group).is_some());
}

async fn purged(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    fill(&gateway, &stream, &topic, 1, 5, "old").await;
    let reader = env.unique("r");
    let mut subscription = Subscription::open(
        &mut gateway.messaging(),
        request(&stream, &topic, named(&reader)),
    )
    .await
    .expect("subscribe");
    assert_eq!(subscription.take(5).await.len(), 5);
    let mut admin = gateway.admin();
    until_stored(&mut admin, &stream, &topic, named(&reader), 0, 4).await;
    purge_topic(&mut admin, &stream, &topic).await;
    fill(&gateway, &stream, &topic, 1, 3, "new").await;
    // The log restarts at offset 0, behind the subscription's position: it
    // continues with what was stored after its last delivery.
    let got = subscription.take(3).await;
    assert_eq!(payloads(&got), vec!["new-0-0", "new-0-1", "new-0-2"]);
    // The offset stored before the purge does not stop the new ones from
    // being stored.
    until_stored(&mut admin, &stream, &topic, named(&reader), 0, 2).await;
}

/// As above, but the new messages come from a native producer, so no
/// gateway publish wakes the idle subscription: its topic's watcher shows a
/// log shorter than its position, it reads again, and continues.
async fn purged_then_native(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let mut subscription = idle_subscription(&gateway, &env, &stream, &topic).await;
    fill(&gateway, &stream, &topic, 1, 5, "old").await;
    assert_eq!(subscription.take(5).await.len(), 5);
    purge_topic(&mut gateway.admin(), &stream, &topic).await;
    let iggy = sdk_client(&env.iggy.connection_string).await;
    for index in 0..3 {
        send_direct(&iggy, &stream, &topic, 0, &format!("new-{index}")).await;
    }
    let got = subscription.take(3).await;
    assert_eq!(payloads(&got), vec!["new-0", "new-1", "new-2"]);
}

/// Acknowledging messages that a purge removed since their delivery
/// succeeds (nothing is left to store) and frees their flow-control room;
/// Iggy refuses the offset itself, which must not end the subscription.
async fn purged_manual(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    fill(&gateway, &stream, &topic, 1, 5, "old").await;
    let reader = env.unique("r");
    let mut manual = request(&stream, &topic, named(&reader));
    manual.ack_mode = AckMode::Manual as i32;
    manual.flow_control = Some(FlowControl {
        max_in_flight_messages: 5,
        max_in_flight_bytes: 0,
    });
    let mut messaging = gateway.messaging();
    let mut subscription = Subscription::open(&mut messaging, manual)
        .await
        .expect("subscribe");
    // Five in flight: delivery is paused, so the subscription cannot have
    // seen the purge by the time the Ack arrives.
    assert_eq!(subscription.take(5).await.len(), 5);
    let mut admin = gateway.admin();
    purge_topic(&mut admin, &stream, &topic).await;
    let id = subscription.id.clone();
    let ack = |offset: u64| proto::AckRequest {
        subscription_id: id.clone(),
        partition_id: 0,
        offset,
        ..Default::default()
    };
    messaging
        .ack(ack(4))
        .await
        .expect("an ack of purged messages succeeds");
    fill(&gateway, &stream, &topic, 1, 3, "new").await;
    let got = subscription.take(3).await;
    assert_eq!(payloads(&got), vec!["new-0-0", "new-0-1", "new-0-2"]);
    messaging.ack(ack(2)).await.expect("ack the new ones");
    until_stored(&mut admin, &stream, &topic, named(&reader), 0, 2).await;
}

/// Poll caches a topic's ids and partition count (one Iggy call per poll),
/// yet a partition added directly in Iggy is polled at once, and a topic
/// deleted there answers NOT_FOUND naming the topic.
async fn poll_after_direct_changes(env: Env) {
    use iggy::prelude::{Identifier, PartitionClient, TopicClient};
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let mut messaging = gateway.messaging();
    let request = |partition_id: Option<u32>| proto::PollRequest {
        stream: name(&stream),
        topic: name(&topic),
        partition_id,
        consumer: named("direct"),
        start: start(start_position::Kind::First(())),
        ack_mode: AckMode::None as i32,
        batch_size: 10,
    };
    let empty = messaging
        .poll(request(None))
        .await
        .expect("poll")
        .into_inner();
    assert!(empty.messages.is_empty());

    let iggy = sdk_client(&env.iggy.connection_string).await;
    let (stream_id, topic_id) = (
        Identifier::named(&stream).expect("id"),
        Identifier::named(&topic).expect("id"),
    );
    iggy.create_partitions(&stream_id, &topic_id, 1)
        .await
        .expect("add a partition directly");
    send_direct(&iggy, &stream, &topic, 1, "on the new partition").await;
    let polled = messaging
        .poll(request(Some(1)))
        .await
        .expect("the new partition is polled before the cache would expire")
        .into_inner();
    assert_eq!(payloads(&polled.messages), vec!["on the new partition"]);

    iggy.delete_topic(&stream_id, &topic_id)
        .await
        .expect("delete directly");
    for _ in 0..2 {
        let status = messaging
            .poll(request(None))
            .await
            .expect_err("the topic is gone");
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(
            error_reason(&status).as_deref(),
            Some("TOPIC_NAME_NOT_FOUND"),
            "{status:?}"
        );
    }
}

/// A named consumer's subscription with a 1 s heartbeat, once its first
/// heartbeat says it is idle.
async fn idle_subscription(
    gateway: &TestGateway,
    env: &Env,
    stream: &str,
    topic: &str,
) -> Subscription {
    let mut idle = request(stream, topic, named(&env.unique("r")));
    idle.heartbeat_interval = Some(prost_types::Duration {
        seconds: 1,
        nanos: 0,
    });
    let mut subscription = Subscription::open(&mut gateway.messaging(), idle)
        .await
        .expect("subscribe");
    assert!(matches!(
        subscription.next_quiet_event().await,
        Event::Heartbeat(_)
    ));
    subscription
}

/// Idle subscriptions, on two partitions and two gateways, receive messages
/// a native Iggy client sends (no gateway publish wakes them): their topic's
/// watcher sees the partition ends move.
async fn native_producer(env: Env) {
    let first = env.gateway().await;
    let second = env.gateway().await;
    let (stream, topic) = new_topic(&env, &first, 2).await;
    let mut subscriptions = Vec::new();
    for gateway in [&first, &first, &second] {
        subscriptions.push(idle_subscription(gateway, &env, &stream, &topic).await);
    }
    let iggy = sdk_client(&env.iggy.connection_string).await;
    for partition in 0..2 {
        send_direct(
            &iggy,
            &stream,
            &topic,
            partition,
            &format!("native-{partition}"),
        )
        .await;
    }
    for subscription in &mut subscriptions {
        let mut got = payloads(&subscription.take(2).await);
        got.sort();
        assert_eq!(got, vec!["native-0", "native-1"]);
    }
}

/// An idle named consumer reading every partition reads a partition added
/// in Iggy, and its stream ends with NOT_FOUND when the topic is deleted.
async fn topic_changes(env: Env) {
    use iggy::prelude::{Identifier, PartitionClient, TopicClient};
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let mut subscription = idle_subscription(&gateway, &env, &stream, &topic).await;
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let (stream_id, topic_id) = (
        Identifier::named(&stream).expect("id"),
        Identifier::named(&topic).expect("id"),
    );
    iggy.create_partitions(&stream_id, &topic_id, 1)
        .await
        .expect("add a partition directly");
    send_direct(&iggy, &stream, &topic, 1, "on the new partition").await;
    let got = subscription.take(1).await;
    assert_eq!(
        (got[0].partition_id, payloads(&got)),
        (1, vec!["on the new partition".to_owned()])
    );

    iggy.delete_topic(&stream_id, &topic_id)
        .await
        .expect("delete directly");
    loop {
        match subscription.next_event().await {
            Event::Heartbeat(_) => {}
            Event::Ended(status) => {
                assert_eq!(status.code(), Code::NotFound, "{status:?}");
                break;
            }
            other => panic!("expected the stream to end, got {other:?}"),
        }
    }
}

/// 180 named consumers' Subscribe calls at once all open (they need no Iggy
/// connection of their own); then 64 consumer-group members at once each
/// open (taking turns to log in to Iggy) or are refused with a RetryInfo;
/// health never leaves SERVING. (All on one HTTP/2 connection, which takes
/// 256 streams at once.)
async fn burst(env: Env) {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let mut health = gateway
        .health()
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch health")
        .into_inner();
    let first = health.message().await.expect("health").expect("status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let open_all = |requests: Vec<proto::SubscribeRequest>| {
        futures_util::future::join_all(requests.into_iter().map(|subscribe| {
            let mut messaging = gateway.messaging();
            async move { Subscription::open(&mut messaging, subscribe).await }
        }))
    };
    let named_requests = (0..180)
        .map(|index| request(&stream, &topic, named(&format!("burst-{index}"))))
        .collect();
    let mut opened = Vec::new();
    for result in open_all(named_requests).await {
        opened.push(result.expect("a named consumer opens"));
    }
    let group_name = env.unique("burst-group");
    let member_requests = (0..64)
        .map(|_| {
            let mut member = request(&stream, &topic, group(&group_name));
            member.create_group = true;
            member
        })
        .collect();
    let mut members = 0;
    for result in open_all(member_requests).await {
        match result {
            Ok(subscription) => {
                members += 1;
                opened.push(subscription);
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert_eq!(
                    error_reason(&status).as_deref(),
                    Some("SUBSCRIPTIONS_OPENING"),
                    "{status:?}"
                );
            }
        }
    }
    assert!(members >= 32, "only {members} of 64 members opened");
    // Health sent nothing since: it stayed SERVING.
    let changed = tokio::time::timeout(std::time::Duration::from_millis(1), health.message()).await;
    assert!(
        changed.is_err(),
        "health changed during the burst: {changed:?}"
    );
}

/// Sends `payload` to `partition` with the Iggy SDK, as a native producer
/// would: no gateway publish wakes the subscriptions.
async fn send_direct(
    iggy: &iggy::prelude::IggyClient,
    stream: &str,
    topic: &str,
    partition: u32,
    payload: &str,
) {
    use iggy::prelude::{Identifier, IggyMessage, MessageClient, Partitioning};
    let mut messages = vec![
        IggyMessage::builder()
            .payload(Bytes::from(payload.to_owned()))
            .build()
            .expect("message"),
    ];
    iggy.send_messages(
        &Identifier::named(stream).expect("id"),
        &Identifier::named(topic).expect("id"),
        &Partitioning::partition_id(partition),
        &mut messages,
    )
    .await
    .expect("send directly");
}
