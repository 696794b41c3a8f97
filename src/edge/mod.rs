//! The edge: who comes in and how fast. API keys with scopes and stream
//! allow-lists, brute-force lockout, per-principal rate limits, request ids
//! and trace context, TLS. The tower layers in [`crate::layers`] apply these
//! to every call; [`access`] is the part handlers apply once a body is
//! decoded.

pub mod access;
pub mod call_context;
pub mod http2_refusals;
pub mod keys;
pub mod lockout;
pub mod method;
pub mod peer;
pub mod principal;
pub mod rate_limits;
pub mod request_id;
pub mod tls;

pub use call_context::CallContext;
pub use keys::{ApiKey, ApiKeys};
pub use lockout::Lockout;
pub use principal::{Identity, Principal, Scope, StreamRef};
pub use rate_limits::{RateLimits, RateSpec, Refusal};
pub use request_id::{RequestId, Traceparent};
