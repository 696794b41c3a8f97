//! The Iggy side of one subscription: how it reaches Iggy (a consumer-group
//! member on a connection of its own, since Iggy ties membership to the
//! connection; a named consumer over the replica's subscription pool), group
//! membership, the partitions it reads, polls by offset and stored offsets.

use super::{
    spec::{Spec, Start},
    token::Position,
    topic_watch::{LogEnds, log_ends},
    wakeups,
};
use crate::{
    error::{GatewayError, not_found},
    iggy::IggyPool,
};
use iggy::prelude::{
    Client, Consumer, ConsumerGroupClient, ConsumerOffsetClient, IdKind, Identifier, IggyClient,
    IggyError, IggyTimestamp, MessageClient, PolledMessages, PollingStrategy, StreamClient,
    SystemClient, TopicClient, TopicDetails,
};
use iggy_binary_protocol::{
    WireIdentifier,
    codec::{WireDecode, WireEncode},
    codes::SYNC_CONSUMER_GROUP_CODE,
    requests::consumer_groups::SyncConsumerGroupRequest,
    responses::consumer_groups::SyncConsumerGroupResponse,
};
use iggy_common::IggyErrorDiscriminants as E;
use std::{sync::Arc, time::Duration};
use tracing::{debug, warn};

/// How long opening a subscription's connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a partition is read from next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// This offset.
    Offset(u64),
    /// The first message at or after this time.
    Timestamp(u64),
    /// The oldest retained message.
    First,
}

impl ReadFrom {
    /// Where the request's `start` begins `partition`, when the request
    /// alone says: `None` for `next`, and for a resume token that does not
    /// name the partition (both read after the stored offset). `last` is
    /// the partition's newest message in `log_ends` (from
    /// [`Reader::start_ends`]) as an offset, so that a resume token names
    /// the partition before its first read.
    pub fn at_start(start: &Start, log_ends: Option<&LogEnds>, partition: u32) -> Option<Self> {
        match start {
            Start::Offset(offset) => Some(Self::Offset(*offset)),
            Start::Timestamp(micros) => Some(Self::Timestamp(*micros)),
            Start::First => Some(Self::First),
            Start::Last => Some(Self::Offset(
                log_ends
                    .and_then(|ends| ends.get(&partition).copied().flatten())
                    .unwrap_or(0),
            )),
            Start::Next | Start::Resume(_) => None,
        }
    }

    /// Where a partition to be read from here continues in a resume token
    /// until something of it is delivered. One still to be read from its
    /// first message is at offset 0 (Iggy reads from the oldest retained
    /// one at or after it).
    pub fn position(self) -> Position {
        match self {
            Self::Offset(next) => Position::Offset(next),
            Self::Timestamp(micros) => Position::Time(micros),
            Self::First => Position::Offset(0),
        }
    }

    /// Iggy's polling strategy for this position.
    pub fn strategy(self) -> PollingStrategy {
        match self {
            Self::Offset(offset) => PollingStrategy::offset(offset),
            Self::Timestamp(micros) => PollingStrategy::timestamp(IggyTimestamp::from(micros)),
            Self::First => PollingStrategy::first(),
        }
    }
}

impl From<Position> for ReadFrom {
    fn from(position: Position) -> Self {
        match position {
            Position::Offset(next) => Self::Offset(next),
            Position::Time(micros) => Self::Timestamp(micros),
        }
    }
}

/// The named consumer whose offsets hold what a consumer group's members
/// acknowledged through replicas that are not members: Iggy lets only a
/// member store the group's own offsets, and every connection store a named
/// consumer's (docs/delivery.md).
pub fn ack_mailbox(group_id: u32) -> Result<Consumer, IggyError> {
    Ok(Consumer::new(Identifier::named(&format!(
        "iggy-grpc.acks.group-{group_id}"
    ))?))
}

