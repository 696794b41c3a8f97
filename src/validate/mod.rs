//! Checks on request fields, done before Iggy is called. Each failure names
//! the field, so a client sees INVALID_ARGUMENT with a BadRequest it can act on.

mod field_path;

pub use field_path::FieldPath;

use crate::{
    error::GatewayError,
    proto::{self, consumer, resource_id},
};
use iggy::prelude::{Consumer, Identifier};

/// The longest name Iggy accepts, in bytes.
pub const MAX_NAME_LENGTH: usize = 255;
/// The most partitions one call may create or delete.
pub const MAX_PARTITIONS: u32 = 1000;

/// A stream, topic or group name: 1-255 bytes of letters, digits, spaces and
/// `. _ - : / @ + =`, without leading or trailing space.
pub fn name<'a>(field: &str, value: &'a str) -> Result<&'a str, GatewayError> {
    if value.is_empty() {
        return Err(GatewayError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LENGTH {
        return Err(GatewayError::invalid(
            field,
            format!(
                "must be at most {MAX_NAME_LENGTH} bytes, got {}",
                value.len()
            ),
        ));
    }
    if value.starts_with(' ') || value.ends_with(' ') {
        return Err(GatewayError::invalid(
            field,
            "must not start or end with a space",
        ));
    }
    if let Some(bad) = value.chars().find(|c| !is_name_char(*c)) {
        return Err(GatewayError::invalid(
            field,
            format!("contains {bad:?}; allowed are letters, digits, spaces and . _ - : / @ + ="),
        ));
    }
    Ok(value)
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-' | ':' | '/' | '@' | '+' | '=')
}

/// A required `ResourceId` as an Iggy identifier.
pub fn resource_id(
    field: &str,
    value: Option<&proto::ResourceId>,
) -> Result<Identifier, GatewayError> {
    let kind = value
        .and_then(|id| id.kind.as_ref())
        .ok_or_else(|| GatewayError::invalid(field, "is required (a name or an id)"))?;
    let identifier = match kind {
        resource_id::Kind::Name(value) => Identifier::named(name(&format!("{field}.name"), value)?),
        resource_id::Kind::Id(id) => Identifier::numeric(*id),
    };
    identifier.map_err(|error| GatewayError::invalid(field, error.to_string()))
}

/// A required consumer: a named consumer or a consumer group.
pub fn consumer(field: &str, value: Option<&proto::Consumer>) -> Result<Consumer, GatewayError> {
    let kind = value
        .and_then(|consumer| consumer.kind.as_ref())
        .ok_or_else(|| GatewayError::invalid(field, "is required (a name or a group)"))?;
    match kind {
        consumer::Kind::Name(value) => {
            let id = Identifier::named(name(&format!("{field}.name"), value)?)
                .map_err(|error| GatewayError::invalid(field, error.to_string()))?;
            Ok(Consumer::new(id))
        }
        consumer::Kind::Group(value) => {
            let id = Identifier::named(name(&format!("{field}.group"), value)?)
                .map_err(|error| GatewayError::invalid(field, error.to_string()))?;
            Ok(Consumer::group(id))
        }
    }
}

/// A partition count for create/delete: 1-1000.
pub fn partitions_count(field: &str, value: u32) -> Result<u32, GatewayError> {
    if value == 0 || value > MAX_PARTITIONS {
        return Err(GatewayError::invalid(
            field,
            format!("must be between 1 and {MAX_PARTITIONS}, got {value}"),
        ));
    }
    Ok(value)
}

/// The longest duration protobuf's `Duration` may hold: 10,000 years.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
/// The times RFC 3339 can write: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
const NANOS_PER_SECOND: i32 = 1_000_000_000;

/// A non-negative `google.protobuf.Duration` within the range its
/// definition allows: `nanos` in 0-999,999,999 and `seconds` at most
/// 315,576,000,000. Nothing is normalised: a value outside the definition
/// is refused, not reinterpreted.
pub fn duration(
    field: &str,
    value: &prost_types::Duration,
) -> Result<std::time::Duration, GatewayError> {
    if value.seconds < 0 || value.nanos < 0 {
        return Err(GatewayError::invalid(field, "must not be negative"));
    }
    if value.nanos >= NANOS_PER_SECOND {
        return Err(GatewayError::invalid(
            format!("{field}.nanos"),
            format!("must be at most 999999999, got {}", value.nanos),
        ));
    }
    if value.seconds > MAX_DURATION_SECONDS {
        return Err(GatewayError::invalid(
            format!("{field}.seconds"),
            format!(
                "must be at most {MAX_DURATION_SECONDS}, got {}",
                value.seconds
            ),
        ));
    }
    let seconds = u64::try_from(value.seconds).unwrap_or(0);
    let nanos = u32::try_from(value.nanos).unwrap_or(0);
    Ok(std::time::Duration::new(seconds, nanos))
}

/// A `google.protobuf.Timestamp` RFC 3339 can write: years 1-9999, `nanos`
/// in 0-999,999,999.
pub fn timestamp(
    field: &str,
    value: &prost_types::Timestamp,
) -> Result<prost_types::Timestamp, GatewayError> {
    if !(0..NANOS_PER_SECOND).contains(&value.nanos) {
        return Err(GatewayError::invalid(
            format!("{field}.nanos"),
            format!("must be between 0 and 999999999, got {}", value.nanos),
        ));
    }
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&value.seconds) {
        return Err(GatewayError::invalid(
            format!("{field}.seconds"),
            format!(
                "must be a time in the years 1-9999 ({MIN_TIMESTAMP_SECONDS} to {MAX_TIMESTAMP_SECONDS}), got {}",
                value.seconds
            ),
        ));
    }
    Ok(*value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_outside_their_definition_are_refused_not_normalised() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        assert_eq!(
            duration("f", &d(2, 500_000_000)).ok(),
            Some(std::time::Duration::from_millis(2_500))
        );
        for (value, field) in [
            (d(1, 1_000_000_000), "f.nanos"),
            (d(0, -1), "f"),
            (d(-1, 0), "f"),
            (d(MAX_DURATION_SECONDS + 1, 0), "f.seconds"),
        ] {
            match duration("f", &value) {
                Err(GatewayError::InvalidArgument { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{value:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn timestamps_must_be_writable_in_rfc_3339() {
        let t = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert!(timestamp("time", &t(0, 0)).is_ok());
        assert!(timestamp("time", &t(MIN_TIMESTAMP_SECONDS, 0)).is_ok());
        assert!(timestamp("time", &t(MAX_TIMESTAMP_SECONDS, 999_999_999)).is_ok());
        for value in [
            t(0, 1_000_000_000),
            t(0, -1),
            t(MIN_TIMESTAMP_SECONDS - 1, 0),
            t(MAX_TIMESTAMP_SECONDS + 1, 0),
        ] {
            assert!(timestamp("time", &value).is_err(), "{value:?}");
        }
    }

    fn field_of(error: GatewayError) -> String {
        match error {
            GatewayError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["orders", "orders-v2", "a.b_c:d/e@f", "Zürich events", "x"] {
            assert!(name("name", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names_naming_the_field() {
        let long = "x".repeat(256);
        for bad in ["", " padded", "tab\there", "semi;colon", long.as_str()] {
            assert_eq!(
                field_of(name("stream.name", bad).unwrap_err()),
                "stream.name"
            );
        }
    }

    #[test]
    fn resource_ids_need_a_kind() {
        let empty = proto::ResourceId { kind: None };
        assert_eq!(
            field_of(resource_id("topic", Some(&empty)).unwrap_err()),
            "topic"
        );
        assert_eq!(field_of(resource_id("topic", None).unwrap_err()), "topic");
        let bad = proto::ResourceId {
            kind: Some(resource_id::Kind::Name("no!".into())),
        };
        assert_eq!(
            field_of(resource_id("topic", Some(&bad)).unwrap_err()),
            "topic.name"
        );
        let numeric = proto::ResourceId {
            kind: Some(resource_id::Kind::Id(0)),
        };
        assert!(resource_id("topic", Some(&numeric)).is_ok());
    }

    #[test]
    fn partition_counts_are_bounded() {
        assert!(partitions_count("partitions_count", 1).is_ok());
        assert!(partitions_count("partitions_count", 1000).is_ok());
        assert!(partitions_count("partitions_count", 0).is_err());
        assert!(partitions_count("partitions_count", 1001).is_err());
    }
}
