//! Every non-OK status the gateway sends carries a google.rpc ErrorInfo with
//! a machine-readable reason, whoever made it.
//!
//! The gateway's own errors get theirs from [`GatewayError::into_status`];
//! tonic answers some calls itself, before any handler (see
//! [`crate::error::transport`]). This layer, outermost, gives those their
//! reason too: in the headers of a trailers-only answer, and in the trailers
//! of a streamed one. A path added later cannot skip it.

use crate::error::{GatewayError, transport};
use futures_util::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use std::{
    pin::Pin,
    task::{Context, Poll},
};
use tonic::{
    Code, Status,
    codegen::http::{self, HeaderMap, Uri},
};
use tower::{Layer, Service};

/// Adds error details to statuses sent without them.
#[derive(Debug, Clone, Copy)]
pub struct ErrorDetailsLayer {
    max_request_bytes: usize,
}

impl ErrorDetailsLayer {
    /// `max_request_bytes` is the limit tonic refuses requests over, named in
    /// the details of such a refusal.
    pub fn new(max_request_bytes: usize) -> Self {
        Self { max_request_bytes }
    }
}

impl<S> Layer<S> for ErrorDetailsLayer {
    type Service = ErrorDetailsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorDetailsService {
            inner,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

/// The service [`ErrorDetailsLayer`] wraps around the gateway.
#[derive(Debug, Clone)]
pub struct ErrorDetailsService<S> {
    inner: S,
    max_request_bytes: usize,
}

impl<S, B, R> Service<http::Request<B>> for ErrorDetailsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Body + Unpin + Send + 'static,
{
    type Response = http::Response<DetailedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = Call {
            uri: request.uri().clone(),
            max_request_bytes: self.max_request_bytes,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            call.explain(response.headers_mut());
            Ok(response.map(|inner| DetailedBody { inner, call }))
        })
    }
}

/// What explaining a call's status needs.
#[derive(Debug)]
struct Call {
    uri: Uri,
    max_request_bytes: usize,
}

impl Call {
    /// Adds details to the status in `headers` (a trailers-only answer's
    /// headers, or a stream's trailers) if it is an error without them.
    fn explain(&self, headers: &mut HeaderMap) {
        let Some(status) = headers.get(Status::GRPC_STATUS) else {
            return;
        };
        if Code::from_bytes(status.as_bytes()) == Code::Ok
            || headers.contains_key(Status::GRPC_STATUS_DETAILS)
        {
            return;
        }
        let Some(status) = Status::from_header_map(headers) else {
            return;
        };
        let error = transport::explain(&status, self.uri.path(), self.max_request_bytes);
        tracing::debug!(%error, reason = %error.reason(), "explained a status made below the gateway");
        // Headers the status came with (e.g. grpc-accept-encoding) stay.
        if let Err(unencodable) = GatewayError::into_status(error).add_header(headers) {
            tracing::warn!(status = ?unencodable, "cannot write a status's details");
        }
    }
}

/// A response body whose trailers get [`Call::explain`]ed.
#[derive(Debug)]
pub struct DetailedBody<B> {
    inner: B,
    call: Call,
}

impl<B: Body + Unpin> Body for DetailedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let mut polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &mut polled
            && let Some(trailers) = frame.trailers_mut()
        {
            this.call.explain(trailers);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tonic_types::StatusExt;
    use tower::{ServiceExt, service_fn};

    fn reason_of(status: &Status) -> Option<String> {
        status
            .get_error_details()
            .error_info()
            .map(|info| info.reason.clone())
    }

    #[tokio::test]
    async fn a_bare_status_in_the_headers_gets_a_reason_and_keeps_its_headers() {
        let service =
            ErrorDetailsLayer::new(1024).layer(service_fn(|_: http::Request<()>| async {
                let mut status =
                    Status::unimplemented("Content is compressed with `br` which isn't supported");
                status
                    .metadata_mut()
                    .insert("grpc-accept-encoding", "identity".parse().expect("value"));
                Ok::<_, Infallible>(status.into_http::<tonic::body::Body>())
            }));
        let request = http::Request::builder()
            .uri("/a.B/C")
            .body(())
            .expect("request");
        let response = service.oneshot(request).await.expect("infallible");
        let status = Status::from_header_map(response.headers()).expect("status");
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(reason_of(&status).as_deref(), Some("UNSUPPORTED_ENCODING"));
        assert_eq!(
            response
                .headers()
                .get("grpc-accept-encoding")
                .map(|v| v.as_bytes()),
            Some(&b"identity"[..])
        );
    }

    #[tokio::test]
    async fn details_already_given_are_left_alone_and_ok_is_untouched() {
        let service = ErrorDetailsLayer::new(1024).layer(service_fn(
            |request: http::Request<()>| async move {
                let status = if request.uri().path() == "/ok" {
                    Status::ok("")
                } else {
                    GatewayError::invalid("stream", "must be set").into_status()
                };
                Ok::<_, Infallible>(status.into_http::<tonic::body::Body>())
            },
        ));
        let request = http::Request::builder()
            .uri("/bad")
            .body(())
            .expect("request");
        let response = service.clone().oneshot(request).await.expect("infallible");
        let status = Status::from_header_map(response.headers()).expect("status");
        assert_eq!(reason_of(&status).as_deref(), Some("INVALID_ARGUMENT"));
        assert_eq!(
            status
                .get_error_details()
                .bad_request()
                .map(|b| b.field_violations.len()),
            Some(1)
        );

        let request = http::Request::builder()
            .uri("/ok")
            .body(())
            .expect("request");
        let response = service.oneshot(request).await.expect("infallible");
        assert!(!response.headers().contains_key(Status::GRPC_STATUS_DETAILS));
    }

    #[tokio::test]
    async fn a_bare_status_in_the_trailers_gets_a_reason() {
        let service =
            ErrorDetailsLayer::new(1024).layer(service_fn(|_: http::Request<()>| async {
                let mut trailers = HeaderMap::new();
                Status::internal("boom")
                    .add_header(&mut trailers)
                    .expect("headers");
                Ok::<_, Infallible>(http::Response::new(TrailersOnly(Some(trailers))))
            }));
        let request = http::Request::builder()
            .uri("/a.B/C")
            .body(())
            .expect("request");
        let mut body = service
            .oneshot(request)
            .await
            .expect("infallible")
            .into_body();
        let frame = futures_util::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .expect("a frame")
            .expect("no error");
        let status =
            Status::from_header_map(frame.trailers_ref().expect("trailers")).expect("status");
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(reason_of(&status).as_deref(), Some("INTERNAL"));
    }

    /// A body of one trailers frame.
    struct TrailersOnly(Option<HeaderMap>);

    impl Body for TrailersOnly {
        type Data = bytes::Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Ready(self.0.take().map(|trailers| Ok(Frame::trailers(trailers))))
        }
    }
}