/// The named consumer whose offsets say how far the manual-ack streams of
/// `consumer` (for a group: of the group with id `group_id`) delivered each
/// partition: a replica that does not hold the stream refuses an Ack by id
/// past it (docs/delivery.md).
pub fn delivered_marker(consumer: &Consumer, group_id: Option<u32>) -> Result<Consumer, IggyError> {
    let name = match group_id {
        Some(group_id) => format!("iggy-grpc.delivered.group-{group_id}"),
        None => {
            let id = match consumer.id.kind {
                IdKind::Numeric => consumer.id.get_u32_value()?.to_string(),
                IdKind::String => consumer.id.get_string_value()?,
            };
            let name = format!("iggy-grpc.delivered.consumer.{id}");
            if name.len() <= 255 {
                name
            } else {
                // Too long for an Iggy name with the prefix: its hash.
                let hash = iggy_common::calculate_32(id.as_bytes());
                format!("iggy-grpc.delivered.consumer.{hash:08x}.{}", id.len())
            }
        }
    };
    Ok(Consumer::new(Identifier::named(&name)?))
}

/// How a reader reaches Iggy.
enum Connection {
    /// A consumer-group member's own connection: Iggy ties membership to it.
    Own(Arc<IggyClient>),
    /// The subscription pool, shared by every named consumer of the replica.
    Shared(IggyPool),
}

/// One subscription's or poll's way into Iggy: its partitions, polls by
/// offset and stored offsets.
pub struct Reader {
    connection: Connection,
    spec: Spec,
    /// The numeric stream and topic ids, for resume tokens.
    pub ids: (u32, u32),
    /// Every way a publisher may name this topic, for wake-ups.
    pub wakeup_keys: Vec<String>,
    /// The Iggy client id of a connection that lives exactly as long as the
    /// subscription: a member's own, or a manual-ack named consumer's
    /// presence connection; 0 for others, which have none.
    pub client_id: u32,
    /// A manual-ack named consumer's connection that only says, by being
    /// open, that the subscription is: its reads go over the pool, and
    /// another replica taking its Ack asks Iggy whether it is still there.
    presence: Option<IggyClient>,
    /// The numeric id of the group, for a member.
    pub group_id: Option<u32>,
}

impl Reader {
    /// Resolves the topic and, for a group member, opens a connection of its
    /// own and joins the group (creating it first when the request asks to);
    /// a named consumer reads over `pool`.
    pub async fn open(pool: &IggyPool, spec: Spec) -> Result<Self, GatewayError> {
        // The connection of its own a subscription holds (see
        // `Spec::holds_connection`): a member reads on it, a manual-ack
        // named consumer only keeps it open.
        let own = if spec.holds_connection() {
            let client = pool
                .target()
                .connect(CONNECT_TIMEOUT)
                .await
                .map_err(|_| GatewayError::IggyUnavailable)?;
            Some(client)
        } else {
            None
        };
        let (connection, presence) = match own {
            Some(client) if spec.is_group() => (Connection::Own(Arc::new(client)), None),
            presence => (Connection::Shared(pool.clone()), presence),
        };
        let mut reader = Self {
            connection,
            ids: (0, 0),
            wakeup_keys: Vec::new(),
            client_id: 0,
            presence,
            group_id: None,
            spec,
        };
        match reader.resolve().await {
            Ok(()) => Ok(reader),
            Err(error) => {
                reader.close().await;
                Err(error)
            }
        }
    }

    /// A named consumer's reader over `pool` for a topic whose numeric ids
    /// are known: no Iggy call, no wake-ups (for a one-off poll).
    pub fn over_pool(pool: &IggyPool, spec: Spec, ids: (u32, u32)) -> Self {
        Self {
            connection: Connection::Shared(pool.clone()),
            spec,
            ids,
            wakeup_keys: Vec::new(),
            client_id: 0,
            presence: None,
            group_id: None,
        }
    }

