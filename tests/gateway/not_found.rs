//! NOT_FOUND says what is missing: every RPC that names a stream, topic,
//! partition or consumer group answers, for each one that does not exist,
//! the reason naming that one (a missing stream is never a missing topic).

use crate::support::{Env, TestBody, by_name, error_reason, new_topic};
use iggy_grpc::proto::{
    self, Consumer, ResourceId, admin_service_client::AdminServiceClient, consumer,
    messaging_service_client::MessagingServiceClient, resource_id,
};
use tonic::{Code, Status, transport::Channel};

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![("not_found::every_rpc_names_what_is_missing", |env| {
        Box::pin(every_rpc_names_what_is_missing(env))
    })]
}

/// What a call names.
#[derive(Clone)]
struct Names {
    stream: Option<ResourceId>,
    topic: Option<ResourceId>,
    partition: u32,
    group: String,
}

/// What one case leaves missing, and the reason that must say so.
struct Missing {
    what: &'static str,
    names: Names,
    reason: &'static str,
}

/// The RPCs that name a stream and a topic (and which of partition and
/// group each takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    GetStream,
    UpdateStream,
    DeleteStream,
    PurgeStream,
    CreateTopic,
    ListTopics,
    Publish,
    PublishBatch,
    PublishEvent,
    PublishEventBatch,
    Subscribe,
    SubscribeGroup,
    Consume,
    ConsumeGroup,
    Poll,
    PollGroup,
    Ack,
    AckGroup,
    GetTopic,
    UpdateTopic,
    DeleteTopic,
    PurgeTopic,
    CreatePartitions,
    DeletePartitions,
    CreateConsumerGroup,
    GetConsumerGroup,
    ListConsumerGroups,
    DeleteConsumerGroup,
    GetConsumerOffset,
    StoreConsumerOffset,
    DeleteConsumerOffset,
    GetConsumerOffsetGroup,
}

impl Rpc {
    const ALL: [Rpc; 32] = [
        Rpc::GetStream,
        Rpc::UpdateStream,
        Rpc::DeleteStream,
        Rpc::PurgeStream,
        Rpc::CreateTopic,
        Rpc::ListTopics,
        Rpc::Publish,
        Rpc::PublishBatch,
        Rpc::PublishEvent,
        Rpc::PublishEventBatch,
        Rpc::Subscribe,
        Rpc::SubscribeGroup,
        Rpc::Consume,
        Rpc::ConsumeGroup,
        Rpc::Poll,
        Rpc::PollGroup,
        Rpc::Ack,
        Rpc::AckGroup,
        Rpc::GetTopic,
        Rpc::UpdateTopic,
        Rpc::DeleteTopic,
        Rpc::PurgeTopic,
        Rpc::CreatePartitions,
        Rpc::DeletePartitions,
        Rpc::CreateConsumerGroup,
        Rpc::GetConsumerGroup,
        Rpc::ListConsumerGroups,
        Rpc::DeleteConsumerGroup,
        Rpc::GetConsumerOffset,
        Rpc::StoreConsumerOffset,
        Rpc::DeleteConsumerOffset,
        Rpc::GetConsumerOffsetGroup,
    ];

    fn takes_topic(self) -> bool {
        !matches!(
            self,
            Rpc::GetStream
                | Rpc::UpdateStream
                | Rpc::DeleteStream
                | Rpc::PurgeStream
                | Rpc::CreateTopic
                | Rpc::ListTopics
        )
    }

    fn takes_partition(self) -> bool {
        matches!(
            self,
            Rpc::Publish
                | Rpc::PublishBatch
                | Rpc::Subscribe
                | Rpc::Consume
                | Rpc::Poll
                | Rpc::Ack
                | Rpc::GetConsumerOffset
                | Rpc::StoreConsumerOffset
                | Rpc::DeleteConsumerOffset
        )
    }

