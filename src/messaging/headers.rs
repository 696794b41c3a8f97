//! Typed user headers: protobuf `HeaderValue` to Iggy's typed headers and back.

use crate::{
    error::GatewayError,
    proto::{self, header_value::Kind},
    validate::FieldPath,
};
use bytes::Bytes;
use iggy::prelude::{HeaderKey, HeaderKind, HeaderValue};
use std::collections::{BTreeMap, HashMap};

/// Iggy's limit on one header key or string/bytes value, in bytes.
pub const MAX_HEADER_FIELD_BYTES: usize = 255;
/// Bytes Iggy's wire format adds per header (kinds and lengths), used to
/// count headers against the size limit before Iggy is called.
const PER_HEADER_OVERHEAD: usize = 10;

/// The Iggy header that carries the publisher's W3C trace context.
pub const TRACEPARENT_KEY: &str = "traceparent";

/// Stores the call's `traceparent` on a message, unless the message sets
/// that header itself (the client's own value wins).
pub fn add_traceparent(headers: &mut BTreeMap<HeaderKey, HeaderValue>, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let (Ok(key), Ok(value)) = (
        HeaderKey::try_from(TRACEPARENT_KEY),
        HeaderValue::try_from(traceparent),
    ) else {
        return;
    };
    headers.entry(key).or_insert(value);
}

/// Converts request headers, checking each key and value and the total size
/// against `max_total_bytes`. `field` is the map's field path for errors.
pub fn to_iggy(
    field: &FieldPath<'_>,
    headers: &HashMap<String, proto::HeaderValue>,
    max_total_bytes: usize,
) -> Result<Option<BTreeMap<HeaderKey, HeaderValue>>, GatewayError> {
    if headers.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    let mut converted = BTreeMap::new();
    for (key, value) in headers {
        let entry_field = field.key(key);
        if key.is_empty() || key.len() > MAX_HEADER_FIELD_BYTES {
            return Err(GatewayError::invalid(
                entry_field,
                format!("header keys must be 1-{MAX_HEADER_FIELD_BYTES} bytes"),
            ));
        }
        let kind = value
            .kind
            .as_ref()
            .ok_or_else(|| GatewayError::invalid(entry_field, "header value has no kind set"))?;
        let iggy_value = value_to_iggy(&entry_field, kind)?;
        total += key.len() + iggy_value.as_bytes().len() + PER_HEADER_OVERHEAD;
        let iggy_key = HeaderKey::try_from(key.as_str())
            .map_err(|error| GatewayError::invalid(entry_field, error.to_string()))?;
        converted.insert(iggy_key, iggy_value);
    }
    if total > max_total_bytes {
        return Err(GatewayError::invalid(
            field,
            format!("headers take {total} bytes; the limit is {max_total_bytes}"),
        ));
    }
    Ok(Some(converted))
}

fn value_to_iggy(field: &FieldPath<'_>, kind: &Kind) -> Result<HeaderValue, GatewayError> {
    let sized = |len: usize| {
        if len == 0 || len > MAX_HEADER_FIELD_BYTES {
            Err(GatewayError::invalid(
                field,
                format!(
                    "string and bytes header values must be 1-{MAX_HEADER_FIELD_BYTES} bytes, got {len}"
                ),
            ))
        } else {
            Ok(())
        }
    };
    let value = match kind {
        Kind::StringValue(text) => {
            sized(text.len())?;
            HeaderValue::try_from(text.as_str())
        }
        Kind::BytesValue(bytes) => {
            sized(bytes.len())?;
            HeaderValue::try_from(bytes.as_ref())
        }
        Kind::BoolValue(value) => Ok(HeaderValue::from(*value)),
        Kind::Int32Value(value) => Ok(HeaderValue::from(*value)),
        Kind::Int64Value(value) => Ok(HeaderValue::from(*value)),
        Kind::Uint32Value(value) => Ok(HeaderValue::from(*value)),
        Kind::Uint64Value(value) => Ok(HeaderValue::from(*value)),
        Kind::FloatValue(value) => Ok(HeaderValue::from(*value)),
        Kind::DoubleValue(value) => Ok(HeaderValue::from(*value)),
    };
    value.map_err(|error| GatewayError::invalid(field, error.to_string()))
}

