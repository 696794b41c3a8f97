//! Hands a `PublishBatch` request's message to its handler as the bytes that
//! arrived, so its payloads stay slices of the received HTTP/2 frame.
//!
//! tonic copies every request body into its own decode buffer. When the whole
//! message is already in that buffer (a 1 MiB batch arrives in one frame, as
//! the gateway accepts frames of up to 1 MiB), reserving room for the message
//! copies it a second time. For batched publishes the two copies took about
//! 8% of the gateway's CPU.
//!
//! For `PublishBatch`, this layer reads the body whole (refusing it past the
//! request size limit), keeps the message in the request's extensions and
//! gives tonic an empty message to decode. The handler then decodes the kept
//! bytes with [`decode_received`]. A body that is anything but one plain
//! (uncompressed) gRPC message goes to tonic unchanged, so it answers with
//! its own errors.

use crate::edge::method;
use crate::proto;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use std::task::{Context, Poll};
use tonic::{Status, body::Body, codegen::http};
use tower::{Layer, Service};

/// The gRPC message prefix: a compression flag and a 4-byte length.
const PREFIX_BYTES: usize = 5;
/// One uncompressed gRPC message of length zero: what tonic decodes in place
/// of a message kept in the extensions.
const EMPTY_MESSAGE: [u8; PREFIX_BYTES] = [0; PREFIX_BYTES];

/// Reads the bodies of the methods [`method::decodes_received_bytes`] names
/// whole, up to `limit` bytes of message.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedMessageLayer {
    limit: usize,
}

impl ReceivedMessageLayer {
    /// Bodies whose message is over `limit` bytes are refused with
    /// OUT_OF_RANGE, as tonic refuses them.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for ReceivedMessageLayer {
    type Service = ReceivedMessageService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReceivedMessageService {
            inner,
            limit: self.limit,
        }
    }
}

/// The service [`ReceivedMessageLayer`] wraps around the gateway.
#[derive(Debug, Clone)]
pub struct ReceivedMessageService<S> {
    inner: S,
    limit: usize,
}

/// A request's message as received, kept for its handler.
#[derive(Debug, Clone)]
struct ReceivedMessage(Bytes);

impl<S, R> Service<http::Request<Body>> for ReceivedMessageService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if !method::decodes_received_bytes(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        // The clone is not ready; the one `poll_ready` readied serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let received = match read_whole(body, limit).await {
                Ok(received) => received,
                Err(status) => return Ok(status.into_http()),
            };
            let body = match message_of(&received) {
                Some(message) => {
                    parts.extensions.insert(ReceivedMessage(message));
                    Bytes::from_static(&EMPTY_MESSAGE)
                }
                None => received,
            };
            inner
                .call(http::Request::from_parts(parts, Body::new(Full::new(body))))
                .await
        })
    }
}

/// The whole body, in one piece: no copy when it came in one frame (the
/// empty DATA frame that often ends the stream adds nothing; request trailers
/// carry nothing for a unary gRPC call).
async fn read_whole(body: Body, limit: usize) -> Result<Bytes, Status> {
    match Limited::new(body, limit.saturating_add(PREFIX_BYTES))
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(Status::out_of_range(format!(
            "the request message is over the limit of {limit} bytes"
        ))),
        Err(error) => Err(match error.downcast::<Status>() {
            Ok(status) => *status,
            Err(other) => Status::from_error(other),
        }),
    }
}

/// The message of a body holding exactly one uncompressed gRPC message.
fn message_of(body: &Bytes) -> Option<Bytes> {
    let (&[compressed, a, b, c, d], _) = body.split_first_chunk::<PREFIX_BYTES>()?;
    let length = u32::from_be_bytes([a, b, c, d]) as usize;
    (compressed == 0 && length == body.len() - PREFIX_BYTES).then(|| body.slice(PREFIX_BYTES..))
}

