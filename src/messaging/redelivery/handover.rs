//! Acks, nacks and extensions that unary calls take for a stream with
//! redelivery, on whichever replica: appended as control records to the
//! consumer's retry topic, which the stream reads (the replica holding it,
//! or the next one to open it). Only that stream knows what is out, so a
//! call answers once the record is stored, not once it took.

use super::{
    copies::{self, Control},
    retry_topic,
};
use crate::{
    edge::{Principal, access},
    error::{GatewayError, not_found},
    iggy::IggyPool,
    messaging::subscribe::{SubscriptionRef, stream_ref},
};
use iggy::prelude::{
    Consumer, ConsumerGroupClient, ConsumerKind, IdKind, Identifier, IggyTimestamp, MessageClient,
    Partitioning, TopicClient,
};

/// Hands `control` to the stream `subscription_id` names, for `principal`
/// (who must be allowed its stream): FAILED_PRECONDITION, NOT_REDELIVERING,
/// for a stream without redelivery.
pub async fn hand_over_by_id(
    pool: &IggyPool,
    principal: &Principal,
    subscription_id: &str,
    control: Control,
) -> Result<(), GatewayError> {
    let reference = SubscriptionRef::decode(subscription_id)
        .ok_or_else(|| GatewayError::SubscriptionNotFound(subscription_id.to_owned()))?;
    access::check_stream(principal, Some(stream_ref(&reference.stream)))?;
    if !reference.redelivery {
        return Err(GatewayError::FailedPrecondition {
            reason: "NOT_REDELIVERING",
            message:
                "this subscription was not opened with redelivery; nack and ack deadlines need it"
                    .into(),
        });
    }
    hand_over(pool, &reference, control).await
}

/// Hands `control` to the stream `reference` names.
pub async fn hand_over(
    pool: &IggyPool,
    reference: &SubscriptionRef,
    control: Control,
) -> Result<(), GatewayError> {
    let (stream, topic) = (reference.stream.clone(), reference.topic.clone());
    let details = pool
        .call(move |client| async move { client.get_topic(&stream, &topic).await })
        .await?
        .ok_or_else(|| not_found::topic(&reference.stream, &reference.topic))?;
    let consumer = named_consumer(
        pool,
        &reference.stream,
        &reference.topic,
        &reference.consumer,
    )
    .await?;
    let retry = Identifier::named(&retry_topic(details.id, &consumer))?;
    let record = copies::control_record(&control, IggyTimestamp::now().as_micros());
    let stream = reference.stream.clone();
    let sent = pool
        .call(move |client| async move {
            let mut records = vec![record];
            client
                .send_messages(
                    &stream,
                    &retry,
                    &Partitioning::partition_id(0),
                    &mut records,
                )
                .await
        })
        .await;
    match sent {
        Ok(_) => Ok(()),
        // No retry topic: no stream of this consumer ever asked for redelivery.
        Err(error) if crate::iggy::missing::is_not_found(&error) => {
            Err(GatewayError::SubscriptionNotFound(String::new()))
        }
        Err(GatewayError::Iggy(error)) => Err(GatewayError::from_write(error)),
        Err(error) => Err(error),
    }
}

/// `consumer` as its retry topic is named: a group named by its numeric id
/// is named by its name.
pub async fn named_consumer(
    pool: &IggyPool,
    stream: &Identifier,
    topic: &Identifier,
    consumer: &Consumer,
) -> Result<Consumer, GatewayError> {
    if consumer.kind != ConsumerKind::ConsumerGroup || consumer.id.kind == IdKind::String {
        return Ok(consumer.clone());
    }
    let (stream, topic, group) = (stream.clone(), topic.clone(), consumer.id.clone());
    let (name, group) = (topic.clone(), group.clone());
    let details = pool
        .call(move |client| async move { client.get_consumer_group(&stream, &topic, &group).await })
        .await?
        .ok_or_else(|| not_found::consumer_group(&name, &consumer.id))?;
    Ok(Consumer::group(Identifier::named(&details.name)?))
}
