//! What is known of one call beyond its message: when it arrived, its
//! request id and trace context, and who is calling.
//!
//! `CallContextLayer` makes one per call, outermost among the edge layers,
//! and puts it in the request's extensions; the auth layer fills in the
//! principal, once. The call log, the metrics, the deadline and the handlers
//! all read this one value: nothing else about the call travels in
//! extensions, and nothing travels back in the response.

use super::{Principal, RequestId, Traceparent};
use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};
use tonic::codegen::http::Extensions;

/// One call's context; shared as `Arc<CallContext>`.
#[derive(Debug)]
pub struct CallContext {
    arrival: Instant,
    request_id: RequestId,
    traceparent: Option<Traceparent>,
    principal: OnceLock<Arc<Principal>>,
}

impl CallContext {
    /// A call that arrived at `arrival` with these ids.
    pub fn new(arrival: Instant, request_id: RequestId, traceparent: Option<Traceparent>) -> Self {
        Self {
            arrival,
            request_id,
            traceparent,
            principal: OnceLock::new(),
        }
    }

    /// The context the layer put in `extensions`, if any.
    pub fn of(extensions: &Extensions) -> Option<&Arc<Self>> {
        extensions.get::<Arc<Self>>()
    }

    /// When the call arrived: deadlines (`grpc-timeout`) are measured from here.
    pub fn arrival(&self) -> Instant {
        self.arrival
    }

    /// The call's request id (the client's, or generated).
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The client's W3C trace context, when it sent a valid one.
    pub fn traceparent(&self) -> Option<&Traceparent> {
        self.traceparent.as_ref()
    }

    /// Who is calling, once authentication has said; `None` for open
    /// methods (health, open reflection), which name no caller.
    pub fn principal(&self) -> Option<&Arc<Principal>> {
        self.principal.get()
    }

    /// Records who is calling; the first answer stands.
    pub fn set_principal(&self, principal: Arc<Principal>) {
        let _ = self.principal.set(principal);
    }
}
