//! A gRPC status as HTTP/JSON: the HTTP status its code maps to (as Google's
//! APIs and grpc-gateway map them), a JSON `google.rpc.Status` body with the
//! ErrorInfo, BadRequest and RetryInfo details the gateway sends, and
//! `Retry-After` where waiting helps.

use crate::error::RETRY_AFTER_HEADER;
use serde_json::{Map, Value, json};
use tonic::codegen::http::{self, HeaderValue, StatusCode, header};
use tonic::{Code, Status};
use tonic_types::{ErrorDetail, StatusExt};

/// The prefix of a detail's `@type`.
const TYPE_PREFIX: &str = "type.googleapis.com/google.rpc.";

/// The HTTP status for a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // Client Closed Request, as nginx and Google's APIs use it.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `status` as a JSON `google.rpc.Status`.
pub fn to_json(status: &Status) -> Value {
    let details: Vec<Value> = status
        .get_error_details_vec()
        .into_iter()
        .filter_map(|detail| detail_json(&detail))
        .collect();
    json!({
        "code": status.code() as i32,
        "message": status.message(),
        "details": details,
    })
}

/// One detail in its JSON mapping; None for kinds the gateway never sends.
fn detail_json(detail: &ErrorDetail) -> Option<Value> {
    let (kind, mut body) = match detail {
        ErrorDetail::ErrorInfo(info) => (
            "ErrorInfo",
            json!({
                "reason": info.reason,
                "domain": info.domain,
                "metadata": info.metadata,
            }),
        ),
        ErrorDetail::BadRequest(bad) => (
            "BadRequest",
            json!({
                "fieldViolations": bad
                    .field_violations
                    .iter()
                    .map(|violation| json!({
                        "field": violation.field,
                        "description": violation.description,
                    }))
                    .collect::<Vec<_>>(),
            }),
        ),
        ErrorDetail::RetryInfo(retry) => {
            let delay = retry.retry_delay.unwrap_or_default();
            (
                "RetryInfo",
                json!({ "retryDelay": format!("{}.{:03}s", delay.as_secs(), delay.subsec_millis()) }),
            )
        }
        _ => return None,
    };
    if let Value::Object(fields) = &mut body {
        let mut typed = Map::new();
        typed.insert(
            "@type".into(),
            Value::String(format!("{TYPE_PREFIX}{kind}")),
        );
        typed.append(fields);
        body = Value::Object(typed);
    }
    Some(body)
}

/// The whole seconds a client should wait: the status's `retry-after`
/// metadata, else its RetryInfo rounded up.
pub fn retry_after(status: &Status) -> Option<HeaderValue> {
    if let Some(value) = status.metadata().get(RETRY_AFTER_HEADER)
        && let Ok(text) = value.to_str()
        && let Ok(value) = HeaderValue::from_str(text)
    {
        return Some(value);
    }
    let delay = status.get_details_retry_info()?.retry_delay?;
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    HeaderValue::from_str(&seconds.to_string()).ok()
}

/// A complete HTTP response for `status`.
pub fn response(status: &Status) -> http::Response<tonic::body::Body> {
    let body = serde_json::to_vec(&to_json(status)).unwrap_or_default();
    let mut response = http::Response::new(tonic::body::Body::new(http_body_util::Full::new(
        bytes::Bytes::from(body),
    )));
    *response.status_mut() = http_status(status.code());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(wait) = retry_after(status) {
        headers.insert(header::RETRY_AFTER, wait);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::GatewayError;
    use std::time::Duration;

    #[test]
    fn invalid_input_names_the_field_in_json() {
        let status = GatewayError::invalid("message.payload", "too big").into_status();
        let json = to_json(&status);
        assert_eq!(json["code"], 3);
        assert_eq!(
            json["details"],
            json!([
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "INVALID_ARGUMENT",
                    "domain": "iggy-grpc",
                    "metadata": {},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "message.payload", "description": "too big"}],
                },
            ])
        );
        assert_eq!(http_status(status.code()), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_rate_limit_says_when_to_retry() {
        let status = GatewayError::RateLimited {
            what: "requests",
            retry_after: Duration::from_millis(1500),
        }
        .into_status();
        let response = response(&status);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let json = to_json(&status);
        let retry = json["details"]
            .as_array()
            .and_then(|details| {
                details.iter().find(|d| {
                    d["@type"].as_str() == Some("type.googleapis.com/google.rpc.RetryInfo")
                })
            })
            .cloned();
        assert_eq!(
            retry.map(|r| r["retryDelay"].clone()),
            Some(json!("1.500s"))
        );
    }

    #[test]
    fn a_bare_retry_info_rounds_up() {
        let mut details = tonic_types::ErrorDetails::new();
        details.set_retry_info(Some(Duration::from_millis(200)));
        let status = Status::with_error_details(Code::Unavailable, "later", details);
        assert_eq!(retry_after(&status), Some(HeaderValue::from_static("1")));
    }

    #[test]
    fn every_code_has_an_http_status() {
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(http_status(Code::AlreadyExists), StatusCode::CONFLICT);
    }
}
