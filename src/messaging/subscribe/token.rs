//! Resume tokens: where every partition a subscription reads continues,
//! bound to one topic, as opaque URL-safe text.
//!
//! Layout (version 2): `2u8`, the topic fingerprint (`u32`), then per
//! partition its id (`u32`), a kind (`0u8`: the next offset; `1u8`: the
//! first message at or after a time, in microseconds, for a partition read
//! from a time that has delivered nothing yet) and the value (`u64`), all
//! little-endian, encoded as unpadded URL-safe base64. Version 1 tokens
//! (offsets only, 12 bytes per partition) are still read.

use crate::error::GatewayError;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use std::collections::BTreeMap;

const VERSION: u8 = 2;
const ENTRY_BYTES: usize = 13;
const VERSION_1: u8 = 1;
const VERSION_1_ENTRY_BYTES: usize = 12;
const OFFSET: u8 = 0;
const TIME: u8 = 1;
/// Most partitions a token may carry (Iggy's own per-topic ceiling is lower).
const MAX_ENTRIES: usize = 100_000;

/// Identifies the topic a token belongs to, from its numeric stream and topic
/// ids, so a token cannot be replayed against another topic.
pub fn fingerprint(stream_id: u32, topic_id: u32) -> u32 {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&stream_id.to_le_bytes());
    bytes[4..].copy_from_slice(&topic_id.to_le_bytes());
    iggy_common::calculate_32(&bytes)
}

/// Where one partition continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The message at this offset is the next to deliver.
    Offset(u64),
    /// Nothing delivered yet: the first message stored at or after this
    /// time (microseconds since the epoch) is.
    Time(u64),
}

/// Where each partition continues.
pub type Positions = BTreeMap<u32, Position>;

/// Encodes positions for the topic with `fingerprint`.
pub fn encode(fingerprint: u32, positions: &Positions) -> String {
    let mut bytes = Vec::with_capacity(5 + positions.len() * ENTRY_BYTES);
    bytes.push(VERSION);
    bytes.extend_from_slice(&fingerprint.to_le_bytes());
    for (partition, position) in positions {
        let (kind, value) = match position {
            Position::Offset(next) => (OFFSET, next),
            Position::Time(micros) => (TIME, micros),
        };
        bytes.extend_from_slice(&partition.to_le_bytes());
        bytes.push(kind);
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a token, checking it belongs to the topic with `fingerprint`.
pub fn decode(field: &str, token: &str, fingerprint: u32) -> Result<Positions, GatewayError> {
    let invalid =
        |why: &str| GatewayError::invalid(field, format!("is not a valid resume token: {why}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid("not base64url"))?;
    let (header, entries) = bytes
        .split_at_checked(5)
        .ok_or_else(|| invalid("too short"))?;
    let entry_bytes = match header[0] {
        VERSION => ENTRY_BYTES,
        VERSION_1 => VERSION_1_ENTRY_BYTES,
        _ => return Err(invalid("unknown version")),
    };
    if header[1..5] != fingerprint.to_le_bytes() {
        return Err(GatewayError::invalid(
            field,
            "belongs to another stream or topic",
        ));
    }
    if entries.len() % entry_bytes != 0 || entries.len() / entry_bytes > MAX_ENTRIES {
        return Err(invalid("truncated"));
    }
    let version = header[0];
    entries
        .chunks_exact(entry_bytes)
        .map(|entry| {
            let (partition, rest) = entry.split_at(4);
            let (kind, value) = match (version, rest) {
                (VERSION_1, value) => (OFFSET, value),
                (_, [kind, value @ ..]) => (*kind, value),
                (_, []) => return Err(invalid("truncated")),
            };
            let value = u64::from_le_bytes(value.try_into().map_err(|_| invalid("truncated"))?);
            let position = match kind {
                OFFSET => Position::Offset(value),
                TIME => Position::Time(value),
                _ => return Err(invalid("unknown position kind")),
            };
            let partition =
                u32::from_le_bytes(partition.try_into().map_err(|_| invalid("truncated"))?);
            Ok((partition, position))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let positions: Positions = [
            (0, Position::Offset(17)),
            (1, Position::Offset(0)),
            (3, Position::Time(1_796_000_000_000_000)),
            (7, Position::Offset(u64::MAX)),
        ]
        .into();
        let token = encode(fingerprint(1, 2), &positions);
        assert_eq!(
            decode("start.resume_token", &token, fingerprint(1, 2)).expect("valid"),
            positions
        );
    }

    #[test]
    fn reads_version_1_tokens() {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&fingerprint(1, 2).to_le_bytes());
        for (partition, next) in [(0u32, 17u64), (2, 5)] {
            bytes.extend_from_slice(&partition.to_le_bytes());
            bytes.extend_from_slice(&next.to_le_bytes());
        }
        let token = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(
            decode("t", &token, fingerprint(1, 2)).expect("valid"),
            [(0, Position::Offset(17)), (2, Position::Offset(5))].into()
        );
    }

    #[test]
    fn refuses_other_topics_and_garbage() {
        let token = encode(fingerprint(1, 2), &[(0, Position::Offset(1))].into());
        assert!(decode("t", &token, fingerprint(1, 3)).is_err());
        let mut unknown_kind = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        unknown_kind[9] = 7;
        let unknown_kind = URL_SAFE_NO_PAD.encode(unknown_kind);
        for bad in ["", "!!", "AQ", &token[..token.len() - 2], &unknown_kind] {
            let error = decode("start.resume_token", bad, fingerprint(1, 2)).unwrap_err();
            assert!(
                matches!(error, GatewayError::InvalidArgument { ref field, .. } if field == "start.resume_token")
            );
        }
    }
}
