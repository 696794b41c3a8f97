//! The gateway for the web: HTTP/JSON routes (declared in the proto with
//! `google.api.http`), Server-Sent Events for server streams, `/health` and
//! `/ready`, on the gRPC port. gRPC-Web (tonic-web) and CORS (tower-http)
//! are layered beside it in `server`.
//!
//! [`WebLayer`] sits outside the gRPC edge: a request that is not gRPC and
//! matches a route becomes the gRPC call it stands for and goes through the
//! edge and the service like any other, so keys, scopes, rate limits,
//! request ids, limits, logs and metrics are the same for both.

pub mod batch_event;
pub mod cors;
mod grpc_call;
mod json_request;
mod routes;
pub mod sse;
mod status_json;

pub use routes::{BodyRule, Route, RouteError, Routes};
pub use status_json::http_status;

use crate::{
    edge::{RequestId, request_id::REQUEST_ID_HEADER},
    error::GatewayError,
};
use futures_util::future::BoxFuture;
use grpc_call::Input;
use prost_reflect::{DescriptorPool, DynamicMessage};
use routes::Lookup;
use std::{
    sync::Arc,
    task::{Context, Poll},
};
use tonic::codegen::http::{self, HeaderValue, Method, StatusCode, header};
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};

/// The liveness route: answers while the process serves, whatever Iggy does.
pub const HEALTH_PATH: &str = "/health";

/// The readiness route: the gRPC health check of the whole gateway.
pub const READY_PATH: &str = "/ready";

/// The gRPC method `/ready` calls.
const HEALTH_CHECK: &str = "grpc.health.v1.Health.Check";

/// The header an `EventSource` resends on reconnecting.
const LAST_EVENT_ID: &str = "last-event-id";

/// How many JSON bytes a request body may hold per byte of the largest
/// request message: base64 makes payloads a third longer, and field names
/// and punctuation add more.
pub const JSON_BYTES_PER_MESSAGE_BYTE: usize = 2;

/// The descriptors the routes and the JSON mapping are read from: the
/// gateway's own services and grpc.health.v1.
pub fn descriptors() -> Result<DescriptorPool, prost_reflect::DescriptorError> {
    let mut pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)?;
    pool.decode_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)?;
    Ok(pool)
}

/// The route table with `/ready` added, for [`WebLayer`].
pub fn routes() -> Result<Routes, RouteError> {
    let pool = descriptors()?;
    let mut routes = Routes::from_pool(&pool)?;
    if let Some(check) = pool
        .get_service_by_name("grpc.health.v1.Health")
        .and_then(|health| {
            health
                .methods()
                .find(|method| method.full_name() == HEALTH_CHECK)
        })
    {
        routes.add_get(READY_PATH, check);
    }
    Ok(routes)
}

/// Serves the HTTP/JSON routes; passes gRPC and gRPC-Web through.
#[derive(Debug, Clone)]
pub struct WebLayer {
    routes: Arc<Routes>,
    json_limit: usize,
}

impl WebLayer {
    /// Serves `routes`, reading JSON bodies of up to `json_limit` bytes.
    pub fn new(routes: Routes, json_limit: usize) -> Self {
        Self {
            routes: Arc::new(routes),
            json_limit,
        }
    }
}

impl<S> Layer<S> for WebLayer {
    type Service = WebService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WebService {
            inner,
            routes: Arc::clone(&self.routes),
            json_limit: self.json_limit,
        }
    }
}

/// The service [`WebLayer`] wraps around the gateway.
#[derive(Debug, Clone)]
pub struct WebService<S> {
    inner: S,
    routes: Arc<Routes>,
    json_limit: usize,
}

