//! A validated message on its way to Iggy: id, payload and typed headers,
//! checked against the publish limits before Iggy is called.

use crate::{error::GatewayError, messaging::headers, proto, validate::FieldPath};
use bytes::Bytes;
use iggy::prelude::{HeaderKey, HeaderValue, IggyMessage, IggyMessageHeader};
use iggy_common::wire_conversions::user_headers_to_wire;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Iggy's own ceiling on one message's headers, in bytes.
const IGGY_MAX_HEADERS_BYTES: usize = 100_000;

/// Size limits on what a publish may carry.
#[derive(Debug, Clone, Copy)]
pub struct PublishLimits {
    /// Largest payload of one message, in bytes.
    pub max_payload_bytes: usize,
    /// Largest total size of one message's headers, in bytes.
    pub max_headers_bytes: usize,
    /// Most entries in one batch.
    pub max_batch_messages: usize,
}

impl Default for PublishLimits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 4 * 1024 * 1024,
            max_headers_bytes: IGGY_MAX_HEADERS_BYTES,
            max_batch_messages: 10_000,
        }
    }
}

/// What every message of one publish call carries besides its own fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stamp<'a> {
    /// The caller's W3C trace context, stored as the `traceparent` header.
    pub traceparent: Option<&'a str>,
    /// When the gateway accepted the call (Unix microseconds): the messages'
    /// origin timestamp in Iggy.
    pub accepted_at: u64,
}

/// A message ready to send, with the id the client will be told.
#[derive(Debug)]
pub struct Outgoing {
    /// The id as a canonical UUID string.
    pub id: String,
    /// The Iggy message.
    pub message: IggyMessage,
}

