//! Makes each call's one [`CallContext`]: the arrival instant (taken first,
//! right after the transport starts its own clock for `grpc-timeout`), a
//! request id (the client's `x-request-id` when valid, else a UUIDv4) echoed
//! in the response metadata, and a valid `traceparent` for the call's log
//! line and its messages. The call runs inside a debug-level tracing span
//! that records them. An invalid `x-request-id` is refused with
//! INVALID_ARGUMENT naming the header.
//!
//! The span is at debug, not info: at info, creating it alone (its fields
//! formatted, a registry slot taken) was 5% of the gateway's CPU samples per
//! health check, and entering, leaving and closing it added more, all of it
//! before the answer. The call's `call finished` line carries the request id
//! and trace context at info; `iggy_grpc::layers::call_context=debug` in
//! `RUST_LOG` adds the span to every line of a call.

use crate::{
    edge::{
        CallContext, RequestId, Traceparent,
        request_id::{REQUEST_ID_HEADER, TRACEPARENT_HEADER},
    },
    error::GatewayError,
};
use futures_util::future::BoxFuture;
use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};
use tonic::codegen::http::{self, HeaderValue};
use tower::{Layer, Service};
use tracing::{Instrument, field};

/// Adds an `Arc<CallContext>` to every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallContextLayer;

impl<S> Layer<S> for CallContextLayer {
    type Service = CallContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallContextService { inner }
    }
}

/// The service [`CallContextLayer`] wraps around the gateway.
#[derive(Debug, Clone)]
pub struct CallContextService<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for CallContextService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let arrival = Instant::now();
        let id = match RequestId::from_header(request.headers().get(REQUEST_ID_HEADER)) {
            Ok(id) => id,
            Err(description) => {
                let mut response = GatewayError::invalid(REQUEST_ID_HEADER, description)
                    .into_status()
                    .into_http();
                echo(&mut response, &RequestId::generate());
                return Box::pin(async move { Ok(response) });
            }
        };
        let traceparent = Traceparent::from_header(request.headers().get(TRACEPARENT_HEADER));
        let span = tracing::debug_span!(
            "call",
            method = request.uri().path(),
            request_id = id.as_str(),
            traceparent = field::Empty,
            principal = field::Empty,
        );
        if let Some(traceparent) = &traceparent {
            span.record("traceparent", traceparent.as_str());
        }
        request.extensions_mut().insert(Arc::new(CallContext::new(
            arrival,
            id.clone(),
            traceparent,
        )));
        let call = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let mut response = call.await?;
                echo(&mut response, &id);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

fn echo<R>(response: &mut http::Response<R>, id: &RequestId) {
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    /// A service that answers with the id and trace context it was given.
    fn echo_service()
    -> impl Service<http::Request<()>, Response = http::Response<String>, Error = Infallible> {
        CallContextLayer.layer(service_fn(|request: http::Request<()>| async move {
            let context = CallContext::of(request.extensions());
            Ok::<_, Infallible>(http::Response::new(format!(
                "{}|{}",
                context
                    .map(|c| c.request_id().to_string())
                    .unwrap_or_default(),
                context
                    .and_then(|c| c.traceparent())
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default()
            )))
        }))
    }

    #[tokio::test]
    async fn every_request_carries_its_arrival() {
        let before = Instant::now();
        let service = CallContextLayer.layer(service_fn(|request: http::Request<()>| async move {
            let arrival = CallContext::of(request.extensions()).map(|c| c.arrival());
            Ok::<_, Infallible>(http::Response::new(arrival))
        }));
        let arrival = service
            .oneshot(http::Request::new(()))
            .await
            .expect("infallible")
            .into_body()
            .expect("stamped");
        assert!(arrival >= before);
    }

    fn request(headers: &[(&str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::builder().uri("/iggy.gateway.v1.AdminService/Ping");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request")
    }

    #[tokio::test]
    async fn the_client_id_reaches_the_handler_and_comes_back() {
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let response = echo_service()
            .oneshot(request(&[
                ("x-request-id", "abc-123"),
                ("traceparent", trace),
            ]))
            .await
            .expect("infallible");
        assert_eq!(response.body(), &format!("abc-123|{trace}"));
        assert_eq!(response.headers()["x-request-id"], "abc-123");
    }

    #[tokio::test]
    async fn a_missing_id_is_generated_and_echoed() {
        let response = echo_service()
            .oneshot(request(&[]))
            .await
            .expect("infallible");
        let echoed = response.headers()["x-request-id"].to_str().expect("ascii");
        assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{echoed}");
        assert_eq!(response.body(), &format!("{echoed}|"));
    }

    #[tokio::test]
    async fn an_invalid_id_is_refused_naming_the_header() {
        let long = "x".repeat(129);
        let response = echo_service()
            .oneshot(request(&[("x-request-id", &long)]))
            .await
            .expect("infallible");
        let status = tonic::Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("x-request-id"),
            "{}",
            status.message()
        );
        assert!(response.body().is_empty(), "the handler must not run");
    }
}
