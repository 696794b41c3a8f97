//! Stream administration: create, get, list, rename, delete, purge.

use super::convert;
use super::purge::{self, PartitionRef};
use crate::error::not_found;
use crate::{error::GatewayError, iggy::IggyPool, proto, validate};
use iggy::prelude::{Identifier, StreamClient, StreamDetails, StreamUpdateOptions};

pub async fn create(
    pool: &IggyPool,
    request: proto::CreateStreamRequest,
) -> Result<proto::CreateStreamResponse, GatewayError> {
    let name = validate::name("name", &request.name)?.to_owned();
    let created = pool
        .call(move |client| async move { client.create_stream(&name).await })
        .await?;
    Ok(proto::CreateStreamResponse {
        stream: convert::stream_details(&created).stream,
    })
}

pub async fn get(
    pool: &IggyPool,
    request: proto::GetStreamRequest,
) -> Result<proto::GetStreamResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let details = details(pool, &stream).await?;
    Ok(proto::GetStreamResponse {
        stream: Some(convert::stream_details(&details)),
    })
}

/// The stream's details, or NOT_FOUND naming it as the request did.
async fn details(pool: &IggyPool, stream: &Identifier) -> Result<StreamDetails, GatewayError> {
    let lookup = stream.clone();
    pool.call(move |client| async move { client.get_stream(&lookup).await })
        .await?
        .ok_or_else(|| not_found::stream(stream).into())
}

pub async fn list(pool: &IggyPool) -> Result<proto::ListStreamsResponse, GatewayError> {
    let streams = pool
        .call(|client| async move { client.get_streams().await })
        .await?;
    Ok(proto::ListStreamsResponse {
        streams: streams.iter().map(convert::stream).collect(),
    })
}

pub async fn update(
    pool: &IggyPool,
    request: proto::UpdateStreamRequest,
) -> Result<proto::UpdateStreamResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let name = validate::name("name", &request.name)?.to_owned();
    pool.call(move |client| async move {
        client
            .update_stream(&stream, &name, &StreamUpdateOptions::default())
            .await
    })
    .await?;
    Ok(proto::UpdateStreamResponse {})
}

pub async fn delete(
    pool: &IggyPool,
    request: proto::DeleteStreamRequest,
) -> Result<proto::DeleteStreamResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    pool.call(move |client| async move { client.delete_stream(&stream).await })
        .await?;
    Ok(proto::DeleteStreamResponse {})
}

pub async fn purge(
    pool: &IggyPool,
    request: proto::PurgeStreamRequest,
) -> Result<proto::PurgeStreamResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let details = details(pool, &stream).await?;
    let mut partitions = Vec::new();
    for topic in &details.topics {
        partitions.extend(PartitionRef::all_of(
            &stream,
            topic.id,
            topic.partitions_count,
        )?);
    }
    let oldest = purge::oldest_messages(pool, partitions).await?;
    pool.call(move |client| async move { client.purge_stream(&stream).await })
        .await?;
    purge::wait_until_landed(pool, oldest).await?;
    Ok(proto::PurgeStreamResponse {})
}
