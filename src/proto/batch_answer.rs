//! The encoding of a batch answer's results (`repeated BatchEntryResult
//! results = 1`, shared by `PublishBatchResponse` and
//! `PublishEventBatchResponse`), byte for byte as prost writes it.
//!
//! prost measures a nested message again at every level it is written
//! through, and writes each tag and length through the buffer one byte at a
//! time: a 1,000-result answer cost about 400 instructions per result, more
//! than a tenth of the gateway's own work per published message. A stored
//! result is small and fixed in shape: its length is a sum of its fields'
//! lengths, and it is written with one copy into the buffer. Errors, rare
//! and larger, go through prost.

use super::{
    BatchEntryResult, PublishResult,
    batch_entry_result::Outcome,
    scratch::{Scratch, bytes_field_len, field_key, nested_len, varint_field_len},
};
use bytes::BufMut;
use prost::encoding::{WireType, encoded_len_varint, message};

/// The answer's field number of its results.
const RESULTS_FIELD: u32 = 1;
/// Keys: the answer's results, a result's `stored` outcome, and a stored
/// result's `id`, `partition_id`, `offset` and `duplicate`.
const RESULT_KEY: u8 = field_key(RESULTS_FIELD as u8, WireType::LengthDelimited);
const STORED_KEY: u8 = field_key(1, WireType::LengthDelimited);
const ID_KEY: u8 = field_key(1, WireType::LengthDelimited);
const PARTITION_KEY: u8 = field_key(2, WireType::Varint);
const OFFSET_KEY: u8 = field_key(3, WireType::Varint);
const DUPLICATE_KEY: u8 = field_key(4, WireType::Varint);
/// Longest id written by hand; longer ones (never the gateway's own UUIDs)
/// go through prost, so a stored result always fits its 96-byte
/// [`Scratch`]: at most 89 bytes, of an id key and length (2), the id, a
/// partition (6), an offset (11) and a duplicate flag (2), wrapped twice in
/// a key and a one-byte length (4).
const MAX_ID_BYTES: usize = 64;

/// The encoded length of `results` as field 1 of an answer.
pub fn encoded_len(results: &[BatchEntryResult]) -> usize {
    results
        .iter()
        .map(|result| match stored(result) {
            Some(stored) => nested_len(nested_len(stored_len(stored))),
            None => message::encoded_len(RESULTS_FIELD, result),
        })
        .sum()
}

/// Writes `results` as field 1 of an answer.
pub fn encode(results: &[BatchEntryResult], buf: &mut impl BufMut) {
    for result in results {
        match stored(result) {
            Some(stored) => {
                let inner = stored_len(stored);
                let mut scratch = Scratch::<96>::default();
                scratch.put(RESULT_KEY);
                scratch.varint(nested_len(inner) as u64);
                scratch.put(STORED_KEY);
                scratch.varint(inner as u64);
                // Every field named: a field added to the proto breaks the
                // build here, so it cannot be left off the wire silently.
                let PublishResult {
                    id,
                    partition_id,
                    offset,
                    duplicate,
                } = stored;
                scratch.bytes_field(ID_KEY, id.as_bytes());
                scratch.varint_field(PARTITION_KEY, u64::from(*partition_id));
                if let Some(offset) = *offset {
                    scratch.put(OFFSET_KEY);
                    scratch.varint(offset);
                }
                scratch.varint_field(DUPLICATE_KEY, u64::from(*duplicate));
                buf.put_slice(scratch.written());
            }
            None => message::encode(RESULTS_FIELD, result, buf),
        }
    }
}

/// The stored result that is written by hand, if `result` is one.
fn stored(result: &BatchEntryResult) -> Option<&PublishResult> {
    let BatchEntryResult { outcome } = result;
    match outcome {
        Some(Outcome::Stored(stored)) if stored.id.len() <= MAX_ID_BYTES => Some(stored),
        _ => None,
    }
}

/// The length of `stored` itself; prost leaves out an empty id, a zero
/// partition and a false duplicate flag, and writes an offset whenever it
/// is set.
fn stored_len(stored: &PublishResult) -> usize {
    let PublishResult {
        id,
        partition_id,
        offset,
        duplicate,
    } = stored;
    let offset = offset.map_or(0, |offset| 1 + encoded_len_varint(offset));
    bytes_field_len(id.len())
        + varint_field_len(u64::from(*partition_id))
        + offset
        + varint_field_len(u64::from(*duplicate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EntryError, PublishBatchResponse, PublishEventBatchResponse};
    use prost::Message;

    fn stored(id: &str, partition_id: u32, offset: Option<u64>) -> BatchEntryResult {
        BatchEntryResult {
            outcome: Some(Outcome::Stored(PublishResult {
                id: id.into(),
                partition_id,
                offset,
                duplicate: false,
            })),
        }
    }

    fn duplicate(id: &str, partition_id: u32, offset: u64) -> BatchEntryResult {
        BatchEntryResult {
            outcome: Some(Outcome::Stored(PublishResult {
                id: id.into(),
                partition_id,
                offset: Some(offset),
                duplicate: true,
            })),
        }
    }

    fn answer_of(results: &[BatchEntryResult]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(encoded_len(results));
        encode(results, &mut bytes);
        assert_eq!(bytes.len(), encoded_len(results), "measured as written");
        bytes
    }

    #[test]
    fn writes_every_kind_of_result_as_prost_does() {
        let uuid = "6f2b0c1e-7a3d-4e55-9d0a-1b2c3d4e5f60";
        let results = vec![
            stored(uuid, 0, Some(0)),
            stored(uuid, 7, Some(1_000)),
            stored(uuid, u32::MAX, Some(u64::MAX)),
            stored(uuid, 3, None),
            stored("", 0, None),
            stored(&"x".repeat(MAX_ID_BYTES), 1, Some(2)),
            stored(&"y".repeat(MAX_ID_BYTES + 1), 1, Some(2)),
            stored(&"z".repeat(300), 2, Some(3)),
            duplicate(uuid, u32::MAX, u64::MAX),
            duplicate(&"x".repeat(MAX_ID_BYTES), 0, 0),
            BatchEntryResult {
                outcome: Some(Outcome::Error(EntryError {
                    code: 5,
                    reason: "PARTITION_NOT_FOUND".into(),
                    message: "partition 9 does not exist".into(),
                })),
            },
            BatchEntryResult { outcome: None },
        ];
        let by_prost = PublishBatchResponse {
            results: results.clone(),
        }
        .encode_to_vec();
        assert_eq!(answer_of(&results), by_prost);
        let events = PublishEventBatchResponse {
            results: results.clone(),
        }
        .encode_to_vec();
        assert_eq!(
            answer_of(&results),
            events,
            "the event answer has the same shape"
        );
    }

    #[test]
    fn an_empty_answer_is_empty() {
        assert!(answer_of(&[]).is_empty());
    }

    #[test]
    fn a_thousand_results_decode_back() {
        let results: Vec<BatchEntryResult> = (0..1_000u64)
            .map(|offset| stored(&format!("{offset:036}"), 4, Some(offset)))
            .collect();
        let decoded =
            PublishBatchResponse::decode(answer_of(&results).as_slice()).expect("decodes");
        assert_eq!(decoded.results, results);
    }
}
