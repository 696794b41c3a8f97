//! Subscribe and Ack: resumable, flow-controlled server-streaming delivery.
//!
//! Every subscription runs in its own task. A named consumer reads over the
//! replica's subscription pool (connections apart from the publish/admin
//! pool, shared by all named consumers); a consumer-group member on a
//! connection of its own, as Iggy requires. It reads explicit partitions by
//! offset, so the gateway knows each position exactly:
//! every batch and heartbeat carries a resume token, auto-ack commits happen
//! when the transport takes a batch, manual-ack commits only on Ack.

mod credit;
mod in_flight;
mod read_ahead;
mod reader;
mod session;
mod spec;
mod subscription_id;
mod token;
mod topic_watch;
mod wakeups;

pub use credit::{Credit, Grant};
pub use reader::{ReadFrom, Reader};
pub use session::delivered;
pub use spec::{AckMode, Spec, Start, SubscribeLimits};
pub use subscription_id::SubscriptionRef;
pub use token::{Position, Positions, decode as decode_token, encode as encode_token, fingerprint};
pub use wakeups::Wakeups;

use crate::{
    config::MaxAge,
    edge::{Principal, StreamRef, access},
    error::{GatewayError, not_found},
    iggy::IggyPool,
    messaging::redelivery,
    proto,
};
use iggy::prelude::{
    Consumer, ConsumerGroupClient, ConsumerKind, ConsumerOffsetClient, IdKind, Identifier,
    SystemClient,
};
use session::{AckCommand, Item, Session, Wiring};
use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
};
use tokio::{
    sync::{Notify, Semaphore, mpsc, oneshot, watch},
    time::Instant,
};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::Status;
use topic_watch::TopicWatches;
use tracing::info;

/// The server stream a Subscribe call returns.
pub type SubscribeStream =
    Pin<Box<dyn Stream<Item = Result<proto::SubscribeResponse, Status>> + Send + 'static>>;

/// Where one subscription's acks go: kept in the registry for Ack calls,
/// and held by a Consume stream, which acks without the registry.
#[derive(Clone)]
pub struct SessionAcks(mpsc::Sender<AckCommand>);

impl SessionAcks {
    /// Acknowledges everything of `partition` up to and including
    /// `offset`; NOT_FOUND once the subscription ended.
    pub async fn ack(&self, partition: u32, offset: u64) -> Result<(), GatewayError> {
        self.command(partition, offset, false).await
    }

    /// Settles only message `offset` of `partition` (it was handed to
    /// redelivery): its room is free, and the stored offset moves past it
    /// once the messages before it are done.
    pub async fn settle(&self, partition: u32, offset: u64) -> Result<(), GatewayError> {
        self.command(partition, offset, true).await
    }

    async fn command(&self, partition: u32, offset: u64, only: bool) -> Result<(), GatewayError> {
        let ended = || GatewayError::SubscriptionNotFound(String::new());
        let (reply, answer) = oneshot::channel();
        self.0
            .send(AckCommand {
                partition,
                offset,
                only,
                reply,
            })
            .await
            .map_err(|_| ended())?;
        answer.await.map_err(|_| ended())?
    }
}

/// Acks waiting to be served per subscription.
const ACK_QUEUE: usize = 64;

/// The live subscriptions of this gateway.
pub struct Subscriptions {
    /// The publish/admin pool: acks taken for other replicas' streams.
    pool: IggyPool,
    /// The subscription pool: named consumers' reads, topic watchers.
    readers: IggyPool,
    limits: SubscribeLimits,
    slots: Arc<Semaphore>,
    /// Consumer-group members' share of the slots.
    member_slots: Arc<Semaphore>,
    /// When streams end to move on (`--max-connection-age`).
    max_age: Option<MaxAge>,
    /// Turns to open an Iggy connection (see `SubscribeLimits::max_opening`).
    opening: Semaphore,
    acks: Arc<Mutex<HashMap<String, SessionAcks>>>,
    shutdown: watch::Receiver<bool>,
    wakeups: Arc<Wakeups>,
    watches: TopicWatches,
}

