//! The Nack and ExtendAckDeadline RPCs, for Subscribe streams with
//! redelivery: validated here, handed to the stream through Iggy by
//! [`redelivery::hand_over_by_id`], whichever replica takes them.

use crate::{
    edge::Principal,
    error::GatewayError,
    iggy::IggyPool,
    messaging::redelivery::{self, Control},
    proto,
};

pub async fn nack(
    pool: &IggyPool,
    principal: &Principal,
    request: proto::NackRequest,
) -> Result<proto::NackResponse, GatewayError> {
    let delay = redelivery::nack_delay("delay", request.delay.as_ref())?;
    let control = Control::Nack {
        partition: request.partition_id,
        offset: request.offset,
        delay,
        reason: request.reason,
    };
    redelivery::hand_over_by_id(pool, principal, &request.subscription_id, control).await?;
    Ok(proto::NackResponse {})
}

pub async fn extend(
    pool: &IggyPool,
    principal: &Principal,
    request: proto::ExtendAckDeadlineRequest,
) -> Result<proto::ExtendAckDeadlineResponse, GatewayError> {
    let extension = redelivery::extension("extension", request.extension.as_ref())?;
    let control = Control::Extend {
        partition: request.partition_id,
        offset: request.offset,
        extension,
    };
    redelivery::hand_over_by_id(pool, principal, &request.subscription_id, control).await?;
    Ok(proto::ExtendAckDeadlineResponse {})
}
