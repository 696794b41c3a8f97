//! An HTTP/JSON request as the gRPC call it stands for, and that call's
//! answer read back. The call goes through the whole gateway below — the
//! edge (request id, log, keys and scopes, rate limits, load shedding) and
//! the service — exactly as a gRPC client's would; the JSON body is read and
//! turned into the request message only when the service reads its request,
//! so a refusal by the edge comes before any body is parsed, as for gRPC.

use super::{json_request, routes::Route};
use crate::error::GatewayError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Limited, StreamBody};
use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};
use tonic::codegen::http::{self, HeaderMap, HeaderValue, Version, header, request};
use tonic::{Code, Status, body::Body};

/// The field a resume token sets.
const RESUME_FIELD: &str = "start.resume_token";

/// The length-prefixed message header: a compression flag and a u32 length.
const FRAME_HEADER_BYTES: usize = 5;

/// What the body of an HTTP request may hold, and where its JSON goes.
pub struct Input {
    /// The route it matched.
    pub route: Route,
    /// The path's variables.
    pub bound: Vec<(String, String)>,
    /// The most JSON bytes read.
    pub json_limit: usize,
    /// Where a stream resumes (SSE's `Last-Event-ID`): replaces whatever
    /// `start` the query names.
    pub resume_token: Option<String>,
}

/// The gRPC request for an HTTP/JSON request whose head is `parts`.
pub fn request(mut parts: request::Parts, body: Body, input: Input) -> http::Request<Body> {
    let query = parts.uri.query().map(str::to_owned);
    let path = input.route.grpc_path();
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(_) => parts.uri,
    };
    parts.method = http::Method::POST;
    // A gRPC call, whatever HTTP version the client spoke.
    parts.version = Version::HTTP_2;
    let headers = &mut parts.headers;
    for hop in [
        header::CONTENT_LENGTH,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::ACCEPT,
        header::ACCEPT_ENCODING,
        header::CONTENT_ENCODING,
    ] {
        headers.remove(hop);
    }
    headers.remove("keep-alive");
    headers.remove("grpc-encoding");
    headers.remove("grpc-accept-encoding");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));

    let message = async move {
        let descriptor = input.route.input();
        let mut message = json_request::body(descriptor.clone(), &read_body(body, &input).await?)?;
        let mut parameters = json_request::merge(&descriptor, None, input.bound, query.as_deref())?;
        if let Some(token) = input.resume_token {
            parameters.remove("start");
            let resume = vec![(RESUME_FIELD.to_owned(), token)];
            parameters = json_request::merge(&descriptor, Some(parameters), resume, None)?;
        }
        // Read after the body's, the parameters' fields are set over it.
        message.extend(json_request::encode(descriptor, parameters)?);
        Ok::<_, GatewayError>(http_body::Frame::data(frame(&message)))
    };
    let body = StreamBody::new(futures_util::stream::once(async move {
        message.await.map_err(GatewayError::into_status)
    }));
    http::Request::from_parts(parts, Body::new(body))
}

/// The JSON body's bytes, for a route that takes one (none else).
async fn read_body(body: Body, input: &Input) -> Result<Bytes, GatewayError> {
    if input.route.body == super::routes::BodyRule::None {
        return Ok(Bytes::new());
    }
    match Limited::new(body, input.json_limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::RequestTooLarge {
                limit: input.json_limit,
            })
        }
        Err(error) => Err(GatewayError::MalformedRequest(format!(
            "the body could not be read: {error}"
        ))),
    }
}

/// `message` as one length-prefixed, uncompressed gRPC message.
pub fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(FRAME_HEADER_BYTES + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(message);
    framed.freeze()
}

/// Splits a response body's bytes into its gRPC messages as they arrive.
#[derive(Debug, Default)]
pub struct Deframer {
    buffer: BytesMut,
}

impl Deframer {
    /// Adds bytes read from the body.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buffer.len() < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        if self.buffer[0] != 0 {
            return Err(Status::internal("the service sent a compressed message"));
        }
        let length = (&self.buffer[1..FRAME_HEADER_BYTES]).get_u32() as usize;
        if self.buffer.len() < FRAME_HEADER_BYTES + length {
            return Ok(None);
        }
        self.buffer.advance(FRAME_HEADER_BYTES);
        Ok(Some(self.buffer.split_to(length).freeze()))
    }
}

/// The status in `headers` (a trailers-only answer, or the trailers), if
/// they carry one.
pub fn status_in(headers: &HeaderMap) -> Option<Status> {
    Status::from_header_map(headers)
}

/// The options every JSON answer is written with: field names in
/// lowerCamelCase, enums by name, 64-bit integers as strings (JavaScript
/// cannot hold them as numbers), and fields at their defaults included, so
/// a reader sees every field (`"offset": "0"`).
pub fn json_options() -> SerializeOptions {
    SerializeOptions::new().skip_default_fields(false)
}

/// Appends `message` as JSON to `out`, written as it is walked (no JSON
/// tree in between).
pub fn write_json(message: &DynamicMessage, out: &mut Vec<u8>) {
    let mut serializer = serde_json::Serializer::new(out);
    // Writing a message's JSON into memory cannot fail: its fields have a
    // JSON form by construction.
    let _ = message.serialize_with_options(&mut serializer, &json_options());
}

/// The answer of a unary call: its response headers and its one message,
/// or the status it failed with (and the headers it came with).
pub async fn unary_answer<B>(
    response: http::Response<B>,
    output: &MessageDescriptor,
) -> (HeaderMap, Result<DynamicMessage, Status>)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<tonic::codegen::StdError>,
{
    let (parts, body) = response.into_parts();
    if let Some(status) = status_in(&parts.headers)
        && status.code() != Code::Ok
    {
        return (parts.headers, Err(status));
    }
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(error) => return (parts.headers, Err(Status::from_error(error.into()))),
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    if let Some(status) = status_in(&trailers)
        && status.code() != Code::Ok
    {
        return (parts.headers, Err(status));
    }
    let mut deframer = Deframer::default();
    deframer.push(&collected.to_bytes());
    let answer = match deframer.next_message() {
        Ok(Some(message)) => DynamicMessage::decode(output.clone(), message).map_err(|error| {
            Status::internal(format!("the service's answer does not decode: {error}"))
        }),
        Ok(None) => Err(Status::internal("the service answered with no message")),
        Err(status) => Err(status),
    };
    (parts.headers, answer)
}

/// Copies the headers of a gRPC answer an HTTP client should see (request
/// id, `retry-after`, custom metadata), not gRPC's own.
pub fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        let name_text = name.as_str();
        if name_text.starts_with("grpc-")
            || *name == header::CONTENT_TYPE
            || *name == header::CONTENT_LENGTH
            || *name == header::TRAILER
        {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_across_reads_come_out_whole() {
        let mut deframer = Deframer::default();
        let mut wire = frame(b"first").to_vec();
        wire.extend_from_slice(&frame(b""));
        wire.extend_from_slice(&frame(b"third"));
        let mut out = Vec::new();
        for byte in wire {
            deframer.push(&[byte]);
            while let Some(message) = deframer.next_message().expect("uncompressed") {
                out.push(message);
            }
        }
        assert_eq!(out, [&b"first"[..], b"", b"third"]);
    }

    #[test]
    fn a_compressed_message_is_refused() {
        let mut deframer = Deframer::default();
        deframer.push(&[1, 0, 0, 0, 0]);
        assert_eq!(
            deframer.next_message().expect_err("compressed").code(),
            Code::Internal
        );
    }
}
