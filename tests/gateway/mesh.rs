//! Three replicas on one Iggy behind a client that balances every call
//! (tonic's balancer over their addresses, a service name as `:authority`),
//! as a service mesh runs them: manual acks that land anywhere, Consume,
//! and delivery of messages published through any replica or by a native
//! Iggy client to subscribers held by every replica.

use crate::{
    consume::{Consuming, ack},
    subscribe::{fill, named, request},
    support::{Env, Subscription, TestBody, TestGateway, balanced, sdk_client, stored_offset},
};
use bytes::Bytes;
use iggy::prelude::{Consumer, Identifier, IggyMessage, MessageClient, Partitioning};
use iggy_grpc::proto::{
    self, AckMode, AckOutcome, FlowControl, messaging_service_client::MessagingServiceClient,
    partitioning,
};
use tonic::transport::Channel;

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        (
            "mesh::a_manual_subscriber_whose_acks_land_on_any_of_three_replicas_reads_past_its_window",
            |env| Box::pin(manual_acks(env)),
        ),
        (
            "mesh::consume_through_the_balancer_acknowledges_on_its_stream",
            |env| Box::pin(consume(env)),
        ),
        (
            "mesh::messages_from_any_replica_or_a_native_producer_reach_subscribers_on_every_replica",
            |env| Box::pin(delivery(env)),
        ),
    ]
}

/// Three replicas and a balanced channel over them.
async fn three(env: &Env) -> ([TestGateway; 3], Channel) {
    let replicas = [
        env.gateway().await,
        env.gateway().await,
        env.gateway().await,
    ];
    let mesh = balanced(&replicas.each_ref().map(TestGateway::address));
    (replicas, mesh)
}

const MESSAGES: u64 = 30;
const WINDOW: u32 = 5;

/// Subscribe through the balancer (so on any replica) with a window of
/// five; each delivered message is acknowledged through the balancer.
/// Everything arrives once, in order, and Iggy holds the last ack.
async fn manual_acks(env: Env) {
    let (replicas, mesh) = three(&env).await;
    let (stream, topic) = crate::support::new_topic(&env, &replicas[0], 1).await;
    fill(&replicas[0], &stream, &topic, 1, MESSAGES as u32, "m").await;
    let reader = env.unique("reader");
    let mut manual = request(&stream, &topic, named(&reader));
    manual.ack_mode = AckMode::Manual as i32;
    manual.batch_size = 2;
    manual.flow_control = Some(FlowControl {
        max_in_flight_messages: WINDOW,
        max_in_flight_bytes: 0,
    });
    let mut client = MessagingServiceClient::new(mesh.clone());
    let mut subscription = Subscription::open(&mut client, manual)
        .await
        .expect("subscribe through the balancer");
    let mut next = 0;
    while next < MESSAGES {
        for message in subscription.take(1).await {
            assert_eq!(message.offset, next, "once, in order");
            next += 1;
            client
                .ack(proto::AckRequest {
                    subscription_id: subscription.id.clone(),
                    partition_id: 0,
                    offset: message.offset,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|status| panic!("ack {}: {status:?}", message.offset));
        }
    }
    let reader = Consumer::new(Identifier::named(&reader).expect("id"));
    assert_eq!(
        stored_offset(&env, &reader, &stream, &topic, 0).await,
        Some(MESSAGES - 1)
    );
}

/// Consume through the balancer: the stream stays on the replica it
/// reached, its acks go with it, and each is answered OK.
async fn consume(env: Env) {
    let (replicas, mesh) = three(&env).await;
    let (stream, topic) = crate::support::new_topic(&env, &replicas[1], 1).await;
    fill(&replicas[1], &stream, &topic, 1, 12, "c").await;
    let mut subscription = request(&stream, &topic, named(&env.unique("reader")));
    subscription.ack_mode = AckMode::Manual as i32;
    subscription.batch_size = 4;
    subscription.flow_control = Some(FlowControl {
        max_in_flight_messages: 4,
        max_in_flight_bytes: 0,
    });
    let mut consuming = Consuming::open_on(
        mesh,
        proto::ConsumeStart {
            subscription: Some(subscription),
            initial_credit: None,
        },
    )
    .await
    .expect("consume through the balancer");
    let mut offsets = Vec::new();
    while offsets.len() < 12 {
        let batch = consuming.messages(4).await;
        let last = batch.last().map(|m| m.offset).expect("a batch");
        offsets.extend(batch.iter().map(|m| m.offset));
        consuming.send(ack(last)).await;
        let result = consuming.ack_result().await;
        assert_eq!((result.offset, result.outcome()), (last, AckOutcome::Ok));
    }
    assert_eq!(offsets, (0..12).collect::<Vec<_>>());
}

/// One idle subscriber held by each replica; messages published one at a
/// time through the balancer, then by the Iggy SDK directly, reach all
/// three, in order.
async fn delivery(env: Env) {
    let (replicas, mesh) = three(&env).await;
    let (stream, topic) = crate::support::new_topic(&env, &replicas[2], 1).await;
    let mut subscribers = Vec::new();
    for (index, replica) in replicas.iter().enumerate() {
        let who = named(&env.unique(&format!("idle-{index}")));
        subscribers.push(
            Subscription::open(&mut replica.messaging(), request(&stream, &topic, who))
                .await
                .expect("an idle subscriber"),
        );
    }
    let mut publisher = MessagingServiceClient::new(mesh);
    let iggy = sdk_client(&env.iggy.connection_string).await;
    for index in 0..10u64 {
        let payload = Bytes::from(format!("p-{index}"));
        if index < 5 {
            publisher
                .publish(proto::PublishRequest {
                    stream: crate::support::by_name(&stream),
                    topic: crate::support::by_name(&topic),
                    partitioning: Some(proto::Partitioning {
                        kind: Some(partitioning::Kind::PartitionId(0)),
                    }),
                    message: Some(proto::Message {
                        id: String::new(),
                        payload: payload.clone(),
                        headers: Default::default(),
                    }),
                    idempotent: false,
                })
                .await
                .expect("publish through the balancer");
        } else {
            iggy.send_messages(
                &Identifier::named(&stream).expect("id"),
                &Identifier::named(&topic).expect("id"),
                &Partitioning::partition_id(0),
                &mut [IggyMessage::builder()
                    .payload(payload.clone())
                    .build()
                    .expect("message")],
            )
            .await
            .expect("send as a native producer");
        }
        // Each subscriber receives it before the next is sent.
        for subscriber in &mut subscribers {
            let received = subscriber.take(1).await;
            assert_eq!(
                received
                    .iter()
                    .map(|m| (m.offset, &m.payload))
                    .collect::<Vec<_>>(),
                vec![(index, &payload)]
            );
        }
    }
}
