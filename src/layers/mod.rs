//! Tower layers around the gRPC services, one file per layer.
//!
//! Outside them the web's layers (CORS, HTTP/JSON and SSE, gRPC-Web; see
//! `web`) turn every other transport into gRPC calls first, so these see
//! gRPC only. The order is deliberate (outermost first):
//!
//! 1. [`ErrorDetailsLayer`]: every error leaving the gateway carries an
//!    ErrorInfo reason, including the ones tonic makes itself.
//! 2. [`CallContextLayer`]: the call's one context (arrival, request id,
//!    trace context, and the principal slot auth fills), so every call, even
//!    a refused one, gets a request id, a (debug) tracing span and the id
//!    echoed back.
//! 3. [`CallLogLayer`]: one log line and the metrics per call, so refusals
//!    by the layers below are counted and logged too.
//! 4. [`AuthLayer`]: who is calling and whether the method's scope allows it;
//!    cheap refusals before any limit is spent.
//! 5. [`RateLimitLayer`]: per-principal request rates, which need the
//!    principal.
//! 6. [`LoadShedLayer`]: the global concurrency limit, so only calls that
//!    will really run take a slot.

mod auth;
mod call_context;
mod call_log;
mod error_details;
mod load_shed;
mod rate_limit;

pub use auth::{API_KEY_HEADER, AuthLayer, Authenticator};
pub use call_context::CallContextLayer;
pub use call_log::CallLogLayer;
pub use error_details::ErrorDetailsLayer;
pub use load_shed::LoadShedLayer;
pub use rate_limit::RateLimitLayer;
