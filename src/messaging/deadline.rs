//! The client's deadline (`grpc-timeout`), applied by the handler itself so a
//! publish that runs out of time answers DEADLINE_EXCEEDED with reason
//! OUTCOME_UNKNOWN, rather than being cut off by the transport.

use crate::{edge::CallContext, error::GatewayError};
use std::{future::Future, time::Duration};
use tonic::{Code, Request, metadata::MetadataMap};

/// Time kept back from the client's deadline so the answer reaches it in time.
const ANSWER_MARGIN: Duration = Duration::from_millis(20);

/// The time left for `request`: its `grpc-timeout` less the time since it
/// arrived and a margin for the answer to travel back.
pub fn remaining<T>(request: &Request<T>) -> Option<Duration> {
    let timeout = from_metadata(request.metadata())?;
    let elapsed = CallContext::of(request.extensions())
        .map_or(Duration::ZERO, |context| context.arrival().elapsed());
    Some(timeout.saturating_sub(elapsed))
}

/// The `grpc-timeout` header less a margin for the answer to travel back.
fn from_metadata(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Some(timeout.saturating_sub(ANSWER_MARGIN.min(timeout / 10)))
}

/// Runs a write within the deadline; if it expires, the write may still
/// complete in Iggy, so the outcome is reported as unknown.
pub async fn write_within<T>(
    deadline: Option<Duration>,
    write: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    match deadline {
        None => write.await,
        Some(deadline) => tokio::time::timeout(deadline, write)
            .await
            .unwrap_or_else(|_| {
                Err(GatewayError::OutcomeUnknown {
                    code: Code::DeadlineExceeded,
                    cause: format!("the client's deadline of {deadline:?} passed"),
                })
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", value.parse().expect("ascii"));
        metadata
    }

    #[test]
    fn parses_every_unit_and_keeps_a_margin() {
        assert_eq!(
            from_metadata(&metadata("2S")),
            Some(Duration::from_millis(1980))
        );
        assert_eq!(
            from_metadata(&metadata("100m")),
            Some(Duration::from_millis(90))
        );
        assert_eq!(
            from_metadata(&metadata("1M")),
            Some(Duration::from_millis(59_980))
        );
        assert!(from_metadata(&metadata("5000u")).is_some());
        assert_eq!(from_metadata(&metadata("x")), None);
        assert_eq!(from_metadata(&metadata("10Q")), None);
        assert_eq!(from_metadata(&MetadataMap::new()), None);
    }

    #[tokio::test]
    async fn an_expired_write_is_reported_as_unknown() {
        let result: Result<(), _> = write_within(
            Some(Duration::from_millis(1)),
            std::future::pending::<Result<(), GatewayError>>(),
        )
        .await;
        let error = result.unwrap_err();
        assert_eq!(error.code(), Code::DeadlineExceeded);
        assert_eq!(error.reason(), "OUTCOME_UNKNOWN");
    }
}
