//! Which named resource is missing, when Iggy's answer does not say.
//!
//! iggy-server 0.9 answers a call that names a missing stream with whatever
//! its lookup met first: a publish gets PARTITION_NOT_FOUND, an offset call
//! RESOURCE_NOT_FOUND, a topic call for a missing stream a topic error (the
//! table in `tests/gateway/not_found.rs`). On such an answer, [`explain`]
//! looks the request's names up in order (stream, topic, partition, group)
//! and reports the first one missing, named as the request named it. It
//! costs Iggy calls only on that error path.

use super::IggyPool;
use crate::{
    error::{GatewayError, not_found},
    proto, validate,
};
use iggy::prelude::Identifier;
use iggy::prelude::{ConsumerGroupClient, IggyError, StreamClient, TopicClient};

/// The resources a request names, as far as they are valid identifiers.
#[derive(Debug, Clone, Default)]
pub struct Named {
    /// The stream.
    pub stream: Option<Identifier>,
    /// The topic of that stream.
    pub topic: Option<Identifier>,
    /// A partition of that topic.
    pub partition: Option<u32>,
    /// A consumer group of that topic.
    pub group: Option<Identifier>,
}

impl Named {
    /// A stream and a topic.
    pub fn topic(stream: &Identifier, topic: &Identifier) -> Self {
        Self {
            stream: Some(stream.clone()),
            topic: Some(topic.clone()),
            ..Self::default()
        }
    }
}

/// Whether `error` is Iggy saying that something was not found.
pub fn is_not_found(error: &GatewayError) -> bool {
    matches!(
        error,
        GatewayError::Iggy(
            IggyError::ResourceNotFound(_)
                | IggyError::StreamIdNotFound(_)
                | IggyError::StreamNameNotFound(_)
                | IggyError::TopicIdNotFound(_, _)
                | IggyError::TopicNameNotFound(_, _)
                | IggyError::PartitionNotFound(_, _, _)
                | IggyError::ConsumerGroupIdNotFound(_, _)
                | IggyError::ConsumerGroupNameNotFound(_, _)
                | IggyError::ConsumerOffsetNotFound(_)
        )
    )
}

/// `error`, or, when it is a not-found answer, the error naming the first
/// of `named` that is missing.
pub async fn explain(pool: &IggyPool, named: &Named, error: GatewayError) -> GatewayError {
    if !is_not_found(&error) {
        return error;
    }
    find(pool, named).await.unwrap_or(error)
}

/// The error naming the first of `named` that does not exist; `None` when
/// all exist, or when looking them up failed (the caller keeps its error).
pub async fn find(pool: &IggyPool, named: &Named) -> Option<GatewayError> {
    let stream = named.stream.clone()?;
    let lookup = stream.clone();
    let found = pool
        .call(move |client| async move { client.get_stream(&lookup).await })
        .await
        .ok()?;
    if found.is_none() {
        return Some(not_found::stream(&stream).into());
    }
    let topic = named.topic.clone()?;
    let (lookup_stream, lookup_topic) = (stream.clone(), topic.clone());
    let details = pool
        .call(move |client| async move { client.get_topic(&lookup_stream, &lookup_topic).await })
        .await
        .ok()?;
    let Some(details) = details else {
        return Some(not_found::topic(&stream, &topic).into());
    };
    if let Some(partition) = named.partition
        && partition >= details.partitions_count
    {
        let partition = usize::try_from(partition).unwrap_or(usize::MAX);
        return Some(IggyError::PartitionNotFound(partition, topic, stream).into());
    }
    let group = named.group.clone()?;
    let (lookup_stream, lookup_topic, lookup_group) =
        (stream.clone(), topic.clone(), group.clone());
    let found = pool
        .call(move |client| async move {
            client
                .get_consumer_group(&lookup_stream, &lookup_topic, &lookup_group)
                .await
        })
        .await
        .ok()?;
    found
        .is_none()
        .then(|| not_found::consumer_group(&topic, &group).into())
}

/// Requests whose names [`explain`] can check.
pub trait NamesResources {
    /// What the request names.
    fn named(&self) -> Named;
}

fn id(value: Option<&proto::ResourceId>) -> Option<Identifier> {
    validate::resource_id("", value).ok()
}

/// The group a `Consumer` names, if it is a group.
fn group_of(consumer: Option<&proto::Consumer>) -> Option<Identifier> {
    match consumer?.kind.as_ref()? {
        proto::consumer::Kind::Group(name) => Identifier::from_str_value(name).ok(),
        proto::consumer::Kind::Name(_) => None,
    }
}

macro_rules! names {
    ($request:ident => |$r:ident| $named:expr) => {
        impl NamesResources for proto::$request {
            fn named(&self) -> Named {
                let $r = self;
                $named
            }
        }
    };
}

macro_rules! names_stream {
    ($($request:ident),* $(,)?) => {$(
        names!($request => |r| Named { stream: id(r.stream.as_ref()), ..Named::default() });
    )*};
}

macro_rules! names_topic {
    ($($request:ident),* $(,)?) => {$(
        names!($request => |r| Named {
            stream: id(r.stream.as_ref()),
            topic: id(r.topic.as_ref()),
            ..Named::default()
        });
    )*};
}

// Creating a stream names none that must exist.
names!(CreateStreamRequest => |_r| Named::default());
names_stream!(
    GetStreamRequest,
    UpdateStreamRequest,
    DeleteStreamRequest,
    PurgeStreamRequest,
    CreateTopicRequest,
    ListTopicsRequest,
);
names_topic!(
    GetTopicRequest,
    UpdateTopicRequest,
    DeleteTopicRequest,
    PurgeTopicRequest,
    CreatePartitionsRequest,
    DeletePartitionsRequest,
    CreateConsumerGroupRequest,
    ListConsumerGroupsRequest,
    PollRequest,
);
names!(GetConsumerGroupRequest => |r| Named {
    group: id(r.group.as_ref()),
    ..Named { stream: id(r.stream.as_ref()), topic: id(r.topic.as_ref()), ..Named::default() }
});
names!(DeleteConsumerGroupRequest => |r| Named {
    group: id(r.group.as_ref()),
    ..Named { stream: id(r.stream.as_ref()), topic: id(r.topic.as_ref()), ..Named::default() }
});

macro_rules! names_offset {
    ($($request:ident),* $(,)?) => {$(
        names!($request => |r| Named {
            stream: id(r.stream.as_ref()),
            topic: id(r.topic.as_ref()),
            partition: r.partition_id,
            group: group_of(r.consumer.as_ref()),
        });
    )*};
}

names_offset!(
    GetConsumerOffsetRequest,
    StoreConsumerOffsetRequest,
    DeleteConsumerOffsetRequest,
);

names!(AckRequest => |r| Named {
    stream: id(r.stream.as_ref()),
    topic: id(r.topic.as_ref()),
    partition: Some(r.partition_id),
    group: group_of(r.consumer.as_ref()),
});
