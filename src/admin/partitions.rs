//! Adding partitions to and removing them from the end of a topic.

use crate::{error::GatewayError, iggy::IggyPool, proto, validate};
use iggy::prelude::PartitionClient;

pub async fn create(
    pool: &IggyPool,
    request: proto::CreatePartitionsRequest,
) -> Result<proto::CreatePartitionsResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let topic = validate::resource_id("topic", request.topic.as_ref())?;
    let count = validate::partitions_count("partitions_count", request.partitions_count)?;
    pool.call(move |client| async move { client.create_partitions(&stream, &topic, count).await })
        .await?;
    Ok(proto::CreatePartitionsResponse {})
}

pub async fn delete(
    pool: &IggyPool,
    request: proto::DeletePartitionsRequest,
) -> Result<proto::DeletePartitionsResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let topic = validate::resource_id("topic", request.topic.as_ref())?;
    let count = validate::partitions_count("partitions_count", request.partitions_count)?;
    pool.call(move |client| async move { client.delete_partitions(&stream, &topic, count).await })
        .await?;
    Ok(proto::DeletePartitionsResponse {})
}
