//! The Ack RPC: acknowledges a delivered offset on a live subscription (held
//! by this replica or another), or, without a subscription id, stores a
//! consumer's offset directly.

use crate::{
    edge::Principal, error::GatewayError, iggy::IggyPool, messaging::subscribe::Subscriptions,
    proto, validate,
};
use iggy::prelude::ConsumerOffsetClient;

pub async fn ack(
    pool: &IggyPool,
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
    let (partition, offset) = (request.partition_id, request.offset);
    pool.call(move |client| async move {
        client
            .store_consumer_offset(&consumer, &stream, &topic, Some(partition), offset)
            .await
    })
    .await?;
    Ok(proto::AckResponse {})
}