/// Converts stored headers for delivery. Iggy's 8- and 16-bit integers widen
/// to 32 bits; 128-bit integers, which protobuf lacks, become decimal strings.
pub fn from_iggy(
    headers: &BTreeMap<HeaderKey, HeaderValue>,
) -> HashMap<String, proto::HeaderValue> {
    headers
        .iter()
        .filter_map(|(key, value)| {
            let key = String::from_utf8_lossy(key.as_bytes()).into_owned();
            value_from_iggy(value).map(|kind| (key, proto::HeaderValue { kind: Some(kind) }))
        })
        .collect()
}

fn value_from_iggy(value: &HeaderValue) -> Option<Kind> {
    let kind = match value.kind() {
        HeaderKind::Raw => Kind::BytesValue(Bytes::copy_from_slice(value.as_raw().ok()?)),
        HeaderKind::String => Kind::StringValue(value.as_str().ok()?.to_owned()),
        HeaderKind::Bool => Kind::BoolValue(value.as_bool().ok()?),
        HeaderKind::Int8 => Kind::Int32Value(i32::from(value.as_int8().ok()?)),
        HeaderKind::Int16 => Kind::Int32Value(i32::from(value.as_int16().ok()?)),
        HeaderKind::Int32 => Kind::Int32Value(value.as_int32().ok()?),
        HeaderKind::Int64 => Kind::Int64Value(value.as_int64().ok()?),
        HeaderKind::Int128 => Kind::StringValue(value.as_int128().ok()?.to_string()),
        HeaderKind::Uint8 => Kind::Uint32Value(u32::from(value.as_uint8().ok()?)),
        HeaderKind::Uint16 => Kind::Uint32Value(u32::from(value.as_uint16().ok()?)),
        HeaderKind::Uint32 => Kind::Uint32Value(value.as_uint32().ok()?),
        HeaderKind::Uint64 => Kind::Uint64Value(value.as_uint64().ok()?),
        HeaderKind::Uint128 => Kind::StringValue(value.as_uint128().ok()?.to_string()),
        HeaderKind::Float32 => Kind::FloatValue(value.as_float32().ok()?),
        HeaderKind::Float64 => Kind::DoubleValue(value.as_float64().ok()?),
    };
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: Kind) -> proto::HeaderValue {
        proto::HeaderValue { kind: Some(kind) }
    }

    #[test]
    fn every_kind_round_trips() {
        let headers: HashMap<String, proto::HeaderValue> = [
            ("s", Kind::StringValue("text".into())),
            ("b", Kind::BytesValue(Bytes::from_static(b"\x00\x01"))),
            ("t", Kind::BoolValue(true)),
            ("i32", Kind::Int32Value(-7)),
            ("i64", Kind::Int64Value(-1 << 40)),
            ("u32", Kind::Uint32Value(7)),
            ("u64", Kind::Uint64Value(1 << 40)),
            ("f32", Kind::FloatValue(1.5)),
            ("f64", Kind::DoubleValue(-2.25)),
        ]
        .into_iter()
        .map(|(key, kind)| (key.to_owned(), header(kind)))
        .collect();
        let iggy = to_iggy(&FieldPath::root("headers"), &headers, 100_000)
            .expect("valid")
            .expect("some");
        assert_eq!(from_iggy(&iggy), headers);
    }

    #[test]
    fn bad_headers_name_the_entry() {
        let empty_value: HashMap<_, _> =
            [("k".to_owned(), header(Kind::StringValue(String::new())))].into();
        let error = to_iggy(
            &FieldPath::root("message").field("headers"),
            &empty_value,
            100_000,
        )
        .unwrap_err();
        assert!(
            matches!(error, GatewayError::InvalidArgument { ref field, .. } if field == "message.headers[\"k\"]")
        );

        let no_kind: HashMap<_, _> = [("k".to_owned(), proto::HeaderValue { kind: None })].into();
        assert!(to_iggy(&FieldPath::root("h"), &no_kind, 100_000).is_err());

        let long_key: HashMap<_, _> = [("k".repeat(256), header(Kind::BoolValue(true)))].into();
        assert!(to_iggy(&FieldPath::root("h"), &long_key, 100_000).is_err());
    }

    #[test]
    fn the_total_size_is_limited() {
        let many: HashMap<_, _> = (0..100)
            .map(|i| {
                (
                    format!("key-{i}"),
                    header(Kind::StringValue("v".repeat(200))),
                )
            })
            .collect();
        let error =
            to_iggy(&FieldPath::root("message").field("headers"), &many, 10_000).unwrap_err();
        assert!(
            matches!(error, GatewayError::InvalidArgument { ref field, .. } if field == "message.headers")
        );
        assert!(to_iggy(&FieldPath::root("message").field("headers"), &many, 100_000).is_ok());
    }
}
