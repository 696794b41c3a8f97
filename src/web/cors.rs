//! Cross-origin access for browsers (tower-http's CORS), from an origin
//! allow-list: none allowed unless configured. Preflights are answered
//! before the edge (they carry no key); the headers a gRPC-Web or JSON
//! client reads are exposed to its script.

use std::time::Duration;
use tonic::codegen::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// The response headers a browser script may read.
const EXPOSED: [&str; 5] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "x-request-id",
    "retry-after",
];

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// An origin in the allow-list that cannot be one.
#[derive(Debug, thiserror::Error)]
#[error("--cors-allowed-origins: {0:?} is not an origin (scheme://host[:port], no path), nor *")]
pub struct OriginError(String);

/// The CORS layer for `origins`; `None` when the list is empty.
pub fn layer(origins: &[String]) -> Result<Option<CorsLayer>, OriginError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .map(|origin| origin_value(origin))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(EXPOSED.map(HeaderName::from_static))
            .max_age(PREFLIGHT_MAX_AGE),
    ))
}

/// `origin` as the header value browsers send, if it is one.
fn origin_value(origin: &str) -> Result<HeaderValue, OriginError> {
    let invalid = || OriginError(origin.to_owned());
    let (scheme, host) = origin.split_once("://").ok_or_else(invalid)?;
    if scheme.is_empty() || host.is_empty() || host.contains('/') {
        return Err(invalid());
    }
    HeaderValue::from_str(origin).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_origins_is_no_cors() {
        assert!(layer(&[]).expect("valid").is_none());
    }

    #[test]
    fn origins_must_be_origins() {
        for good in ["https://app.example.com", "http://127.0.0.1:8080", "*"] {
            assert!(layer(&[good.to_owned()]).is_ok(), "{good}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://",
            "://x",
        ] {
            assert!(layer(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
