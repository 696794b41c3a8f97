//! The decoding of a `PublishBatch` request from the bytes it arrived in,
//! with the same result as prost's.
//!
//! prost decodes each entry through three nested generic merge loops and
//! grows the entries' vector by doubling: about 520 instructions per entry
//! of a 1,000-entry batch, a sixth of the gateway's own work per published
//! message. Here the entries are counted first, and an entry that is a
//! message with only an id and a payload (the usual one) is read directly;
//! its payload stays a slice of the received bytes, as with prost. Any other
//! entry (headers, partitioning, unknown or repeated fields) is decoded by
//! prost, and a request this reading does not accept as well formed is
//! decoded whole by prost, so malformed input fails with prost's own error.

use super::{BatchMessage, Message, PublishBatchRequest, scratch::field_key};
use bytes::Bytes;
use prost::{
    DecodeError, Message as _,
    encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field},
};
use std::ops::Range;

/// The request's field number of its entries.
const ENTRIES_FIELD: u32 = 4;
/// Keys: an entry's message, and a message's id and payload.
const MESSAGE_KEY: u8 = field_key(1, WireType::LengthDelimited);
const ID_KEY: u8 = field_key(1, WireType::LengthDelimited);
const PAYLOAD_KEY: u8 = field_key(2, WireType::LengthDelimited);

/// Decodes `message` as prost would.
pub fn decode(message: Bytes) -> Result<PublishBatchRequest, DecodeError> {
    match read(&message) {
        Some(request) => Ok(request),
        None => PublishBatchRequest::decode(message),
    }
}

/// The request, or `None` when prost should decode it (it may be malformed).
fn read(message: &Bytes) -> Option<PublishBatchRequest> {
    let mut request = PublishBatchRequest::default();
    request.messages.reserve_exact(count_entries(message));
    // The other fields (stream, topic, partitioning, unknown ones), in
    // order, for prost to merge.
    let mut others = Vec::new();
    let mut at = 0;
    while at < message.len() {
        let field = field_at(message, at)?;
        if field.is_entry() {
            request
                .messages
                .push(read_entry(message, field.value.clone())?);
        } else {
            others.extend_from_slice(&message[at..field.value.end]);
        }
        at = field.value.end;
    }
    if !others.is_empty() {
        request.merge(others.as_slice()).ok()?;
    }
    Some(request)
}

/// One top-level field of a request.
struct Field {
    tag: u32,
    wire_type: WireType,
    /// Where its value lies in the request; the field ends where it ends.
    value: Range<usize>,
}

impl Field {
    /// Whether this is one of the entries.
    fn is_entry(&self) -> bool {
        self.tag == ENTRIES_FIELD && self.wire_type == WireType::LengthDelimited
    }
}

/// The field starting at `at` of `message`, or `None` if it is malformed.
/// Every field of a batch request but the `idempotent` flag is
/// length-delimited: stepped over by its length, a third of the cost of prost's general `skip_field`. Inlined:
/// it runs twice per entry.
#[inline(always)]
fn field_at(message: &[u8], at: usize) -> Option<Field> {
    let mut rest = message.get(at..)?;
    let (tag, wire_type) = decode_key(&mut rest).ok()?;
    let value = if wire_type == WireType::LengthDelimited {
        let length = length_of(&mut rest)?;
        let start = message.len() - rest.len();
        start..start + length
    } else {
        let start = message.len() - rest.len();
        skip_field(wire_type, tag, &mut rest, DecodeContext::default()).ok()?;
        start..message.len() - rest.len()
    };
    Some(Field {
        tag,
        wire_type,
        value,
    })
}

/// The entry at `range` of `message`: read directly when it is a message
/// with an id and a payload at most, by prost otherwise.
fn read_entry(message: &Bytes, range: Range<usize>) -> Option<BatchMessage> {
    read_plain_entry(message, range.clone())
        .or_else(|| BatchMessage::decode(message.slice(range)).ok())
}

/// An entry holding one message field and nothing else, whose message holds
/// at most an id and a payload, each once.
fn read_plain_entry(message: &Bytes, range: Range<usize>) -> Option<BatchMessage> {
    let mut rest = message.get(range.clone())?;
    let (&key, after_key) = rest.split_first()?;
    if key != MESSAGE_KEY {
        return None;
    }
    rest = after_key;
    let length = length_of(&mut rest)?;
    if length != rest.len() {
        return None;
    }
    Some(BatchMessage {
        message: Some(read_plain_message(message, range.end - length..range.end)?),
        partitioning: None,
    })
}