/// Validates `message` (the request field at `field`) and builds the Iggy
/// message. A missing id gets a fresh UUIDv4; the call's `stamp` gives the
/// origin timestamp and the `traceparent` header.
pub fn build(
    field: &FieldPath<'_>,
    message: Option<proto::Message>,
    limits: &PublishLimits,
    stamp: Stamp<'_>,
) -> Result<Outgoing, GatewayError> {
    let message = message.ok_or_else(|| GatewayError::invalid(field, "is required"))?;
    let id = message_id(&field.field("id"), &message.id)?;
    if message.payload.is_empty() {
        return Err(GatewayError::invalid(
            field.field("payload"),
            "must not be empty",
        ));
    }
    if message.payload.len() > limits.max_payload_bytes {
        return Err(GatewayError::invalid(
            field.field("payload"),
            format!(
                "is {} bytes; the limit is {}",
                message.payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let mut user_headers = headers::to_iggy(
        &field.field("headers"),
        &message.headers,
        limits.max_headers_bytes,
    )?;
    if stamp.traceparent.is_some() {
        headers::add_traceparent(user_headers.get_or_insert_default(), stamp.traceparent);
    }
    Ok(Outgoing::new(
        id,
        message.payload,
        user_headers.as_ref(),
        stamp.accepted_at,
    ))
}

impl Outgoing {
    /// The message with id `id`, told to the client in canonical form.
    /// Callers have checked the payload and headers (see [`iggy_message`]).
    pub fn new(
        id: Uuid,
        payload: Bytes,
        user_headers: Option<&BTreeMap<HeaderKey, HeaderValue>>,
        origin_timestamp: u64,
    ) -> Self {
        Self {
            id: id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .to_owned(),
            message: iggy_message(id.as_u128(), payload, user_headers, origin_timestamp),
        }
    }
}

/// The Iggy message, its header filled in here rather than by
/// `IggyMessage::builder`, which reads the clock once per message (a
/// 1,000-message batch read it 1,000 times). Callers have checked the payload
/// (1 byte up to the publish limit) and the headers against limits within
/// Iggy's own.
fn iggy_message(
    id: u128,
    payload: Bytes,
    user_headers: Option<&BTreeMap<HeaderKey, HeaderValue>>,
    origin_timestamp: u64,
) -> IggyMessage {
    let user_headers = user_headers.map(|headers| user_headers_to_wire(headers).into_bytes());
    IggyMessage {
        header: IggyMessageHeader {
            checksum: 0,
            id,
            offset: 0,
            timestamp: 0,
            origin_timestamp,
            user_headers_length: user_headers.as_ref().map_or(0, |bytes| bytes.len() as u32),
            payload_length: payload.len() as u32,
            reserved: 0,
        },
        payload,
        user_headers,
    }
}

/// The given UUID, or a new one when empty. The nil UUID is refused: Iggy
/// reads a zero id as "assign one", which would break de-duplication.
pub fn message_id(field: &FieldPath<'_>, text: &str) -> Result<Uuid, GatewayError> {
    if text.is_empty() {
        return Ok(Uuid::new_v4());
    }
    let id = Uuid::parse_str(text).map_err(|error| {
        GatewayError::invalid(field, format!("must be a UUID ({error}), got {text:?}"))
    })?;
    if id.is_nil() {
        return Err(GatewayError::invalid(field, "must not be the nil UUID"));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(id: &str, payload: &'static [u8]) -> Option<proto::Message> {
        Some(proto::Message {
            id: id.into(),
            payload: Bytes::from_static(payload),
            headers: Default::default(),
        })
    }

    fn field_of(error: GatewayError) -> String {
        match error {
            GatewayError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn keeps_a_given_id_and_generates_a_missing_one() {
        let id = "6f2b0c1e-7a3d-4e55-9d0a-1b2c3d4e5f60";
        let kept = build(
            &FieldPath::root("message"),
            message(id, b"x"),
            &PublishLimits::default(),
            Stamp::default(),
        )
        .expect("valid");
        assert_eq!(kept.id, id);
        assert_eq!(
            kept.message.header.id,
            Uuid::parse_str(id).expect("uuid").as_u128()
        );
        let generated = build(
            &FieldPath::root("message"),
            message("", b"x"),
            &PublishLimits::default(),
            Stamp::default(),
        )
        .expect("valid");
        assert_eq!(
            Uuid::parse_str(&generated.id)
                .expect("uuid")
                .get_version_num(),
            4
        );
    }

    #[test]
    fn rejects_bad_input_naming_the_field() {
        let limits = PublishLimits {
            max_payload_bytes: 4,
            ..PublishLimits::default()
        };
        // The field a refused message is named by, built at `path`.
        let refused = |path: &FieldPath<'_>, message| {
            field_of(build(path, message, &limits, Stamp::default()).unwrap_err())
        };
        let root = FieldPath::root("message");
        assert_eq!(refused(&root, None), "message");
        assert_eq!(refused(&root, message("not-a-uuid", b"x")), "message.id");
        assert_eq!(
            refused(
                &FieldPath::root("m"),
                message("00000000-0000-0000-0000-000000000000", b"x")
            ),
            "m.id"
        );
        assert_eq!(refused(&root, message("", b"")), "message.payload");
        let messages = FieldPath::root("messages");
        let third = messages.index(2);
        assert_eq!(
            refused(&third.field("message"), message("", b"12345")),
            "messages[2].message.payload"
        );
    }

    #[test]
    fn builds_the_message_iggys_builder_would_with_the_calls_timestamp() {
        let mut headers = std::collections::HashMap::new();
        headers.insert(
            "tenant".to_owned(),
            proto::HeaderValue {
                kind: Some(proto::header_value::Kind::StringValue("acme".into())),
            },
        );
        let request = proto::Message {
            id: "6f2b0c1e-7a3d-4e55-9d0a-1b2c3d4e5f60".into(),
            payload: Bytes::from_static(b"payload"),
            headers,
        };
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let stamp = Stamp {
            traceparent: Some(traceparent),
            accepted_at: 1_700_000_000_123_456,
        };
        let built = build(
            &FieldPath::root("message"),
            Some(request),
            &PublishLimits::default(),
            stamp,
        )
        .expect("valid")
        .message;

        let expected_headers = BTreeMap::from([
            (
                HeaderKey::try_from("tenant").expect("key"),
                HeaderValue::try_from("acme").expect("value"),
            ),
            (
                HeaderKey::try_from(headers::TRACEPARENT_KEY).expect("key"),
                HeaderValue::try_from(traceparent).expect("value"),
            ),
        ]);
        let mut expected = IggyMessage::builder()
            .id(Uuid::parse_str("6f2b0c1e-7a3d-4e55-9d0a-1b2c3d4e5f60")
                .expect("uuid")
                .as_u128())
            .payload(Bytes::from_static(b"payload"))
            .user_headers(expected_headers)
            .build()
            .expect("message");
        assert_ne!(expected.header.origin_timestamp, stamp.accepted_at);
        expected.header.origin_timestamp = stamp.accepted_at;
        assert_eq!(built, expected);
        assert_eq!(
            built
                .user_headers_map()
                .expect("headers")
                .map(|map| map.len()),
            Some(2)
        );
    }
}