/// Replaces the message tonic decoded (empty) with the one the layer kept,
/// if it kept one. A message that does not decode is refused the way tonic
/// refuses it (INTERNAL).
pub fn decode_received(
    mut request: tonic::Request<proto::PublishBatchRequest>,
) -> Result<tonic::Request<proto::PublishBatchRequest>, Status> {
    if let Some(ReceivedMessage(bytes)) = request.extensions_mut().remove::<ReceivedMessage>() {
        *request.get_mut() = proto::batch_request::decode(bytes)
            .map_err(|error| Status::internal(error.to_string()))?;
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::StreamBody;
    use prost::Message;
    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
    };
    use tonic::Code;
    use tower::{ServiceExt, service_fn};

    const PUBLISH_BATCH: &str = "/iggy.gateway.v1.MessagingService/PublishBatch";

    /// What the wrapped service was handed.
    #[derive(Debug, Default)]
    struct Seen {
        body: Bytes,
        kept: Option<Bytes>,
    }

    fn framed(message: &[u8]) -> Bytes {
        let mut body = vec![0];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        Bytes::from(body)
    }

    fn batch() -> proto::PublishBatchRequest {
        proto::PublishBatchRequest {
            messages: (0..3)
                .map(|index| proto::BatchMessage {
                    message: Some(proto::Message {
                        payload: Bytes::from(format!("payload {index}")),
                        ..Default::default()
                    }),
                    partitioning: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Calls the layer on `path` with a body arriving as `chunks`; returns
    /// the response and what the wrapped service saw (`None`: not called).
    async fn call(
        path: &str,
        chunks: Vec<Bytes>,
        limit: usize,
    ) -> (http::Response<Body>, Option<Seen>) {
        let seen = Arc::new(Mutex::new(None));
        let recorder = Arc::clone(&seen);
        let inner = service_fn(move |request: http::Request<Body>| {
            let recorder = Arc::clone(&recorder);
            async move {
                let kept = request
                    .extensions()
                    .get::<ReceivedMessage>()
                    .map(|kept| kept.0.clone());
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .map(|body| body.to_bytes())
                    .unwrap_or_default();
                *recorder.lock().expect("lock") = Some(Seen { body, kept });
                Ok::<_, Infallible>(http::Response::new(Body::empty()))
            }
        });
        let frames = chunks
            .into_iter()
            .map(|chunk| Ok::<_, Status>(Frame::data(chunk)));
        let body = Body::new(StreamBody::new(stream::iter(frames)));
        let request = http::Request::builder()
            .uri(path)
            .body(body)
            .expect("request");
        let response = ReceivedMessageLayer::new(limit)
            .layer(inner)
            .oneshot(request)
            .await
            .expect("infallible");
        let seen = seen.lock().expect("lock").take();
        (response, seen)
    }

    #[tokio::test]
    async fn a_batch_in_several_frames_is_kept_whole_for_the_handler() {
        let message = batch().encode_to_vec();
        let body = framed(&message);
        let chunks = vec![body.slice(..7), body.slice(7..), Bytes::new()];
        let (_, seen) = call(PUBLISH_BATCH, chunks, 1024).await;
        let seen = seen.expect("the call goes on");
        assert_eq!(
            seen.body,
            Bytes::from_static(&EMPTY_MESSAGE),
            "tonic decodes nothing"
        );
        assert_eq!(seen.kept.as_deref(), Some(message.as_slice()));

        // The handler's view: the kept message replaces the empty one.
        let mut request = tonic::Request::new(proto::PublishBatchRequest::default());
        request
            .extensions_mut()
            .insert(ReceivedMessage(seen.kept.unwrap_or_default()));
        let decoded = decode_received(request).expect("decodes").into_inner();
        assert_eq!(decoded, batch());
    }

    #[tokio::test]
    async fn a_batch_in_one_frame_is_kept_without_a_copy() {
        let body = framed(&batch().encode_to_vec());
        // The stream often ends with an empty DATA frame.
        let (_, seen) = call(PUBLISH_BATCH, vec![body.clone(), Bytes::new()], 1024).await;
        let kept = seen.and_then(|seen| seen.kept).expect("kept");
        assert_eq!(
            kept.as_ptr(),
            body[PREFIX_BYTES..].as_ptr(),
            "the kept message is the received frame's memory"
        );
    }

    #[tokio::test]
    async fn anything_but_one_plain_message_reaches_tonic_unchanged() {
        let message = batch().encode_to_vec();
        let one = framed(&message);
        let mut compressed = one.to_vec();
        compressed[0] = 1;
        let two = [one.clone(), one.clone()].concat();
        let truncated = one.slice(..one.len() - 1);
        let bodies = [
            Bytes::from(compressed),
            Bytes::from(two),
            truncated,
            Bytes::from_static(&[0, 0]),
        ];
        for body in bodies {
            let (_, seen) = call(PUBLISH_BATCH, vec![body.clone()], 1 << 20).await;
            let seen = seen.expect("the call goes on");
            assert_eq!(seen.body, body);
            assert!(seen.kept.is_none());
        }
    }

    #[tokio::test]
    async fn other_methods_are_untouched() {
        let body = framed(b"anything");
        let (_, seen) = call(
            "/iggy.gateway.v1.MessagingService/Publish",
            vec![body.clone()],
            1,
        )
        .await;
        let seen = seen.expect("the call goes on");
        assert_eq!(seen.body, body, "not limited, not replaced");
        assert!(seen.kept.is_none());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_before_the_handler() {
        let body = framed(&[7; 100]);
        let chunks = vec![body.slice(..60), body.slice(60..)];
        let (response, seen) = call(PUBLISH_BATCH, chunks, 99).await;
        assert!(seen.is_none(), "the handler is not called");
        let status = Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), Code::OutOfRange);
        assert!(status.message().contains("99 bytes"), "{status:?}");

        let (_, seen) = call(PUBLISH_BATCH, vec![body], 100).await;
        assert!(seen.expect("at the limit").kept.is_some());
    }

    #[test]
    fn a_kept_message_that_does_not_decode_is_refused() {
        let mut request = tonic::Request::new(proto::PublishBatchRequest::default());
        request
            .extensions_mut()
            .insert(ReceivedMessage(Bytes::from_static(&[0x0a, 0x05, 0x01])));
        let status = decode_received(request).expect_err("malformed");
        assert_eq!(status.code(), Code::Internal);
        let tonic_says = proto::PublishBatchRequest::decode(&[0x0a, 0x05, 0x01][..])
            .expect_err("malformed")
            .to_string();
        assert_eq!(status.message(), tonic_says, "worded as tonic words it");
    }

    #[test]
    fn without_a_kept_message_the_request_is_unchanged() {
        let request = tonic::Request::new(batch());
        let decoded = decode_received(request).expect("unchanged").into_inner();
        assert_eq!(decoded, batch());
    }
}
