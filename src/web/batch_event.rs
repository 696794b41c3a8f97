//! A Subscribe batch as its Server-Sent Event, written by hand: the JSON
//! prost-reflect would write, field for field, without walking descriptors
//! and with each payload base64-encoded in one pass (prost-reflect formats
//! it in small pieces, each scanned for characters to escape). A batch
//! with a message that carries headers goes the general way.

use crate::proto::{DeliveredMessage, MessageBatch, SubscribeResponse, subscribe_response::Kind};
use base64::Engine as _;
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::MessageDescriptor;
use std::io::Write as _;

/// The message whose batches are written here.
const SUBSCRIBE_RESPONSE: &str = "iggy.gateway.v1.SubscribeResponse";

/// The SSE event of `response` (an `output` message's encoding), when it
/// is a `SubscribeResponse` batch of messages without headers.
pub fn of(output: &MessageDescriptor, response: &Bytes) -> Option<Bytes> {
    if output.full_name() != SUBSCRIBE_RESPONSE {
        return None;
    }
    let SubscribeResponse {
        kind: Some(Kind::Batch(batch)),
    } = SubscribeResponse::decode(response.clone()).ok()?
    else {
        return None;
    };
    if batch
        .messages
        .iter()
        .any(|message| !message.headers.is_empty())
    {
        return None;
    }
    let mut event = Vec::with_capacity(64 + batch.messages.iter().map(json_len).sum::<usize>());
    event.extend_from_slice(b"event: batch\n");
    if !batch.resume_token.is_empty() {
        event.extend_from_slice(b"id: ");
        event.extend_from_slice(batch.resume_token.as_bytes());
        event.push(b'\n');
    }
    event.extend_from_slice(b"data: ");
    write_batch(&batch, &mut event);
    event.extend_from_slice(b"\n\n");
    Some(Bytes::from(event))
}

/// Writes `batch` as JSON, every field named (a field added to the proto
/// breaks the build here, so it cannot be left out of the JSON silently).
fn write_batch(batch: &MessageBatch, out: &mut Vec<u8>) {
    let MessageBatch {
        messages,
        resume_token,
    } = batch;
    out.extend_from_slice(b"{\"messages\":[");
    for (index, message) in messages.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_message(message, out);
    }
    out.extend_from_slice(b"],\"resumeToken\":");
    write_string(resume_token, out);
    out.push(b'}');
}

/// Writes a message without headers, as the protobuf JSON mapping does:
/// 64-bit integers as strings, bytes in standard base64.
fn write_message(message: &DeliveredMessage, out: &mut Vec<u8>) {
    let DeliveredMessage {
        partition_id,
        offset,
        id,
        timestamp_micros,
        headers: _,
        payload,
        delivery_attempt,
    } = message;
    // Writing into memory cannot fail.
    let _ = write!(
        out,
        "{{\"partitionId\":{partition_id},\"offset\":\"{offset}\",\"id\":"
    );
    write_string(id, out);
    let _ = write!(
        out,
        ",\"timestampMicros\":\"{timestamp_micros}\",\"headers\":{{}},\"payload\":\""
    );
    let start = out.len();
    out.resize(start + base64_len(payload.len()), 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(payload, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    let _ = write!(out, "\",\"deliveryAttempt\":{delivery_attempt}}}");
}

/// `text` as a JSON string.
fn write_string(text: &str, out: &mut Vec<u8>) {
    // Writing into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Bytes of standard, padded base64 for `len` bytes (0 past `usize`, which
/// no payload in memory reaches).
fn base64_len(len: usize) -> usize {
    base64::encoded_len(len, true).unwrap_or(0)
}

/// About the bytes a message's JSON takes, to reserve room once.
fn json_len(message: &DeliveredMessage) -> usize {
    160 + message.id.len() + base64_len(message.payload.len())
}

/// The SSE event the general path writes for `response`, beside the one
/// written here, for tests that hold the two to each other.
#[cfg(test)]
pub(crate) fn both(response: &SubscribeResponse) -> (Option<Bytes>, Bytes) {
    let output = super::descriptors()
        .ok()
        .and_then(|pool| pool.get_message_by_name(SUBSCRIBE_RESPONSE))
        .expect("the gateway's descriptors hold SubscribeResponse");
    let bytes = Bytes::from(response.encode_to_vec());
    (
        of(&output, &bytes),
        super::sse::general_event(&output, bytes),
    )
}

/// Whether two events say the same: the same lines, the data as JSON.
#[cfg(test)]
pub(crate) fn same_event(ours: &[u8], general: &[u8]) -> bool {
    let split = |event: &[u8]| {
        let text = String::from_utf8_lossy(event).into_owned();
        let mut data: Option<serde_json::Value> = None;
        let mut lines = Vec::new();
        for line in text.lines() {
            match line.strip_prefix("data: ") {
                Some(json) => data = serde_json::from_str(json).ok(),
                None => lines.push(line.to_owned()),
            }
        }
        (lines, data)
    };
    let (ours, general) = (split(ours), split(general));
    ours.1.is_some() && ours == general
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{HeaderValue, header_value};

    fn response(messages: Vec<DeliveredMessage>, resume_token: &str) -> SubscribeResponse {
        SubscribeResponse {
            kind: Some(Kind::Batch(MessageBatch {
                messages,
                resume_token: resume_token.into(),
            })),
        }
    }

    fn delivered(id: &str, payload: &[u8]) -> DeliveredMessage {
        DeliveredMessage {
            partition_id: 4_000_000_000,
            offset: u64::MAX,
            id: id.into(),
            timestamp_micros: 1_796_393_391_568_447,
            headers: Default::default(),
            payload: Bytes::copy_from_slice(payload),
            delivery_attempt: 2,
        }
    }

    #[test]
    fn writes_the_event_the_general_path_writes() {
        let cases = [
            response(Vec::new(), ""),
            response(vec![delivered("", b"")], "AQ"),
            response(
                vec![
                    delivered("a \"quoted\"\n\u{1} é", b"\x00\xff-"),
                    delivered("x", b"ab"),
                ],
                "AROVs94AAAAAAQAAAAAAAAA",
            ),
        ];
        for case in cases {
            let (ours, general) = both(&case);
            let ours = ours.expect("written by hand");
            assert!(
                same_event(&ours, &general),
                "{:?}\n{:?}",
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&general)
            );
        }
    }

    #[test]
    fn leaves_headers_and_other_choices_to_the_general_path() {
        let mut with_headers = delivered("h", b"p");
        with_headers.headers.insert(
            "k".into(),
            HeaderValue {
                kind: Some(header_value::Kind::StringValue("v".into())),
            },
        );
        assert!(both(&response(vec![with_headers], "t")).0.is_none());
        let heartbeat = SubscribeResponse {
            kind: Some(Kind::Heartbeat(Default::default())),
        };
        assert!(both(&heartbeat).0.is_none());
    }
}
