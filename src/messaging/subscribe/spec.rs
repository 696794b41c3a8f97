//! What a Subscribe or Poll request asks for, validated.

use crate::{
    error::GatewayError,
    proto::{self, start_position::Kind},
    validate,
};
use iggy::prelude::{Consumer, ConsumerKind, Identifier};
use std::time::Duration;

/// Where reading starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// This offset in every partition.
    Offset(u64),
    /// The first message at or after this time (microseconds since the epoch).
    Timestamp(u64),
    /// The oldest retained message.
    First,
    /// The newest message.
    Last,
    /// After the consumer's stored offset.
    Next,
    /// Where an earlier token says.
    Resume(String),
}

/// When offsets are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// After each batch is handed to the transport.
    Auto,
    /// Only by the Ack RPC.
    Manual,
    /// Never.
    None,
}

/// Bounds and defaults for subscriptions, from the configuration.
#[derive(Debug, Clone)]
pub struct SubscribeLimits {
    /// Messages per poll when the request says 0.
    pub default_batch_size: u32,
    /// Most messages per poll.
    pub max_batch_size: u32,
    /// Unacknowledged messages allowed when the request says 0.
    pub default_max_in_flight_messages: u32,
    /// Unacknowledged payload bytes allowed when the request says 0.
    pub default_max_in_flight_bytes: u64,
    /// Heartbeat interval when the request sets none.
    pub default_heartbeat: Duration,
    /// Shortest heartbeat interval a request may ask for.
    pub min_heartbeat: Duration,
    /// Longest heartbeat interval a request may ask for.
    pub max_heartbeat: Duration,
    /// Longest pause between polls of an idle subscription.
    pub max_idle_backoff: Duration,
    /// Batches buffered per stream before polling stops.
    pub buffered_batches: usize,
    /// Most concurrent subscriptions.
    pub max_subscriptions: usize,
    /// Most concurrent consumer-group members and manual-ack subscriptions
    /// (each holds an Iggy connection of its own), within
    /// `max_subscriptions`.
    pub max_group_members: usize,
    /// Iggy connections shared by the named consumers' reads and the topic
    /// watchers (the subscription pool).
    pub read_connections: usize,
    /// Most subscriptions opening their Iggy connection at once: Iggy queues
    /// only so many logins, and a burst past it made logins fail and the
    /// pool's connections look lost.
    pub max_opening: usize,
    /// How long a Subscribe waits for its turn to open before it is refused
    /// with RESOURCE_EXHAUSTED and a RetryInfo.
    pub opening_wait: Duration,
}

impl Default for SubscribeLimits {
    fn default() -> Self {
        Self {
            default_batch_size: 100,
            max_batch_size: 10_000,
            default_max_in_flight_messages: 1_000,
            default_max_in_flight_bytes: 64 * 1024 * 1024,
            default_heartbeat: Duration::from_secs(15),
            min_heartbeat: Duration::from_secs(1),
            max_heartbeat: Duration::from_secs(300),
            max_idle_backoff: Duration::from_millis(50),
            buffered_batches: 4,
            max_subscriptions: 10_000,
            max_group_members: 1_000,
            read_connections: 8,
            max_opening: 8,
            opening_wait: Duration::from_secs(10),
        }
    }
}

/// A validated subscription or poll.
#[derive(Debug, Clone)]
pub struct Spec {
    pub stream: Identifier,
    pub topic: Identifier,
    pub partition: Option<u32>,
    pub consumer: Consumer,
    pub create_group: bool,
    pub start: Start,
    pub ack_mode: AckMode,
    pub batch_size: u32,
    pub max_in_flight_messages: u32,
    pub max_in_flight_bytes: u64,
    pub heartbeat: Duration,
    /// Whether the stream delivers again (`redelivery`), which routes its
    /// acks through its retry topic.
    pub redelivery: bool,
}

impl Spec {
    /// True for a consumer-group member.
    pub fn is_group(&self) -> bool {
        self.consumer.kind == ConsumerKind::ConsumerGroup
    }

    /// True when the subscription holds an Iggy connection of its own: a
    /// group member (Iggy ties membership to it), and a manual-ack named
    /// consumer (whose acks other replicas take while it is open).
    pub fn holds_connection(&self) -> bool {
        self.is_group() || self.ack_mode == AckMode::Manual
    }

