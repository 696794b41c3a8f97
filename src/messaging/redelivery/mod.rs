//! Redelivery for Consume streams: nacks with a delay, ack deadlines and
//! their extension, and dead letters after a number of attempts.
//!
//! Iggy stores offsets, not per-message state, so a message to deliver
//! again is copied into the consumer's retry topic (with its attempt, its
//! origin and when it may go out, in headers) and then settled where it
//! was: the stored offset moves past it. The stream reads the retry topic
//! as a second subscription of the same consumer and delivers each copy
//! when its time comes, under its original partition and offset. The
//! attempt count thus lives in Iggy, and any replica, or the same one after
//! a restart, carries on with it (docs/delivery.md, "Redelivery").

mod copies;
mod handover;
mod ledger;
mod stream;

pub use copies::Control;
pub use handover::{hand_over, hand_over_by_id};
pub use stream::{consume, subscribe};

use crate::{error::GatewayError, proto, validate};
use iggy::prelude::{Consumer, IdKind, Identifier};
use std::time::Duration;

/// Ack deadline when the request sets none, and the bounds of one.
pub const DEFAULT_ACK_DEADLINE: Duration = Duration::from_secs(60);
pub const MIN_ACK_DEADLINE: Duration = Duration::from_secs(1);
pub const MAX_ACK_DEADLINE: Duration = Duration::from_secs(600);
/// Longest delay a nack may ask for.
pub const MAX_NACK_DELAY: Duration = Duration::from_secs(3600);
/// Bounds of `max_attempts` (0: no limit).
pub const MIN_ATTEMPTS: u32 = 2;
pub const MAX_ATTEMPTS: u32 = 100;

/// How one stream delivers again.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The request field it came from, for errors.
    pub field: String,
    pub ack_deadline: Duration,
    /// 0: deliver again without limit.
    pub max_attempts: u32,
    /// Where messages past `max_attempts` go, in the same stream.
    pub dead_letter_topic: Option<Identifier>,
}

impl Policy {
    /// The policy `request` (the request field `field`) asks for.
    pub fn parse(field: &str, request: &proto::Redelivery) -> Result<Self, GatewayError> {
        let ack_deadline = match &request.ack_deadline {
            None => DEFAULT_ACK_DEADLINE,
            Some(deadline) => {
                let field = format!("{field}.ack_deadline");
                let field = field.as_str();
                let deadline = validate::duration(field, deadline)?;
                if !(MIN_ACK_DEADLINE..=MAX_ACK_DEADLINE).contains(&deadline) {
                    return Err(GatewayError::invalid(field, "must be 1s-600s"));
                }
                deadline
            }
        };
        let max_attempts = request.max_attempts;
        if max_attempts != 0 && !(MIN_ATTEMPTS..=MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(GatewayError::invalid(
                format!("{field}.max_attempts"),
                format!(
                    "must be {MIN_ATTEMPTS}-{MAX_ATTEMPTS}, or 0 for no limit; got {max_attempts}"
                ),
            ));
        }
        let dead_letter_topic = request
            .dead_letter_topic
            .as_ref()
            .map(|topic| validate::resource_id(&format!("{field}.dead_letter_topic"), Some(topic)))
            .transpose()?;
        if max_attempts != 0 && dead_letter_topic.is_none() {
            return Err(GatewayError::invalid(
                format!("{field}.dead_letter_topic"),
                "is required with max_attempts",
            ));
        }
        Ok(Self {
            field: field.to_owned(),
            ack_deadline,
            max_attempts,
            dead_letter_topic,
        })
    }

    /// Whether a message nacked or expired on delivery `attempt` goes to
    /// the dead-letter topic rather than out again.
    pub fn is_last(&self, attempt: u32) -> bool {
        self.max_attempts != 0 && attempt >= self.max_attempts
    }
}

/// A nack's delay (the request field `field`): 0 s - 1 h, none when unset.
pub fn nack_delay(
    field: &str,
    delay: Option<&prost_types::Duration>,
) -> Result<Duration, GatewayError> {
    let Some(delay) = delay else {
        return Ok(Duration::ZERO);
    };
    let delay = validate::duration(field, delay)?;
    if delay > MAX_NACK_DELAY {
        return Err(GatewayError::invalid(field, "must be 0s-3600s"));
    }
    Ok(delay)
}

