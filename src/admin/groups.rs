//! Consumer group administration: create, get, list, delete.

use super::convert;
use crate::error::not_found;
use crate::{error::GatewayError, iggy::IggyPool, proto, validate};
use iggy::prelude::ConsumerGroupClient;

pub async fn create(
    pool: &IggyPool,
    request: proto::CreateConsumerGroupRequest,
) -> Result<proto::CreateConsumerGroupResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let topic = validate::resource_id("topic", request.topic.as_ref())?;
    let name = validate::name("name", &request.name)?.to_owned();
    let created = pool
        .call(
            move |client| async move { client.create_consumer_group(&stream, &topic, &name).await },
        )
        .await?;
    Ok(proto::CreateConsumerGroupResponse {
        group: Some(convert::consumer_group_details(&created)),
    })
}

pub async fn get(
    pool: &IggyPool,
    request: proto::GetConsumerGroupRequest,
) -> Result<proto::GetConsumerGroupResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let topic = validate::resource_id("topic", request.topic.as_ref())?;
    let group = validate::resource_id("group", request.group.as_ref())?;
    let lookup = (stream.clone(), topic.clone(), group.clone());
    let details = pool
        .call(move |client| async move {
            let (stream, topic, group) = lookup;
            client.get_consumer_group(&stream, &topic, &group).await
        })
        .await?
        .ok_or_else(|| not_found::consumer_group(&topic, &group))?;
    Ok(proto::GetConsumerGroupResponse {
        group: Some(convert::consumer_group_details(&details)),
    })
}

pub async fn list(
    pool: &IggyPool,
    request: proto::ListConsumerGroupsRequest,
) -> Result<proto::ListConsumerGroupsResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let topic = validate::resource_id("topic", request.topic.as_ref())?;
    let groups = pool
        .call(move |client| async move { client.get_consumer_groups(&stream, &topic).await })
        .await?;
    Ok(proto::ListConsumerGroupsResponse {
        groups: groups.iter().map(convert::consumer_group).collect(),
    })
}

pub async fn delete(
    pool: &IggyPool,
    request: proto::DeleteConsumerGroupRequest,
) -> Result<proto::DeleteConsumerGroupResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let topic = validate::resource_id("topic", request.topic.as_ref())?;
    let group = validate::resource_id("group", request.group.as_ref())?;
    pool.call(
        move |client| async move { client.delete_consumer_group(&stream, &topic, &group).await },
    )
    .await?;
    Ok(proto::DeleteConsumerGroupResponse {})
}
