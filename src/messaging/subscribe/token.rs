//! Resume tokens: the next offset of every partition a subscription reads,
//! bound to one topic, as opaque URL-safe text.
//!
//! Layout (version 1): `1u8`, the topic fingerprint (`u32`), then per
//! partition its id (`u32`) and next offset (`u64`), all little-endian,
//! encoded as unpadded URL-safe base64.

use crate::error::GatewayError;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use std::collections::BTreeMap;

const VERSION: u8 = 1;
const ENTRY_BYTES: usize = 12;
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

/// The next offset to deliver, per partition.
pub type Positions = BTreeMap<u32, u64>;

/// Encodes positions for the topic with `fingerprint`.
pub fn encode(fingerprint: u32, positions: &Positions) -> String {
    let mut bytes = Vec::with_capacity(5 + positions.len() * ENTRY_BYTES);
    bytes.push(VERSION);
    bytes.extend_from_slice(&fingerprint.to_le_bytes());
    for (partition, next) in positions {
        bytes.extend_from_slice(&partition.to_le_bytes());
        bytes.extend_from_slice(&next.to_le_bytes());
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
    if header[0] != VERSION {
        return Err(invalid("unknown version"));
    }
    if header[1..5] != fingerprint.to_le_bytes() {
        return Err(GatewayError::invalid(
            field,
            "belongs to another stream or topic",
        ));
    }
    if entries.len() % ENTRY_BYTES != 0 || entries.len() / ENTRY_BYTES > MAX_ENTRIES {
        return Err(invalid("truncated"));
    }
    Ok(entries
        .chunks_exact(ENTRY_BYTES)
        .map(|entry| {
            let mut partition = [0u8; 4];
            let mut next = [0u8; 8];
            partition.copy_from_slice(&entry[..4]);
            next.copy_from_slice(&entry[4..]);
            (u32::from_le_bytes(partition), u64::from_le_bytes(next))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let positions: Positions = [(0, 17), (1, 0), (7, u64::MAX)].into();
        let token = encode(fingerprint(1, 2), &positions);
        assert_eq!(
            decode("start.resume_token", &token, fingerprint(1, 2)).expect("valid"),
            positions
        );
    }

    #[test]
    fn refuses_other_topics_and_garbage() {
        let token = encode(fingerprint(1, 2), &[(0, 1)].into());
        assert!(decode("t", &token, fingerprint(1, 3)).is_err());
        for bad in ["", "!!", "AQ", &token[..token.len() - 2]] {
            let error = decode("start.resume_token", bad, fingerprint(1, 2)).unwrap_err();
            assert!(
                matches!(error, GatewayError::InvalidArgument { ref field, .. } if field == "start.resume_token")
            );
        }
    }
}
