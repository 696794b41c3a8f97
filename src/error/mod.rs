//! The gateway's one error type and its one mapping to `tonic::Status`.
//!
//! Handlers return `Result<_, GatewayError>`; only [`GatewayError::into_status`]
//! decides what a client sees: the gRPC code, a message, a google.rpc
//! ErrorInfo with a machine-readable reason, a BadRequest naming the field for
//! invalid input, and a RetryInfo where waiting helps.

mod iggy_codes;
pub mod not_found;
pub mod transport;

pub use iggy_codes::{grpc_code, is_connection_lost, is_outcome_unknown};

use iggy::prelude::IggyError;
use std::{collections::HashMap, time::Duration};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Response metadata with the seconds to wait, beside RetryInfo.
pub const RETRY_AFTER_HEADER: &str = "retry-after";

/// The `domain` of every ErrorInfo this gateway sends.
pub const ERROR_DOMAIN: &str = "iggy-grpc";

/// How long a client is told to wait before retrying while Iggy is away.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Everything that can go wrong while serving a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed; it never reached Iggy.
    #[error("invalid {field}: {description}")]
    InvalidArgument {
        /// The request field at fault, e.g. `stream.name` or `messages[3].id`.
        field: String,
        /// What is wrong with it and what is allowed.
        description: String,
    },
    /// The request body is not a protobuf message of the method's type.
    #[error("the request does not decode as this method's message: {0}")]
    MalformedRequest(String),
    /// The request message is over `--max-request-bytes`.
    #[error("the request message is over the limit of {limit} bytes (--max-request-bytes)")]
    RequestTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// No method of the gateway has this path.
    #[error("the gateway serves no method {0}")]
    UnknownMethod(String),
    /// The request is compressed with an encoding the gateway does not take.
    #[error("{0}; send the request uncompressed")]
    UnsupportedEncoding(String),
    /// A refusal made below the gateway's own code (by tonic or hyper), with
    /// no better reason known than its code.
    #[error("{message}")]
    Transport {
        /// The code it was sent with.
        code: Code,
        /// The machine-readable reason.
        reason: &'static str,
        /// What it said.
        message: String,
    },
    /// Iggy answered with an error. Only the code crosses the wire, so the
    /// message is built from the error's name, not from the SDK's text (which
    /// would show placeholder values).
    #[error("{}", iggy_codes::describe(.0))]
    Iggy(IggyError),
    /// No connection to Iggy is live: it is down or unreachable.
    #[error("Iggy is unreachable; the gateway is reconnecting")]
    IggyUnavailable,
    /// Every pooled connection stayed busy for the whole acquire timeout.
    #[error("all {pool_size} Iggy connections are busy; retry shortly")]
    PoolExhausted {
        /// The pool size, to say why.
        pool_size: usize,
        /// A hint for the client's RetryInfo.
        retry_after: Duration,
    },
    /// A write was sent but no answer came back (connection cut, Iggy or the
    /// client's deadline timed out): it may or may not be stored.
    #[error(
        "the outcome is unknown ({cause}): the messages may or may not be stored; \
         retry with the same message ids"
    )]
    OutcomeUnknown {
        /// UNAVAILABLE for a lost connection, DEADLINE_EXCEEDED for a timeout.
        code: Code,
        /// What happened.
        cause: String,
    },
    /// No live subscription has this id (it ended, or never existed).
    #[error("no subscription {0} is live on this gateway")]
    SubscriptionNotFound(String),
    /// The call is valid but the state does not allow it.
    #[error("{message}")]
    FailedPrecondition {
        /// The machine-readable reason.
        reason: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The gateway already serves its maximum of subscriptions.
    #[error("the gateway serves its maximum of {limit} subscriptions; retry later")]
    TooManySubscriptions {
        /// The configured maximum.
        limit: usize,
    },
    /// The gateway already serves its maximum of subscriptions that hold
    /// an Iggy connection of their own (group members, manual-ack ones).
    #[error(
        "the gateway serves its maximum of {limit} subscriptions with an Iggy connection of their own (consumer-group members and manual-ack subscriptions); retry later or on another replica"
    )]
    TooManyGroupMembers {
        /// The configured maximum.
        limit: usize,
    },
    /// Too many subscriptions were opening for this one to get its turn.
    #[error("{opening} subscriptions are opening their Iggy connections; retry shortly")]
    SubscriptionsOpening {
        /// How many open at once.
        opening: usize,
    },
    /// The gateway is shutting down.
    #[error("the gateway is shutting down; reconnect (with your resume token) elsewhere or later")]
    ShuttingDown,
    /// The stream reached the gateway's maximum stream age.
    #[error("the stream reached its maximum age; resubscribe with the resume token")]
    StreamMaxAge,
    /// The call carries no valid credentials.
    #[error("{message}")]
    Unauthenticated {
        /// API_KEY_MISSING or API_KEY_INVALID.
        reason: &'static str,
        /// What is missing or wrong (never the secret).
        message: String,
    },
    /// The peer failed authentication too often and is locked out.
    #[error("too many failed authentication attempts from this address; retry after {}s", retry_after_seconds(*.retry_after))]
    LockedOut {
        /// How long the lockout still lasts.
        retry_after: Duration,
    },
    /// The caller is known but may not make this call.
    #[error("{message}")]
    PermissionDenied {
        /// SCOPE_MISSING, STREAM_NOT_ALLOWED, ...
        reason: &'static str,
        /// What was refused and why.
        message: String,
    },
    /// The caller is over its rate limit.
    #[error("rate limit exceeded for {what}; retry after {}s", retry_after_seconds(*.retry_after))]
    RateLimited {
        /// `requests` or `messages`.
        what: &'static str,
        /// When the call would be admitted.
        retry_after: Duration,
    },
    /// A batch larger than the caller's message burst: it can never pass as one call.
    #[error(
        "the batch has {count} messages but the message rate limit allows at most {burst} at once; split it"
    )]
    OverRateBurst {
        /// Messages in the batch.
        count: usize,
        /// The caller's message burst.
        burst: u32,
    },
    /// The gateway is running its maximum of concurrent calls.
    #[error("the gateway is at its limit of {limit} concurrent calls; retry shortly")]
    Overloaded {
        /// The configured limit.
        limit: usize,
    },
    /// Iggy committed a purge but had not emptied every partition in time:
    /// messages published before it lands would be wiped with it.
    #[error(
        "Iggy accepted the purge but {partitions} partition(s) still held their old messages after {}s; \
         retry the purge before publishing to them",
        .waited.as_secs()
    )]
    PurgePending {
        /// How long the gateway waited.
        waited: Duration,
        /// Partitions not yet emptied.
        partitions: usize,
    },
    /// A fault inside the gateway; a bug if it is ever seen.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How long a client is told to wait when the gateway sheds load.
