//! A validated message on its way to Iggy: id, payload and typed headers,
//! checked against the publish limits before Iggy is called.

use crate::{error::GatewayError, messaging::headers, proto, validate::FieldPath};
use iggy::prelude::IggyMessage;
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

/// A message ready to send, with the id the client will be told.
#[derive(Debug)]
pub struct Outgoing {
    /// The id as a canonical UUID string.
    pub id: String,
    /// The Iggy message.
    pub message: IggyMessage,
}

/// Validates `message` (the request field at `field`) and builds the Iggy
/// message. A missing id gets a fresh UUIDv4; `traceparent` (the call's
/// trace context) is stored as a header.
pub fn build(
    field: &FieldPath<'_>,
    message: Option<proto::Message>,
    limits: &PublishLimits,
    traceparent: Option<&str>,
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
    if traceparent.is_some() {
        headers::add_traceparent(user_headers.get_or_insert_default(), traceparent);
    }
    let built = IggyMessage::builder()
        .id(id.as_u128())
        .payload(message.payload)
        .maybe_user_headers(user_headers)
        .build()
        .map_err(|error| GatewayError::invalid(field, error.to_string()))?;
    Ok(Outgoing {
        id: id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .to_owned(),
        message: built,
    })
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
            None,
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
            None,
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
            field_of(build(path, message, &limits, None).unwrap_err())
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
}
