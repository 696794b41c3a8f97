//! Consume, the bidirectional stream: acks on the stream with a result for
//! each, credit-based flow control, and the reserved requests.

use crate::{
    subscribe::{fill, request},
    support::{Env, TestBody, TestGateway, error_reason, stored_offset},
};
use iggy::prelude::{Consumer, Identifier};
use iggy_grpc::proto::{
    self, AckMode, AckOutcome, ConsumeRequest, DeliveredMessage, FlowControl, consume_request,
    consume_response, consumer, subscribe_response,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        (
            "consume::acks_on_the_stream_free_room_and_each_gets_a_result",
            |env| Box::pin(acks(env)),
        ),
        ("consume::credit_limits_what_is_sent", |env| {
            Box::pin(credit(env))
        }),
        ("consume::the_first_request_must_be_start", |env| {
            Box::pin(first_request(env))
        }),
    ]
}

/// One thing the server sent after `Subscribed`.
#[derive(Debug)]
pub enum Received {
    Messages(Vec<DeliveredMessage>),
    Heartbeat,
    AckResult(proto::AckResult),
}

pub struct Consuming {
    requests: mpsc::Sender<ConsumeRequest>,
    responses: Streaming<proto::ConsumeResponse>,
    _gateway: Option<TestGateway>,
}

impl Consuming {
    async fn open(env: &Env, start: proto::ConsumeStart) -> Result<Self, tonic::Status> {
        let gateway = env.gateway().await;
        let mut consuming = Self::open_on(gateway.channel(), start).await?;
        consuming._gateway = Some(gateway);
        Ok(consuming)
    }

    /// Opens a Consume stream over `channel` and reads its `Subscribed`.
    pub async fn open_on(
        channel: tonic::transport::Channel,
        start: proto::ConsumeStart,
    ) -> Result<Self, tonic::Status> {
        let (requests, receiver) = mpsc::channel(16);
        requests
            .send(ConsumeRequest {
                kind: Some(consume_request::Kind::Start(start)),
            })
            .await
            .expect("queue start");
        let mut responses = proto::messaging_service_client::MessagingServiceClient::new(channel)
            .consume(ReceiverStream::new(receiver))
            .await?
            .into_inner();
        match responses.message().await? {
            Some(proto::ConsumeResponse {
                kind:
                    Some(consume_response::Kind::Delivery(proto::SubscribeResponse {
                        kind: Some(subscribe_response::Kind::Subscribed(_)),
                    })),
            }) => Ok(Self {
                requests,
                responses,
                _gateway: None,
            }),
            other => panic!("expected Subscribed first, got {other:?}"),
        }
    }

    pub async fn send(&self, kind: consume_request::Kind) {
        self.requests
            .send(ConsumeRequest { kind: Some(kind) })
            .await
            .expect("send a request");
    }

    pub async fn next(&mut self) -> Received {
        let response = self
            .responses
            .message()
            .await
            .expect("the stream goes on")
            .expect("not closed");
        match response.kind {
            Some(consume_response::Kind::Delivery(proto::SubscribeResponse {
                kind: Some(subscribe_response::Kind::Batch(batch)),
            })) => Received::Messages(batch.messages),
            Some(consume_response::Kind::Delivery(proto::SubscribeResponse {
                kind: Some(subscribe_response::Kind::Heartbeat(_)),
            })) => Received::Heartbeat,
            Some(consume_response::Kind::AckResult(result)) => Received::AckResult(result),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Messages until `count` came, skipping heartbeats; panics on a result.
    pub async fn messages(&mut self, count: usize) -> Vec<DeliveredMessage> {
        let mut messages = Vec::new();
        while messages.len() < count {
            match self.next().await {
                Received::Messages(batch) => messages.extend(batch),
                Received::Heartbeat => {}
                other => panic!("expected messages, got {other:?}"),
            }
        }
        messages
    }

    /// The next ack result, skipping heartbeats; panics on messages.
    pub async fn ack_result(&mut self) -> proto::AckResult {
        loop {
            match self.next().await {
                Received::AckResult(result) => return result,
                Received::Heartbeat => {}
                other => panic!("expected an ack result, got {other:?}"),
            }
        }
    }
}

pub fn ack(offset: u64) -> consume_request::Kind {
    consume_request::Kind::Ack(proto::ConsumeAck {
        partition_id: 0,
        offset,
    })
}

fn one_second() -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: 1,
        nanos: 0,
    })
}