/// The message at `range` of `message`: an id and a payload, each at most
/// once and in either order. The payload is a slice of `message`.
fn read_plain_message(message: &Bytes, range: Range<usize>) -> Option<Message> {
    let (mut id, mut payload) = (None, None);
    let mut rest = message.get(range.clone())?;
    while let Some((&key, after_key)) = rest.split_first() {
        rest = after_key;
        let length = length_of(&mut rest)?;
        let (value, after_value) = rest.split_at(length);
        match key {
            ID_KEY if id.is_none() => id = Some(std::str::from_utf8(value).ok()?.to_owned()),
            PAYLOAD_KEY if payload.is_none() => {
                let start = range.end - rest.len();
                payload = Some(message.slice(start..start + length));
            }
            _ => return None,
        }
        rest = after_value;
    }
    Some(Message {
        id: id.unwrap_or_default(),
        payload: payload.unwrap_or_default(),
        headers: Default::default(),
    })
}

/// Reads a length prefix that fits in what follows it. Lengths under 16 KiB
/// (one or two bytes) are read inline; longer ones by prost.
#[inline(always)]
fn length_of(rest: &mut &[u8]) -> Option<usize> {
    let length = match **rest {
        [low, ref after @ ..] if low < 0x80 => {
            *rest = after;
            usize::from(low)
        }
        [low, high, ref after @ ..] if high < 0x80 => {
            *rest = after;
            usize::from(low & 0x7f) | usize::from(high) << 7
        }
        _ => usize::try_from(decode_varint(rest).ok()?).ok()?,
    };
    (length <= rest.len()).then_some(length)
}

