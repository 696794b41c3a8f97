//! A server-streaming answer as Server-Sent Events, for browsers'
//! `EventSource` and `curl -N`.
//!
//! Each response message is one event named after the choice it carries
//! (`subscribed`, `batch`), its data the choice as JSON. An event whose
//! message has a `resume_token` takes it as its `id:`, so an `EventSource`
//! that reconnects sends it back as `Last-Event-ID` and the stream resumes
//! exactly after the last event it saw. Heartbeats are SSE comments: they
//! keep proxies from closing an idle stream without moving the id. A stream
//! that ends with an error sends an `error` event with the JSON
//! `google.rpc.Status` last.

use super::{batch_event, grpc_call, status_json};
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};
use std::io::Write;
use tonic::codegen::http::{self, HeaderValue, header};
use tonic::{Code, Status, body::Body};

/// The choice sent as a comment, not an event.
const HEARTBEAT: &str = "heartbeat";

/// The field an event's id comes from.
const RESUME_TOKEN: &str = "resume_token";

/// The SSE response for a streaming call whose answer has started well
/// (the caller answers a trailers-only error itself).
pub fn response<B>(answer: http::Response<B>, output: MessageDescriptor) -> http::Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    let (parts, body) = answer.into_parts();
    let events = futures_util::stream::unfold(
        Reader {
            body,
            output,
            deframer: grpc_call::Deframer::default(),
            done: false,
        },
        Reader::next_event,
    );
    let mut response = http::Response::new(Body::new(StreamBody::new(events)));
    let headers = response.headers_mut();
    grpc_call::copy_headers(&parts.headers, headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx would otherwise hold events back to fill its buffer.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Reads the gRPC answer and writes its events.
struct Reader<B> {
    body: B,
    output: MessageDescriptor,
    deframer: grpc_call::Deframer,
    done: bool,
}

impl<B> Reader<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    async fn next_event(mut self) -> Option<(Result<Frame<Bytes>, Status>, Self)> {
        loop {
            match self.deframer.next_message() {
                Ok(Some(message)) => {
                    let event = match batch_event::of(&self.output, &message) {
                        Some(event) => event,
                        None => general_event(&self.output, message),
                    };
                    return Some((Ok(Frame::data(event)), self));
                }
                Ok(None) => {}
                Err(status) => {
                    self.done = true;
                    return Some((Ok(Frame::data(error_event(&status))), self));
                }
            }
            if self.done {
                return None;
            }
            let end = match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.deframer.push(&data);
                        continue;
                    }
                    Err(frame) => frame
                        .into_trailers()
                        .ok()
                        .and_then(|trailers| grpc_call::status_in(&trailers)),
                },
                Some(Err(error)) => Some(Status::from_error(error.into())),
                None => None,
            };
            self.done = true;
            if let Some(status) = end.filter(|status| status.code() != Code::Ok) {
                return Some((Ok(Frame::data(error_event(&status))), self));
            }
        }
    }
}

/// The SSE event of one response message (its encoding), through its
/// descriptor.
pub fn general_event(output: &MessageDescriptor, message: Bytes) -> Bytes {
    match DynamicMessage::decode(output.clone(), message) {
        Ok(message) => event(&message),
        Err(error) => error_event(&Status::internal(format!(
            "the service's answer does not decode: {error}"
        ))),
    }
}

/// One response message as an SSE event (or a heartbeat comment).
fn event(message: &DynamicMessage) -> Bytes {
    let Some((field, value)) = message.fields().next() else {
        return Bytes::from_static(b":\n\n");
    };
    if field.name() == HEARTBEAT {
        return Bytes::from_static(b": heartbeat\n\n");
    }
    let mut text = format!("event: {}\n", field.json_name()).into_bytes();
    if let Value::Message(choice) = value {
        if let Some(token) = choice.get_field_by_name(RESUME_TOKEN)
            && let Value::String(token) = &*token
            && !token.is_empty()
        {
            let _ = writeln!(text, "id: {token}");
        }
        text.extend_from_slice(b"data: ");
        grpc_call::write_json(choice, &mut text);
    } else {
        text.extend_from_slice(b"data: ");
        let _ = serde_json::to_writer(&mut text, &format!("{value:?}"));
    }
    text.extend_from_slice(b"\n\n");
    Bytes::from(text)
}

/// The status a stream ended with, as its last event.
fn error_event(status: &Status) -> Bytes {
    Bytes::from(format!(
        "event: error\ndata: {}\n\n",
        status_json::to_json(status)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use crate::web::descriptors;
    use prost::Message;

    fn decode(response: &proto::SubscribeResponse) -> DynamicMessage {
        let descriptor = descriptors()
            .expect("descriptors")
            .get_message_by_name("iggy.gateway.v1.SubscribeResponse")
            .expect("message");
        DynamicMessage::decode(descriptor, response.encode_to_vec().as_slice()).expect("decodes")
    }

    #[test]
    fn a_batch_is_an_event_whose_id_is_its_resume_token() {
        let response = proto::SubscribeResponse {
            kind: Some(proto::subscribe_response::Kind::Batch(
                proto::MessageBatch {
                    messages: Vec::new(),
                    resume_token: "tok-1".into(),
                },
            )),
        };
        let text = String::from_utf8(event(&decode(&response)).to_vec()).expect("utf-8");
        assert_eq!(
            text,
            "event: batch\nid: tok-1\ndata: {\"messages\":[],\"resumeToken\":\"tok-1\"}\n\n"
        );
    }

    #[test]
    fn a_heartbeat_is_a_comment() {
        let response = proto::SubscribeResponse {
            kind: Some(proto::subscribe_response::Kind::Heartbeat(
                proto::Heartbeat {
                    resume_token: "tok-2".into(),
                    ..Default::default()
                },
            )),
        };
        assert_eq!(&event(&decode(&response))[..], b": heartbeat\n\n");
    }

    #[test]
    fn an_error_is_the_last_event() {
        let text = error_event(&Status::unavailable("gone"));
        assert!(
            text.starts_with(b"event: error\ndata: {\"code\":14,"),
            "{text:?}"
        );
    }
}
