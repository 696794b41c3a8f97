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
    edge::Principal,
    error::{GatewayError, not_found},
    iggy::IggyPool,
    messaging::subscribe::{self, SubscriptionRef},
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
    let reference = subscribe::admitted(principal, subscription_id)?;
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
    let retry = retry_topic_of(
        pool,
        &reference.stream,
        &reference.topic,
        details.id,
        &reference.consumer,
    )
    .await?;
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

/// The retry topic of `consumer` reading `topic` (numeric id `topic_id`):
/// named by the consumer's name, so a group named by its numeric id is
/// looked up first.
pub async fn retry_topic_of(
    pool: &IggyPool,
    stream: &Identifier,
    topic: &Identifier,
    topic_id: u32,
    consumer: &Consumer,
) -> Result<Identifier, GatewayError> {
    let consumer =
        if consumer.kind != ConsumerKind::ConsumerGroup || consumer.id.kind == IdKind::String {
            consumer.clone()
        } else {
            let (stream, by, group) = (stream.clone(), topic.clone(), consumer.id.clone());
            let details =
                pool.call(move |client| async move {
                    client.get_consumer_group(&stream, &by, &group).await
                })
                .await?
                .ok_or_else(|| not_found::consumer_group(topic, &consumer.id))?;
            Consumer::group(Identifier::named(&details.name)?)
        };
    Ok(Identifier::named(&retry_topic(topic_id, &consumer))?)
}
