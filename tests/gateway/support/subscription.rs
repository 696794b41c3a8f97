//! Reading a Subscribe stream in tests.

use iggy_grpc::proto::{
    self, DeliveredMessage, messaging_service_client::MessagingServiceClient,
    subscribe_response::Kind,
};
use tonic::{Status, Streaming, transport::Channel};

/// One thing a subscription stream yields after `Subscribed`.
#[derive(Debug)]
pub enum Event {
    Batch(proto::MessageBatch),
    Heartbeat(proto::Heartbeat),
    Ended(#[allow(dead_code)] Status),
    Closed,
}

/// An open Subscribe stream.
pub struct Subscription {
    pub id: String,
    pub partitions: Vec<u32>,
    pub last_token: Option<String>,
    stream: Streaming<proto::SubscribeResponse>,
}

impl Subscription {
    /// Subscribes and reads the `Subscribed` response.
    pub async fn open(
        client: &mut MessagingServiceClient<Channel>,
        request: proto::SubscribeRequest,
    ) -> Result<Self, Status> {
        let mut stream = client.subscribe(request).await?.into_inner();
        match stream.message().await? {
            Some(proto::SubscribeResponse {
                kind: Some(Kind::Subscribed(subscribed)),
            }) => Ok(Self {
                id: subscribed.subscription_id,
                partitions: subscribed.partition_ids,
                last_token: None,
                stream,
            }),
            other => panic!("expected Subscribed first, got {other:?}"),
        }
    }

    /// The next batch, heartbeat or end of the stream.
    pub async fn next_event(&mut self) -> Event {
        match self.stream.message().await {
            Ok(Some(proto::SubscribeResponse {
                kind: Some(Kind::Batch(batch)),
            })) => {
                self.last_token = Some(batch.resume_token.clone());
                Event::Batch(batch)
            }
            Ok(Some(proto::SubscribeResponse {
                kind: Some(Kind::Heartbeat(heartbeat)),
            })) => {
                self.last_token = Some(heartbeat.resume_token.clone());
                Event::Heartbeat(heartbeat)
            }
            Ok(Some(other)) => panic!("unexpected response {other:?}"),
            Ok(None) => Event::Closed,
            Err(status) => Event::Ended(status),
        }
    }

    /// Reads batches until at least `count` messages came; heartbeats are
    /// skipped. Panics if the stream ends first.
    pub async fn take(&mut self, count: usize) -> Vec<DeliveredMessage> {
        let mut messages = Vec::new();
        while messages.len() < count {
            match self.next_event().await {
                Event::Batch(batch) => messages.extend(batch.messages),
                Event::Heartbeat(_) => {}
                other => panic!(
                    "stream ended after {} of {count} messages: {other:?}",
                    messages.len()
                ),
            }
        }
        messages
    }

    /// The next event that is not a batch of messages; panics on a batch.
    pub async fn next_quiet_event(&mut self) -> Event {
        match self.next_event().await {
            Event::Batch(batch) => panic!("expected no messages, got {batch:?}"),
            other => other,
        }
    }
}