impl Subscriptions {
    /// Subscriptions reading over `readers` (group members each on a
    /// connection of their own, made where `readers` connects), storing acks
    /// for other replicas over `pool`, within `limits`, each ending at
    /// `max_age` and all when `shutdown` turns true; `wakeups` is shared
    /// with the publisher.
    pub fn new(
        pool: IggyPool,
        readers: IggyPool,
        limits: SubscribeLimits,
        max_age: Option<MaxAge>,
        shutdown: watch::Receiver<bool>,
        wakeups: Arc<Wakeups>,
    ) -> Self {
        Self {
            max_age,
            watches: TopicWatches::new(readers.clone(), limits.max_idle_backoff),
            pool,
            readers,
            slots: Arc::new(Semaphore::new(limits.max_subscriptions)),
            member_slots: Arc::new(Semaphore::new(limits.max_group_members)),
            opening: Semaphore::new(limits.max_opening.max(1)),
            limits,
            acks: Arc::default(),
            shutdown,
            wakeups,
        }
    }

    /// The bounds and defaults subscriptions are held to.
    pub fn limits(&self) -> &SubscribeLimits {
        &self.limits
    }

    /// Starts a subscription. Errors found before the first message (bad
    /// input, unknown topic, Iggy unreachable, too many subscriptions) are
    /// the call's status; later ones end the stream with a status carrying
    /// the resume token in its ErrorInfo metadata.
    pub async fn subscribe(
        &self,
        request: proto::SubscribeRequest,
    ) -> Result<SubscribeStream, GatewayError> {
        Ok(self.start(request, None).await?.0)
    }

