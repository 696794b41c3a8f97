//! AdminService against a real Iggy: every call's success path, and the codes
//! of its failures.

use crate::{
    subscribe::fill,
    support::{
        Env, TestBody, bad_request_field, by_name, error_reason, expect_code, new_topic,
        purge_topic, sdk_client,
    },
};
use bytes::Bytes;
use iggy::prelude::{
    Consumer, Identifier, IggyMessage, MessageClient, Partitioning, PollingStrategy,
};
use iggy_grpc::proto::{
    self, Compression, ResourceId, consumer, max_topic_size, message_expiry, resource_id,
};
use std::time::Duration;
use tonic::Code;

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        ("admin::stream_lifecycle", |env| {
            Box::pin(stream_lifecycle(env))
        }),
        ("admin::stream_errors", |env| Box::pin(stream_errors(env))),
        ("admin::topic_lifecycle", |env| {
            Box::pin(topic_lifecycle(env))
        }),
        ("admin::topic_errors", |env| Box::pin(topic_errors(env))),
        ("admin::a_purge_has_landed_when_it_answers", |env| {
            Box::pin(purge_lands(env))
        }),
        ("admin::partitions_add_and_remove", |env| {
            Box::pin(partitions(env))
        }),
        ("admin::consumer_group_lifecycle", |env| {
            Box::pin(consumer_groups(env))
        }),
        ("admin::consumer_offsets", |env| {
            Box::pin(consumer_offsets(env))
        }),
        ("admin::stats_are_cached_and_ping_answers", |env| {
            Box::pin(stats_and_ping(env))
        }),
    ]
}

fn by_id(id: u32) -> Option<ResourceId> {
    Some(ResourceId {
        kind: Some(resource_id::Kind::Id(id)),
    })
}

fn named_consumer(name: &str) -> Option<proto::Consumer> {
    Some(proto::Consumer {
        kind: Some(consumer::Kind::Name(name.into())),
    })
}

async fn create_stream_and_topic(
    env: &Env,
    partitions: u32,
) -> (String, String, crate::support::TestGateway) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(env, &gateway, partitions).await;
    (stream, topic, gateway)
}

async fn stream_lifecycle(env: Env) {
    let gateway = env.gateway().await;
    let mut admin = gateway.admin();
    let name = env.unique("stream");

    let created = admin
        .create_stream(proto::CreateStreamRequest { name: name.clone() })
        .await
        .expect("create")
        .into_inner()
        .stream
        .expect("created stream");
    assert_eq!(created.name, name);

    let by_id_details = admin
        .get_stream(proto::GetStreamRequest {
            stream: by_id(created.id),
        })
        .await
        .expect("get by id")
        .into_inner()
        .stream
        .expect("details");
    assert_eq!(by_id_details.stream.expect("stream").name, name);

    let listed = admin
        .list_streams(proto::ListStreamsRequest {})
        .await
        .expect("list")
        .into_inner()
        .streams;
    assert!(listed.iter().any(|stream| stream.name == name));

    let renamed = env.unique("renamed");
    admin
        .update_stream(proto::UpdateStreamRequest {
            stream: by_name(&name),
            name: renamed.clone(),
        })
        .await
        .expect("rename");
    let after_rename = admin
        .get_stream(proto::GetStreamRequest {
            stream: by_name(&renamed),
        })
        .await
        .expect("get renamed")
        .into_inner();
    assert_eq!(
        after_rename.stream.and_then(|s| s.stream).map(|s| s.id),
        Some(created.id)
    );
    expect_code(
        admin
            .get_stream(proto::GetStreamRequest {
                stream: by_name(&name),
            })
            .await,
        Code::NotFound,
    );

    admin
        .purge_stream(proto::PurgeStreamRequest {
            stream: by_name(&renamed),
        })
        .await
        .expect("purge");
    admin
        .delete_stream(proto::DeleteStreamRequest {
            stream: by_name(&renamed),
        })
        .await
        .expect("delete");
    let status = expect_code(
        admin
            .get_stream(proto::GetStreamRequest {
                stream: by_name(&renamed),
            })
            .await,
        Code::NotFound,
    );
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("STREAM_NAME_NOT_FOUND")
    );
    gateway.stop().await.expect("clean stop");
}

