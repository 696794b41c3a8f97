//! Streams moving between replicas, as behind a mesh: a stream at the
//! gateway's maximum age ends with a resume token that continues on
//! another replica, and a replica killed mid-stream leaves its consumer
//! group's partitions to the survivors. Acks and resumes go through a
//! client that balances every call across the replicas.

use crate::{
    subscribe::{fill, named, request},
    support::{
        Env, Event, GatewayProcess, Subscription, TestBody, TestGateway, balanced, error_reason,
        stored_offset,
    },
};
use iggy::prelude::{Consumer, Identifier};
use iggy_grpc::{
    Config,
    config::MaxAge,
    proto::{
        self, AckMode, FlowControl, StartPosition,
        messaging_service_client::MessagingServiceClient, start_position,
    },
};
use std::time::{Duration, Instant};
use tonic::{Code, Status};

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        (
            "moving::a_manual_stream_at_its_max_age_resumes_on_any_replica_from_its_oldest_unacked",
            |env| Box::pin(manual_max_age(env)),
        ),
        (
            "moving::an_auto_ack_stream_at_its_max_age_resumes_on_any_replica_without_repeat_or_gap",
            |env| Box::pin(auto_max_age(env)),
        ),
        (
            "moving::a_killed_replicas_group_partitions_are_redelivered_by_the_survivor_from_the_last_ack",
            |env| Box::pin(group_failover(env)),
        ),
    ]
}

const MAX_AGE: Duration = Duration::from_secs(1);

/// A replica whose streams end at [`MAX_AGE`].
async fn aging_replica(env: &Env) -> TestGateway {
    let mut config = Config::for_connection_string(&env.iggy.connection_string);
    config.pool.size = 2;
    config.transport.max_connection_age = Some(MaxAge {
        age: MAX_AGE,
        grace: Duration::from_millis(200),
    });
    TestGateway::start_ready_with(config).await
}

/// Reads until the stream ends; returns its status and the messages after.
async fn until_end(subscription: &mut Subscription) -> (Status, Vec<proto::DeliveredMessage>) {
    let mut messages = Vec::new();
    loop {
        match subscription.next_event().await {
            Event::Batch(batch) => messages.extend(batch.messages),
            Event::Heartbeat(_) => {}
            Event::Ended(status) => return (status, messages),
            Event::Closed => panic!("the stream closed without a status"),
        }
    }
}

/// The status a stream at its maximum age ends with, and its token.
fn max_age_token(status: &Status) -> String {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(error_reason(status).as_deref(), Some("STREAM_MAX_AGE"));
    crate::resilience::token_of(status)
}

fn resume(token: String) -> Option<StartPosition> {
    crate::subscribe::start(start_position::Kind::ResumeToken(token))
}

