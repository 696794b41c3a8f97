//! The messages redelivery writes: a copy in the consumer's retry topic,
//! which carries its delivery attempt and where it came from in headers (so
//! the count lives in Iggy, not in a gateway's memory), and a dead letter,
//! which names its origin for whoever reads the dead-letter topic.

use crate::proto::{self, header_value::Kind};
use iggy::prelude::{HeaderKey, HeaderValue, IggyMessage, IggyMessageHeader};
use iggy_common::wire_conversions::user_headers_to_wire;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Headers of a copy in the retry topic.
pub const ORIGIN_PARTITION: &str = "iggy-grpc-origin-partition";
pub const ORIGIN_OFFSET: &str = "iggy-grpc-origin-offset";
pub const ORIGIN_STORED_AT: &str = "iggy-grpc-origin-stored-at";
pub const ATTEMPT: &str = "iggy-grpc-attempt";
pub const NOT_BEFORE: &str = "iggy-grpc-not-before";
/// Headers of a dead letter, beside the origin partition and offset.
pub const ORIGIN_STREAM: &str = "iggy-grpc-origin-stream";
pub const ORIGIN_TOPIC: &str = "iggy-grpc-origin-topic";
pub const ORIGIN_MESSAGE_ID: &str = "iggy-grpc-origin-message-id";
pub const ATTEMPTS: &str = "iggy-grpc-attempts";
/// The last nack's reason, on copies and dead letters.
pub const NACK_REASON: &str = "iggy-grpc-nack-reason";

/// Headers of a control record: an ack, nack or extension taken by a unary
/// call (on any replica) for the stream reading the retry topic.
pub const CONTROL: &str = "iggy-grpc-control";
pub const DURATION_MICROS: &str = "iggy-grpc-duration-micros";

/// What a unary call asks of the stream reading a retry topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Everything up to and including the offset of the partition is done.
    Ack { partition: u32, offset: u64 },
    /// Deliver the message again after `delay`.
    Nack {
        partition: u32,
        offset: u64,
        delay: std::time::Duration,
        reason: String,
    },
    /// The message's deadline becomes now plus `extension`.
    Extend {
        partition: u32,
        offset: u64,
        extension: std::time::Duration,
    },
}

impl Control {
    /// The message it is about: its partition and offset.
    pub fn key(&self) -> (u32, u64) {
        match self {
            Self::Ack { partition, offset }
            | Self::Nack {
                partition, offset, ..
            }
            | Self::Extend {
                partition, offset, ..
            } => (*partition, *offset),
        }
    }
}

/// The record of `control`, to append to the retry topic.
pub fn control_record(control: &Control, now_micros: u64) -> IggyMessage {
    let mut headers = BTreeMap::new();
    let micros =
        |duration: &std::time::Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    let kind = match control {
        Control::Ack { .. } => "ack",
        Control::Nack { delay, reason, .. } => {
            set(&mut headers, DURATION_MICROS, micros(delay).into());
            if let Some(reason) = header_text(reason) {
                set(&mut headers, NACK_REASON, reason);
            }
            "nack"
        }
        Control::Extend { extension, .. } => {
            set(&mut headers, DURATION_MICROS, micros(extension).into());
            "extend"
        }
    };
    let (partition, offset) = control.key();
    if let Ok(kind) = HeaderValue::try_from(kind) {
        set(&mut headers, CONTROL, kind);
    }
    set(&mut headers, ORIGIN_PARTITION, partition.into());
    set(&mut headers, ORIGIN_OFFSET, offset.into());
    let record = IggyMessage {
        header: IggyMessageHeader {
            id: Uuid::new_v4().as_u128(),
            ..IggyMessageHeader::default()
        },
        payload: bytes::Bytes::from_static(b"control"),
        user_headers: None,
    };
    rebuilt(&record, &headers, now_micros)
}