const OVERLOADED_RETRY_AFTER: Duration = Duration::from_millis(200);

/// Whole seconds to wait, rounded up (what `retry-after` carries).
fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

impl GatewayError {
    /// Bad input in `field`, described for a human.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The gRPC code a client receives for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } | Self::MalformedRequest(_) => Code::InvalidArgument,
            Self::RequestTooLarge { .. } => Code::OutOfRange,
            Self::UnknownMethod(_) | Self::UnsupportedEncoding(_) => Code::Unimplemented,
            Self::Transport { code, .. } => *code,
            Self::Iggy(error) => grpc_code(error),
            Self::IggyUnavailable => Code::Unavailable,
            Self::PoolExhausted { .. } => Code::ResourceExhausted,
            Self::OutcomeUnknown { code, .. } => *code,
            Self::SubscriptionNotFound(_) => Code::NotFound,
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::TooManySubscriptions { .. } | Self::TooManyGroupMembers { .. } => {
                Code::ResourceExhausted
            }
            Self::ShuttingDown | Self::StreamMaxAge | Self::PurgePending { .. } => {
                Code::Unavailable
            }
            Self::Unauthenticated { .. } | Self::LockedOut { .. } => Code::Unauthenticated,
            Self::PermissionDenied { .. } => Code::PermissionDenied,
            Self::RateLimited { .. }
            | Self::OverRateBurst { .. }
            | Self::Overloaded { .. }
            | Self::SubscriptionsOpening { .. } => Code::ResourceExhausted,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The machine-readable reason sent in ErrorInfo.
    pub fn reason(&self) -> String {
        match self {
            Self::InvalidArgument { .. } => "INVALID_ARGUMENT".into(),
            Self::MalformedRequest(_) => "MALFORMED_REQUEST".into(),
            Self::RequestTooLarge { .. } => "REQUEST_TOO_LARGE".into(),
            Self::UnknownMethod(_) => "UNKNOWN_METHOD".into(),
            Self::UnsupportedEncoding(_) => "UNSUPPORTED_ENCODING".into(),
            Self::Transport { reason, .. } => (*reason).into(),
            Self::Iggy(error) => iggy_codes::reason(error),
            Self::IggyUnavailable => "IGGY_UNAVAILABLE".into(),
            Self::PoolExhausted { .. } => "POOL_EXHAUSTED".into(),
            Self::OutcomeUnknown { .. } => "OUTCOME_UNKNOWN".into(),
            Self::SubscriptionNotFound(_) => "SUBSCRIPTION_NOT_FOUND".into(),
            Self::FailedPrecondition { reason, .. } => (*reason).into(),
            Self::TooManySubscriptions { .. } => "TOO_MANY_SUBSCRIPTIONS".into(),
            Self::TooManyGroupMembers { .. } => "TOO_MANY_GROUP_MEMBERS".into(),
            Self::ShuttingDown => "GATEWAY_SHUTTING_DOWN".into(),
            Self::StreamMaxAge => "STREAM_MAX_AGE".into(),
            Self::PurgePending { .. } => "PURGE_PENDING".into(),
            Self::Unauthenticated { reason, .. } | Self::PermissionDenied { reason, .. } => {
                (*reason).into()
            }
            Self::LockedOut { .. } => "AUTH_LOCKED_OUT".into(),
            Self::RateLimited { .. } => "RATE_LIMITED".into(),
            Self::OverRateBurst { .. } => "BATCH_OVER_RATE_BURST".into(),
            Self::Overloaded { .. } => "GATEWAY_OVERLOADED".into(),
            Self::SubscriptionsOpening { .. } => "SUBSCRIPTIONS_OPENING".into(),
            Self::Internal(_) => "INTERNAL".into(),
        }
    }

