//! The encoding of a Subscribe batch (`SubscribeResponse` holding a
//! `MessageBatch`), byte for byte as prost writes it.
//!
//! prost measured every delivered message three times on its way out (for
//! the response, for the batch and for the message itself) and wrote each
//! key and length a byte at a time: about 740 instructions per delivered
//! message, a quarter of the gateway's own work per message read. Here the
//! batch is measured in one pass, a message's length is a sum of its
//! fields' lengths, and each message is written in two copies (its fields,
//! then its payload). A message with headers goes through prost.

use super::{
    DeliveredMessage, MessageBatch, SubscribeResponse,
    scratch::{Scratch, bytes_field_len, field_key, nested_len, varint_field_len},
    subscribe_response::Kind,
};
use bytes::BufMut;
use prost::encoding::{WireType, message};

/// The batch's field numbers of its messages and its resume token.
const MESSAGES_FIELD: u32 = 1;
const RESUME_TOKEN_FIELD: u32 = 2;
/// Keys: the response's batch, the batch's messages, and a delivered
/// message's fields.
const BATCH_KEY: u8 = field_key(2, WireType::LengthDelimited);
const MESSAGE_KEY: u8 = field_key(MESSAGES_FIELD as u8, WireType::LengthDelimited);
const PARTITION_KEY: u8 = field_key(1, WireType::Varint);
const OFFSET_KEY: u8 = field_key(2, WireType::Varint);
const ID_KEY: u8 = field_key(3, WireType::LengthDelimited);
const TIMESTAMP_KEY: u8 = field_key(4, WireType::Varint);
const PAYLOAD_KEY: u8 = field_key(6, WireType::LengthDelimited);
const ATTEMPT_KEY: u8 = field_key(7, WireType::Varint);
/// Longest id written by hand (the gateway's ids are 36-byte UUIDs); longer
/// ones go through prost, so a message's fields always fit their 128-byte
/// [`Scratch`]: at most 116 bytes, of six keys, a partition (5), an offset, a
/// timestamp and two lengths (10 each at most), an id length (1) and the id.
const MAX_ID_BYTES: usize = 64;

/// The batch of `response`, when it is one this module writes.
pub fn batch_of(response: &SubscribeResponse) -> Option<&MessageBatch> {
    let SubscribeResponse { kind } = response;
    match kind {
        Some(Kind::Batch(batch)) => Some(batch),
        _ => None,
    }
}

/// A batch measured once: its length is needed both to reserve room and
/// to write the response's head.
pub struct Measured<'a> {
    batch: &'a MessageBatch,
    inner: usize,
}

/// Measures `batch`.
pub fn measure(batch: &MessageBatch) -> Measured<'_> {
    // Every field named: a field added to the proto breaks the build here,
    // so it cannot be left off the wire silently.
    let MessageBatch {
        messages,
        resume_token,
    } = batch;
    let messages: usize = messages
        .iter()
        .map(|delivered| {
            if is_plain(delivered) {
                nested_len(message_len(delivered))
            } else {
                message::encoded_len(MESSAGES_FIELD, delivered)
            }
        })
        .sum();
    Measured {
        batch,
        inner: messages + bytes_field_len(resume_token.len()),
    }
}

impl Measured<'_> {
    /// The encoded length of a response holding the batch.
    pub fn encoded_len(&self) -> usize {
        nested_len(self.inner)
    }

    /// Writes a response holding the batch.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let mut head = Scratch::<16>::default();
        head.put(BATCH_KEY);
        head.varint(self.inner as u64);
        buf.put_slice(head.written());
        for delivered in &self.batch.messages {
            if !is_plain(delivered) {
                message::encode(MESSAGES_FIELD, delivered, buf);
                continue;
            }
            // Every field named (the headers are empty, see `is_plain`).
            let DeliveredMessage {
                partition_id,
                offset,
                id,
                timestamp_micros,
                headers: _,
                payload,
                delivery_attempt,
            } = delivered;
            let mut scratch = Scratch::<128>::default();
            scratch.put(MESSAGE_KEY);
            scratch.varint(message_len(delivered) as u64);
            scratch.varint_field(PARTITION_KEY, u64::from(*partition_id));
            scratch.varint_field(OFFSET_KEY, *offset);
            scratch.bytes_field(ID_KEY, id.as_bytes());
            scratch.varint_field(TIMESTAMP_KEY, *timestamp_micros);
            if !payload.is_empty() {
                scratch.put(PAYLOAD_KEY);
                scratch.varint(payload.len() as u64);
            }
            buf.put_slice(scratch.written());
            buf.put_slice(payload);
            let mut tail = Scratch::<8>::default();
            tail.varint_field(ATTEMPT_KEY, u64::from(*delivery_attempt));
            buf.put_slice(tail.written());
        }
        if !self.batch.resume_token.is_empty() {
            prost::encoding::string::encode(RESUME_TOKEN_FIELD, &self.batch.resume_token, buf);
        }
    }
}

