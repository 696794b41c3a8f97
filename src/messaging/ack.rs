//! The Ack RPC: acknowledges a delivered offset on a live subscription (held
//! by this replica or another), or, without a subscription id, a consumer's
//! or group's offset by name; either way the replica holding the stream
//! frees the room.

use crate::{
    edge::Principal, error::GatewayError, messaging::subscribe::Subscriptions, proto, validate,
};

pub async fn ack(
    subscriptions: &Subscriptions,
    principal: &Principal,
    request: proto::AckRequest,
) -> Result<proto::AckResponse, GatewayError> {
    if !request.subscription_id.is_empty() {
        subscriptions
            .ack(
                principal,
                &request.subscription_id,
                request.partition_id,
                request.offset,
            )
            .await?;
        return Ok(proto::AckResponse {});
    }
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let topic = validate::resource_id("topic", request.topic.as_ref())?;
    let consumer = validate::consumer("consumer", request.consumer.as_ref())?;
    subscriptions
        .ack_by_names(
            &stream,
            &topic,
            consumer,
            request.partition_id,
            request.offset,
        )
        .await?;
    Ok(proto::AckResponse {})
}