    /// The status a client receives, with its rich error details.
    pub fn into_status(self) -> Status {
        self.into_status_with(HashMap::new())
    }

    /// The status, with `metadata` added to its ErrorInfo (e.g. the resume
    /// token of a subscription that ends).
    pub fn into_status_with(self, mut metadata: HashMap<String, String>) -> Status {
        let mut details = ErrorDetails::new();
        if let Self::InvalidArgument { field, description } = &self {
            details.add_bad_request_violation(field.clone(), description.clone());
        }
        match &self {
            Self::Iggy(error) => {
                metadata.insert("iggy_code".to_owned(), error.as_code().to_string());
            }
            Self::RequestTooLarge { limit, .. } => {
                metadata.insert("limit_bytes".to_owned(), limit.to_string());
            }
            _ => {}
        }
        let retry_after = self.retry_after();
        if retry_after.is_some() {
            details.set_retry_info(retry_after);
        }
        details.set_error_info(self.reason(), ERROR_DOMAIN, metadata);
        let mut status = Status::with_error_details(self.code(), self.to_string(), details);
        if let Some(wait) = retry_after
            && let Ok(value) = retry_after_seconds(wait).to_string().parse()
        {
            // For clients and proxies that read HTTP's Retry-After, not RetryInfo.
            status.metadata_mut().insert(RETRY_AFTER_HEADER, value);
        }
        status
    }

    /// How long a client should wait before retrying, where waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Iggy(error) => {
                (grpc_code(error) == Code::Unavailable).then_some(UNAVAILABLE_RETRY_AFTER)
            }
            Self::PoolExhausted { retry_after, .. }
            | Self::LockedOut { retry_after }
            | Self::RateLimited { retry_after, .. } => Some(*retry_after),
            Self::StreamMaxAge => Some(Duration::ZERO),
            Self::IggyUnavailable
            | Self::OutcomeUnknown { .. }
            | Self::ShuttingDown
            | Self::PurgePending { .. }
            | Self::TooManySubscriptions { .. }
            | Self::TooManyGroupMembers { .. } => Some(UNAVAILABLE_RETRY_AFTER),
            Self::Overloaded { .. } | Self::SubscriptionsOpening { .. } => {
                Some(OVERLOADED_RETRY_AFTER)
            }
            Self::InvalidArgument { .. }
            | Self::MalformedRequest(_)
            | Self::RequestTooLarge { .. }
            | Self::UnknownMethod(_)
            | Self::UnsupportedEncoding(_)
            | Self::Transport { .. }
            | Self::SubscriptionNotFound(_)
            | Self::FailedPrecondition { .. }
            | Self::Unauthenticated { .. }
            | Self::PermissionDenied { .. }
            | Self::OverRateBurst { .. }
            | Self::Internal(_) => None,
        }
    }
}