/// Whether `delivered` is written by hand: no headers, an id that fits.
fn is_plain(delivered: &DeliveredMessage) -> bool {
    delivered.headers.is_empty() && delivered.id.len() <= MAX_ID_BYTES
}

/// The length of a plain message itself; prost leaves out zeros and empty
/// strings and bytes.
fn message_len(delivered: &DeliveredMessage) -> usize {
    let DeliveredMessage {
        partition_id,
        offset,
        id,
        timestamp_micros,
        headers: _,
        payload,
        delivery_attempt,
    } = delivered;
    varint_field_len(u64::from(*partition_id))
        + varint_field_len(*offset)
        + bytes_field_len(id.len())
        + varint_field_len(*timestamp_micros)
        + bytes_field_len(payload.len())
        + varint_field_len(u64::from(*delivery_attempt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{HeaderValue, header_value};
    use bytes::Bytes;
    use prost::Message;

    fn delivered(partition_id: u32, offset: u64, id: &str, payload: &[u8]) -> DeliveredMessage {
        DeliveredMessage {
            partition_id,
            offset,
            id: id.into(),
            timestamp_micros: 1_700_000_000_000_000_u64.wrapping_add(offset),
            headers: Default::default(),
            payload: Bytes::copy_from_slice(payload),
            delivery_attempt: 1,
        }
    }

    fn written(batch: &MessageBatch) -> Vec<u8> {
        let measured = measure(batch);
        let mut bytes = Vec::with_capacity(measured.encoded_len());
        measured.encode(&mut bytes);
        assert_eq!(bytes.len(), measured.encoded_len(), "measured as written");
        bytes
    }

    fn by_prost(batch: &MessageBatch) -> Vec<u8> {
        SubscribeResponse {
            kind: Some(Kind::Batch(batch.clone())),
        }
        .encode_to_vec()
    }

    #[test]
    fn writes_every_kind_of_message_as_prost_does() {
        let uuid = "6f2b0c1e-7a3d-4e55-9d0a-1b2c3d4e5f60";
        let mut with_headers = delivered(1, 2, uuid, b"with headers");
        with_headers.headers.insert(
            "k".into(),
            HeaderValue {
                kind: Some(header_value::Kind::StringValue("v".into())),
            },
        );
        let zeros = DeliveredMessage {
            timestamp_micros: 0,
            delivery_attempt: 0,
            ..delivered(0, 0, "", b"")
        };
        let again = DeliveredMessage {
            delivery_attempt: u32::MAX,
            ..delivered(2, 9, uuid, b"again")
        };
        let batch = MessageBatch {
            messages: vec![
                delivered(0, 0, uuid, &[1; 1024]),
                delivered(3, 1_000_000, uuid, &[2; 20_000]),
                delivered(u32::MAX, u64::MAX, uuid, b"x"),
                zeros,
                again,
                with_headers,
                delivered(1, 5, &"y".repeat(MAX_ID_BYTES), b"long id"),
                delivered(1, 6, &"z".repeat(MAX_ID_BYTES + 1), b"longer id"),
            ],
            resume_token: "token".into(),
        };
        assert_eq!(written(&batch), by_prost(&batch));
        let empty = MessageBatch::default();
        assert_eq!(written(&empty), by_prost(&empty), "an empty batch");
    }

    #[test]
    fn a_thousand_messages_decode_back() {
        let batch = MessageBatch {
            messages: (0..1_000)
                .map(|offset| delivered(2, offset, &format!("{offset:036}"), &[7; 1024]))
                .collect(),
            resume_token: "t".repeat(200),
        };
        let decoded = SubscribeResponse::decode(written(&batch).as_slice()).expect("decodes");
        assert_eq!(decoded.kind, Some(Kind::Batch(batch)));
    }
}