/// The control a record read from the retry topic carries, if it is one.
pub fn control_of_delivered(headers: &HashMap<String, proto::HeaderValue>) -> Option<Control> {
    let kind = match headers.get(CONTROL)?.kind.as_ref()? {
        Kind::StringValue(kind) => kind.as_str(),
        _ => return None,
    };
    let number = |name: &str| match headers.get(name)?.kind.as_ref()? {
        Kind::Uint32Value(value) => Some(u64::from(*value)),
        Kind::Uint64Value(value) => Some(*value),
        _ => None,
    };
    let partition = u32::try_from(number(ORIGIN_PARTITION)?).ok()?;
    let offset = number(ORIGIN_OFFSET)?;
    let duration = || number(DURATION_MICROS).map(std::time::Duration::from_micros);
    match kind {
        "ack" => Some(Control::Ack { partition, offset }),
        "nack" => Some(Control::Nack {
            partition,
            offset,
            delay: duration()?,
            reason: match headers.get(NACK_REASON).and_then(|v| v.kind.as_ref()) {
                Some(Kind::StringValue(reason)) => reason.clone(),
                _ => String::new(),
            },
        }),
        "extend" => Some(Control::Extend {
            partition,
            offset,
            extension: duration()?,
        }),
        _ => None,
    }
}

/// Headers only the retry topic needs: left off what a client receives and
/// what a dead letter carries.
const RETRY_ONLY: [&str; 5] = [
    ORIGIN_PARTITION,
    ORIGIN_OFFSET,
    ORIGIN_STORED_AT,
    ATTEMPT,
    NOT_BEFORE,
];

/// Where a message was first stored, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub partition: u32,
    pub offset: u64,
    /// When Iggy stored it there (Unix microseconds).
    pub stored_at: u64,
}

/// What a copy in the retry topic says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOf {
    pub origin: Origin,
    /// The delivery attempt the copy makes.
    pub attempt: u32,
    /// Not to be delivered before this (Unix microseconds).
    pub not_before: u64,
}

