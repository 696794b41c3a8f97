//! Reading, storing and deleting a consumer's stored offset.

use super::convert;
use crate::{
    error::GatewayError,
    iggy::{
        IggyPool,
        missing::{self, Named},
    },
    proto, validate,
};
use iggy::prelude::{Consumer, ConsumerKind, ConsumerOffsetClient, Identifier};

/// The identifiers every offset call needs, validated.
struct OffsetTarget {
    stream: Identifier,
    topic: Identifier,
    consumer: Consumer,
    partition_id: Option<u32>,
}

fn target(
    stream: Option<&proto::ResourceId>,
    topic: Option<&proto::ResourceId>,
    consumer: Option<&proto::Consumer>,
    partition_id: Option<u32>,
) -> Result<OffsetTarget, GatewayError> {
    let target = OffsetTarget {
        stream: validate::resource_id("stream", stream)?,
        topic: validate::resource_id("topic", topic)?,
        consumer: validate::consumer("consumer", consumer)?,
        partition_id,
    };
    if target.consumer.kind == ConsumerKind::Consumer && partition_id.is_none() {
        return Err(GatewayError::invalid(
            "partition_id",
            "is required for a named consumer",
        ));
    }
    Ok(target)
}

pub async fn get(
    pool: &IggyPool,
    request: proto::GetConsumerOffsetRequest,
) -> Result<proto::GetConsumerOffsetResponse, GatewayError> {
    let t = target(
        request.stream.as_ref(),
        request.topic.as_ref(),
        request.consumer.as_ref(),
        request.partition_id,
    )?;
    let named = Named {
        stream: Some(t.stream.clone()),
        topic: Some(t.topic.clone()),
        partition: t.partition_id,
        group: (t.consumer.kind == ConsumerKind::ConsumerGroup).then(|| t.consumer.id.clone()),
    };
    let offset = pool
        .call(move |client| async move {
            client
                .get_consumer_offset(&t.consumer, &t.stream, &t.topic, t.partition_id)
                .await
        })
        .await?;
    // Iggy answers "no offset" for names that do not exist, too.
    if offset.is_none()
        && let Some(missing) = missing::find(pool, &named).await
    {
        return Err(missing);
    }
    Ok(proto::GetConsumerOffsetResponse {
        offset: offset.as_ref().map(convert::consumer_offset),
    })
}

pub async fn store(
    pool: &IggyPool,
    request: proto::StoreConsumerOffsetRequest,
) -> Result<proto::StoreConsumerOffsetResponse, GatewayError> {
    let t = target(
        request.stream.as_ref(),
        request.topic.as_ref(),
        request.consumer.as_ref(),
        request.partition_id,
    )?;
    let offset = request.offset;
    pool.call(move |client| async move {
        client
            .store_consumer_offset(&t.consumer, &t.stream, &t.topic, t.partition_id, offset)
            .await
    })
    .await?;
    Ok(proto::StoreConsumerOffsetResponse {})
}

pub async fn delete(
    pool: &IggyPool,
    request: proto::DeleteConsumerOffsetRequest,
) -> Result<proto::DeleteConsumerOffsetResponse, GatewayError> {
    let t = target(
        request.stream.as_ref(),
        request.topic.as_ref(),
        request.consumer.as_ref(),
        request.partition_id,
    )?;
    pool.call(move |client| async move {
        client
            .delete_consumer_offset(&t.consumer, &t.stream, &t.topic, t.partition_id)
            .await
    })
    .await?;
    Ok(proto::DeleteConsumerOffsetResponse {})
}
