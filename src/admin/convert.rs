//! Conversions between Iggy's admin types and their protobuf forms.

use crate::validate;
use crate::{
    error::GatewayError,
    proto::{self, max_topic_size, message_expiry},
};
use iggy::prelude::{
    CompressionAlgorithm, ConsumerGroupDetails, IggyByteSize, IggyDuration, IggyExpiry,
    IggyTimestamp, MaxTopicSize, Partition, Stats, Stream, StreamDetails, Topic, TopicDetails,
};
use iggy_common::ConsumerOffsetInfo;
use std::time::{Duration, SystemTime};

/// Microseconds since the epoch as a protobuf timestamp.
pub fn timestamp(micros: u64) -> prost_types::Timestamp {
    let micros = i64::try_from(micros).unwrap_or(i64::MAX);
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

fn iggy_timestamp(value: IggyTimestamp) -> Option<prost_types::Timestamp> {
    Some(timestamp(value.as_micros()))
}

/// A std duration as a protobuf duration (saturating, never failing).
pub fn duration(value: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(value).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

/// A wall-clock time as a protobuf timestamp.
pub fn system_time(value: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(value)
}

/// The proto form of Iggy's `Stream` and `StreamDetails`, which share these
/// fields but are distinct types.
macro_rules! stream_proto {
    ($value:expr) => {
        proto::Stream {
            id: $value.id,
            name: $value.name.clone(),
            created_at: iggy_timestamp($value.created_at),
            size_bytes: $value.size.as_bytes_u64(),
            messages_count: $value.messages_count,
            topics_count: $value.topics_count,
        }
    };
}

/// The proto form of Iggy's `Topic` and `TopicDetails` (same fields, two types).
macro_rules! topic_proto {
    ($value:expr) => {
        proto::Topic {
            id: $value.id,
            name: $value.name.clone(),
            created_at: iggy_timestamp($value.created_at),
            size_bytes: $value.size.as_bytes_u64(),
            messages_count: $value.messages_count,
            partitions_count: $value.partitions_count,
            compression: compression_to_proto($value.compression_algorithm),
            message_expiry: Some(expiry_to_proto($value.message_expiry)),
            max_topic_size: Some(max_size_to_proto($value.max_topic_size)),
        }
    };
}

pub fn stream(value: &Stream) -> proto::Stream {
    stream_proto!(value)
}

pub fn stream_details(value: &StreamDetails) -> proto::StreamDetails {
    proto::StreamDetails {
        stream: Some(stream_proto!(value)),
        topics: value.topics.iter().map(topic).collect(),
    }
}

fn compression_to_proto(value: CompressionAlgorithm) -> i32 {
    match value {
        CompressionAlgorithm::None => proto::Compression::None as i32,
        CompressionAlgorithm::Gzip => proto::Compression::Gzip as i32,
    }
}

fn expiry_to_proto(value: IggyExpiry) -> proto::MessageExpiry {
    let kind = match value {
        IggyExpiry::ServerDefault => message_expiry::Kind::ServerDefault(()),
        IggyExpiry::NeverExpire => message_expiry::Kind::Never(()),
        IggyExpiry::ExpireDuration(after) => {
            message_expiry::Kind::After(duration(after.get_duration()))
        }
    };
    proto::MessageExpiry { kind: Some(kind) }
}

fn max_size_to_proto(value: MaxTopicSize) -> proto::MaxTopicSize {
    let kind = match value {
        MaxTopicSize::ServerDefault => max_topic_size::Kind::ServerDefault(()),
        MaxTopicSize::Unlimited => max_topic_size::Kind::Unlimited(()),
        MaxTopicSize::Custom(size) => max_topic_size::Kind::Bytes(size.as_bytes_u64()),
    };
    proto::MaxTopicSize { kind: Some(kind) }
}

pub fn topic(value: &Topic) -> proto::Topic {
    topic_proto!(value)
}

fn partition(value: &Partition) -> proto::Partition {
    proto::Partition {
        id: value.id,
        created_at: iggy_timestamp(value.created_at),
        segments_count: value.segments_count,
        current_offset: value.current_offset,
        size_bytes: value.size.as_bytes_u64(),
        messages_count: value.messages_count,
    }
}

pub fn topic_details(value: &TopicDetails) -> proto::TopicDetails {
    proto::TopicDetails {
        topic: Some(topic_proto!(value)),
        partitions: value.partitions.iter().map(partition).collect(),
    }
}

pub fn consumer_group(value: &iggy::prelude::ConsumerGroup) -> proto::ConsumerGroup {
    proto::ConsumerGroup {
        id: value.id,
        name: value.name.clone(),
        partitions_count: value.partitions_count,
        members_count: value.members_count,
    }
}

pub fn consumer_group_details(value: &ConsumerGroupDetails) -> proto::ConsumerGroupDetails {
    proto::ConsumerGroupDetails {
        group: Some(proto::ConsumerGroup {
            id: value.id,
            name: value.name.clone(),
            partitions_count: value.partitions_count,
            members_count: value.members_count,
        }),
        members: value
            .members
            .iter()
            .map(|member| proto::ConsumerGroupMember {
                id: member.id,
                partition_ids: member.partitions.clone(),
            })
            .collect(),
    }
}

pub fn consumer_offset(value: &ConsumerOffsetInfo) -> proto::ConsumerOffset {
    proto::ConsumerOffset {
        partition_id: value.partition_id,
        current_offset: value.current_offset,
        stored_offset: value.stored_offset,
    }
}

pub fn stats(value: &Stats, fetched_at: SystemTime) -> proto::GetStatsResponse {
    proto::GetStatsResponse {
        server_version: value.iggy_server_version.clone(),
        process_id: value.process_id,
        cpu_usage: value.cpu_usage,
        memory_usage_bytes: value.memory_usage.as_bytes_u64(),
        run_time: Some(duration(value.run_time.get_duration())),
        read_bytes: value.read_bytes.as_bytes_u64(),
        written_bytes: value.written_bytes.as_bytes_u64(),
        messages_size_bytes: value.messages_size_bytes.as_bytes_u64(),
        streams_count: value.streams_count,
        topics_count: value.topics_count,
        partitions_count: value.partitions_count,
        segments_count: value.segments_count,
        messages_count: value.messages_count,
        clients_count: value.clients_count,
        consumer_groups_count: value.consumer_groups_count,
        hostname: value.hostname.clone(),
        fetched_at: Some(system_time(fetched_at)),
        stale: false,
    }
}

/// The optional topic settings a create or update request carries.
pub struct TopicSettings {
    pub compression: Option<CompressionAlgorithm>,
    pub message_expiry: Option<IggyExpiry>,
    pub max_topic_size: Option<MaxTopicSize>,
}

impl TopicSettings {
    /// Validates the three settings fields of a request.
    pub fn parse(
        compression: i32,
        message_expiry: Option<&proto::MessageExpiry>,
        max_topic_size: Option<&proto::MaxTopicSize>,
    ) -> Result<Self, GatewayError> {
        Ok(Self {
            compression: compression_from_proto("compression", compression)?,
            message_expiry: expiry_from_proto("message_expiry", message_expiry)?,
            max_topic_size: max_size_from_proto("max_topic_size", max_topic_size)?,
        })
    }
}

/// The compression a request asks for; `None` when unspecified.
pub fn compression_from_proto(
    field: &str,
    value: i32,
) -> Result<Option<CompressionAlgorithm>, GatewayError> {
    match proto::Compression::try_from(value) {
        Ok(proto::Compression::Unspecified) => Ok(None),
        Ok(proto::Compression::None) => Ok(Some(CompressionAlgorithm::None)),
        Ok(proto::Compression::Gzip) => Ok(Some(CompressionAlgorithm::Gzip)),
        Err(_) => Err(GatewayError::invalid(
            field,
            format!("unknown compression {value}; use COMPRESSION_NONE or COMPRESSION_GZIP"),
        )),
    }
}

/// The expiry a request asks for; `None` when the field is unset.
pub fn expiry_from_proto(
    field: &str,
    value: Option<&proto::MessageExpiry>,
) -> Result<Option<IggyExpiry>, GatewayError> {
    let Some(expiry) = value else {
        return Ok(None);
    };
    let Some(kind) = expiry.kind.as_ref() else {
        return Err(GatewayError::invalid(
            field,
            "exactly one of server_default, never or after must be set (leave the field out for the server's default)",
        ));
    };
    let expiry = match kind {
        message_expiry::Kind::ServerDefault(()) => IggyExpiry::ServerDefault,
        message_expiry::Kind::Never(()) => IggyExpiry::NeverExpire,
        message_expiry::Kind::After(after) => {
            let after = validate::duration(&format!("{field}.after"), after)?;
            if after < Duration::from_secs(1) {
                return Err(GatewayError::invalid(
                    format!("{field}.after"),
                    "must be at least 1 second",
                ));
            }
            IggyExpiry::ExpireDuration(IggyDuration::from(after))
        }
    };
    Ok(Some(expiry))
}

/// The size limit a request asks for; `None` when the field is unset.
pub fn max_size_from_proto(
    field: &str,
    value: Option<&proto::MaxTopicSize>,
) -> Result<Option<MaxTopicSize>, GatewayError> {
    let Some(size) = value else {
        return Ok(None);
    };
    let Some(kind) = size.kind.as_ref() else {
        return Err(GatewayError::invalid(
            field,
            "exactly one of server_default, unlimited or bytes must be set (leave the field out for the server's default)",
        ));
    };
    let size = match kind {
        max_topic_size::Kind::ServerDefault(()) => MaxTopicSize::ServerDefault,
        max_topic_size::Kind::Unlimited(()) => MaxTopicSize::Unlimited,
        max_topic_size::Kind::Bytes(0) => {
            return Err(GatewayError::invalid(
                format!("{field}.bytes"),
                "must be greater than 0 (use `unlimited` for no limit)",
            ));
        }
        max_topic_size::Kind::Bytes(bytes) => MaxTopicSize::Custom(IggyByteSize::from(*bytes)),
    };
    Ok(Some(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_microseconds() {
        let ts = timestamp(1_700_000_000_123_456);
        assert_eq!(ts.seconds, 1_700_000_000);
        assert_eq!(ts.nanos, 123_456_000);
    }

    #[test]
    fn an_empty_oneof_is_refused_not_taken_as_unset() {
        let empty_expiry = proto::MessageExpiry { kind: None };
        assert!(expiry_from_proto("message_expiry", Some(&empty_expiry)).is_err());
        assert!(matches!(
            expiry_from_proto("message_expiry", None),
            Ok(None)
        ));
        let empty_size = proto::MaxTopicSize { kind: None };
        assert!(max_size_from_proto("max_topic_size", Some(&empty_size)).is_err());
        assert!(matches!(
            max_size_from_proto("max_topic_size", None),
            Ok(None)
        ));
        let bad_nanos = proto::MessageExpiry {
            kind: Some(message_expiry::Kind::After(prost_types::Duration {
                seconds: 5,
                nanos: 1_000_000_000,
            })),
        };
        match expiry_from_proto("message_expiry", Some(&bad_nanos)) {
            Err(GatewayError::InvalidArgument { field, .. }) => {
                assert_eq!(field, "message_expiry.after.nanos")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expiry_round_trips_and_rejects_sub_second() {
        let after = proto::MessageExpiry {
            kind: Some(message_expiry::Kind::After(duration(Duration::from_secs(
                60,
            )))),
        };
        let parsed = expiry_from_proto("message_expiry", Some(&after)).expect("valid");
        assert_eq!(
            parsed,
            Some(IggyExpiry::ExpireDuration(IggyDuration::from(
                Duration::from_secs(60)
            )))
        );
        let short = proto::MessageExpiry {
            kind: Some(message_expiry::Kind::After(duration(
                Duration::from_millis(10),
            ))),
        };
        assert!(expiry_from_proto("message_expiry", Some(&short)).is_err());
        assert_eq!(
            expiry_from_proto("message_expiry", None).expect("unset"),
            None
        );
    }

    #[test]
    fn unknown_compression_is_rejected() {
        assert!(compression_from_proto("compression", 42).is_err());
        assert_eq!(
            compression_from_proto("compression", 0).expect("unset"),
            None
        );
    }
}
