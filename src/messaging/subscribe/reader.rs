//! The Iggy side of one subscription: its own connection (never shared, so
//! two group members never share one), group membership, the partitions it
//! reads, polls by offset and stored offsets.

use super::{spec::Spec, topic_watch::log_ends, wakeups};
use crate::{
    error::{GatewayError, not_found},
    iggy::IggyTarget,
};
use iggy::prelude::{
    Client, Consumer, ConsumerGroupClient, ConsumerOffsetClient, IdKind, Identifier, IggyClient,
    IggyError, IggyTimestamp, MessageClient, PolledMessages, PollingStrategy, StreamClient,
    SystemClient, TopicClient,
};
use iggy_binary_protocol::{
    WireIdentifier,
    codec::{WireDecode, WireEncode},
    codes::SYNC_CONSUMER_GROUP_CODE,
    requests::consumer_groups::SyncConsumerGroupRequest,
    responses::consumer_groups::SyncConsumerGroupResponse,
};
use iggy_common::IggyErrorDiscriminants as E;
use std::time::Duration;
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
    /// The newest message.
    Last,
}

impl ReadFrom {
    /// How many messages to ask for: `last` means only the newest one.
    pub fn count(self, batch_size: u32) -> u32 {
        if self == Self::Last { 1 } else { batch_size }
    }

