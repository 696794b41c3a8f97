//! Several gateway replicas on one Iggy, as users run them behind a mesh
//! that balances every call on its own: a manual-ack subscriber held by one
//! replica acknowledges through another, by subscription id or by names.

use crate::{
    subscribe::{fill, request},
    support::{Env, Subscription, TestBody, by_name, error_reason, expect_code},
};
use iggy::prelude::{Consumer, Identifier};
use iggy_grpc::proto::{self, AckMode, FlowControl, consumer};
use tonic::Code;

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        (
            "replicas::acks_by_id_through_another_replica_free_a_named_consumers_window",
            |env| Box::pin(acks_elsewhere(env, false, AckBy::Id)),
        ),
        (
            "replicas::acks_by_id_through_another_replica_free_a_group_members_window",
            |env| Box::pin(acks_elsewhere(env, true, AckBy::Id)),
        ),
        (
            "replicas::acks_by_name_through_another_replica_free_a_named_consumers_window",
            |env| Box::pin(acks_elsewhere(env, false, AckBy::Names)),
        ),
        (
            "replicas::acks_by_name_through_another_replica_free_a_group_members_window",
            |env| Box::pin(acks_elsewhere(env, true, AckBy::Names)),
        ),
    ]
}

/// How the acks name what they acknowledge.
#[derive(Clone, Copy, PartialEq)]
enum AckBy {
    /// The subscription id of the `Subscribed` response.
    Id,
    /// Stream, topic and consumer, as a client that keeps no id would.
    Names,
}

/// Messages published; five times the in-flight window.
const MESSAGES: u32 = 25;
const WINDOW: u32 = 5;

/// Replica A holds a manual-ack stream with a window of five; every ack goes
/// to replica B. Delivery goes on past the window, the stored offset is the
/// last one acknowledged, B refuses what was not delivered; once the
/// stream ends B answers SUBSCRIPTION_NOT_FOUND, for a named consumer as
/// for a group member.
async fn acks_elsewhere(env: Env, as_group: bool, by: AckBy) {
    let holder = env.gateway().await;
    let other = env.gateway().await;
    let (stream, topic) = crate::support::new_topic(&env, &holder, 1).await;
    fill(&holder, &stream, &topic, 1, MESSAGES, "m").await;
    let name = env.unique(if as_group { "group" } else { "reader" });
    let who = proto::Consumer {
        kind: Some(if as_group {
            consumer::Kind::Group(name.clone())
        } else {
            consumer::Kind::Name(name.clone())
        }),
    };
    let mut manual = request(&stream, &topic, Some(who.clone()));
    manual.create_group = as_group;
    manual.ack_mode = AckMode::Manual as i32;
    manual.batch_size = WINDOW;
    manual.flow_control = Some(FlowControl {
        max_in_flight_messages: WINDOW,
        max_in_flight_bytes: 0,
    });
    let mut subscription = Subscription::open(&mut holder.messaging(), manual)
        .await
        .expect("subscribe on the holding replica");
    let mut acks = other.messaging();
    let ack = |offset: u64, id: &str| match by {
        AckBy::Id => proto::AckRequest {
            subscription_id: id.to_owned(),
            partition_id: 0,
            offset,
            ..Default::default()
        },
        AckBy::Names => proto::AckRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            consumer: Some(who.clone()),
            partition_id: 0,
            offset,
            ..Default::default()
        },
    };

    let mut next = 0u64;
    while next < u64::from(MESSAGES) {
        let batch = subscription.take(1).await;
        let offsets: Vec<u64> = batch.iter().map(|m| m.offset).collect();
        let expected: Vec<u64> = (next..next + offsets.len() as u64).collect();
        assert_eq!(offsets, expected, "in order, nothing repeated or skipped");
        next += offsets.len() as u64;
        if by == AckBy::Id && next < u64::from(MESSAGES) {
            // Stored in the log, not delivered yet: refused there too.
            let ahead = expect_code(
                acks.ack(ack(next, &subscription.id)).await,
                Code::FailedPrecondition,
            );
            assert_eq!(
                error_reason(&ahead).as_deref(),
                Some("OFFSET_NOT_DELIVERED")
            );
        }
        acks.ack(ack(next - 1, &subscription.id))
            .await
            .unwrap_or_else(|status| panic!("ack {} on the other replica: {status:?}", next - 1));
    }

    let beyond = expect_code(
        acks.ack(ack(u64::from(MESSAGES) + 10, &subscription.id))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(
        error_reason(&beyond).as_deref(),
        Some("OFFSET_NOT_DELIVERED")
    );

    // What Iggy holds is what was acknowledged: read as any client may.
    let consumer = if as_group {
        Consumer::group(Identifier::named(&name).expect("id"))
    } else {
        Consumer::new(Identifier::named(&name).expect("id"))
    };
    // A group's own offset is stored by the member holding the partition
    // (only a member may store it), within moments of the ack.
    let stored_offset = || crate::support::stored_offset(&env, &consumer, &stream, &topic, 0);
    let mut stored = stored_offset().await;
    for _ in 0..200 {
        if stored == Some(u64::from(MESSAGES) - 1) || !as_group {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        stored = stored_offset().await;
    }
    assert_eq!(stored, Some(u64::from(MESSAGES) - 1));

    if by == AckBy::Names {
        return;
    }
    let id = subscription.id.clone();
    drop(subscription);
    // The stream ends; the other replica learns it from Iggy, which drops
    // the subscription's own connection (a member's, or a named consumer's
    // presence) once the holding replica closes it.
    let mut attempts = 0;
    let ended = loop {
        match acks.ack(ack(0, &id)).await {
            Err(status) if status.code() == Code::NotFound => break status,
            _ if attempts < 200 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            other => panic!("an ack of an ended subscription answered {other:?}"),
        }
    };
    assert_eq!(
        error_reason(&ended).as_deref(),
        Some("SUBSCRIPTION_NOT_FOUND")
    );
    // The replica that held it says the same.
    let on_holder = expect_code(
        holder
            .messaging()
            .ack(ack(u64::from(MESSAGES) - 1, &id))
            .await,
        Code::NotFound,
    );
    assert_eq!(
        error_reason(&on_holder).as_deref(),
        Some("SUBSCRIPTION_NOT_FOUND")
    );
}