    async fn resolve(&mut self) -> Result<(), GatewayError> {
        let (stream_id, topic_id) = (self.spec.stream.clone(), self.spec.topic.clone());
        let (stream, topic) = self
            .call(move |client| async move {
                let stream = client.get_stream(&stream_id).await?;
                let topic = client.get_topic(&stream_id, &topic_id).await?;
                Ok((stream, topic))
            })
            .await?;
        let stream = stream.ok_or_else(|| not_found::stream(&self.spec.stream))?;
        let topic = topic.ok_or_else(|| not_found::topic(&self.spec.stream, &self.spec.topic))?;
        if let Some(partition) = self.spec.partition
            && partition >= topic.partitions_count
        {
            return Err(GatewayError::Iggy(IggyError::PartitionNotFound(
                partition as usize,
                self.spec.topic.clone(),
                self.spec.stream.clone(),
            )));
        }
        let streams = [
            Identifier::numeric(stream.id)?,
            Identifier::named(&stream.name)?,
        ];
        let topics = [
            Identifier::numeric(topic.id)?,
            Identifier::named(&topic.name)?,
        ];
        self.wakeup_keys = streams
            .iter()
            .flat_map(|s| topics.iter().map(move |t| wakeups::key(s, t)))
            .collect();
        self.ids = (stream.id, topic.id);
        if let Some(presence) = &self.presence {
            self.client_id = presence.get_me().await?.client_id;
        }
        if let Connection::Own(client) = &self.connection {
            self.client_id = client.get_me().await?.client_id;
            self.join(Arc::clone(client)).await?;
            let (stream, topic, group) =
                (&self.spec.stream, &self.spec.topic, &self.spec.consumer.id);
            let details = client
                .get_consumer_group(stream, topic, group)
                .await?
                .ok_or_else(|| not_found::consumer_group(topic, group))?;
            self.group_id = Some(details.id);
        }
        Ok(())
    }

