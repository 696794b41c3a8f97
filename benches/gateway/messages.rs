//! What the workloads send: 1 KiB messages stamped with their send time, in
//! batches of 1,000, and the names they send them to.

use bytes::Bytes;
use iggy::prelude::{
    Identifier, IggyClient, IggyMessage, StreamClient, TopicClient, TopicCreateOptions,
};
use iggy_grpc::proto::{self, BatchMessage, ResourceId, partitioning, resource_id};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bytes per message payload.
pub const PAYLOAD: usize = 1024;
/// Messages per batch.
pub const BATCH: usize = 1000;

/// An Iggy identifier by name.
pub fn id(name: &str) -> Identifier {
    Identifier::named(name).expect("identifier")
}

/// A gateway resource id by name.
pub fn rid(name: &str) -> Option<ResourceId> {
    Some(ResourceId {
        kind: Some(resource_id::Kind::Name(name.into())),
    })
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A payload of `PAYLOAD` bytes starting with the send time.
pub fn payload() -> Bytes {
    let mut bytes = vec![b'x'; PAYLOAD];
    bytes[..8].copy_from_slice(&now_micros().to_le_bytes());
    Bytes::from(bytes)
}

/// How long ago a [`payload`] was made, as of `now` (microseconds since the
/// epoch).
pub fn age(payload: &[u8], now: u64) -> Duration {
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&payload[..8]);
    Duration::from_micros(now.saturating_sub(u64::from_le_bytes(sent)))
}

/// A 1 KiB message for the SDK paths.
pub fn sdk_message() -> IggyMessage {
    IggyMessage::builder()
        .payload(payload())
        .build()
        .expect("message")
}

/// The same 1 KiB message for the gateway path.
pub fn grpc_message() -> Option<proto::Message> {
    Some(proto::Message {
        id: String::new(),
        payload: payload(),
        headers: Default::default(),
    })
}

/// A batch of `BATCH` messages for one partition.
pub fn batch_request(stream: &str, topic: &str, partition: u32) -> proto::PublishBatchRequest {
    proto::PublishBatchRequest {
        stream: rid(stream),
        topic: rid(topic),
        partitioning: Some(proto::Partitioning {
            kind: Some(partitioning::Kind::PartitionId(partition)),
        }),
        messages: (0..BATCH)
            .map(|_| BatchMessage {
                message: grpc_message(),
                partitioning: None,
            })
            .collect(),
        idempotent: false,
    }
}

/// The same batch published idempotently: every message carries a fresh id.
pub fn idempotent_batch_request(
    stream: &str,
    topic: &str,
    partition: u32,
) -> proto::PublishBatchRequest {
    let mut request = batch_request(stream, topic, partition);
    request.idempotent = true;
    for entry in &mut request.messages {
        if let Some(message) = entry.message.as_mut() {
            message.id = uuid::Uuid::new_v4().to_string();
        }
    }
    request
}

/// Creates `stream` if needed and `topic` in it with `partitions`.
pub async fn create_topic(client: &IggyClient, stream: &str, topic: &str, partitions: u32) {
    let _ = client.create_stream(stream).await;
    client
        .create_topic(
            &id(stream),
            topic,
            &TopicCreateOptions {
                partitions_count: Some(partitions),
                ..Default::default()
            },
        )
        .await
        .expect("create topic");
}