/// A deadline extension (the request field `field`): 1 s - 600 s.
pub fn extension(
    field: &str,
    extension: Option<&prost_types::Duration>,
) -> Result<Duration, GatewayError> {
    let extension = match extension {
        Some(extension) => validate::duration(field, extension)?,
        None => Duration::ZERO,
    };
    if !(MIN_ACK_DEADLINE..=MAX_ACK_DEADLINE).contains(&extension) {
        return Err(GatewayError::invalid(field, "must be 1s-600s"));
    }
    Ok(extension)
}

/// The retry topic of `consumer` reading topic `topic_id`: one per
/// consumer, so one consumer's copies never reach another.
pub fn retry_topic(topic_id: u32, consumer: &Consumer) -> String {
    let kind = match consumer.kind {
        iggy::prelude::ConsumerKind::Consumer => "consumer",
        iggy::prelude::ConsumerKind::ConsumerGroup => "group",
    };
    let name = match consumer.id.kind {
        IdKind::Numeric => consumer.id.get_u32_value().unwrap_or_default().to_string(),
        IdKind::String => consumer.id.get_string_value().unwrap_or_default(),
    };
    format!("iggy-grpc.retry.{topic_id}.{kind}.{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(seconds: i64) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos: 0 }
    }

    fn field(error: GatewayError) -> String {
        match error {
            GatewayError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn a_policy_takes_defaults_and_refuses_what_is_out_of_range() {
        let policy =
            Policy::parse("start.redelivery", &proto::Redelivery::default()).expect("defaults");
        assert_eq!(policy.ack_deadline, DEFAULT_ACK_DEADLINE);
        assert!(!policy.is_last(1_000));
        let with = |deadline: Option<i64>, attempts: u32, dead_letter: bool| proto::Redelivery {
            ack_deadline: deadline.map(seconds),
            max_attempts: attempts,
            dead_letter_topic: dead_letter.then(|| proto::ResourceId {
                kind: Some(proto::resource_id::Kind::Name("dead".into())),
            }),
        };
        let refused =
            |request| field(Policy::parse("start.redelivery", &request).expect_err("refused"));
        assert_eq!(
            refused(with(Some(0), 0, false)),
            "start.redelivery.ack_deadline"
        );
        assert_eq!(
            refused(with(Some(601), 0, false)),
            "start.redelivery.ack_deadline"
        );
        assert_eq!(
            refused(with(None, 1, true)),
            "start.redelivery.max_attempts"
        );
        assert_eq!(
            refused(with(None, 101, true)),
            "start.redelivery.max_attempts"
        );
        assert_eq!(
            refused(with(None, 3, false)),
            "start.redelivery.dead_letter_topic"
        );
        let policy = Policy::parse("start.redelivery", &with(Some(5), 3, true)).expect("valid");
        assert!(!policy.is_last(2) && policy.is_last(3));
    }

    #[test]
    fn delays_and_extensions_have_bounds() {
        let delay = |value: Option<prost_types::Duration>| nack_delay("nack.delay", value.as_ref());
        assert_eq!(delay(None).expect("none"), Duration::ZERO);
        assert_eq!(delay(Some(seconds(3600))).expect("an hour"), MAX_NACK_DELAY);
        assert_eq!(
            field(delay(Some(seconds(3601))).expect_err("long")),
            "nack.delay"
        );
        assert_eq!(
            field(delay(Some(seconds(-1))).expect_err("negative")),
            "nack.delay"
        );
        let extend =
            |value: Option<prost_types::Duration>| extension("extend.extension", value.as_ref());
        assert_eq!(field(extend(None).expect_err("none")), "extend.extension");
        assert_eq!(extend(Some(seconds(600))).expect("max"), MAX_ACK_DEADLINE);
    }

    #[test]
    fn each_consumer_has_a_retry_topic_of_its_own() {
        let named = Consumer::new(Identifier::named("billing").expect("id"));
        let group = Consumer::group(Identifier::named("billing").expect("id"));
        assert_eq!(retry_topic(7, &named), "iggy-grpc.retry.7.consumer.billing");
        assert_eq!(retry_topic(7, &group), "iggy-grpc.retry.7.group.billing");
    }
}