    async fn join(&self, client: Arc<IggyClient>) -> Result<(), GatewayError> {
        let (stream, topic, group) = (&self.spec.stream, &self.spec.topic, &self.spec.consumer.id);
        match client.join_consumer_group(stream, topic, group).await {
            Ok(()) => Ok(()),
            Err(error) if self.spec.create_group && is_group_missing(&error) => {
                let name = group.get_string_value().map_err(GatewayError::Iggy)?;
                match client.create_consumer_group(stream, topic, &name).await {
                    Ok(_) => {}
                    // Another member created it in the meantime.
                    Err(error) if E::from(&error) == E::ConsumerGroupNameAlreadyExists => {}
                    Err(error) => return Err(error.into()),
                }
                Ok(client.join_consumer_group(stream, topic, group).await?)
            }
            // Iggy names a missing group by id, however it was named.
            Err(error) if is_group_missing(&error) => {
                Err(not_found::consumer_group(topic, group).into())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Runs one Iggy call on this reader's connection.
    async fn call<T, F, Fut>(&self, operation: F) -> Result<T, GatewayError>
    where
        F: FnOnce(Arc<IggyClient>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, IggyError>> + Send + 'static,
        T: Send + 'static,
    {
        match &self.connection {
            Connection::Own(client) => operation(Arc::clone(client))
                .await
                .map_err(GatewayError::from_read),
            Connection::Shared(pool) => pool.call(operation).await,
        }
    }

    /// The partitions to read now, with the group's assignment generation
    /// (0 outside a group): the requested partition, every partition of the
    /// topic, or the group's assignment to this member.
    pub async fn partitions(&self) -> Result<(u64, Vec<u32>), GatewayError> {
        if self.is_member() {
            return self.assignment().await;
        }
        if let Some(partition) = self.spec.partition {
            return Ok((0, vec![partition]));
        }
        let count = self.topic_details().await?.partitions_count;
        Ok((0, (0..count).collect()))
    }

    /// The topic's details as Iggy gives them now.
    async fn topic_details(&self) -> Result<TopicDetails, GatewayError> {
        let (stream, topic) = (self.spec.stream.clone(), self.spec.topic.clone());
        self.call(move |client| async move {
            client
                .get_topic(&stream, &topic)
                .await?
                .ok_or_else(|| IggyError::TopicIdNotFound(topic.clone(), stream.clone()))
        })
        .await
    }

    /// True for a consumer-group member.
    pub fn is_member(&self) -> bool {
        matches!(self.connection, Connection::Own(_))
    }

    /// This connection's share of the group, as Iggy's own SDK learns it: a
    /// sync request answered with the assignment generation and the member's
    /// partitions (an empty answer means the connection is no longer a
    /// member). Iggy answers a poll of a partition the member no longer owns
    /// with no messages rather than an error, so this is the only way to
    /// learn of a rebalance.
    async fn assignment(&self) -> Result<(u64, Vec<u32>), GatewayError> {
        let request = SyncConsumerGroupRequest {
            stream_id: wire_id(&self.spec.stream)?,
            topic_id: wire_id(&self.spec.topic)?,
            group_id: wire_id(&self.spec.consumer.id)?,
        };
        let answer = self
            .call(move |client| async move {
                client
                    .send_binary_request(SYNC_CONSUMER_GROUP_CODE, request.to_bytes())
                    .await
            })
            .await?;
        if answer.is_empty() {
            return Err(GatewayError::Iggy(IggyError::ConsumerGroupMemberNotFound(
                0,
                self.spec.consumer.id.clone(),
                self.spec.topic.clone(),
            )));
        }
        let (assignment, _) = SyncConsumerGroupResponse::decode(&answer).map_err(|error| {
            GatewayError::Internal(format!("unreadable group assignment: {error:?}"))
        })?;
        let mut partitions = assignment.partitions;
        partitions.sort_unstable();
        Ok((assignment.generation, partitions))
    }

    /// The consumer's stored offset in `partition`, if any. For a group,
    /// the higher of the group's own and what members acknowledged through
    /// other replicas ([`ack_mailbox`]).
    pub async fn stored_offset(&self, partition: u32) -> Result<Option<u64>, GatewayError> {
        let own = self
            .offset_of(self.spec.consumer.clone(), partition)
            .await?;
        match self.group_id {
            Some(group_id) => {
                let acked = self.offset_of(ack_mailbox(group_id)?, partition).await?;
                Ok(own.max(acked))
            }
            None => Ok(own),
        }
    }

    async fn offset_of(
        &self,
        consumer: Consumer,
        partition: u32,
    ) -> Result<Option<u64>, GatewayError> {
        let (stream, topic) = (self.spec.stream.clone(), self.spec.topic.clone());
        self.call(move |client| async move {
            let stored = client
                .get_consumer_offset(&consumer, &stream, &topic, Some(partition))
                .await?;
            Ok(stored.map(|info| info.stored_offset))
        })
        .await
    }

    /// The offset of the last message of `partition` as the topic's details
    /// give it, a different answer from a poll's (`None`: no messages).
    pub async fn log_end(&self, partition: u32) -> Result<Option<u64>, GatewayError> {
        let details = self.topic_details().await?;
        Ok(log_ends(&details).get(&partition).copied().flatten())
    }

    /// The log ends a `last` start needs (see [`ReadFrom::at_start`]), read
    /// from the topic now; `None` for any other start.
    pub async fn start_ends(&self, start: &Start) -> Result<Option<LogEnds>, GatewayError> {
        match start {
            Start::Last => Ok(Some(log_ends(&self.topic_details().await?))),
            _ => Ok(None),
        }
    }

    /// Reads up to `count` messages of `partition`; never commits by itself.
    pub async fn poll(
        &self,
        partition: u32,
        from: ReadFrom,
        count: u32,
    ) -> Result<PolledMessages, GatewayError> {
        crate::metrics::count_subscription_poll();
        let (stream, topic, consumer) = self.owned_names();
        self.call(move |client| async move {
            client
                .poll_messages(
                    &stream,
                    &topic,
                    Some(partition),
                    &consumer,
                    &from.strategy(),
                    count,
                    false,
                )
                .await
        })
        .await
    }

    /// Stores `offset` as the consumer's position in `partition`.
    pub async fn commit(&self, partition: u32, offset: u64) -> Result<(), GatewayError> {
        let (stream, topic, consumer) = self.owned_names();
        self.call(move |client| async move {
            client
                .store_consumer_offset(&consumer, &stream, &topic, Some(partition), offset)
                .await
        })
        .await
    }

    /// Notes in Iggy that `partition` was delivered up to `offset`, before
    /// the batch goes out (see [`delivered_marker`]).
    pub async fn note_delivered(&self, partition: u32, offset: u64) -> Result<(), GatewayError> {
        let marker = delivered_marker(&self.spec.consumer, self.group_id)?;
        let (stream, topic) = (self.spec.stream.clone(), self.spec.topic.clone());
        self.call(move |client| async move {
            client
                .store_consumer_offset(&marker, &stream, &topic, Some(partition), offset)
                .await
        })
        .await
    }

    /// The stream, topic and consumer, for a call that owns its inputs.
    fn owned_names(&self) -> (Identifier, Identifier, Consumer) {
        (
            self.spec.stream.clone(),
            self.spec.topic.clone(),
            self.spec.consumer.clone(),
        )
    }

    /// Leaves the group and closes the connection (for a member; a named
    /// consumer has nothing to release).
    pub async fn close(self) {
        if let Some(presence) = self.presence
            && let Err(error) = presence.shutdown().await
        {
            debug!(%error, "closing a subscription's presence connection");
        }
        let Connection::Own(client) = self.connection else {
            return;
        };
        if self.group_id.is_some()
            && let Err(error) = client
                .leave_consumer_group(&self.spec.stream, &self.spec.topic, &self.spec.consumer.id)
                .await
        {
            warn!(%error, "leaving the consumer group failed");
        }
        if let Err(error) = client.shutdown().await {
            debug!(%error, "closing a subscription connection");
        }
    }
}

/// The wire form of an identifier, for requests the SDK has no method for.
fn wire_id(id: &Identifier) -> Result<WireIdentifier, GatewayError> {
    match id.kind {
        IdKind::Numeric => Ok(WireIdentifier::numeric(id.get_u32_value()?)),
        IdKind::String => WireIdentifier::named(&id.get_string_value()?).map_err(|error| {
            GatewayError::Internal(format!("cannot encode identifier {id}: {error:?}"))
        }),
    }
}

fn is_group_missing(error: &IggyError) -> bool {
    matches!(
        E::from(error),
        E::ConsumerGroupIdNotFound | E::ConsumerGroupNameNotFound | E::ResourceNotFound
    )
}

/// True when Iggy refused to store an offset its partition no longer
/// reaches: the log was truncated under the subscription (topic purged, or
/// unflushed messages lost in a crash), so the messages it covers are gone.
pub fn is_past_log_end(error: &GatewayError) -> bool {
    matches!(error, GatewayError::Iggy(error) if E::from(error) == E::InvalidOffset)
}

/// True when the member's view of its partitions is out of date.
pub fn is_assignment_stale(error: &GatewayError) -> bool {
    matches!(
        error,
        GatewayError::Iggy(error) if matches!(
            E::from(error),
            E::ConsumerGroupPartitionNotOwned | E::ConsumerGroupMemberNotFound
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_consumer_has_a_delivered_marker_of_its_own_that_iggy_can_name() {
        let named = |name: &str| Consumer::new(Identifier::named(name).expect("id"));
        let marker = |consumer: &Consumer, group| {
            delivered_marker(consumer, group)
                .expect("marker")
                .id
                .get_string_value()
                .expect("named")
        };
        assert_eq!(
            marker(&named("billing"), None),
            "iggy-grpc.delivered.consumer.billing"
        );
        assert_eq!(
            marker(&Consumer::new(Identifier::numeric(7).expect("id")), None),
            "iggy-grpc.delivered.consumer.7"
        );
        assert_eq!(
            marker(&named("billing"), Some(3)),
            "iggy-grpc.delivered.group-3"
        );
        let long = "x".repeat(255);
        let other = format!("{}y", "x".repeat(254));
        let (a, b) = (marker(&named(&long), None), marker(&named(&other), None));
        assert!(a.len() <= 255 && b.len() <= 255);
        assert_ne!(a, b, "long names stay apart");
    }
}