impl<S, B> Service<http::Request<Body>> for WebService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if is_grpc(request.headers()) {
            let call = self.inner.call(request);
            return Box::pin(async move { Ok(call.await?.map(Body::new)) });
        }
        if request.method() == Method::GET && request.uri().path() == HEALTH_PATH {
            return Box::pin(async { Ok(json_response(r#"{"status":"SERVING"}"#)) });
        }
        let (route, bound) = match self.routes.lookup(request.method(), request.uri().path()) {
            Lookup::Found(route, bound) => (route.clone(), bound),
            Lookup::MethodNotAllowed(allowed) => {
                let mut response = method_not_allowed(request.method(), &allowed);
                echo_request_id(request.headers(), &mut response);
                return Box::pin(async move { Ok(response) });
            }
            Lookup::NotFound => {
                let status = GatewayError::Transport {
                    code: Code::NotFound,
                    reason: "ROUTE_NOT_FOUND",
                    message: format!(
                        "the gateway serves no route {} {} (see docs/http.md)",
                        request.method(),
                        request.uri().path()
                    ),
                }
                .into_status();
                let mut response = status_json::response(&status);
                echo_request_id(request.headers(), &mut response);
                return Box::pin(async move { Ok(response) });
            }
        };
        // The service was made ready for this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let json_limit = self.json_limit;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let streaming = route.rpc.is_server_streaming();
            // The stream resumes after the last event the client saw.
            let resume_token = parts
                .headers
                .get(LAST_EVENT_ID)
                .and_then(|last| last.to_str().ok())
                .filter(|last| streaming && !last.is_empty())
                .map(str::to_owned);
            let output = route.rpc.output();
            let ready_check = route.rpc.full_name() == HEALTH_CHECK;
            let grpc = grpc_call::request(
                parts,
                body,
                Input {
                    route,
                    bound,
                    json_limit,
                    resume_token,
                },
            );
            let answer = inner.call(grpc).await?.map(Body::new);
            if streaming {
                return Ok(match grpc_call::status_in(answer.headers()) {
                    Some(status) if status.code() != Code::Ok => {
                        error_response(&status, answer.headers())
                    }
                    _ => sse::response(answer, output),
                });
            }
            let (headers, result) = grpc_call::unary_answer(answer, &output).await;
            Ok(match result {
                Ok(message) => {
                    let mut json = Vec::new();
                    grpc_call::write_json(&message, &mut json);
                    let mut response =
                        http::Response::new(Body::new(http_body_util::Full::from(json)));
                    if ready_check && !serving(&message) {
                        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    }
                    grpc_call::copy_headers(&headers, response.headers_mut());
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    response
                }
                Err(status) => error_response(&status, &headers),
            })
        })
    }
}

/// Whether a health check's answer says SERVING.
fn serving(answer: &DynamicMessage) -> bool {
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    answer
        .get_field_by_name("status")
        .is_some_and(|status| status.as_enum_number() == Some(serving))
}

/// Whether a request is gRPC or gRPC-Web, which pass through untouched.
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// Gives an answer the edge never saw a request id: the client's, if valid
/// (the edge would refuse an invalid one), else a new one.
fn echo_request_id(headers: &http::HeaderMap, response: &mut http::Response<Body>) {
    let id = RequestId::from_header(headers.get(REQUEST_ID_HEADER))
        .unwrap_or_else(|_| RequestId::generate());
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
}

/// A JSON body with status 200.
fn json_response(json: &'static str) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(http_body_util::Full::new(
        bytes::Bytes::from_static(json.as_bytes()),
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The JSON answer for `status`, with the gRPC answer's own `headers`
/// (request id, `retry-after`) kept.
fn error_response(status: &Status, headers: &http::HeaderMap) -> http::Response<Body> {
    let mut response = status_json::response(status);
    grpc_call::copy_headers(headers, response.headers_mut());
    if let Some(wait) = status_json::retry_after(status) {
        response.headers_mut().insert(header::RETRY_AFTER, wait);
    }
    response
}

/// 405 with an `Allow` header naming the methods the path has.
fn method_not_allowed(method: &Method, allowed: &[Method]) -> http::Response<Body> {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let status = GatewayError::Transport {
        code: Code::Unimplemented,
        reason: "METHOD_NOT_ALLOWED",
        message: format!("{method} is not served on this path; it takes {allow}"),
    }
    .into_status();
    let mut response = status_json::response(&status);
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
