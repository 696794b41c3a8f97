//! What iggy-server 0.9 does that the delivery design relies on, checked
//! against the real server so an upgrade that changes it fails here first
//! (docs/delivery.md says what follows from each).

use crate::support::{Env, TestBody, sdk_client};
use bytes::Bytes;
use iggy::prelude::{
    Consumer, ConsumerGroupClient, ConsumerOffsetClient, Identifier, IggyError, IggyMessage,
    MessageClient, Partitioning, StreamClient, TopicClient, TopicCreateOptions,
};

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        ("iggy_facts::who_may_store_and_read_a_group_offset", |env| {
            Box::pin(group_offsets(env))
        }),
    ]
}

/// Whether a connection that is not a member of a consumer group may store
/// and read the group's offsets.
async fn group_offsets(env: Env) {
    let (stream, topic, group) = (env.unique("s"), env.unique("t"), env.unique("g"));
    let member = sdk_client(&env.iggy.connection_string).await;
    let outsider = sdk_client(&env.iggy.connection_string).await;
    let (stream_id, topic_id, group_id) = (
        Identifier::named(&stream).expect("id"),
        Identifier::named(&topic).expect("id"),
        Identifier::named(&group).expect("id"),
    );
    member.create_stream(&stream).await.expect("stream");
    member
        .create_topic(
            &stream_id,
            &topic,
            &TopicCreateOptions {
                partitions_count: Some(2),
                ..Default::default()
            },
        )
        .await
        .expect("topic");
    member
        .create_consumer_group(&stream_id, &topic_id, &group)
        .await
        .expect("group");
    member
        .join_consumer_group(&stream_id, &topic_id, &group_id)
        .await
        .expect("join");
    for partition in 0..2 {
        let mut messages: Vec<IggyMessage> = (0..10)
            .map(|_| {
                IggyMessage::builder()
                    .payload(Bytes::from_static(b"m"))
                    .build()
                    .expect("message")
            })
            .collect();
        member
            .send_messages(
                &stream_id,
                &topic_id,
                &Partitioning::partition_id(partition),
                &mut messages,
            )
            .await
            .expect("send");
    }
    let consumer = Consumer::group(group_id.clone());

    // A member stores the group's offset; a connection that is not a member
    // is refused (with RESOURCE_NOT_FOUND and no name).
    member
        .store_consumer_offset(&consumer, &stream_id, &topic_id, Some(1), 4)
        .await
        .expect("a member stores the group's offset");
    let refused = outsider
        .store_consumer_offset(&consumer, &stream_id, &topic_id, Some(0), 3)
        .await
        .expect_err("a connection outside the group cannot store its offset");
    assert!(
        matches!(refused, IggyError::ResourceNotFound(_)),
        "{refused:?}"
    );

    // Any connection reads the group's stored offsets.
    let read = outsider
        .get_consumer_offset(&consumer, &stream_id, &topic_id, Some(1))
        .await
        .expect("an outsider reads the group's offset")
        .expect("stored");
    assert_eq!((read.stored_offset, read.current_offset), (4, 9));
    let nothing = outsider
        .get_consumer_offset(&consumer, &stream_id, &topic_id, Some(0))
        .await
        .expect("read");
    assert!(
        nothing.is_none(),
        "the refused store left nothing: {nothing:?}"
    );

    // A named consumer's offset is anyone's to store and read, but not past
    // the partition's last message.
    let named = Consumer::new(Identifier::named(&env.unique("c")).expect("id"));
    outsider
        .store_consumer_offset(&named, &stream_id, &topic_id, Some(0), 9)
        .await
        .expect("any connection stores a named consumer's offset");
    let beyond = outsider
        .store_consumer_offset(&named, &stream_id, &topic_id, Some(0), 10)
        .await
        .expect_err("an offset past the last message");
    assert!(matches!(beyond, IggyError::InvalidOffset(_)), "{beyond:?}");
}