/// A manual-ack window of five, acked on the stream: delivery goes on past
/// it, every ack answers, and what Iggy stores is the last ack.
async fn acks(env: Env) {
    let setup = env.gateway().await;
    let (stream, topic) = crate::support::new_topic(&env, &setup, 1).await;
    fill(&setup, &stream, &topic, 1, 12, "m").await;
    let reader = env.unique("reader");
    let mut subscription = request(
        &stream,
        &topic,
        Some(proto::Consumer {
            kind: Some(consumer::Kind::Name(reader.clone())),
        }),
    );
    subscription.ack_mode = AckMode::Manual as i32;
    subscription.batch_size = 5;
    subscription.flow_control = Some(FlowControl {
        max_in_flight_messages: 5,
        max_in_flight_bytes: 0,
    });
    let mut consuming = Consuming::open(
        &env,
        proto::ConsumeStart {
            subscription: Some(subscription),
            initial_credit: None,
        },
    )
    .await
    .expect("consume");

    let mut received = Vec::new();
    while received.len() < 12 {
        let batch = consuming.messages(1).await;
        let last = batch.last().map(|m| m.offset).expect("a message");
        received.extend(batch.iter().map(|m| m.offset));
        consuming.send(ack(last)).await;
        let result = consuming.ack_result().await;
        assert_eq!(
            (result.partition_id, result.offset, result.outcome()),
            (0, last, AckOutcome::Ok),
            "{result:?}"
        );
    }
    assert_eq!(received, (0..12).collect::<Vec<u64>>());

    consuming.send(ack(100)).await;
    let never = consuming.ack_result().await;
    assert_eq!(never.outcome(), AckOutcome::NotDelivered, "{never:?}");
    assert_eq!(never.reason, "OFFSET_NOT_DELIVERED");
    consuming
        .send(consume_request::Kind::Nack(proto::ConsumeNack {
            partition_id: 0,
            offset: 3,
            delay: None,
            reason: "try later".into(),
        }))
        .await;
    let nack = consuming.ack_result().await;
    assert_eq!(
        (nack.offset, nack.outcome()),
        (3, AckOutcome::Unsupported),
        "{nack:?}"
    );

    let reader = Consumer::new(Identifier::named(&reader).expect("id"));
    assert_eq!(
        stored_offset(&env, &reader, &stream, &topic, 0).await,
        Some(11)
    );
}

/// With three messages of credit the stream sends three and waits (its
/// heartbeats go on); a grant of seven sends seven more.
async fn credit(env: Env) {
    let setup = env.gateway().await;
    let (stream, topic) = crate::support::new_topic(&env, &setup, 1).await;
    fill(&setup, &stream, &topic, 1, 20, "m").await;
    let mut subscription = request(
        &stream,
        &topic,
        Some(proto::Consumer {
            kind: Some(consumer::Kind::Name(env.unique("reader"))),
        }),
    );
    subscription.ack_mode = AckMode::None as i32;
    subscription.heartbeat_interval = one_second();
    let mut consuming = Consuming::open(
        &env,
        proto::ConsumeStart {
            subscription: Some(subscription),
            initial_credit: Some(proto::Credit {
                messages: 3,
                bytes: 0,
            }),
        },
    )
    .await
    .expect("consume");
    let first = consuming.messages(3).await;
    assert_eq!(first.len(), 3, "no more than the credit");
    assert!(
        matches!(consuming.next().await, Received::Heartbeat),
        "out of credit, the stream waits"
    );
    consuming
        .send(consume_request::Kind::Credit(proto::Credit {
            messages: 7,
            bytes: 0,
        }))
        .await;
    let more = consuming.messages(7).await;
    assert_eq!(more.len(), 7, "no more than the grant");
    assert_eq!(
        more.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (3..10).collect::<Vec<u64>>()
    );
    assert!(matches!(consuming.next().await, Received::Heartbeat));
}

/// A Consume stream that starts with anything but `start` is refused.
async fn first_request(env: Env) {
    let gateway = env.gateway().await;
    let (requests, receiver) = mpsc::channel(1);
    requests
        .send(ConsumeRequest { kind: Some(ack(0)) })
        .await
        .expect("queue");
    let status = gateway
        .messaging()
        .consume(ReceiverStream::new(receiver))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(error_reason(&status).as_deref(), Some("INVALID_ARGUMENT"));
}
