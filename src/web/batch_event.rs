//! A Subscribe batch as its Server-Sent Event, written by hand: the JSON
//! prost-reflect would write, field for field, without walking descriptors
//! and with each payload base64-encoded in one pass (prost-reflect formats
//! it in small pieces, each scanned for characters to escape).

use crate::proto::{
    DeliveredMessage, HeaderValue, MessageBatch, SubscribeResponse, header_value,
    subscribe_response::Kind,
};
use base64::Engine as _;
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::MessageDescriptor;
use std::{collections::HashMap, io::Write as _};

/// The message whose batches are written here.
const SUBSCRIBE_RESPONSE: &str = "iggy.gateway.v1.SubscribeResponse";

/// The SSE event of `response` (an `output` message's encoding), when it
/// is a `SubscribeResponse` batch.
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

/// Writes a message as the protobuf JSON mapping does: 64-bit integers as
/// strings, bytes in standard base64.
fn write_message(message: &DeliveredMessage, out: &mut Vec<u8>) {
    let DeliveredMessage {
        partition_id,
        offset,
        id,
        timestamp_micros,
        headers,
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
        ",\"timestampMicros\":\"{timestamp_micros}\",\"headers\":"
    );
    write_headers(headers, out);
    out.extend_from_slice(b",\"payload\":");
    write_base64(payload, out);
    let _ = write!(out, ",\"deliveryAttempt\":{delivery_attempt}}}");
}

/// Writes a message's headers as a JSON object.
fn write_headers(headers: &HashMap<String, HeaderValue>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (index, (key, value)) in headers.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        write_header_value(value, out);
    }
    out.push(b'}');
}

/// Writes a header value as the object of the one choice it holds (`{}`
/// with none). Every choice is named: one added to the proto breaks the
/// build here.
fn write_header_value(HeaderValue { kind }: &HeaderValue, out: &mut Vec<u8>) {
    use header_value::Kind;
    let Some(kind) = kind else {
        out.extend_from_slice(b"{}");
        return;
    };
    match kind {
        Kind::StringValue(text) => write_choice("stringValue", text, out),
        Kind::BytesValue(bytes) => {
            out.extend_from_slice(b"{\"bytesValue\":");
            write_base64(bytes, out);
            out.push(b'}');
        }
        Kind::BoolValue(value) => write_choice("boolValue", value, out),
        Kind::Int32Value(value) => write_choice("int32Value", value, out),
        Kind::Int64Value(value) => write_choice("int64Value", &value.to_string(), out),
        Kind::Uint32Value(value) => write_choice("uint32Value", value, out),
        Kind::Uint64Value(value) => write_choice("uint64Value", &value.to_string(), out),
        Kind::FloatValue(value) if value.is_finite() => write_choice("floatValue", value, out),
        Kind::FloatValue(value) => write_choice("floatValue", non_finite(f64::from(*value)), out),
        Kind::DoubleValue(value) if value.is_finite() => write_choice("doubleValue", value, out),
        Kind::DoubleValue(value) => write_choice("doubleValue", non_finite(*value), out),
    }
}

/// Writes `{"name":value}`.
fn write_choice<T: serde::Serialize + ?Sized>(name: &str, value: &T, out: &mut Vec<u8>) {
    // Writing into memory cannot fail.
    let _ = write!(out, "{{\"{name}\":");
    let _ = serde_json::to_writer(&mut *out, value);
    out.push(b'}');
}

/// The JSON mapping's name for a float that is not a number.
fn non_finite(value: f64) -> &'static str {
    if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// Writes `bytes` as a JSON string of standard, padded base64, in one pass.
fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + base64_len(bytes.len()), 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
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
    let headers: usize = message
        .headers
        .iter()
        .map(|(key, value)| 32 + key.len() + value_len(value))
        .sum();
    160 + message.id.len() + base64_len(message.payload.len()) + headers
}

/// About the bytes a header value's JSON takes.
fn value_len(HeaderValue { kind }: &HeaderValue) -> usize {
    match kind {
        Some(header_value::Kind::StringValue(text)) => text.len(),
        Some(header_value::Kind::BytesValue(bytes)) => base64_len(bytes.len()),
        _ => 24,
    }
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
    fn writes_every_kind_of_header_as_the_general_path_does() {
        use header_value::Kind as Value;
        let kinds = [
            None,
            Some(Value::StringValue("00-0af7651916cd43dd-01 \"é\"".into())),
            Some(Value::BytesValue(Bytes::from_static(b"\x00\xff"))),
            Some(Value::BoolValue(false)),
            Some(Value::Int32Value(-7)),
            Some(Value::Int64Value(i64::MIN)),
            Some(Value::Uint32Value(u32::MAX)),
            Some(Value::Uint64Value(u64::MAX)),
            Some(Value::FloatValue(1.1)),
            Some(Value::FloatValue(f32::NAN)),
            Some(Value::FloatValue(f32::NEG_INFINITY)),
            Some(Value::DoubleValue(-0.0)),
            Some(Value::DoubleValue(f64::INFINITY)),
            Some(Value::DoubleValue(f64::NAN)),
        ];
        for kind in kinds {
            let mut message = delivered("h", b"p");
            message
                .headers
                .insert("k \"1\"".into(), HeaderValue { kind: kind.clone() });
            message.headers.insert(
                "traceparent".into(),
                HeaderValue {
                    kind: Some(Value::StringValue("x".into())),
                },
            );
            let (ours, general) = both(&response(vec![message], "t"));
            let ours = ours.expect("written by hand");
            assert!(
                same_event(&ours, &general),
                "{kind:?}: {:?}\n{:?}",
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&general)
            );
        }
    }

    #[test]
    fn leaves_other_choices_to_the_general_path() {
        let heartbeat = SubscribeResponse {
            kind: Some(Kind::Heartbeat(Default::default())),
        };
        assert!(both(&heartbeat).0.is_none());
        let subscribed = SubscribeResponse {
            kind: Some(Kind::Subscribed(Default::default())),
        };
        assert!(both(&subscribed).0.is_none());
    }
}