/// A message's headers, as a map (none when it has none, or they do not
/// parse).
pub fn headers_of(message: &IggyMessage) -> BTreeMap<HeaderKey, HeaderValue> {
    message
        .user_headers_map()
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn key(name: &str) -> Option<HeaderKey> {
    HeaderKey::try_from(name).ok()
}

fn set(headers: &mut BTreeMap<HeaderKey, HeaderValue>, name: &str, value: HeaderValue) {
    if let Some(key) = key(name) {
        headers.insert(key, value);
    }
}

/// Text cut to what one Iggy header value holds (255 bytes), at a
/// character boundary.
fn header_text(text: &str) -> Option<HeaderValue> {
    let mut end = text
        .len()
        .min(crate::messaging::headers::MAX_HEADER_FIELD_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    if text.is_empty() {
        return None;
    }
    HeaderValue::try_from(text).ok()
}

/// What `message` (read from a retry topic) says it is a copy of; `None`
/// for a message that is not a copy.
pub fn copy_of(headers: &BTreeMap<HeaderKey, HeaderValue>) -> Option<CopyOf> {
    let get = |name: &str| key(name).and_then(|key| headers.get(&key));
    Some(CopyOf {
        origin: Origin {
            partition: get(ORIGIN_PARTITION)?.as_uint32().ok()?,
            offset: get(ORIGIN_OFFSET)?.as_uint64().ok()?,
            stored_at: get(ORIGIN_STORED_AT)?.as_uint64().ok()?,
        },
        attempt: get(ATTEMPT)?.as_uint32().ok()?,
        not_before: get(NOT_BEFORE)?.as_uint64().ok()?,
    })
}

/// What a copy says of itself, read from its headers as delivered.
pub fn copy_of_delivered(headers: &HashMap<String, proto::HeaderValue>) -> Option<CopyOf> {
    let number = |name: &str| match headers.get(name)?.kind.as_ref()? {
        Kind::Uint32Value(value) => Some(u64::from(*value)),
        Kind::Uint64Value(value) => Some(*value),
        _ => None,
    };
    Some(CopyOf {
        origin: Origin {
            partition: u32::try_from(number(ORIGIN_PARTITION)?).ok()?,
            offset: number(ORIGIN_OFFSET)?,
            stored_at: number(ORIGIN_STORED_AT)?,
        },
        attempt: u32::try_from(number(ATTEMPT)?).ok()?,
        not_before: number(NOT_BEFORE)?,
    })
}

/// Takes the headers only the retry topic needs off a copy as delivered.
pub fn strip_delivered(headers: &mut HashMap<String, proto::HeaderValue>) {
    for name in RETRY_ONLY {
        headers.remove(name);
    }
}

/// The headers a client receives with a copy: its own, without those only
/// the retry topic needs.
pub fn delivered_headers(
    mut headers: BTreeMap<HeaderKey, HeaderValue>,
) -> BTreeMap<HeaderKey, HeaderValue> {
    for name in RETRY_ONLY {
        if let Some(key) = key(name) {
            headers.remove(&key);
        }
    }
    headers
}

/// The copy of `message` (the original, or an earlier copy) that makes
/// delivery attempt `attempt` no sooner than `not_before`.
pub fn retry_copy(
    message: &IggyMessage,
    copy: CopyOf,
    reason: &str,
    now_micros: u64,
) -> IggyMessage {
    let mut headers = headers_of(message);
    set(&mut headers, ORIGIN_PARTITION, copy.origin.partition.into());
    set(&mut headers, ORIGIN_OFFSET, copy.origin.offset.into());
    set(&mut headers, ORIGIN_STORED_AT, copy.origin.stored_at.into());
    set(&mut headers, ATTEMPT, copy.attempt.into());
    set(&mut headers, NOT_BEFORE, copy.not_before.into());
    match header_text(reason) {
        Some(reason) => set(&mut headers, NACK_REASON, reason),
        None => {
            if let Some(key) = key(NACK_REASON) {
                headers.remove(&key);
            }
        }
    }
    rebuilt(message, &headers, now_micros)
}

/// Where a dead letter came from.
#[derive(Debug, Clone)]
pub struct DeadOrigin<'a> {
    pub stream: &'a str,
    pub topic: &'a str,
    pub origin: Origin,
}

/// The dead letter of `message` after `attempts` deliveries, the last one
/// nacked for `reason`.
pub fn dead_letter(
    message: &IggyMessage,
    from: &DeadOrigin<'_>,
    attempts: u32,
    reason: &str,
    now_micros: u64,
) -> IggyMessage {
    let mut headers = delivered_headers(headers_of(message));
    let text = |value: &str| HeaderValue::try_from(value).ok();
    for (name, value) in [
        (ORIGIN_STREAM, text(from.stream)),
        (ORIGIN_TOPIC, text(from.topic)),
        (
            ORIGIN_MESSAGE_ID,
            text(&Uuid::from_u128(message.header.id).to_string()),
        ),
        (NACK_REASON, header_text(reason)),
    ] {
        if let Some(value) = value {
            set(&mut headers, name, value);
        }
    }
    set(&mut headers, ORIGIN_PARTITION, from.origin.partition.into());
    set(&mut headers, ORIGIN_OFFSET, from.origin.offset.into());
    set(&mut headers, ATTEMPTS, attempts.into());
    rebuilt(message, &headers, now_micros)
}

/// `message` with `headers`, ready to send again (same id and payload).
fn rebuilt(
    message: &IggyMessage,
    headers: &BTreeMap<HeaderKey, HeaderValue>,
    now_micros: u64,
) -> IggyMessage {
    let user_headers = (!headers.is_empty()).then(|| user_headers_to_wire(headers).into_bytes());
    IggyMessage {
        header: IggyMessageHeader {
            checksum: 0,
            id: message.header.id,
            offset: 0,
            timestamp: 0,
            origin_timestamp: now_micros,
            user_headers_length: user_headers.as_ref().map_or(0, |bytes| bytes.len() as u32),
            payload_length: message.payload.len() as u32,
            reserved: 0,
        },
        payload: message.payload.clone(),
        user_headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn original() -> IggyMessage {
        let mut headers = BTreeMap::new();
        set(
            &mut headers,
            "tenant",
            HeaderValue::try_from("acme").expect("value"),
        );
        let mut message = rebuilt(
            &IggyMessage {
                header: IggyMessageHeader {
                    id: 42,
                    ..IggyMessageHeader::default()
                },
                payload: Bytes::from_static(b"poison"),
                user_headers: None,
            },
            &headers,
            1,
        );
        message.header.offset = 7;
        message
    }

    /// What Iggy hands back of a message sent: its headers parsed.
    fn stored(message: &IggyMessage) -> BTreeMap<HeaderKey, HeaderValue> {
        headers_of(message)
    }

    #[test]
    fn a_copy_says_what_it_is_a_copy_of_and_a_client_sees_only_its_own_headers() {
        let origin = Origin {
            partition: 2,
            offset: 7,
            stored_at: 1_000,
        };
        let copy = CopyOf {
            origin,
            attempt: 2,
            not_before: 5_000,
        };
        let first = retry_copy(&original(), copy, "bad input", 9);
        assert_eq!((first.header.id, &first.payload[..]), (42, &b"poison"[..]));
        assert_eq!(copy_of(&stored(&first)), Some(copy));
        let again = CopyOf { attempt: 3, ..copy };
        let second = retry_copy(&first, again, "", 10);
        let headers = stored(&second);
        assert_eq!(copy_of(&headers), Some(again));
        assert!(key(NACK_REASON).is_some_and(|k| !headers.contains_key(&k)));
        let delivered = delivered_headers(headers);
        let names: Vec<String> = delivered.keys().map(|k| k.to_string_value()).collect();
        assert_eq!(names, vec!["tenant".to_owned()]);
        assert_eq!(
            copy_of(&stored(&original())),
            None,
            "an original is no copy"
        );
        let mut as_delivered = crate::messaging::headers::from_iggy(&stored(&second));
        assert_eq!(copy_of_delivered(&as_delivered), Some(again));
        strip_delivered(&mut as_delivered);
        assert_eq!(as_delivered.keys().collect::<Vec<_>>(), vec!["tenant"]);
    }

    #[test]
    fn control_records_say_what_they_ask() {
        for control in [
            Control::Ack {
                partition: 1,
                offset: 9,
            },
            Control::Nack {
                partition: 2,
                offset: 3,
                delay: std::time::Duration::from_millis(1_500),
                reason: "later".into(),
            },
            Control::Extend {
                partition: 0,
                offset: 4,
                extension: std::time::Duration::from_secs(30),
            },
        ] {
            let record = control_record(&control, 1);
            let headers = crate::messaging::headers::from_iggy(&stored(&record));
            assert_eq!(control_of_delivered(&headers), Some(control));
            assert_eq!(copy_of_delivered(&headers), None, "a record is no copy");
        }
        let copy = retry_copy(
            &original(),
            CopyOf {
                origin: Origin {
                    partition: 0,
                    offset: 1,
                    stored_at: 2,
                },
                attempt: 2,
                not_before: 3,
            },
            "",
            4,
        );
        let headers = crate::messaging::headers::from_iggy(&stored(&copy));
        assert_eq!(control_of_delivered(&headers), None, "a copy is no record");
    }

    #[test]
    fn a_dead_letter_names_its_origin_attempts_and_reason() {
        let from = DeadOrigin {
            stream: "shop",
            topic: "orders",
            origin: Origin {
                partition: 2,
                offset: 7,
                stored_at: 1_000,
            },
        };
        let long_reason = "é".repeat(200);
        let letter = dead_letter(&original(), &from, 3, &long_reason, 11);
        let headers = stored(&letter);
        let get = |name: &str| headers.get(&key(name).expect("key")).expect(name).clone();
        assert_eq!(get(ORIGIN_STREAM).as_str().expect("text"), "shop");
        assert_eq!(get(ORIGIN_TOPIC).as_str().expect("text"), "orders");
        assert_eq!(get(ORIGIN_PARTITION).as_uint32().expect("u32"), 2);
        assert_eq!(get(ORIGIN_OFFSET).as_uint64().expect("u64"), 7);
        assert_eq!(get(ATTEMPTS).as_uint32().expect("u32"), 3);
        assert_eq!(
            get(ORIGIN_MESSAGE_ID).as_str().expect("text"),
            Uuid::from_u128(42).to_string()
        );
        let reason = get(NACK_REASON);
        assert_eq!(
            reason.as_str().expect("text").len(),
            254,
            "cut at a character"
        );
        assert_eq!(get("tenant").as_str().expect("text"), "acme");
        assert!(key(ATTEMPT).is_some_and(|k| !headers.contains_key(&k)));
    }
}
