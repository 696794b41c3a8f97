//! One log line and the call metrics per finished call: method, gRPC code,
//! duration, request id, trace context (when sent) and principal (never
//! metadata values, keys or payloads). A call finishes when its last response
//! byte is sent, so a Subscribe stream is logged when it ends; a client that
//! goes away first is logged as CANCELLED. The line goes through the logging
//! stack like every other (the binary writes it on a background thread, see
//! `init_logging` in `main.rs`).

use crate::{
    edge::{CallContext, Traceparent},
    metrics::{self, MethodCalls},
};
use futures_util::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};
use tonic::{Code, codegen::http};
use tower::{Layer, Service};

/// The method label for paths the gateway does not serve, so unknown paths
/// cannot grow the metrics without bound.
const UNKNOWN_METHOD: &str = "unknown";

/// Logs and counts every call.
#[derive(Debug, Clone)]
pub struct CallLogLayer {
    methods: Arc<Methods>,
}

/// The series of every known method, and the one all other paths share.
#[derive(Debug)]
struct Methods {
    known: HashMap<String, Arc<MethodCalls>>,
    unknown: Arc<MethodCalls>,
}

impl Methods {
    /// The series of the method at `path` (`/package.Service/Method`).
    fn of(&self, path: &str) -> &Arc<MethodCalls> {
        self.known
            .get(path.trim_start_matches('/'))
            .unwrap_or(&self.unknown)
    }
}

impl CallLogLayer {
    /// Logs calls, labelling metrics by method for the `known_methods`
    /// (`package.Service/Method`) and as `unknown` otherwise.
    pub fn new(known_methods: HashSet<String>) -> Self {
        let known = known_methods
            .into_iter()
            .map(|method| {
                let calls = Arc::new(MethodCalls::new(method.clone()));
                (method, calls)
            })
            .collect();
        Self {
            methods: Arc::new(Methods {
                known,
                unknown: Arc::new(MethodCalls::new(UNKNOWN_METHOD)),
            }),
        }
    }
}

impl<S> Layer<S> for CallLogLayer {
    type Service = CallLogService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLogService {
            inner,
            methods: Arc::clone(&self.methods),
        }
    }
}

/// The service [`CallLogLayer`] wraps around the gateway.
#[derive(Debug, Clone)]
pub struct CallLogService<S> {
    inner: S,
    methods: Arc<Methods>,
}

impl<S, B, R> Service<http::Request<B>> for CallLogService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Body + Unpin + Send + 'static,
{
    type Response = http::Response<LoggedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let context = CallContext::of(request.extensions()).cloned();
        let record = CallRecord {
            method: Arc::clone(self.methods.of(request.uri().path())),
            started: context
                .as_ref()
                .map_or_else(Instant::now, |context| context.arrival()),
            context,
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = match call.await {
                Ok(response) => response,
                Err(error) => {
                    record.finish(Code::Unknown);
                    return Err(error);
                }
            };
            // A trailers-only response (every error) carries its status in
            // the headers; otherwise it comes in the trailers.
            let record = match status_code(response.headers()) {
                Some(code) => {
                    record.finish(code);
                    None
                }
                None => Some(record),
            };
            Ok(response.map(|inner| LoggedBody { inner, record }))
        })
    }
}

/// What is known of a call until it finishes.
#[derive(Debug)]
struct CallRecord {
    method: Arc<MethodCalls>,
    /// The call's context; its principal is read when the call finishes,
    /// once authentication has had its say.
    context: Option<Arc<CallContext>>,
    started: Instant,
}

impl CallRecord {
    /// Counts the call and writes its line.
    fn finish(self, code: Code) {
        let elapsed = self.started.elapsed();
        let context = self.context.as_deref();
        self.method.record(code, elapsed);
        tracing::info!(
            target: "iggy_grpc::call",
            method = self.method.method(),
            code = metrics::code_name(code),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            request_id = context.map(|context| context.request_id().as_str()),
            traceparent = context
                .and_then(|context| context.traceparent())
                .map(Traceparent::as_str),
            principal = context
                .and_then(|context| context.principal())
                .map(|principal| principal.label()),
            "call finished"
        );
    }
}

fn status_code(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    let number = value.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(number))
}

/// A response body that finishes the call's record when it ends.
#[derive(Debug)]
pub struct LoggedBody<B> {
    inner: B,
    record: Option<CallRecord>,
}

impl<B> LoggedBody<B> {
    fn finish(&mut self, code: Code) {
        if let Some(record) = self.record.take() {
            record.finish(code);
        }
    }
}

impl<B: Default> Default for LoggedBody<B> {
    fn default() -> Self {
        Self {
            inner: B::default(),
            record: None,
        }
    }
}

impl<B: Body + Unpin> Body for LoggedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_code) {
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(Code::Internal),
            Poll::Ready(None) => self.finish(Code::Ok),
            Poll::Pending => {}
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

impl<B> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        // Dropped before its end: the client cancelled or went away.
        if let Some(record) = self.record.take() {
            record.finish(Code::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    fn count(method: &str, code: &str) -> u64 {
        let needle = format!(r#"iggy_grpc_calls_total{{method="{method}",code="{code}"}} "#);
        metrics::render()
            .lines()
            .find_map(|line| line.strip_prefix(&needle))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn errors_in_headers_and_statuses_in_trailers_are_both_counted() {
        let method = "test.CallLog/Counted";
        let layer = CallLogLayer::new(HashSet::from([method.to_owned()]));
        let failing = layer.layer(service_fn(|_request: http::Request<()>| async {
            Ok::<_, Infallible>(tonic::Status::not_found("gone").into_http::<tonic::body::Body>())
        }));
        let before = count(method, "NOT_FOUND");
        let request = || {
            http::Request::builder()
                .uri(format!("/{method}"))
                .body(())
                .expect("request")
        };
        let _ = failing.oneshot(request()).await.expect("infallible");
        assert_eq!(count(method, "NOT_FOUND"), before + 1);

        let streaming = layer.layer(service_fn(|_request: http::Request<()>| async {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let body = http_body_util_trailers(trailers);
            Ok::<_, Infallible>(http::Response::new(body))
        }));
        let before_ok = count(method, "OK");
        let response = streaming.oneshot(request()).await.expect("infallible");
        assert_eq!(
            count(method, "OK"),
            before_ok,
            "not finished before the body ends"
        );
        let mut body = response.into_body();
        while let Some(frame) =
            futures_util::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            frame.expect("frame");
        }
        assert_eq!(count(method, "OK"), before_ok + 1);
    }

    #[tokio::test]
    async fn unknown_paths_share_one_label_and_dropped_bodies_are_cancelled() {
        let layer = CallLogLayer::new(HashSet::new());
        let service = layer.layer(service_fn(|_request: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(tonic::body::Body::empty()))
        }));
        let before = count(UNKNOWN_METHOD, "CANCELLED");
        let response = service
            .oneshot(
                http::Request::builder()
                    .uri("/random/path")
                    .body(())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        drop(response);
        assert_eq!(count(UNKNOWN_METHOD, "CANCELLED"), before + 1);
        assert!(!metrics::render().contains("random/path"));
    }

    /// A body of one trailers frame.
    fn http_body_util_trailers(trailers: http::HeaderMap) -> tonic::body::Body {
        tonic::body::Body::new(TrailersOnly(Some(trailers)))
    }

    struct TrailersOnly(Option<http::HeaderMap>);

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