/// Ten of twenty messages delivered, the first five acknowledged through
/// the mesh (which makes room for five more); at its age the stream ends,
/// and the token resumes (through the mesh, so on either replica) at the
/// oldest unacknowledged message.
async fn manual_max_age(env: Env) {
    let aging = aging_replica(&env).await;
    let other = env.gateway().await;
    let mesh = balanced(&[aging.address(), other.address()]);
    let (stream, topic) = crate::support::new_topic(&env, &other, 1).await;
    fill(&other, &stream, &topic, 1, 20, "m").await;
    let reader = env.unique("reader");
    let mut manual = request(&stream, &topic, named(&reader));
    manual.ack_mode = AckMode::Manual as i32;
    manual.batch_size = 5;
    manual.flow_control = Some(FlowControl {
        max_in_flight_messages: 10,
        max_in_flight_bytes: 0,
    });
    let opened = Instant::now();
    let mut subscription = Subscription::open(&mut aging.messaging(), manual.clone())
        .await
        .expect("subscribe on the aging replica");
    let delivered = subscription.take(10).await;
    assert_eq!(
        delivered.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    let mut acks = MessagingServiceClient::new(mesh.clone());
    acks.ack(proto::AckRequest {
        subscription_id: subscription.id.clone(),
        partition_id: 0,
        offset: 4,
        ..Default::default()
    })
    .await
    .expect("ack through the mesh");

    let (status, after) = until_end(&mut subscription).await;
    assert_eq!(
        after.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (10..15).collect::<Vec<_>>(),
        "the ack made room for five more, then the window was full"
    );
    assert!(
        opened.elapsed() >= MAX_AGE.mul_f64(0.9),
        "ended after {:?}",
        opened.elapsed()
    );
    let token = max_age_token(&status);

    manual.start = resume(token);
    let mut resumed = Subscription::open(&mut MessagingServiceClient::new(mesh), manual)
        .await
        .expect("resume through the mesh");
    let again = resumed.take(10).await;
    assert_eq!(
        again.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (5..15).collect::<Vec<_>>(),
        "the unacknowledged ten again; nothing acknowledged repeated"
    );
    let reader = Consumer::new(Identifier::named(&reader).expect("id"));
    assert_eq!(
        stored_offset(&env, &reader, &stream, &topic, 0).await,
        Some(4),
        "what was acknowledged"
    );
}

/// An auto-ack stream takes ten messages, ends at its age; ten more are
/// published, and the token resumes through the mesh at exactly the next.
async fn auto_max_age(env: Env) {
    let aging = aging_replica(&env).await;
    let other = env.gateway().await;
    let mesh = balanced(&[aging.address(), other.address()]);
    let (stream, topic) = crate::support::new_topic(&env, &other, 1).await;
    fill(&other, &stream, &topic, 1, 10, "a").await;
    let mut auto = request(&stream, &topic, named(&env.unique("reader")));
    let mut subscription = Subscription::open(&mut aging.messaging(), auto.clone())
        .await
        .expect("subscribe on the aging replica");
    let first = subscription.take(10).await;
    let (status, after) = until_end(&mut subscription).await;
    assert!(after.is_empty(), "{after:?}");
    let token = max_age_token(&status);
    fill(&other, &stream, &topic, 1, 10, "b").await;

    auto.start = resume(token);
    let mut resumed = Subscription::open(&mut MessagingServiceClient::new(mesh), auto)
        .await
        .expect("resume through the mesh");
    let rest = resumed.take(10).await;
    let offsets: Vec<u64> = first.iter().chain(&rest).map(|m| m.offset).collect();
    assert_eq!(offsets, (0..20).collect::<Vec<_>>(), "no repeat, no gap");
}

/// Two members of one group on two replicas share a topic's two
/// partitions. The member on the replica that is then killed (SIGKILL) had
/// acknowledged half of what it was delivered; the survivor takes its
/// partition and delivers exactly the unacknowledged rest, never what was
/// acknowledged.
async fn group_failover(env: Env) {
    let survivor = env.gateway().await;
    let doomed = GatewayProcess::start(&env.iggy.connection_string, &[]).await;
    let (stream, topic) = crate::support::new_topic(&env, &survivor, 2).await;
    let group = env.unique("group");
    let mut member = request(&stream, &topic, crate::subscribe::group(&group));
    member.create_group = true;
    member.ack_mode = AckMode::Manual as i32;
    member.batch_size = 5;
    member.flow_control = Some(FlowControl {
        max_in_flight_messages: 10,
        max_in_flight_bytes: 0,
    });
    let mut on_survivor = Subscription::open(&mut survivor.messaging(), member.clone())
        .await
        .expect("the first member");
    let mut on_doomed =
        Subscription::open(&mut MessagingServiceClient::new(doomed.channel()), member)
            .await
            .expect("the second member");
    assert_eq!(
        on_doomed.partitions.len(),
        1,
        "Iggy gave the second member one of the two partitions"
    );
    let lost = on_doomed.partitions[0];
    fill(&survivor, &stream, &topic, 2, 10, "g").await;

    // The doomed member: ten delivered, the first five acknowledged (through
    // the mesh, so by either replica).
    let mesh = MessagingServiceClient::new(balanced(&[survivor.address(), doomed.address]));
    let delivered = on_doomed.take(10).await;
    assert!(delivered.iter().all(|m| m.partition_id == lost));
    mesh.clone()
        .ack(proto::AckRequest {
            subscription_id: on_doomed.id.clone(),
            partition_id: lost,
            offset: 4,
            ..Default::default()
        })
        .await
        .expect("ack of the doomed member's first five");
    // The group's own offset holds the ack before the replica dies (a
    // replica that is not the holder leaves it in the ack mailbox, which
    // the member moves into the group's offset within moments).
    let group = Consumer::group(Identifier::named(&group).expect("id"));
    let group_offset = || stored_offset(&env, &group, &stream, &topic, lost);
    let mut stored = group_offset().await;
    for _ in 0..200 {
        if stored == Some(4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        stored = group_offset().await;
    }
    assert_eq!(stored, Some(4));
    doomed.kill().await;

    // The survivor reads its own partition, then the lost one from the ack
    // (acks now go to the survivor: a mesh stops sending to a dead replica
    // once its health checks fail).
    let mut acks = survivor.messaging();
    let mut from_lost = Vec::new();
    let mut own = 0;
    while from_lost.len() < 5 {
        match tokio::time::timeout(Duration::from_secs(30), on_survivor.next_event()).await {
            Ok(Event::Batch(batch)) => {
                for message in batch.messages {
                    if message.partition_id == lost {
                        from_lost.push(message.offset);
                    } else {
                        own += 1;
                        acks.ack(proto::AckRequest {
                            subscription_id: on_survivor.id.clone(),
                            partition_id: message.partition_id,
                            offset: message.offset,
                            ..Default::default()
                        })
                        .await
                        .expect("the survivor's own ack");
                    }
                }
            }
            Ok(Event::Heartbeat(_)) => {}
            Ok(other) => panic!("the survivor's stream ended: {other:?}"),
            Err(_) => panic!("the lost partition never came: {from_lost:?}"),
        }
    }
    assert_eq!(
        from_lost,
        vec![5, 6, 7, 8, 9],
        "the unacknowledged rest, once, in order"
    );
    assert!(own <= 10, "its own partition once: {own}");
}
