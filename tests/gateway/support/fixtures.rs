//! Small helpers every test file uses: naming resources, making a fresh
//! stream and topic, reading back what Iggy stored, waiting for Iggy to have
//! written a partition's index.

use super::{Env, TestGateway, sdk_client};
use iggy::prelude::{
    Consumer, Identifier, IggyClient, IggyMessage, MessageClient, PollingStrategy,
};
use iggy_grpc::proto::{self, ResourceId, admin_service_client::AdminServiceClient, resource_id};
use std::{path::Path, time::Duration};
use tonic::transport::Channel;

/// A `ResourceId` by name.
pub fn by_name(name: &str) -> Option<ResourceId> {
    Some(ResourceId {
        kind: Some(resource_id::Kind::Name(name.into())),
    })
}

/// Purges `topic` of `stream` through the gateway (both by name).
pub async fn purge_topic(admin: &mut AdminServiceClient<Channel>, stream: &str, topic: &str) {
    admin
        .purge_topic(proto::PurgeTopicRequest {
            stream: by_name(stream),
            topic: by_name(topic),
        })
        .await
        .expect("purge topic");
}

/// A fresh stream holding a fresh topic of `partitions` partitions.
pub async fn new_topic(env: &Env, gateway: &TestGateway, partitions: u32) -> (String, String) {
    let stream = env.unique("stream");
    let topic = env.unique("topic");
    let mut admin = gateway.admin();
    admin
        .create_stream(proto::CreateStreamRequest {
            name: stream.clone(),
        })
        .await
        .expect("create stream");
    admin
        .create_topic(proto::CreateTopicRequest {
            stream: by_name(&stream),
            name: topic.clone(),
            partitions_count: partitions,
            ..Default::default()
        })
        .await
        .expect("create topic");
    (stream, topic)
}

/// Waits (bounded by the test timeout) until Iggy has written a partition
/// index under `data_dir`. iggy-server 0.9.0-edge.5 cannot restart after a
/// crash that leaves a new partition's segment without its index, so tests
/// that kill Iggy wait for this first: they test the gateway, not that bug.
pub async fn wait_for_index_files(data_dir: &Path) {
    fn has_index(dir: &Path) -> bool {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                let path = entry.path();
                if path.is_dir() {
                    has_index(&path)
                } else {
                    path.extension().is_some_and(|ext| ext == "index")
                }
            })
    }
    while !has_index(&data_dir.join("data").join("streams")) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Everything stored in one partition, read with the SDK.
pub async fn stored(
    iggy: &IggyClient,
    stream: &str,
    topic: &str,
    partition: u32,
) -> Vec<IggyMessage> {
    iggy.poll_messages(
        &Identifier::named(stream).expect("id"),
        &Identifier::named(topic).expect("id"),
        Some(partition),
        &Consumer::default(),
        &PollingStrategy::offset(0),
        10_000,
        false,
    )
    .await
    .expect("poll directly")
    .messages
}

/// The offset Iggy holds for `consumer` in `partition`, read directly.
pub async fn stored_offset(
    env: &Env,
    consumer: &Consumer,
    stream: &str,
    topic: &str,
    partition: u32,
) -> Option<u64> {
    use iggy::prelude::ConsumerOffsetClient;
    sdk_client(&env.iggy.connection_string)
        .await
        .get_consumer_offset(
            consumer,
            &Identifier::named(stream).expect("id"),
            &Identifier::named(topic).expect("id"),
            Some(partition),
        )
        .await
        .expect("read the stored offset")
        .map(|info| info.stored_offset)
}