    /// Starts a subscription as [`Self::subscribe`] does, sending only what
    /// `credit` allows when given; returns its stream and where its acks go.
    pub async fn start(
        &self,
        request: proto::SubscribeRequest,
        credit: Option<Credit>,
    ) -> Result<(SubscribeStream, SessionAcks), GatewayError> {
        let spec = Spec::subscribe(&request, &self.limits)?;
        if *self.shutdown.borrow() {
            return Err(GatewayError::ShuttingDown);
        }
        let permit = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            GatewayError::TooManySubscriptions {
                limit: self.limits.max_subscriptions,
            }
        })?;
        // A member, or a manual-ack subscription, holds an Iggy connection
        // of its own and logs in on it: it takes one of those slots and
        // waits its turn to open.
        let (member_slot, turn) = if spec.holds_connection() {
            let slot = Arc::clone(&self.member_slots)
                .try_acquire_owned()
                .map_err(|_| GatewayError::TooManyGroupMembers {
                    limit: self.limits.max_group_members,
                })?;
            let turn = tokio::time::timeout(self.limits.opening_wait, self.opening.acquire())
                .await
                .map_err(|_| GatewayError::SubscriptionsOpening {
                    opening: self.limits.max_opening,
                })?
                .map_err(|_| GatewayError::ShuttingDown)?;
            (Some(slot), Some(turn))
        } else {
            (None, None)
        };
        let reader = Reader::open(&self.readers, spec.clone()).await?;
        drop(turn);
        let wakeup = Arc::new(Notify::new());
        self.wakeups.register(&reader.wakeup_keys, &wakeup);

        let (responses, responses_rx) = mpsc::channel::<Item>(self.limits.buffered_batches);
        let (commits_tx, commits) = mpsc::unbounded_channel();
        let (acks_tx, acks) = mpsc::channel(ACK_QUEUE);
        let wiring = Wiring {
            responses,
            commits,
            acks,
            shutdown: self.shutdown.clone(),
            wakeup,
            pool: self.pool.clone(),
            _slots: (permit, member_slot),
            credit,
            topic_watch: self.watches.watch(reader.ids.0, reader.ids.1),
            max_age: self.max_age.map(|max_age| {
                // Up to 10% sooner, so streams opened together leave apart.
                let sooner = max_age.age.mul_f64(rand::random_range(0.0..0.1));
                (Instant::now() + max_age.age - sooner, max_age.grace)
            }),
        };
        let session = match Session::start(reader, spec, self.limits.clone(), wiring).await {
            Ok(session) => session,
            Err((reader, error)) => {
                reader.close().await;
                return Err(error);
            }
        };
        let id = session.id().to_owned();
        let acks = SessionAcks(acks_tx);
        self.lock_acks().insert(id.clone(), acks.clone());
        let registry = Arc::clone(&self.acks);
        tokio::spawn(async move {
            info!(subscription = %id, "subscription started");
            crate::metrics::add_active_subscriptions(1);
            session.run().await;
            crate::metrics::add_active_subscriptions(-1);
            registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });

        // Auto-ack offsets are stored once the transport takes their batch:
        // that is when tonic pulls it from this stream.
        let stream = ReceiverStream::new(responses_rx).map(move |item: Item| {
            if let Some(commit) = item.commit {
                let _ = commits_tx.send(commit);
            }
            item.response
        });
        Ok((Box::pin(stream), acks))
    }

    /// Acknowledges `offset` of `partition` on a live manual-ack
    /// subscription, held by this replica or another one.
    pub async fn ack(
        &self,
        principal: &Principal,
        subscription_id: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), GatewayError> {
        let not_found = || GatewayError::SubscriptionNotFound(subscription_id.to_owned());
        let reference = admitted(principal, subscription_id)?;
        if reference.redelivery && reference.manual {
            // Only its stream knows what is out: handed over through Iggy.
            let ack = redelivery::Control::Ack { partition, offset };
            return redelivery::hand_over(&self.pool, &reference, ack).await;
        }
        let local = self.lock_acks().get(subscription_id).cloned();
        let acked = match local {
            Some(acks) => acks.ack(partition, offset).await,
            None => self.ack_elsewhere(&reference, partition, offset).await,
        };
        acked.map_err(|error| match error {
            GatewayError::SubscriptionNotFound(_) => not_found(),
            error => error,
        })
    }

    /// An Ack for a subscription this replica does not hold (another
    /// replica's, or one that ended): while the subscription's connection
    /// is still open in Iggy (for a member: still in the group), a named
    /// consumer's offset is stored as it is, a member's in the group's ack
    /// mailbox. Neither moves a stored offset back.
    async fn ack_elsewhere(
        &self,
        reference: &SubscriptionRef,
        partition: u32,
        offset: u64,
    ) -> Result<(), GatewayError> {
        if !reference.manual {
            return Err(not_manual_ack());
        }
        // The subscription's own connection lives exactly as long as it: a
        // member's (still in the group), or a named consumer's presence.
        let ended = || GatewayError::SubscriptionNotFound(String::new());
        let client_id = reference.client_id;
        if client_id == 0 {
            return Err(ended());
        }
        let holder = self
            .pool
            .call(move |client| async move { client.get_client(client_id).await })
            .await?
            .ok_or_else(ended)?;
        let (target, group_id) = match reference.consumer.kind {
            ConsumerKind::ConsumerGroup => {
                let group_id = reference.consumer.id.get_u32_value()?;
                let member = holder
                    .consumer_groups
                    .iter()
                    .any(|group| group.group_id == group_id);
                if !member {
                    return Err(ended());
                }
                (reader::ack_mailbox(group_id)?, Some(group_id))
            }
            ConsumerKind::Consumer => (reference.consumer.clone(), None),
        };
        self.check_delivered(reference, group_id, partition, offset)
            .await?;
        self.store_ack(
            target,
            &reference.stream,
            &reference.topic,
            partition,
            offset,
        )
        .await
    }

    /// Refuses an Ack by id of an offset the subscription's consumer (for
    /// a member, group `group_id`) has not been delivered: past what its
    /// manual-ack streams noted in Iggy before sending
    /// ([`reader::delivered_marker`]).
    async fn check_delivered(
        &self,
        reference: &SubscriptionRef,
        group_id: Option<u32>,
        partition: u32,
        offset: u64,
    ) -> Result<(), GatewayError> {
        let marker = reader::delivered_marker(&reference.consumer, group_id)?;
        let (stream, topic) = (reference.stream.clone(), reference.topic.clone());
        let delivered = self
            .pool
            .call(move |client| async move {
                client
                    .get_consumer_offset(&marker, &stream, &topic, Some(partition))
                    .await
            })
            .await?
            .map(|marker| marker.stored_offset);
        match delivered {
            Some(last) if offset <= last => Ok(()),
            _ => Err(GatewayError::FailedPrecondition {
                reason: "OFFSET_NOT_DELIVERED",
                message: format!(
                    "offset {offset} of partition {partition} was not delivered to this consumer (last delivered: {})",
                    delivered.map_or_else(|| "none".to_owned(), |last| last.to_string())
                ),
            }),
        }
    }

    /// An Ack that names its stream, topic and consumer instead of a
    /// subscription: stored where whichever replica holds that consumer's
    /// stream looks for it (for a group, its ack mailbox).
    pub async fn ack_by_names(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        consumer: Consumer,
        partition: u32,
        offset: u64,
    ) -> Result<(), GatewayError> {
        let target = match consumer.kind {
            ConsumerKind::ConsumerGroup => {
                let (stream, topic, group) = (stream.clone(), topic.clone(), consumer.id);
                let group_id = self
                    .pool
                    .call(move |client| async move {
                        let details = client
                            .get_consumer_group(&stream, &topic, &group)
                            .await?
                            .ok_or_else(|| not_found::consumer_group(&topic, &group))?;
                        Ok(details.id)
                    })
                    .await?;
                reader::ack_mailbox(group_id)?
            }
            ConsumerKind::Consumer => consumer,
        };
        self.store_ack(target, stream, topic, partition, offset)
            .await
    }

    /// Stores `offset` for `target`, unless Iggy already holds it or a later
    /// one: an ack never moves a stored offset back.
    async fn store_ack(
        &self,
        target: Consumer,
        stream: &Identifier,
        topic: &Identifier,
        partition: u32,
        offset: u64,
    ) -> Result<(), GatewayError> {
        let (stream, topic) = (stream.clone(), topic.clone());
        let stored = self
            .pool
            .call(move |client| async move {
                let known = client
                    .get_consumer_offset(&target, &stream, &topic, Some(partition))
                    .await?;
                if known.is_some_and(|known| known.stored_offset >= offset) {
                    return Ok(());
                }
                client
                    .store_consumer_offset(&target, &stream, &topic, Some(partition), offset)
                    .await
            })
            .await;
        match stored {
            Err(error) if reader::is_past_log_end(&error) => {
                Err(GatewayError::FailedPrecondition {
                    reason: "OFFSET_NOT_DELIVERED",
                    message: format!(
                        "offset {offset} of partition {partition} is past the partition's last message"
                    ),
                })
            }
            other => other,
        }
    }

    fn lock_acks(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionAcks>> {
        self.acks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The refusal of an Ack for a subscription whose offsets are stored as
/// they are delivered.
fn not_manual_ack() -> GatewayError {
    GatewayError::FailedPrecondition {
        reason: "NOT_MANUAL_ACK",
        message: "this subscription does not use ACK_MODE_MANUAL; its offsets are not acknowledged by Ack".into(),
    }
}

/// What `subscription_id` names, for a `principal` allowed its stream;
/// NOT_FOUND for text that names no subscription.
pub fn admitted(
    principal: &Principal,
    subscription_id: &str,
) -> Result<SubscriptionRef, GatewayError> {
    let reference = SubscriptionRef::decode(subscription_id)
        .ok_or_else(|| GatewayError::SubscriptionNotFound(subscription_id.to_owned()))?;
    access::check_stream(principal, Some(stream_ref(&reference.stream)))?;
    Ok(reference)
}

/// An identifier as the access check takes it.
fn stream_ref(stream: &Identifier) -> StreamRef<'_> {
    match stream.kind {
        IdKind::Numeric => StreamRef::Id(stream.get_u32_value().unwrap_or_default()),
        IdKind::String => StreamRef::Name(std::str::from_utf8(&stream.value).unwrap_or_default()),
    }
}
