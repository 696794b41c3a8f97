//! Topic administration: create (partitions, expiry, size limit,
//! compression), get, list, update, delete, purge.

use super::convert::{self, TopicSettings};
use super::purge::{self, PartitionRef};
use crate::error::not_found;
use crate::{
    error::GatewayError,
    iggy::{
        IggyPool,
        missing::{self, Named},
    },
    proto, validate,
};
use iggy::prelude::{
    Identifier, IggyError, TopicClient, TopicCreateOptions, TopicDetails, TopicUpdateOptions,
};

pub async fn create(
    pool: &IggyPool,
    request: proto::CreateTopicRequest,
) -> Result<proto::CreateTopicResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let name = validate::name("name", &request.name)?.to_owned();
    let partitions_count =
        validate::partitions_count("partitions_count", request.partitions_count)?;
    let settings = TopicSettings::parse(
        request.compression,
        request.message_expiry.as_ref(),
        request.max_topic_size.as_ref(),
    )?;
    if request.messages_required_to_save == Some(0) {
        return Err(GatewayError::invalid(
            "messages_required_to_save",
            "must be at least 1",
        ));
    }
    let options = TopicCreateOptions {
        partitions_count: Some(partitions_count),
        enforce_fsync: request.enforce_fsync,
        messages_required_to_save: request.messages_required_to_save,
        compression_algorithm: settings.compression,
        message_expiry: settings.message_expiry,
        max_topic_size: settings.max_topic_size,
        ..TopicCreateOptions::default()
    };
    let created = pool
        .call(move |client| async move { client.create_topic(&stream, &name, &options).await })
        .await?;
    Ok(proto::CreateTopicResponse {
        topic: Some(convert::topic_details(&created)),
    })
}

pub async fn get(
    pool: &IggyPool,
    request: proto::GetTopicRequest,
) -> Result<proto::GetTopicResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let topic = validate::resource_id("topic", request.topic.as_ref())?;
    let details = details(pool, &stream, &topic).await?;
    Ok(proto::GetTopicResponse {
        topic: Some(convert::topic_details(&details)),
    })
}

/// The topic's details, or NOT_FOUND naming it as the request did.
async fn details(
    pool: &IggyPool,
    stream: &Identifier,
    topic: &Identifier,
) -> Result<TopicDetails, GatewayError> {
    let (lookup_stream, lookup_topic) = (stream.clone(), topic.clone());
    pool.call(move |client| async move { client.get_topic(&lookup_stream, &lookup_topic).await })
        .await?
        .ok_or_else(|| not_found::topic(stream, topic).into())
}

pub async fn list(
    pool: &IggyPool,
    request: proto::ListTopicsRequest,
) -> Result<proto::ListTopicsResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let named = Named {
        stream: Some(stream.clone()),
        ..Named::default()
    };
    let topics = pool
        .call(move |client| async move { client.get_topics(&stream).await })
        .await?;
    // Iggy lists no topics for a stream that does not exist, too.
    if topics.is_empty()
        && let Some(missing) = missing::find(pool, &named).await
    {
        return Err(missing);
    }
    Ok(proto::ListTopicsResponse {
        topics: topics.iter().map(convert::topic).collect(),
    })
}

pub async fn update(
    pool: &IggyPool,
    request: proto::UpdateTopicRequest,
) -> Result<proto::UpdateTopicResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let topic = validate::resource_id("topic", request.topic.as_ref())?;
    let new_name = if request.name.is_empty() {
        None
    } else {
        Some(validate::name("name", &request.name)?.to_owned())
    };
    let settings = TopicSettings::parse(
        request.compression,
        request.message_expiry.as_ref(),
        request.max_topic_size.as_ref(),
    )?;
    let options = TopicUpdateOptions {
        compression_algorithm: settings.compression,
        message_expiry: settings.message_expiry,
        max_topic_size: settings.max_topic_size,
        ..TopicUpdateOptions::default()
    };
    pool.call(move |client| async move {
        // Iggy's update always takes a name: keep the current one when the
        // request leaves it empty.
        let name = match new_name {
            Some(name) => name,
            None => {
                client
                    .get_topic(&stream, &topic)
                    .await?
                    .ok_or_else(|| IggyError::TopicIdNotFound(topic.clone(), stream.clone()))?
                    .name
            }
        };
        client.update_topic(&stream, &topic, &name, &options).await
    })
    .await?;
    Ok(proto::UpdateTopicResponse {})
}

pub async fn delete(
    pool: &IggyPool,
    request: proto::DeleteTopicRequest,
) -> Result<proto::DeleteTopicResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let topic = validate::resource_id("topic", request.topic.as_ref())?;
    pool.call(move |client| async move { client.delete_topic(&stream, &topic).await })
        .await?;
    Ok(proto::DeleteTopicResponse {})
}

pub async fn purge(
    pool: &IggyPool,
    request: proto::PurgeTopicRequest,
) -> Result<proto::PurgeTopicResponse, GatewayError> {
    let stream = validate::resource_id("stream", request.stream.as_ref())?;
    let topic = validate::resource_id("topic", request.topic.as_ref())?;
    let details = details(pool, &stream, &topic).await?;
    let partitions = PartitionRef::all_of(&stream, details.id, details.partitions_count)?;
    let oldest = purge::oldest_messages(pool, partitions).await?;
    pool.call(move |client| async move { client.purge_topic(&stream, &topic).await })
        .await?;
    purge::wait_until_landed(pool, oldest).await?;
    Ok(proto::PurgeTopicResponse {})
}