async fn stream_errors(env: Env) {
    let gateway = env.gateway().await;
    let mut admin = gateway.admin();
    let name = env.unique("stream");
    admin
        .create_stream(proto::CreateStreamRequest { name: name.clone() })
        .await
        .expect("create");

    let duplicate = expect_code(
        admin
            .create_stream(proto::CreateStreamRequest { name: name.clone() })
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(
        error_reason(&duplicate).as_deref(),
        Some("STREAM_NAME_ALREADY_EXISTS")
    );

    for bad in ["", "bad;name", &"x".repeat(256)] {
        let status = expect_code(
            admin
                .create_stream(proto::CreateStreamRequest { name: bad.into() })
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(bad_request_field(&status).as_deref(), Some("name"));
    }
    let listed = admin
        .list_streams(proto::ListStreamsRequest {})
        .await
        .expect("list")
        .into_inner()
        .streams;
    assert!(
        !listed.iter().any(|stream| stream.name == "bad;name"),
        "nothing created"
    );

    let missing = expect_code(
        admin
            .get_stream(proto::GetStreamRequest {
                stream: by_id(4_000_000_000),
            })
            .await,
        Code::NotFound,
    );
    assert!(error_reason(&missing).is_some());
    expect_code(
        admin
            .delete_stream(proto::DeleteStreamRequest {
                stream: by_name(&env.unique("missing")),
            })
            .await,
        Code::NotFound,
    );
    let unset = expect_code(
        admin
            .get_stream(proto::GetStreamRequest { stream: None })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(bad_request_field(&unset).as_deref(), Some("stream"));
    let bad_lookup = expect_code(
        admin
            .get_stream(proto::GetStreamRequest {
                stream: by_name("no spaces at end "),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        bad_request_field(&bad_lookup).as_deref(),
        Some("stream.name")
    );
}

async fn topic_lifecycle(env: Env) {
    let gateway = env.gateway().await;
    let mut admin = gateway.admin();
    let stream = env.unique("stream");
    let topic = env.unique("topic");
    admin
        .create_stream(proto::CreateStreamRequest {
            name: stream.clone(),
        })
        .await
        .expect("create stream");

    let hour = prost_types::Duration {
        seconds: 3600,
        nanos: 0,
    };
    let created = admin
        .create_topic(proto::CreateTopicRequest {
            stream: by_name(&stream),
            name: topic.clone(),
            partitions_count: 3,
            compression: Compression::Gzip as i32,
            message_expiry: Some(proto::MessageExpiry {
                kind: Some(message_expiry::Kind::After(hour)),
            }),
            max_topic_size: Some(proto::MaxTopicSize {
                kind: Some(max_topic_size::Kind::Bytes(10_000_000_000)),
            }),
            ..Default::default()
        })
        .await
        .expect("create topic")
        .into_inner()
        .topic
        .expect("topic details");
    assert_eq!(created.partitions.len(), 3);
    let created_topic = created.topic.expect("topic");
    assert_eq!(created_topic.partitions_count, 3);
    assert_eq!(created_topic.compression, Compression::Gzip as i32);
    assert_eq!(
        created_topic.message_expiry.and_then(|e| e.kind),
        Some(message_expiry::Kind::After(hour))
    );
    assert_eq!(
        created_topic.max_topic_size.and_then(|s| s.kind),
        Some(max_topic_size::Kind::Bytes(10_000_000_000))
    );
    let partition_ids: Vec<u32> = created.partitions.iter().map(|p| p.id).collect();
    assert_eq!(partition_ids, vec![0, 1, 2], "partition ids are 0-based");

    let fetched = admin
        .get_topic(proto::GetTopicRequest {
            stream: by_name(&stream),
            topic: by_id(created_topic.id),
        })
        .await
        .expect("get by id")
        .into_inner()
        .topic
        .and_then(|t| t.topic)
        .expect("topic");
    assert_eq!(fetched.name, topic);

    let listed = admin
        .list_topics(proto::ListTopicsRequest {
            stream: by_name(&stream),
        })
        .await
        .expect("list")
        .into_inner()
        .topics;
    assert_eq!(
        listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec![topic.as_str()]
    );

    // Update only the expiry: the name is kept.
    admin
        .update_topic(proto::UpdateTopicRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            message_expiry: Some(proto::MessageExpiry {
                kind: Some(message_expiry::Kind::Never(())),
            }),
            ..Default::default()
        })
        .await
        .expect("update expiry");
    let updated = admin
        .get_topic(proto::GetTopicRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
        })
        .await
        .expect("get updated")
        .into_inner()
        .topic
        .and_then(|t| t.topic)
        .expect("topic");
    assert_eq!(
        updated.message_expiry.and_then(|e| e.kind),
        Some(message_expiry::Kind::Never(()))
    );
    assert_eq!(updated.compression, Compression::Gzip as i32, "unchanged");

    let renamed = env.unique("renamed");
    admin
        .update_topic(proto::UpdateTopicRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            name: renamed.clone(),
            ..Default::default()
        })
        .await
        .expect("rename");
    expect_code(
        admin
            .get_topic(proto::GetTopicRequest {
                stream: by_name(&stream),
                topic: by_name(&topic),
            })
            .await,
        Code::NotFound,
    );

    // Messages written directly with the SDK are gone after a purge.
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let mut messages = vec![
        IggyMessage::builder()
            .payload(Bytes::from_static(b"hello"))
            .build()
            .expect("message"),
    ];
    iggy.send_messages(
        &stream.as_str().try_into().expect("id"),
        &renamed.as_str().try_into().expect("id"),
        &Partitioning::partition_id(0),
        &mut messages,
    )
    .await
    .expect("send directly");
    let before = topic_messages(&mut gateway.admin(), &stream, &renamed).await;
    assert_eq!(before, 1);
    purge_topic(&mut admin, &stream, &renamed).await;
    assert_eq!(
        topic_messages(&mut gateway.admin(), &stream, &renamed).await,
        0
    );

    admin
        .delete_topic(proto::DeleteTopicRequest {
            stream: by_name(&stream),
            topic: by_name(&renamed),
        })
        .await
        .expect("delete");
    let listed = admin
        .list_topics(proto::ListTopicsRequest {
            stream: by_name(&stream),
        })
        .await
        .expect("list")
        .into_inner()
        .topics;
    assert!(listed.is_empty());
}

async fn topic_messages(admin: &mut Admin, stream: &str, topic: &str) -> u64 {
    admin
        .get_topic(proto::GetTopicRequest {
            stream: by_name(stream),
            topic: by_name(topic),
        })
        .await
        .expect("get topic")
        .into_inner()
        .topic
        .and_then(|t| t.topic)
        .expect("topic")
        .messages_count
}

async fn topic_errors(env: Env) {
    let (stream, topic, gateway) = create_stream_and_topic(&env, 1).await;
    let mut admin = gateway.admin();

    let duplicate = expect_code(
        admin
            .create_topic(proto::CreateTopicRequest {
                stream: by_name(&stream),
                name: topic.clone(),
                partitions_count: 1,
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(
        error_reason(&duplicate).as_deref(),
        Some("TOPIC_NAME_ALREADY_EXISTS")
    );

    for count in [0, 1001] {
        let status = expect_code(
            admin
                .create_topic(proto::CreateTopicRequest {
                    stream: by_name(&stream),
                    name: env.unique("topic"),
                    partitions_count: count,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(
            bad_request_field(&status).as_deref(),
            Some("partitions_count")
        );
    }
    let bad_name = expect_code(
        admin
            .create_topic(proto::CreateTopicRequest {
                stream: by_name(&stream),
                name: "tab\tname".into(),
                partitions_count: 1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(bad_request_field(&bad_name).as_deref(), Some("name"));
    let too_small = expect_code(
        admin
            .create_topic(proto::CreateTopicRequest {
                stream: by_name(&stream),
                name: env.unique("topic"),
                partitions_count: 1,
                max_topic_size: Some(proto::MaxTopicSize {
                    kind: Some(max_topic_size::Kind::Bytes(1_000)),
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        error_reason(&too_small).as_deref(),
        Some("INVALID_TOPIC_SIZE")
    );
    assert!(
        too_small.message().contains("segment size"),
        "{}",
        too_small.message()
    );
    let bad_expiry = expect_code(
        admin
            .create_topic(proto::CreateTopicRequest {
                stream: by_name(&stream),
                name: env.unique("topic"),
                partitions_count: 1,
                message_expiry: Some(proto::MessageExpiry {
                    kind: Some(message_expiry::Kind::After(prost_types::Duration {
                        seconds: 0,
                        nanos: 1000,
                    })),
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        bad_request_field(&bad_expiry).as_deref(),
        Some("message_expiry.after")
    );

    expect_code(
        admin
            .get_topic(proto::GetTopicRequest {
                stream: by_name(&stream),
                topic: by_name(&env.unique("missing")),
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        admin
            .create_topic(proto::CreateTopicRequest {
                stream: by_name(&env.unique("missing-stream")),
                name: env.unique("topic"),
                partitions_count: 1,
                ..Default::default()
            })
            .await,
        Code::NotFound,
    );
    let listed = admin
        .list_topics(proto::ListTopicsRequest {
            stream: by_name(&stream),
        })
        .await
        .expect("list")
        .into_inner()
        .topics;
    assert_eq!(listed.len(), 1, "no invalid topic was created: {listed:?}");
}

async fn partitions(env: Env) {
    let (stream, topic, gateway) = create_stream_and_topic(&env, 2).await;
    let mut admin = gateway.admin();
    admin
        .create_partitions(proto::CreatePartitionsRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            partitions_count: 3,
        })
        .await
        .expect("add partitions");
    let details = admin
        .get_topic(proto::GetTopicRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
        })
        .await
        .expect("get")
        .into_inner()
        .topic
        .expect("details");
    assert_eq!(
        details.partitions.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );

    admin
        .delete_partitions(proto::DeletePartitionsRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            partitions_count: 2,
        })
        .await
        .expect("remove partitions");
    let details = admin
        .get_topic(proto::GetTopicRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
        })
        .await
        .expect("get")
        .into_inner()
        .topic
        .expect("details");
    assert_eq!(details.topic.expect("topic").partitions_count, 3);

    let status = expect_code(
        admin
            .create_partitions(proto::CreatePartitionsRequest {
                stream: by_name(&stream),
                topic: by_name(&topic),
                partitions_count: 0,
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        bad_request_field(&status).as_deref(),
        Some("partitions_count")
    );
    expect_code(
        admin
            .create_partitions(proto::CreatePartitionsRequest {
                stream: by_name(&stream),
                topic: by_name(&env.unique("missing")),
                partitions_count: 1,
            })
            .await,
        Code::NotFound,
    );
}

async fn consumer_groups(env: Env) {
    let (stream, topic, gateway) = create_stream_and_topic(&env, 2).await;
    let mut admin = gateway.admin();
    let group = env.unique("group");
    let created = admin
        .create_consumer_group(proto::CreateConsumerGroupRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            name: group.clone(),
        })
        .await
        .expect("create group")
        .into_inner()
        .group
        .and_then(|g| g.group)
        .expect("group");
    assert_eq!(created.name, group);
    assert_eq!(created.partitions_count, 2);

    let fetched = admin
        .get_consumer_group(proto::GetConsumerGroupRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            group: by_id(created.id),
        })
        .await
        .expect("get by id")
        .into_inner()
        .group
        .and_then(|g| g.group)
        .expect("group");
    assert_eq!(fetched.name, group);

    let listed = admin
        .list_consumer_groups(proto::ListConsumerGroupsRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
        })
        .await
        .expect("list")
        .into_inner()
        .groups;
    assert_eq!(
        listed.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        vec![group.as_str()]
    );

    let duplicate = expect_code(
        admin
            .create_consumer_group(proto::CreateConsumerGroupRequest {
                stream: by_name(&stream),
                topic: by_name(&topic),
                name: group.clone(),
            })
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(
        error_reason(&duplicate).as_deref(),
        Some("CONSUMER_GROUP_NAME_ALREADY_EXISTS")
    );

    admin
        .delete_consumer_group(proto::DeleteConsumerGroupRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            group: by_name(&group),
        })
        .await
        .expect("delete");
    expect_code(
        admin
            .get_consumer_group(proto::GetConsumerGroupRequest {
                stream: by_name(&stream),
                topic: by_name(&topic),
                group: by_name(&group),
            })
            .await,
        Code::NotFound,
    );
    let bad = expect_code(
        admin
            .create_consumer_group(proto::CreateConsumerGroupRequest {
                stream: by_name(&stream),
                topic: by_name(&topic),
                name: String::new(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(bad_request_field(&bad).as_deref(), Some("name"));
}

type Admin = proto::admin_service_client::AdminServiceClient<tonic::transport::Channel>;

async fn stored_offset(
    admin: &mut Admin,
    stream: &str,
    topic: &str,
    reader: &str,
) -> Option<proto::ConsumerOffset> {
    admin
        .get_consumer_offset(proto::GetConsumerOffsetRequest {
            stream: by_name(stream),
            topic: by_name(topic),
            consumer: named_consumer(reader),
            partition_id: Some(0),
        })
        .await
        .expect("get consumer offset")
        .into_inner()
        .offset
}

async fn consumer_offsets(env: Env) {
    let (stream, topic, gateway) = create_stream_and_topic(&env, 1).await;
    let mut admin = gateway.admin();
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let mut messages: Vec<IggyMessage> = (0..5)
        .map(|i| {
            IggyMessage::builder()
                .payload(Bytes::from(format!("m{i}")))
                .build()
                .expect("message")
        })
        .collect();
    iggy.send_messages(
        &stream.as_str().try_into().expect("id"),
        &topic.as_str().try_into().expect("id"),
        &Partitioning::partition_id(0),
        &mut messages,
    )
    .await
    .expect("send directly");

    let reader = env.unique("reader");
    assert_eq!(
        stored_offset(&mut admin, &stream, &topic, &reader).await,
        None
    );

    admin
        .store_consumer_offset(proto::StoreConsumerOffsetRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            consumer: named_consumer(&reader),
            partition_id: Some(0),
            offset: 3,
        })
        .await
        .expect("store");
    let stored = stored_offset(&mut admin, &stream, &topic, &reader)
        .await
        .expect("stored offset");
    assert_eq!(
        (
            stored.partition_id,
            stored.stored_offset,
            stored.current_offset
        ),
        (0, 3, 4)
    );

    admin
        .delete_consumer_offset(proto::DeleteConsumerOffsetRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            consumer: named_consumer(&reader),
            partition_id: Some(0),
        })
        .await
        .expect("delete");
    assert_eq!(
        stored_offset(&mut admin, &stream, &topic, &reader).await,
        None
    );

    let missing_partition = expect_code(
        admin
            .store_consumer_offset(proto::StoreConsumerOffsetRequest {
                stream: by_name(&stream),
                topic: by_name(&topic),
                consumer: named_consumer(&reader),
                partition_id: None,
                offset: 1,
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        bad_request_field(&missing_partition).as_deref(),
        Some("partition_id")
    );
    let no_consumer = expect_code(
        admin
            .get_consumer_offset(proto::GetConsumerOffsetRequest {
                stream: by_name(&stream),
                topic: by_name(&topic),
                consumer: None,
                partition_id: Some(0),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(bad_request_field(&no_consumer).as_deref(), Some("consumer"));
}

async fn stats_and_ping(env: Env) {
    let gateway = env.gateway().await;
    let mut admin = gateway.admin();
    admin
        .create_stream(proto::CreateStreamRequest {
            name: env.unique("stream"),
        })
        .await
        .expect("create");
    let first = admin
        .get_stats(proto::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert!(first.streams_count >= 1, "{first:?}");
    assert!(!first.server_version.is_empty());
    assert!(!first.stale);
    let second = admin
        .get_stats(proto::GetStatsRequest {})
        .await
        .expect("stats again")
        .into_inner();
    assert_eq!(
        second.fetched_at, first.fetched_at,
        "served from the cache within the TTL"
    );

    let latency = admin
        .ping(proto::PingRequest {})
        .await
        .expect("ping")
        .into_inner()
        .latency
        .expect("latency");
    let latency = Duration::try_from(latency).expect("non-negative");
    assert!(latency < Duration::from_secs(5));
}

/// iggy-server 0.9 empties a purged partition some time after answering the
/// purge, wiping whatever was published in between. Through the gateway a
/// purge answers only once it has landed, so messages published next are
/// the partition's first (offsets from 0) and survive. Several rounds, as
/// the server's lag varies from one purge to the next.
async fn purge_lands(env: Env) {
    let (stream, topic, gateway) = create_stream_and_topic(&env, 2).await;
    let mut admin = gateway.admin();
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let (stream_id, topic_id) = (
        Identifier::named(&stream).expect("id"),
        Identifier::named(&topic).expect("id"),
    );
    let reader = Consumer::new(Identifier::named("purge-check").expect("id"));
    for round in 0..20 {
        fill(&gateway, &stream, &topic, 2, 5, "old").await;
        if round % 2 == 0 {
            purge_topic(&mut admin, &stream, &topic).await;
        } else {
            admin
                .purge_stream(proto::PurgeStreamRequest {
                    stream: by_name(&stream),
                })
                .await
                .expect("purge stream");
        }
        fill(&gateway, &stream, &topic, 2, 3, "new").await;
        for partition in 0..2 {
            let polled = iggy
                .poll_messages(
                    &stream_id,
                    &topic_id,
                    Some(partition),
                    &reader,
                    &PollingStrategy::offset(0),
                    10,
                    false,
                )
                .await
                .expect("poll");
            let kept: Vec<(u64, String)> = polled
                .messages
                .iter()
                .map(|m| {
                    (
                        m.header.offset,
                        String::from_utf8_lossy(&m.payload).into_owned(),
                    )
                })
                .collect();
            let expected: Vec<(u64, String)> = (0..3)
                .map(|i| (i, format!("new-{partition}-{i}")))
                .collect();
            assert_eq!(kept, expected, "round {round}, partition {partition}");
        }
    }
}