/// How many entries `message` holds, counted up to the first malformed field
/// (it then goes to prost whole).
fn count_entries(message: &[u8]) -> usize {
    let mut count = 0;
    let mut at = 0;
    while at < message.len() {
        let Some(field) = field_at(message, at) else {
            break;
        };
        count += usize::from(field.is_entry());
        at = field.value.end;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        HeaderValue, Partitioning, ResourceId, header_value, partitioning, resource_id,
    };

    fn plain(id: &str, payload: &[u8]) -> BatchMessage {
        BatchMessage {
            message: Some(Message {
                id: id.into(),
                payload: Bytes::copy_from_slice(payload),
                headers: Default::default(),
            }),
            partitioning: None,
        }
    }

    fn with_header(payload: &[u8]) -> BatchMessage {
        let mut entry = plain("", payload);
        if let Some(message) = entry.message.as_mut() {
            message.headers.insert(
                "k".into(),
                HeaderValue {
                    kind: Some(header_value::Kind::StringValue("v".into())),
                },
            );
        }
        entry
    }

    fn keyed(payload: &[u8]) -> BatchMessage {
        BatchMessage {
            partitioning: Some(Partitioning {
                kind: Some(partitioning::Kind::Key(Bytes::from_static(b"key"))),
            }),
            ..plain("", payload)
        }
    }

    fn request(messages: Vec<BatchMessage>) -> PublishBatchRequest {
        PublishBatchRequest {
            stream: Some(ResourceId {
                kind: Some(resource_id::Kind::Name("orders".into())),
            }),
            topic: Some(ResourceId {
                kind: Some(resource_id::Kind::Id(7)),
            }),
            partitioning: Some(Partitioning {
                kind: Some(partitioning::Kind::PartitionId(3)),
            }),
            messages,
            idempotent: false,
        }
    }

    /// Both decodings of `bytes`, which must agree.
    fn both(bytes: &[u8]) -> Result<PublishBatchRequest, DecodeError> {
        let ours = decode(Bytes::copy_from_slice(bytes));
        let prost = PublishBatchRequest::decode(bytes);
        assert_eq!(
            ours.as_ref().map_err(ToString::to_string),
            prost.as_ref().map_err(ToString::to_string),
            "decoded as prost decodes it"
        );
        ours
    }

    #[test]
    fn usual_entries_are_read_directly_and_others_left_to_prost() {
        // Equal results alone would not show which way an entry went: prost
        // decodes a usual entry the same, only slower.
        let read = |entry: &BatchMessage| {
            let bytes = Bytes::from(entry.encode_to_vec());
            read_plain_entry(&bytes, 0..bytes.len())
        };
        for usual in [
            plain("6f2b0c1e-7a3d-4e55-9d0a-1b2c3d4e5f60", &[7; 1024]),
            plain("", b"no id"),
            plain("", &[1; 20_000]),
        ] {
            assert_eq!(read(&usual), Some(usual), "read directly");
        }
        assert_eq!(read(&with_header(b"p")), None);
        assert_eq!(read(&keyed(b"p")), None);
    }

    #[test]
    fn every_kind_of_entry_decodes_as_with_prost() {
        let entries = vec![
            plain("6f2b0c1e-7a3d-4e55-9d0a-1b2c3d4e5f60", &[7; 1024]),
            plain("", b"no id"),
            // A length of three varint bytes.
            plain("", &[1; 20_000]),
            plain("only an id", b""),
            BatchMessage::default(),
            BatchMessage {
                message: Some(Message::default()),
                partitioning: None,
            },
            with_header(b"with a header"),
            keyed(b"with a key"),
        ];
        let decoded = both(&request(entries.clone()).encode_to_vec()).expect("decodes");
        assert_eq!(decoded.messages, entries);
        assert_eq!(decoded.messages.capacity(), entries.len(), "reserved once");
        both(&PublishBatchRequest::default().encode_to_vec()).expect("an empty request");
    }

    #[test]
    fn unusual_encodings_decode_as_with_prost() {
        let head = request(vec![]).encode_to_vec();
        let entry = |bytes: &[u8]| {
            let mut field = vec![0x22, bytes.len() as u8];
            field.extend_from_slice(bytes);
            field
        };
        let cases: Vec<Vec<u8>> = vec![
            // Payload before id.
            entry(&[0x0a, 6, 0x12, 1, b'p', 0x0a, 1, b'i']),
            // The id twice (the last wins), the payload twice.
            entry(&[0x0a, 6, 0x0a, 1, b'a', 0x0a, 1, b'b']),
            entry(&[0x0a, 6, 0x12, 1, b'a', 0x12, 1, b'b']),
            // The message field twice (prost merges them).
            entry(&[0x0a, 3, 0x0a, 1, b'a', 0x0a, 3, 0x12, 1, b'b']),
            // An unknown field in the message, and in the entry.
            entry(&[0x0a, 5, 0x12, 1, b'p', 0x28, 1]),
            entry(&[0x0a, 3, 0x12, 1, b'p', 0x30, 1]),
            // A non-canonical two-byte key for the payload.
            entry(&[0x0a, 4, 0x92, 0x00, 1, b'p']),
            // The head after the entries, an unknown top-level field.
            [
                entry(&[0x0a, 3, 0x12, 1, b'p']),
                head.clone(),
                vec![0x28, 0x96, 0x01],
            ]
            .concat(),
            // Entries split around the head.
            [
                entry(&[0x0a, 3, 0x12, 1, b'a']),
                head.clone(),
                entry(&[0x0a, 3, 0x12, 1, b'b']),
            ]
            .concat(),
        ];
        for case in cases {
            both(&[head.clone(), case].concat()).expect("decodes");
        }
    }

    #[test]
    fn malformed_requests_fail_as_with_prost() {
        let good = request(vec![plain("", b"payload")]).encode_to_vec();
        let cases: Vec<Vec<u8>> = vec![
            good[..good.len() - 1].to_vec(),
            vec![0x0a, 0x05, 0x01],
            // An id that is not UTF-8.
            vec![0x22, 5, 0x0a, 3, 0x0a, 1, 0xff],
            // An entry whose message overruns it.
            vec![0x22, 3, 0x0a, 9, 0x12],
            // The entries field with the wrong wire type.
            vec![0x20, 1],
        ];
        for case in cases {
            both(&case).expect_err("malformed");
        }
    }

    #[test]
    fn only_top_level_entries_are_counted() {
        let message =
            request(vec![plain("", b"a"), plain("", b"b"), plain("", b"c")]).encode_to_vec();
        let mut with_extra = message.clone();
        with_extra.extend_from_slice(&[0x28, 0x96, 0x01]); // field 5, varint 150
        assert_eq!(count_entries(&message), 3);
        assert_eq!(count_entries(&with_extra), 3);
        // A truncated entry ends the count.
        assert_eq!(count_entries(&message[..message.len() - 1]), 2);
    }
}