impl GatewayError {
    /// The error for a failed read: a lost connection means Iggy is
    /// unreachable (IGGY_UNAVAILABLE), anything else is Iggy's own error.
    pub fn from_read(error: IggyError) -> Self {
        if is_connection_lost(&error) {
            Self::IggyUnavailable
        } else {
            Self::Iggy(error)
        }
    }

    /// The error for a failed write: an outcome-unknown error where the write
    /// may have reached Iggy, the plain Iggy error otherwise.
    pub fn from_write(error: IggyError) -> Self {
        if is_outcome_unknown(&error) {
            let code = if grpc_code(&error) == Code::DeadlineExceeded {
                Code::DeadlineExceeded
            } else {
                Code::Unavailable
            };
            Self::OutcomeUnknown {
                code,
                cause: iggy_codes::describe(&error),
            }
        } else {
            Self::Iggy(error)
        }
    }
}

impl From<IggyError> for GatewayError {
    fn from(error: IggyError) -> Self {
        Self::Iggy(error)
    }
}

impl From<GatewayError> for Status {
    fn from(error: GatewayError) -> Self {
        error.into_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_names_the_field_in_a_bad_request() {
        let status = GatewayError::invalid("stream.name", "must not be empty").into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = &details.bad_request().expect("bad request").field_violations;
        assert_eq!(violations[0].field, "stream.name");
        assert_eq!(
            details.error_info().expect("error info").domain,
            ERROR_DOMAIN
        );
    }

    #[test]
    fn iggy_errors_carry_their_reason_and_code() {
        let status = GatewayError::from(IggyError::StreamNameNotFound("s".into())).into_status();
        assert_eq!(status.code(), Code::NotFound);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "STREAM_NAME_NOT_FOUND");
        assert_eq!(
            info.metadata.get("iggy_code").map(String::as_str),
            Some("1010")
        );
    }

    #[test]
    fn a_purge_that_has_not_landed_asks_for_a_retry() {
        let pending = GatewayError::PurgePending {
            waited: Duration::from_secs(10),
            partitions: 2,
        };
        assert_eq!(pending.code(), Code::Unavailable);
        assert_eq!(pending.reason(), "PURGE_PENDING");
        assert!(pending.retry_after().is_some());
        assert!(pending.to_string().contains("2 partition(s)"));
    }

    #[test]
    fn a_write_cut_off_mid_flight_is_not_reported_as_a_plain_failure() {
        let cut = GatewayError::from_write(IggyError::Disconnected);
        assert_eq!(cut.code(), Code::Unavailable);
        assert_eq!(cut.reason(), "OUTCOME_UNKNOWN");
        let never_sent = GatewayError::from_write(IggyError::NotConnected);
        assert_eq!(never_sent.reason(), "NOT_CONNECTED");
        let timed_out = GatewayError::from_write(IggyError::TaskTimeout);
        assert_eq!(timed_out.code(), Code::DeadlineExceeded);
    }

    #[test]
    fn a_read_over_a_lost_connection_means_iggy_is_unreachable() {
        assert_eq!(
            GatewayError::from_read(IggyError::Disconnected).reason(),
            "IGGY_UNAVAILABLE"
        );
        assert_eq!(
            GatewayError::from_read(IggyError::InvalidOffset(1)).reason(),
            "INVALID_OFFSET"
        );
    }

    #[test]
    fn unavailability_tells_the_client_when_to_retry() {
        let status = GatewayError::IggyUnavailable.into_status();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.get_error_details().retry_info().is_some());
    }
}