    /// Validates a Subscribe request.
    pub fn subscribe(
        request: &proto::SubscribeRequest,
        limits: &SubscribeLimits,
    ) -> Result<Self, GatewayError> {
        let mut spec = Self::common(
            Common {
                stream: request.stream.as_ref(),
                topic: request.topic.as_ref(),
                partition: request.partition_id,
                consumer: request.consumer.as_ref(),
                start: request.start.as_ref(),
                ack_mode: request.ack_mode,
                batch_size: request.batch_size,
            },
            limits,
        )?;
        spec.create_group = request.create_group;
        spec.redelivery = request.redelivery.is_some();
        let flow = request.flow_control.unwrap_or_default();
        spec.max_in_flight_messages = if flow.max_in_flight_messages == 0 {
            limits.default_max_in_flight_messages
        } else {
            flow.max_in_flight_messages
        };
        spec.max_in_flight_bytes = if flow.max_in_flight_bytes == 0 {
            limits.default_max_in_flight_bytes
        } else {
            flow.max_in_flight_bytes
        };
        if let Some(interval) = request.heartbeat_interval {
            let interval = validate::duration("heartbeat_interval", &interval)?;
            if interval < limits.min_heartbeat || interval > limits.max_heartbeat {
                return Err(GatewayError::invalid(
                    "heartbeat_interval",
                    format!(
                        "must be between {:?} and {:?}, got {interval:?}",
                        limits.min_heartbeat, limits.max_heartbeat
                    ),
                ));
            }
            spec.heartbeat = interval;
        }
        Ok(spec)
    }

    /// Validates a Poll request.
    pub fn poll(
        request: &proto::PollRequest,
        limits: &SubscribeLimits,
    ) -> Result<Self, GatewayError> {
        Self::common(
            Common {
                stream: request.stream.as_ref(),
                topic: request.topic.as_ref(),
                partition: request.partition_id,
                consumer: request.consumer.as_ref(),
                start: request.start.as_ref(),
                ack_mode: request.ack_mode,
                batch_size: request.batch_size,
            },
            limits,
        )
    }

    fn common(fields: Common<'_>, limits: &SubscribeLimits) -> Result<Self, GatewayError> {
        let consumer = validate::consumer("consumer", fields.consumer)?;
        if consumer.kind == ConsumerKind::ConsumerGroup && fields.partition.is_some() {
            return Err(GatewayError::invalid(
                "partition_id",
                "cannot be combined with a consumer group: Iggy assigns the group's partitions",
            ));
        }
        let ack_mode = match proto::AckMode::try_from(fields.ack_mode) {
            Ok(proto::AckMode::Unspecified | proto::AckMode::Auto) => AckMode::Auto,
            Ok(proto::AckMode::Manual) => AckMode::Manual,
            Ok(proto::AckMode::None) => AckMode::None,
            Err(_) => {
                return Err(GatewayError::invalid(
                    "ack_mode",
                    format!("unknown ack mode {}", fields.ack_mode),
                ));
            }
        };
        let batch_size = match fields.batch_size {
            0 => limits.default_batch_size,
            size if size > limits.max_batch_size => {
                return Err(GatewayError::invalid(
                    "batch_size",
                    format!("must be at most {}, got {size}", limits.max_batch_size),
                ));
            }
            size => size,
        };
        let start = match fields.start.and_then(|start| start.kind.as_ref()) {
            None | Some(Kind::Next(())) => Start::Next,
            Some(Kind::Offset(offset)) => Start::Offset(*offset),
            Some(Kind::TimestampMicros(micros)) => Start::Timestamp(*micros),
            Some(Kind::First(())) => Start::First,
            Some(Kind::Last(())) => Start::Last,
            Some(Kind::ResumeToken(token)) if token.is_empty() => {
                return Err(GatewayError::invalid(
                    "start.resume_token",
                    "must not be empty",
                ));
            }
            Some(Kind::ResumeToken(token)) => Start::Resume(token.clone()),
        };
        Ok(Self {
            stream: validate::resource_id("stream", fields.stream)?,
            topic: validate::resource_id("topic", fields.topic)?,
            partition: fields.partition,
            consumer,
            create_group: false,
            redelivery: false,
            start,
            ack_mode,
            batch_size,
            max_in_flight_messages: limits.default_max_in_flight_messages,
            max_in_flight_bytes: limits.default_max_in_flight_bytes,
            heartbeat: limits.default_heartbeat,
        })
    }
}

struct Common<'a> {
    stream: Option<&'a proto::ResourceId>,
    topic: Option<&'a proto::ResourceId>,
    partition: Option<u32>,
    consumer: Option<&'a proto::Consumer>,
    start: Option<&'a proto::StartPosition>,
    ack_mode: i32,
    batch_size: u32,
}