    /// Iggy's polling strategy for this position.
    pub fn strategy(self) -> PollingStrategy {
        match self {
            Self::Offset(offset) => PollingStrategy::offset(offset),
            Self::Timestamp(micros) => PollingStrategy::timestamp(IggyTimestamp::from(micros)),
            Self::First => PollingStrategy::first(),
            Self::Last => PollingStrategy::last(),
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

/// One subscription's connection to Iggy.
pub struct Reader {
    client: IggyClient,
    spec: Spec,
    /// The numeric stream and topic ids, for resume tokens.
    pub ids: (u32, u32),
    /// Every way a publisher may name this topic, for wake-ups.
    pub wakeup_keys: Vec<String>,
    /// Iggy's id of this connection: it lives as long as the subscription.
    pub client_id: u32,
    /// The numeric id of the group, for a member.
    pub group_id: Option<u32>,
    member: bool,
}

impl Reader {
    /// Connects, resolves the topic, and joins the group for a group member
    /// (creating the group first when the request asks to).
    pub async fn open(target: &IggyTarget, spec: Spec) -> Result<Self, GatewayError> {
        let client = target
            .connect(CONNECT_TIMEOUT)
            .await
            .map_err(|_| GatewayError::IggyUnavailable)?;
        let stream = client
            .get_stream(&spec.stream)
            .await?
            .ok_or_else(|| not_found::stream(&spec.stream))?;
        let topic = client
            .get_topic(&spec.stream, &spec.topic)
            .await?
            .ok_or_else(|| not_found::topic(&spec.stream, &spec.topic))?;
        if let Some(partition) = spec.partition
            && partition >= topic.partitions_count
        {
            return Err(GatewayError::Iggy(IggyError::PartitionNotFound(
                partition as usize,
                spec.topic.clone(),
                spec.stream.clone(),
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
        let wakeup_keys = streams
            .iter()
            .flat_map(|s| topics.iter().map(move |t| wakeups::key(s, t)))
            .collect();
        let client_id = client.get_me().await?.client_id;
        let mut reader = Self {
            client,
            ids: (stream.id, topic.id),
            wakeup_keys,
            client_id,
            group_id: None,
            member: false,
            spec,
        };
        if reader.spec.is_group() {
            reader.join().await?;
            let (stream, topic, group) = (
                &reader.spec.stream,
                &reader.spec.topic,
                &reader.spec.consumer.id,
            );
            let details = reader
                .client
                .get_consumer_group(stream, topic, group)
                .await?
                .ok_or_else(|| not_found::consumer_group(topic, group))?;
            reader.group_id = Some(details.id);
        }
        Ok(reader)
    }

    async fn join(&mut self) -> Result<(), GatewayError> {
        let (stream, topic, group) = (&self.spec.stream, &self.spec.topic, &self.spec.consumer.id);
        match self.client.join_consumer_group(stream, topic, group).await {
            Ok(()) => {}
            Err(error) if self.spec.create_group && is_group_missing(&error) => {
                let name = group.get_string_value().map_err(GatewayError::Iggy)?;
                match self
                    .client
                    .create_consumer_group(stream, topic, &name)
                    .await
                {
                    Ok(_) => {}
                    // Another member created it in the meantime.
                    Err(error) if E::from(&error) == E::ConsumerGroupNameAlreadyExists => {}
                    Err(error) => return Err(error.into()),
                }
                self.client
                    .join_consumer_group(stream, topic, group)
                    .await?;
            }
            // Iggy names a missing group by id, however it was named.
            Err(error) if is_group_missing(&error) => {
                return Err(not_found::consumer_group(topic, group).into());
            }
            Err(error) => return Err(error.into()),
        }
        self.member = true;
        Ok(())
    }

    /// The partitions to read now, with the group's assignment generation
    /// (0 outside a group): the requested partition, every partition of the
    /// topic, or the group's assignment to this member.
    pub async fn partitions(&self) -> Result<(u64, Vec<u32>), GatewayError> {
        let (stream, topic) = (&self.spec.stream, &self.spec.topic);
        if self.member {
            return self.assignment().await;
        }
        if let Some(partition) = self.spec.partition {
            return Ok((0, vec![partition]));
        }
        let details = self
            .client
            .get_topic(stream, topic)
            .await?
            .ok_or_else(|| IggyError::TopicIdNotFound(topic.clone(), stream.clone()))?;
        Ok((0, (0..details.partitions_count).collect()))
    }

    /// True for a consumer-group member.
    pub fn is_member(&self) -> bool {
        self.member
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
            .client
            .send_binary_request(SYNC_CONSUMER_GROUP_CODE, request.to_bytes())
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
    pub async fn stored_offset(&self, partition: u32) -> Result<Option<u64>, IggyError> {
        let own = self.offset_of(&self.spec.consumer, partition).await?;
        match self.group_id {
            Some(group_id) => {
                let acked = self.offset_of(&ack_mailbox(group_id)?, partition).await?;
                Ok(own.max(acked))
            }
            None => Ok(own),
        }
    }

    async fn offset_of(
        &self,
        consumer: &Consumer,
        partition: u32,
    ) -> Result<Option<u64>, IggyError> {
        let stored = self
            .client
            .get_consumer_offset(
                consumer,
                &self.spec.stream,
                &self.spec.topic,
                Some(partition),
            )
            .await?;
        Ok(stored.map(|info| info.stored_offset))
    }

    /// The offset of the last message of `partition` as the topic's details
    /// give it, a different answer from a poll's (`None`: no messages).
    pub async fn log_end(&self, partition: u32) -> Result<Option<u64>, IggyError> {
        let details = self
            .client
            .get_topic(&self.spec.stream, &self.spec.topic)
            .await?
            .ok_or_else(|| {
                IggyError::TopicIdNotFound(self.spec.topic.clone(), self.spec.stream.clone())
            })?;
        Ok(log_ends(&details).get(&partition).copied().flatten())
    }

    /// Reads up to `count` messages of `partition`; never commits by itself.
    pub async fn poll(
        &self,
        partition: u32,
        from: ReadFrom,
        count: u32,
    ) -> Result<PolledMessages, IggyError> {
        crate::metrics::count_subscription_poll();
        self.client
            .poll_messages(
                &self.spec.stream,
                &self.spec.topic,
                Some(partition),
                &self.spec.consumer,
                &from.strategy(),
                from.count(count),
                false,
            )
            .await
    }

    /// Stores `offset` as the consumer's position in `partition`.
    pub async fn commit(&self, partition: u32, offset: u64) -> Result<(), IggyError> {
        self.client
            .store_consumer_offset(
                &self.spec.consumer,
                &self.spec.stream,
                &self.spec.topic,
                Some(partition),
                offset,
            )
            .await
    }

    /// Leaves the group (for a member) and closes the connection.
    pub async fn close(self) {
        if self.member
            && let Err(error) = self
                .client
                .leave_consumer_group(&self.spec.stream, &self.spec.topic, &self.spec.consumer.id)
                .await
        {
            warn!(%error, "leaving the consumer group failed");
        }
        if let Err(error) = self.client.shutdown().await {
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
pub fn is_past_log_end(error: &IggyError) -> bool {
    matches!(E::from(error), E::InvalidOffset)
}

/// True when the member's view of its partitions is out of date.
pub fn is_assignment_stale(error: &IggyError) -> bool {
    matches!(
        E::from(error),
        E::ConsumerGroupPartitionNotOwned | E::ConsumerGroupMemberNotFound
    )
}
