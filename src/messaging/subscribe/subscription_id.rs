//! Subscription ids that say what they acknowledge, so that an `Ack` can be
//! served by any replica, not only the one holding the stream.
//!
//! The id carries the stream, topic and consumer as the Subscribe request
//! named them, whether the subscription takes acks, and for a consumer-group
//! member the Iggy client id of its own connection, which lives exactly as
//! long as the member: a replica that does not hold the stream asks Iggy
//! whether that connection is still in the group, and stores the
//! acknowledged offset where the holding replica will find it
//! (docs/delivery.md).
//!
//! Layout (version 1): `1u8`, the client id (`u32`, 0 for a named
//! consumer), 16 random bytes, then the stream, the topic and the
//! consumer's id, each as a kind byte (`0` numeric, then a `u32`; `1` named,
//! then a length byte and the name), and a last byte of flags (`1`: the
//! consumer is a group, `2`: manual ack, `4`: redelivery); little-endian,
//! unpadded URL-safe base64.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use iggy::prelude::{Consumer, ConsumerKind, IdKind, Identifier};

const VERSION: u8 = 1;
const NONCE_BYTES: usize = 16;
const GROUP: u8 = 1;
const MANUAL: u8 = 2;
const REDELIVERY: u8 = 4;

/// What a subscription id names.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRef {
    /// For a group member, the Iggy client id of its connection; else 0.
    pub client_id: u32,
    /// Random bytes, so ids of one connection's subscriptions differ.
    pub nonce: [u8; NONCE_BYTES],
    /// The stream, as the Subscribe request named it.
    pub stream: Identifier,
    /// The topic, as the Subscribe request named it.
    pub topic: Identifier,
    /// The consumer or consumer group.
    pub consumer: Consumer,
    /// Whether the subscription takes acks (`ACK_MODE_MANUAL`).
    pub manual: bool,
    /// Whether it delivers again (`redelivery`): its acks, nacks and
    /// extensions go through its retry topic.
    pub redelivery: bool,
}

impl SubscriptionRef {
    /// The id's text.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(64);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.client_id.to_le_bytes());
        bytes.extend_from_slice(&self.nonce);
        for id in [&self.stream, &self.topic, &self.consumer.id] {
            put_identifier(&mut bytes, id);
        }
        let group = if self.consumer.kind == ConsumerKind::ConsumerGroup {
            GROUP
        } else {
            0
        };
        let manual = if self.manual { MANUAL } else { 0 };
        let redelivery = if self.redelivery { REDELIVERY } else { 0 };
        bytes.push(group | manual | redelivery);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The reference an id's text carries; `None` for text that is not one
    /// (an id from an older gateway, or made up).
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let mut reader = Reader(&bytes);
        if reader.take(1)? != [VERSION] {
            return None;
        }
        let client_id = u32::from_le_bytes(reader.take(4)?.try_into().ok()?);
        let nonce = reader.take(NONCE_BYTES)?.try_into().ok()?;
        let stream = reader.identifier()?;
        let topic = reader.identifier()?;
        let id = reader.identifier()?;
        let flags = *reader.take(1)?.first()?;
        if flags & !(GROUP | MANUAL | REDELIVERY) != 0 {
            return None;
        }
        let consumer = if flags & GROUP != 0 {
            Consumer::group(id)
        } else {
            Consumer::new(id)
        };
        if !reader.0.is_empty() {
            return None;
        }
        Some(Self {
            client_id,
            nonce,
            stream,
            topic,
            consumer,
            manual: flags & MANUAL != 0,
            redelivery: flags & REDELIVERY != 0,
        })
    }
}

fn put_identifier(bytes: &mut Vec<u8>, id: &Identifier) {
    match id.kind {
        IdKind::Numeric => {
            bytes.push(0);
            bytes.extend_from_slice(&id.get_u32_value().unwrap_or_default().to_le_bytes());
        }
        IdKind::String => {
            // Iggy names are at most 255 bytes, so the length fits a byte.
            bytes.push(1);
            bytes.push(id.length);
            bytes.extend_from_slice(&id.value);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(count)?;
        self.0 = rest;
        Some(taken)
    }

    fn identifier(&mut self) -> Option<Identifier> {
        match self.take(1)? {
            [0] => Identifier::numeric(u32::from_le_bytes(self.take(4)?.try_into().ok()?)).ok(),
            [1] => {
                let length = usize::from(*self.take(1)?.first()?);
                let name = std::str::from_utf8(self.take(length)?).ok()?;
                Identifier::named(name).ok()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Identifier {
        Identifier::named(name).expect("name")
    }

    #[test]
    fn ids_round_trip_for_consumers_and_groups() {
        for (consumer, manual, redelivery) in [
            (Consumer::new(named("reader")), true, true),
            (Consumer::new(named("reader")), false, false),
            (Consumer::group(named("workers")), true, false),
            (
                Consumer::group(Identifier::numeric(7).expect("id")),
                true,
                true,
            ),
        ] {
            let reference = SubscriptionRef {
                client_id: 42,
                nonce: [9; NONCE_BYTES],
                stream: named("orders"),
                topic: Identifier::numeric(3).expect("id"),
                consumer,
                manual,
                redelivery,
            };
            assert_eq!(
                SubscriptionRef::decode(&reference.encode()),
                Some(reference)
            );
        }
    }

    #[test]
    fn other_text_is_no_id() {
        for text in [
            "",
            "not base64!",
            "8f14e45f-ceea-467f-a0e6-0b5e4e1f2d3c",
            "AQ",
        ] {
            assert_eq!(SubscriptionRef::decode(text), None, "{text:?}");
        }
        let reference = SubscriptionRef {
            client_id: 1,
            nonce: [0; NONCE_BYTES],
            stream: named("s"),
            topic: named("t"),
            consumer: Consumer::new(named("c")),
            manual: true,
            redelivery: false,
        };
        let mut text = reference.encode();
        text.push('A');
        assert_eq!(SubscriptionRef::decode(&text), None, "trailing bytes");
    }
}