    fn takes_group(self) -> bool {
        matches!(
            self,
            Rpc::SubscribeGroup
                | Rpc::ConsumeGroup
                | Rpc::PollGroup
                | Rpc::AckGroup
                | Rpc::GetConsumerGroup
                | Rpc::DeleteConsumerGroup
                | Rpc::GetConsumerOffsetGroup
        )
    }
}

struct Clients {
    admin: AdminServiceClient<Channel>,
    messaging: MessagingServiceClient<Channel>,
}

fn named(name: &str) -> Consumer {
    Consumer {
        kind: Some(consumer::Kind::Name(name.into())),
    }
}

fn group(name: &str) -> Consumer {
    Consumer {
        kind: Some(consumer::Kind::Group(name.into())),
    }
}

fn message() -> Option<proto::Message> {
    Some(proto::Message {
        payload: "p".into(),
        ..Default::default()
    })
}

fn event() -> proto::Event {
    proto::Event {
        source: "test".into(),
        payload: Some(proto::event::Payload::User(proto::UserEvent {
            kind: proto::user_event::Kind::Created as i32,
            user_id: "u-1".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Calls `rpc` naming `names`; the status it ends with (a stream's first
/// item for Subscribe).
async fn call(clients: &mut Clients, rpc: Rpc, names: &Names) -> Result<(), Status> {
    let Names {
        stream,
        topic,
        partition,
        group: group_name,
    } = names.clone();
    let partitioning = Some(proto::Partitioning {
        kind: Some(proto::partitioning::Kind::PartitionId(partition)),
    });
    let (admin, messaging) = (&mut clients.admin, &mut clients.messaging);
    match rpc {
        Rpc::GetStream => admin
            .get_stream(proto::GetStreamRequest { stream })
            .await
            .map(drop),
        Rpc::UpdateStream => admin
            .update_stream(proto::UpdateStreamRequest {
                stream,
                name: "renamed".into(),
            })
            .await
            .map(drop),
        Rpc::DeleteStream => admin
            .delete_stream(proto::DeleteStreamRequest { stream })
            .await
            .map(drop),
        Rpc::PurgeStream => admin
            .purge_stream(proto::PurgeStreamRequest { stream })
            .await
            .map(drop),
        Rpc::CreateTopic => admin
            .create_topic(proto::CreateTopicRequest {
                stream,
                name: "fresh-topic".into(),
                partitions_count: 1,
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::ListTopics => admin
            .list_topics(proto::ListTopicsRequest { stream })
            .await
            .map(drop),
        Rpc::Publish => messaging
            .publish(proto::PublishRequest {
                stream,
                topic,
                partitioning,
                message: message(),
                idempotent: false,
            })
            .await
            .map(drop),
        Rpc::PublishBatch => {
            let answer = messaging
                .publish_batch(proto::PublishBatchRequest {
                    stream,
                    topic,
                    partitioning: None,
                    messages: vec![proto::BatchMessage {
                        message: message(),
                        partitioning,
                    }],
                    idempotent: false,
                })
                .await?
                .into_inner();
            // A missing partition fails the entry, not the call.
            match answer
                .results
                .first()
                .and_then(|result| result.outcome.as_ref())
            {
                Some(proto::batch_entry_result::Outcome::Error(error)) => Err(Status::new(
                    Code::from_i32(error.code),
                    error.reason.clone(),
                )),
                _ => Ok(()),
            }
        }
        Rpc::PublishEvent => messaging
            .publish_event(proto::PublishEventRequest {
                stream,
                topic,
                partitioning: None,
                event: Some(event()),
            })
            .await
            .map(drop),
        Rpc::PublishEventBatch => messaging
            .publish_event_batch(proto::PublishEventBatchRequest {
                stream,
                topic,
                events: vec![event()],
            })
            .await
            .map(drop),
        Rpc::Subscribe | Rpc::SubscribeGroup => {
            let (consumer, partition_id) = if rpc == Rpc::Subscribe {
                (named("reader"), Some(partition))
            } else {
                (group(&group_name), None)
            };
            let mut stream = messaging
                .subscribe(proto::SubscribeRequest {
                    stream,
                    topic,
                    partition_id,
                    consumer: Some(consumer),
                    ..Default::default()
                })
                .await?
                .into_inner();
            stream.message().await.map(drop)
        }
        Rpc::Consume | Rpc::ConsumeGroup => {
            let (consumer, partition_id) = if rpc == Rpc::Consume {
                (named("reader"), Some(partition))
            } else {
                (group(&group_name), None)
            };
            let start = proto::ConsumeRequest {
                kind: Some(proto::consume_request::Kind::Start(proto::ConsumeStart {
                    subscription: Some(proto::SubscribeRequest {
                        stream,
                        topic,
                        partition_id,
                        consumer: Some(consumer),
                        ..Default::default()
                    }),
                    initial_credit: None,
                })),
            };
            let mut stream = messaging
                .consume(tokio_stream::iter([start]))
                .await?
                .into_inner();
            stream.message().await.map(drop)
        }
        Rpc::Poll | Rpc::PollGroup => {
            let (consumer, partition_id) = if rpc == Rpc::Poll {
                (named("reader"), Some(partition))
            } else {
                (group(&group_name), None)
            };
            messaging
                .poll(proto::PollRequest {
                    stream,
                    topic,
                    partition_id,
                    consumer: Some(consumer),
                    ..Default::default()
                })
                .await
                .map(drop)
        }
        Rpc::Ack | Rpc::AckGroup => {
            let consumer = if rpc == Rpc::Ack {
                named("reader")
            } else {
                group(&group_name)
            };
            messaging
                .ack(proto::AckRequest {
                    subscription_id: String::new(),
                    stream,
                    topic,
                    consumer: Some(consumer),
                    partition_id: partition,
                    offset: 0,
                })
                .await
                .map(drop)
        }
        Rpc::GetTopic => admin
            .get_topic(proto::GetTopicRequest { stream, topic })
            .await
            .map(drop),
        Rpc::UpdateTopic => admin
            .update_topic(proto::UpdateTopicRequest {
                stream,
                topic,
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::DeleteTopic => admin
            .delete_topic(proto::DeleteTopicRequest { stream, topic })
            .await
            .map(drop),
        Rpc::PurgeTopic => admin
            .purge_topic(proto::PurgeTopicRequest { stream, topic })
            .await
            .map(drop),
        Rpc::CreatePartitions => admin
            .create_partitions(proto::CreatePartitionsRequest {
                stream,
                topic,
                partitions_count: 1,
            })
            .await
            .map(drop),
        Rpc::DeletePartitions => admin
            .delete_partitions(proto::DeletePartitionsRequest {
                stream,
                topic,
                partitions_count: 1,
            })
            .await
            .map(drop),
        Rpc::CreateConsumerGroup => admin
            .create_consumer_group(proto::CreateConsumerGroupRequest {
                stream,
                topic,
                name: "fresh-group".into(),
            })
            .await
            .map(drop),
        Rpc::GetConsumerGroup => admin
            .get_consumer_group(proto::GetConsumerGroupRequest {
                stream,
                topic,
                group: by_name(&group_name),
            })
            .await
            .map(drop),
        Rpc::ListConsumerGroups => admin
            .list_consumer_groups(proto::ListConsumerGroupsRequest { stream, topic })
            .await
            .map(drop),
        Rpc::DeleteConsumerGroup => admin
            .delete_consumer_group(proto::DeleteConsumerGroupRequest {
                stream,
                topic,
                group: by_name(&group_name),
            })
            .await
            .map(drop),
        Rpc::GetConsumerOffset | Rpc::GetConsumerOffsetGroup => {
            let (consumer, partition_id) = if rpc == Rpc::GetConsumerOffset {
                (named("reader"), Some(partition))
            } else {
                (group(&group_name), None)
            };
            admin
                .get_consumer_offset(proto::GetConsumerOffsetRequest {
                    stream,
                    topic,
                    consumer: Some(consumer),
                    partition_id,
                })
                .await
                .map(drop)
        }
        Rpc::StoreConsumerOffset => admin
            .store_consumer_offset(proto::StoreConsumerOffsetRequest {
                stream,
                topic,
                consumer: Some(named("reader")),
                partition_id: Some(partition),
                offset: 0,
            })
            .await
            .map(drop),
        Rpc::DeleteConsumerOffset => admin
            .delete_consumer_offset(proto::DeleteConsumerOffsetRequest {
                stream,
                topic,
                consumer: Some(named("reader")),
                partition_id: Some(partition),
            })
            .await
            .map(drop),
    }
}

fn by_id(id: u32) -> Option<ResourceId> {
    Some(ResourceId {
        kind: Some(resource_id::Kind::Id(id)),
    })
}

async fn every_rpc_names_what_is_missing(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let existing_group = env.unique("group");
    let mut clients = Clients {
        admin: gateway.admin(),
        messaging: gateway.messaging(),
    };
    clients
        .admin
        .create_consumer_group(proto::CreateConsumerGroupRequest {
            stream: by_name(&stream),
            topic: by_name(&topic),
            name: existing_group.clone(),
        })
        .await
        .expect("create group");
    let present = Names {
        stream: by_name(&stream),
        topic: by_name(&topic),
        partition: 0,
        group: existing_group,
    };
    let cases = [
        Missing {
            what: "stream by name",
            names: Names {
                stream: by_name(&env.unique("no-stream")),
                ..present.clone()
            },
            reason: "STREAM_NAME_NOT_FOUND",
        },
        Missing {
            what: "stream by id",
            names: Names {
                stream: by_id(4_000_000),
                ..present.clone()
            },
            reason: "STREAM_ID_NOT_FOUND",
        },
        Missing {
            what: "topic by name",
            names: Names {
                topic: by_name(&env.unique("no-topic")),
                ..present.clone()
            },
            reason: "TOPIC_NAME_NOT_FOUND",
        },
        Missing {
            what: "topic by id",
            names: Names {
                topic: by_id(4_000_000),
                ..present.clone()
            },
            reason: "TOPIC_ID_NOT_FOUND",
        },
        Missing {
            what: "partition",
            names: Names {
                partition: 7,
                ..present.clone()
            },
            reason: "PARTITION_NOT_FOUND",
        },
        Missing {
            what: "group",
            names: Names {
                group: env.unique("no-group"),
                ..present.clone()
            },
            reason: "CONSUMER_GROUP_NAME_NOT_FOUND",
        },
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        for rpc in Rpc::ALL {
            let applies = match case.what {
                "partition" => rpc.takes_partition(),
                "group" => rpc.takes_group(),
                "topic by name" | "topic by id" => rpc.takes_topic(),
                _ => true,
            };
            if !applies {
                continue;
            }
            checked += 1;
            match call(&mut clients, rpc, &case.names).await {
                Ok(()) => failures.push(format!("{rpc:?} with no {}: OK", case.what)),
                Err(status) => {
                    // PublishBatch reports an entry's reason as its message.
                    let reason = if rpc == Rpc::PublishBatch && status.code() == Code::NotFound {
                        Some(status.message().to_owned())
                            .filter(|m| m.ends_with("NOT_FOUND"))
                            .or_else(|| error_reason(&status))
                    } else {
                        error_reason(&status)
                    };
                    if status.code() != Code::NotFound || reason.as_deref() != Some(case.reason) {
                        failures.push(format!(
                            "{rpc:?} with no {}: {:?} {reason:?} ({})",
                            case.what,
                            status.code(),
                            status.message()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 100, "{checked} cases");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases do not name what is missing:\n{}",
        failures.len(),
        failures.join("\n")
    );
    gateway.stop().await.expect("clean stop");
}
