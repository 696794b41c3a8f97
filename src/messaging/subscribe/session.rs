//! One subscription's delivery loop: polls its partitions in turn, sends
//! batches into a bounded channel (a slow client stops the polling), commits
//! per ack mode, sends heartbeats while idle, and ends with a status.

mod commits;

use super::{
    credit::{self, Credit},
    in_flight::InFlight,
    read_ahead::ReadAhead,
    reader::{ReadFrom, Reader, is_assignment_stale},
    spec::{AckMode, Spec, Start, SubscribeLimits},
    subscription_id::SubscriptionRef,
    token::{self, Position, Positions},
    topic_watch::{Ends, LogEnds, TopicWatch},
};
use crate::{
    error::GatewayError,
    iggy::IggyPool,
    messaging::headers,
    proto::{self, subscribe_response::Kind},
};
use iggy::prelude::{Consumer, Identifier, IggyError, IggyMessage, PolledMessages};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};
use tokio::{
    sync::{Notify, OwnedSemaphorePermit, mpsc, oneshot, watch},
    time::Instant,
};
use tonic::Status;
use tracing::{debug, warn};
use uuid::Uuid;

/// How often a named consumer re-reads the topic's partitions (a group
/// member re-reads its assignment before every round of polls instead).
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// The first pause after a round of empty polls; doubles to the limit.
const FIRST_IDLE_BACKOFF: Duration = Duration::from_millis(1);
/// How long an idle session waits for its topic's watcher before it polls
/// anyway (to meet partition and group changes the watcher does not report).
const IDLE_RECHECK: Duration = Duration::from_secs(1);
/// How often a manual-ack stream with messages in flight looks for acks
/// taken by other replicas when it is not blocked on them (blocked, it looks
/// at every pause).
const LEARN_INTERVAL: Duration = Duration::from_millis(200);
/// How long the final status may wait for room in a full channel.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(5);

/// Offsets to store once a batch has been handed to the transport.
pub type Commit = Vec<(u32, u64)>;

/// What the session sends: a response, and for auto-ack the offsets to store
/// when the transport takes it.
pub struct Item {
    pub response: Result<proto::SubscribeResponse, Status>,
    pub commit: Option<Commit>,
}

/// An Ack for this subscription, answered once the offset is stored.
pub struct AckCommand {
    pub partition: u32,
    pub offset: u64,
    /// Settles only this message (handed to redelivery), not the ones
    /// before it.
    pub only: bool,
    pub reply: oneshot::Sender<Result<(), GatewayError>>,
}

/// Why delivery stopped.
enum End {
    /// The client went away: nothing more to send.
    ClientGone,
    /// End the stream with this error.
    Failed(GatewayError),
}

impl From<GatewayError> for End {
    fn from(error: GatewayError) -> Self {
        match error {
            GatewayError::Iggy(error) => error.into(),
            other => Self::Failed(other),
        }
    }
}

impl From<IggyError> for End {
    fn from(error: IggyError) -> Self {
        Self::Failed(GatewayError::from_read(error))
    }
}

/// The channels a session talks through.
pub struct Wiring {
    pub responses: mpsc::Sender<Item>,
    pub commits: mpsc::UnboundedReceiver<Commit>,
    pub acks: mpsc::Receiver<AckCommand>,
    pub shutdown: watch::Receiver<bool>,
    pub wakeup: Arc<Notify>,
    /// Told when this subscription loses Iggy, so calls on the pool do not
    /// meet connections from before the outage.
    pub pool: IggyPool,
    /// Held for the session's life: one of the gateway's subscription slots,
    /// and for a group member one of the members' slots.
    pub _slots: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
    /// A Consume stream's flow-control credit; `None` for Subscribe.
    pub credit: Option<Credit>,
    /// The topic's watcher: an idle session waits for it to see a partition
    /// end past its position instead of polling.
    pub topic_watch: Arc<TopicWatch>,
    /// When the stream ends to move on, and how long it may then wait for
    /// acks of what it has in flight; `None`: never.
    pub max_age: Option<(Instant, Duration)>,
}

/// A running subscription.
pub struct Session {
    id: String,
    reader: Reader,
    spec: Spec,
    limits: SubscribeLimits,
    fingerprint: u32,
    partitions: Vec<u32>,
    generation: u64,
    from: BTreeMap<u32, ReadFrom>,
    delivered: BTreeMap<u32, u64>,
    /// When Iggy stored the last message delivered, per partition.
    delivered_at: BTreeMap<u32, u64>,
    committed: BTreeMap<u32, u64>,
    in_flight: InFlight,
    read_ahead: ReadAhead,
    rotation: usize,
    last_sent: Instant,
    refresh_at: Instant,
    learn_at: Instant,
    /// Woken by the watcher, and the polls after found nothing yet: wait for
    /// a later change, not the one already seen.
    news_seen: bool,
    ends: watch::Receiver<Ends>,
    wiring: Wiring,
}

impl Session {
    /// Reads the partitions and resolves where each one starts. Fails (and
    /// the Subscribe call with it) on a bad resume token or an Iggy error.
    pub async fn start(
        reader: Reader,
        spec: Spec,
        limits: SubscribeLimits,
        wiring: Wiring,
    ) -> Result<Self, (Reader, GatewayError)> {
        let fingerprint = token::fingerprint(reader.ids.0, reader.ids.1);
        let resume = match &spec.start {
            Start::Resume(text) => match token::decode("start.resume_token", text, fingerprint) {
                Ok(positions) => Some(positions),
                Err(error) => return Err((reader, error)),
            },
            _ => None,
        };
        let (generation, partitions) = match reader.partitions().await {
            Ok(assignment) => assignment,
            Err(error) => return Err((reader, error)),
        };
        let id = match subscription_id(&reader, &spec) {
            Ok(id) => id,
            Err(error) => return Err((reader, error.into())),
        };
        let mut session = Self {
            id,
            reader,
            spec,
            limits,
            fingerprint,
            partitions: Vec::new(),
            generation,
            from: BTreeMap::new(),
            delivered: BTreeMap::new(),
            delivered_at: BTreeMap::new(),
            committed: BTreeMap::new(),
            in_flight: InFlight::default(),
            read_ahead: ReadAhead::default(),
            rotation: 0,
            last_sent: Instant::now(),
            refresh_at: Instant::now() + REFRESH_INTERVAL,
            learn_at: Instant::now() + LEARN_INTERVAL,
            news_seen: false,
            ends: wiring.topic_watch.ends(),
            wiring,
        };
        match session.adopt(partitions, resume.as_ref(), true).await {
            Ok(()) => {}
            Err(End::Failed(error)) => return Err((session.reader, error)),
            Err(End::ClientGone) => {
                return Err((
                    session.reader,
                    GatewayError::Internal("client gone before start".into()),
                ));
            }
        }
        Ok(session)
    }

    /// The subscription's id, for Ack calls.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Delivers until the client leaves, Iggy fails or the gateway stops;
    /// then sends the final status and releases the connection (leaving the
    /// group).
    pub async fn run(mut self) {
        let end = self.deliver().await;
        // A member stores the group's offset for acks taken elsewhere, and
        // the final token of a manual-ack stream counts them: learnt before
        // the status, or after the end when the client left.
        let learn = self.spec.ack_mode == AckMode::Manual;
        let client_gone = matches!(end, End::ClientGone);
        if let End::Failed(error) = end {
            if matches!(error, GatewayError::IggyUnavailable) {
                self.wiring.pool.suspect_lost();
            } else if learn {
                let _ = self.learn_acks_taken_elsewhere().await;
            }
            let metadata = HashMap::from([("resume_token".to_owned(), self.final_token())]);
            let status = error.into_status_with(metadata);
            let item = Item {
                response: Err(status),
                commit: None,
            };
            let responses = self.wiring.responses.clone();
            tokio::select! {
                _ = responses.send(item) => {}
                () = responses.closed() => {}
                () = tokio::time::sleep(FINAL_STATUS_WAIT) => {}
            }
        }
        // Offsets handed to the transport before the end are stored too.
        let _ = self.apply_commits().await;
        if learn && client_gone {
            let _ = self.learn_acks_taken_elsewhere().await;
        }
        debug!(subscription = %self.id, "subscription ended");
        self.reader.close().await;
    }

    async fn deliver(&mut self) -> End {
        let subscribed = Kind::Subscribed(proto::Subscribed {
            subscription_id: self.id.clone(),
            partition_ids: self.partitions.clone(),
        });
        if let Err(end) = self.send(subscribed, None).await {
            return end;
        }
        let mut empty_polls = 0usize;
        let mut backoff = FIRST_IDLE_BACKOFF;
        loop {
            if let Err(end) = self.step(&mut empty_polls, &mut backoff).await {
                return end;
            }
        }
    }

    /// One turn of the loop: housekeeping, then one poll or one wait.
    async fn step(&mut self, empty_polls: &mut usize, backoff: &mut Duration) -> Result<(), End> {
        self.apply_commits().await?;
        if *self.wiring.shutdown.borrow() {
            return Err(GatewayError::ShuttingDown.into());
        }
        if let Some((ends_at, grace)) = self.wiring.max_age
            && Instant::now() >= ends_at
        {
            self.wind_down(grace).await?;
            return Err(GatewayError::StreamMaxAge.into());
        }
        // A group member asks for its assignment on a timer (and before every
        // round below); a named consumer re-reads its partitions when the
        // topic's watcher shows them changed.
        let refresh_due = if self.reader.is_member() {
            Instant::now() >= self.refresh_at
        } else {
            self.partitions_moved()
        };
        if refresh_due {
            self.refresh().await?;
        }
        if self.spec.ack_mode == AckMode::Manual && Instant::now() >= self.learn_at {
            self.learn_at = Instant::now() + LEARN_INTERVAL;
            self.learn_acks_taken_elsewhere().await?;
        }
        let idle = *empty_polls >= self.partitions.len().max(1);
        let blocked = (self.spec.ack_mode == AckMode::Manual
            && self.in_flight.is_full(
                self.spec.max_in_flight_messages,
                self.spec.max_in_flight_bytes,
            ))
            || self
                .wiring
                .credit
                .as_ref()
                .is_some_and(Credit::is_exhausted);
        if blocked || self.partitions.is_empty() || idle {
            let watching = idle && !blocked && !self.partitions.is_empty();
            let pause = if blocked || self.partitions.is_empty() {
                self.limits.max_idle_backoff
            } else if watching && !self.news_seen && self.reader.is_member() {
                IDLE_RECHECK
            } else if watching && !self.news_seen {
                // Until the next heartbeat: the watcher reports the news.
                self.spec.heartbeat
            } else {
                *backoff
            };
            let news = watching.then(|| self.wanted());
            if self.wait(pause, news).await? {
                // Woken by a publish or an ack: poll again at once.
                *empty_polls = 0;
                *backoff = FIRST_IDLE_BACKOFF;
            } else {
                *backoff = (*backoff * 2).min(self.limits.max_idle_backoff);
                let stale_news = self.news_seen;
                self.news_seen = false;
                if blocked {
                    self.learn_acks_taken_elsewhere().await?;
                }
                // An idle named consumer polls only on news: its timer only
                // paced a heartbeat.
                if watching && !stale_news && !self.reader.is_member() {
                    return Ok(());
                }
            }
            if blocked || self.partitions.is_empty() {
                return Ok(());
            }
        }
        // A group member learns of rebalances only by asking (Iggy answers a
        // poll of a partition it lost with no messages, not an error), so it
        // asks before each round: a partition lost and regained in between
        // is then read from the group's stored offset, not from a stale one.
        if self.reader.is_member() && self.rotation.is_multiple_of(self.partitions.len()) {
            self.refresh().await?;
            if self.partitions.is_empty() {
                return Ok(());
            }
        }
        let partition = self.partitions[self.rotation % self.partitions.len()];
        self.rotation = self.rotation.wrapping_add(1);
        let from = self
            .from
            .get(&partition)
            .copied()
            .unwrap_or(ReadFrom::Offset(0));
        // Manual ack: never poll more than the in-flight limit leaves room
        // for. A lone partition that is behind is read ahead; several
        // partitions take turns batch by batch.
        let count = if self.spec.ack_mode == AckMode::Manual {
            self.in_flight
                .room(self.spec.max_in_flight_messages)
                .clamp(1, self.spec.batch_size)
        } else if self.partitions.len() == 1 {
            self.read_ahead.count(self.spec.batch_size)
        } else {
            self.spec.batch_size
        };
        let count = match &self.wiring.credit {
            Some(credit) => credit.room(count).max(1),
            None => count,
        };
        match self.reader.poll(partition, from, count).await {
            Ok(polled) if !polled.messages.is_empty() => {
                *empty_polls = 0;
                self.news_seen = false;
                *backoff = FIRST_IDLE_BACKOFF;
                let bytes = polled.messages.iter().map(stored_bytes).sum();
                self.read_ahead.note(count, polled.messages.len(), bytes);
                self.deliver_polled(partition, polled).await
            }
            Ok(polled) => {
                self.read_ahead.note(count, 0, 0);
                self.note_empty(partition, from, &polled).await?;
                *empty_polls += 1;
                Ok(())
            }
            Err(error) if is_assignment_stale(&error) => {
                self.refresh_at = Instant::now();
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Waits up to `pause` for news; true when woken by a publish, an ack,
    /// credit or (with `news`) the topic's watcher seeing a partition end at
    /// or past a wanted offset, rather than by the timer. Sends a heartbeat
    /// when one is due.
    async fn wait(&mut self, pause: Duration, news: Option<Wanted>) -> Result<bool, End> {
        let heartbeat_due = self.last_sent + self.spec.heartbeat;
        let mut until = (Instant::now() + pause).min(heartbeat_due);
        if let Some((ends_at, _)) = self.wiring.max_age {
            until = until.min(ends_at);
        }
        let responses = self.wiring.responses.clone();
        let wakeup = Arc::clone(&self.wiring.wakeup);
        let changes_only = self.news_seen;
        let woken = tokio::select! {
            () = tokio::time::sleep_until(until) => false,
            () = wakeup.notified() => true,
            () = responses.closed() => return Err(End::ClientGone),
            _ = self.wiring.shutdown.changed() => false,
            command = self.wiring.acks.recv() => {
                if let Some(command) = command {
                    self.acknowledge(command).await;
                }
                true
            }
            grant = credit::next_grant(&mut self.wiring.credit) => {
                if let Some(credit) = &mut self.wiring.credit {
                    credit.add(grant);
                }
                true
            }
            () = news_in(&mut self.ends, news, changes_only) => {
                self.news_seen = true;
                true
            }
        };
        if Instant::now() >= heartbeat_due {
            self.heartbeat();
        }
        Ok(woken)
    }

    /// At its maximum age a manual-ack stream delivers nothing more, but
    /// takes acks (on the stream, by Ack, or through other replicas) for
    /// what it has in flight, for up to `grace` or until none is left.
    async fn wind_down(&mut self, grace: Duration) -> Result<(), End> {
        if self.spec.ack_mode != AckMode::Manual {
            return Ok(());
        }
        let until = Instant::now() + grace;
        let responses = self.wiring.responses.clone();
        while !self.in_flight.partitions().is_empty() && Instant::now() < until {
            let pause = until
                .saturating_duration_since(Instant::now())
                .min(self.limits.max_idle_backoff);
            tokio::select! {
                () = tokio::time::sleep(pause) => self.learn_acks_taken_elsewhere().await?,
                Some(command) = self.wiring.acks.recv() => self.acknowledge(command).await,
                () = responses.closed() => return Err(End::ClientGone),
                _ = self.wiring.shutdown.changed() => return Ok(()),
            }
        }
        Ok(())
    }

    /// Each partition read, with the offset it is read from next (`None`
    /// when it is read by time: any change is news), and for a named
    /// consumer the partitions it reads, so a change to them is news too.
    fn wanted(&self) -> Wanted {
        let next = self
            .partitions
            .iter()
            .map(|partition| {
                let next = match self.from.get(partition) {
                    Some(ReadFrom::Offset(next)) => Some(*next),
                    None => Some(0),
                    Some(_) => None,
                };
                (*partition, next)
            })
            .collect();
        let partitions = (!self.reader.is_member()).then(|| self.partitions_expected());
        Wanted { next, partitions }
    }

    /// The partitions a named consumer's watcher should show: the one it
    /// asked for, or all it reads.
    fn partitions_expected(&self) -> Expected {
        match self.spec.partition {
            Some(_) => Expected::Some,
            None => Expected::Exactly(self.partitions.clone()),
        }
    }

    /// A named consumer's partitions as the watcher last showed them differ
    /// from the ones it reads (or the topic is gone).
    fn partitions_moved(&self) -> bool {
        match &*self.ends.borrow() {
            Some(ends) => partitions_differ(ends, self.spec.partition.is_some(), &self.partitions),
            None => false,
        }
    }

    fn heartbeat(&mut self) {
        let positions = self
            .positions()
            .into_iter()
            .filter_map(|(partition_id, position)| match position {
                Position::Offset(next_offset) => Some(proto::PartitionPosition {
                    partition_id,
                    next_offset,
                }),
                Position::Time(_) => None,
            })
            .collect();
        let heartbeat = Kind::Heartbeat(proto::Heartbeat {
            resume_token: self.token(),
            positions,
        });
        // A full channel means the client is busy reading, not idle.
        let item = Item {
            response: Ok(proto::SubscribeResponse {
                kind: Some(heartbeat),
            }),
            commit: None,
        };
        if self.wiring.responses.try_send(item).is_ok() {
            self.last_sent = Instant::now();
        }
    }

    /// Delivers what one poll returned, in batches of the client's size.
    async fn deliver_polled(&mut self, partition: u32, polled: PolledMessages) -> Result<(), End> {
        let batch_size = (self.spec.batch_size as usize).max(1);
        let mut messages = polled.messages.into_iter().peekable();
        while messages.peek().is_some() {
            self.deliver_batch(partition, messages.by_ref().take(batch_size))
                .await?;
        }
        Ok(())
    }

    async fn deliver_batch(
        &mut self,
        partition: u32,
        polled: impl ExactSizeIterator<Item = IggyMessage>,
    ) -> Result<(), End> {
        let expected = match self.from.get(&partition) {
            Some(ReadFrom::Offset(next)) => *next,
            _ => 0,
        };
        let mut messages = Vec::with_capacity(polled.len());
        let mut last = None;
        for message in polled {
            let offset = message.header.offset;
            if offset < expected {
                continue;
            }
            if self.spec.ack_mode == AckMode::Manual {
                self.in_flight
                    .add(partition, offset, stored_bytes(&message));
            }
            last = Some((offset, message.header.timestamp));
            messages.push(delivered(partition, message));
        }
        let Some((last, stored_at)) = last else {
            return Ok(());
        };
        if let Some(credit) = &mut self.wiring.credit {
            let bytes = messages.iter().map(|m| m.payload.len() as u64).sum();
            credit.spend(messages.len() as u64, bytes);
        }
        self.from.insert(partition, ReadFrom::Offset(last + 1));
        self.delivered.insert(partition, last);
        self.delivered_at.insert(partition, stored_at);
        if self.spec.ack_mode == AckMode::Manual {
            // Before the client can ack it, on this replica or another.
            self.reader.note_delivered(partition, last).await?;
        }
        let commit = (self.spec.ack_mode == AckMode::Auto).then(|| vec![(partition, last)]);
        let batch = Kind::Batch(proto::MessageBatch {
            messages,
            resume_token: self.token(),
        });
        self.send(batch, commit).await
    }

    /// A poll came back empty: settle where a start strategy leaves the
    /// partition, so it is read by offset from now on; and when the position
    /// is past the end of the log (the topic was purged, or Iggy lost
    /// unflushed messages in a crash and reuses their offsets), continue with
    /// the messages stored after the last one delivered, so none of the new
    /// ones is skipped.
    async fn note_empty(
        &mut self,
        partition: u32,
        from: ReadFrom,
        polled: &PolledMessages,
    ) -> Result<(), End> {
        match from {
            ReadFrom::First => {
                let next = if polled.current_offset == 0 {
                    0
                } else {
                    polled.current_offset + 1
                };
                self.from.insert(partition, ReadFrom::Offset(next));
            }
            ReadFrom::Offset(next) if polled.current_offset + 1 < next => {
                // An overloaded Iggy answers polls empty, with a log end of
                // 0: only the topic's own account of the log says it is
                // shorter than the position.
                let log_end = self.reader.log_end(partition).await?;
                if !is_past_log_end_of(next, log_end) {
                    debug!(
                        subscription = %self.id,
                        partition,
                        position = next,
                        answered_end = polled.current_offset,
                        ?log_end,
                        "an empty poll answer the log's bounds do not confirm; reading on"
                    );
                    return Ok(());
                }
                let resume = match self.delivered_at.get(&partition) {
                    Some(micros) => ReadFrom::Timestamp(micros + 1),
                    None => ReadFrom::Offset(0),
                };
                warn!(
                    subscription = %self.id,
                    partition,
                    position = next,
                    log_end = ?log_end,
                    "position past the end of the log (purged, or lost in an Iggy crash); continuing after the last delivered message's time"
                );
                self.from.insert(partition, resume);
                // What was delivered of the old log is gone: it can be
                // neither stored nor acknowledged, and holds no room.
                self.delivered.remove(&partition);
                self.committed.remove(&partition);
                self.in_flight.forget(partition);
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends one response, waiting for room (back-pressure) while still
    /// serving acks and noticing a departed client or a shutdown.
    async fn send(&mut self, kind: Kind, commit: Option<Commit>) -> Result<(), End> {
        let responses = self.wiring.responses.clone();
        let item = Item {
            response: Ok(proto::SubscribeResponse { kind: Some(kind) }),
            commit,
        };
        loop {
            tokio::select! {
                permit = responses.reserve() => {
                    let permit = permit.map_err(|_| End::ClientGone)?;
                    permit.send(item);
                    self.last_sent = Instant::now();
                    return Ok(());
                }
                command = self.wiring.acks.recv() => {
                    if let Some(command) = command {
                        self.acknowledge(command).await;
                    }
                }
                _ = self.wiring.shutdown.changed() => {
                    if *self.wiring.shutdown.borrow() {
                        return Err(GatewayError::ShuttingDown.into());
                    }
                }
            }
        }
    }

    /// Re-reads the partitions (new partitions, group rebalances).
    async fn refresh(&mut self) -> Result<(), End> {
        self.refresh_at = Instant::now() + REFRESH_INTERVAL;
        let (generation, partitions) = match self.reader.partitions().await {
            Ok(assignment) => assignment,
            Err(error) => return Err(error.into()),
        };
        if partitions != self.partitions {
            self.adopt(partitions, None, false).await?;
        }
        if generation != self.generation {
            self.generation = generation;
            self.catch_up_with_group().await?;
        }
        Ok(())
    }

    /// After a rebalance, a partition may have been read by another member
    /// in between (lost and regained between two refreshes): skip what the
    /// group has stored beyond this member's position, keep this member's
    /// own progress where it is further.
    async fn catch_up_with_group(&mut self) -> Result<(), End> {
        if !self.reader.is_member() {
            return Ok(());
        }
        self.apply_commits().await?;
        for partition in self.partitions.clone() {
            let stored = match self.reader.stored_offset(partition).await {
                Ok(stored) => stored,
                Err(error) => return Err(error.into()),
            };
            if let (Some(stored), Some(ReadFrom::Offset(next))) =
                (stored, self.from.get(&partition).copied())
                && stored + 1 > next
            {
                self.from.insert(partition, ReadFrom::Offset(stored + 1));
                self.delivered.remove(&partition);
                self.in_flight.forget(partition);
            }
        }
        Ok(())
    }

    /// Takes `partitions` as the ones to read. Partitions read from the start
    /// of the subscription begin where the request says; partitions gained
    /// later (new, or rebalanced to this member) begin after the consumer's
    /// stored offset, as do partitions a resume token does not name.
    async fn adopt(
        &mut self,
        partitions: Vec<u32>,
        resume: Option<&Positions>,
        initial: bool,
    ) -> Result<(), End> {
        for gone in self.partitions.iter().filter(|p| !partitions.contains(p)) {
            self.from.remove(gone);
            self.delivered.remove(gone);
            self.committed.remove(gone);
            self.in_flight.forget(*gone);
        }
        let log_ends = if initial {
            self.reader.start_ends(&self.spec.start).await?
        } else {
            None
        };
        for partition in &partitions {
            if self.from.contains_key(partition) {
                continue;
            }
            let by_request = match resume.and_then(|positions| positions.get(partition)) {
                Some(position) => Some(ReadFrom::from(*position)),
                None if initial => {
                    ReadFrom::at_start(&self.spec.start, log_ends.as_ref(), *partition)
                }
                None => None,
            };
            let start = match by_request {
                Some(from) => from,
                None => {
                    let stored = self.reader.stored_offset(*partition).await?;
                    ReadFrom::Offset(stored.map_or(0, |offset| offset + 1))
                }
            };
            self.from.insert(*partition, start);
        }
        self.partitions = partitions;
        Ok(())
    }

    /// Where every partition continues ([`ReadFrom::position`]), so a token
    /// taken before a partition's first batch neither skips nor repeats it.
    fn positions(&self) -> Positions {
        self.from
            .iter()
            .map(|(partition, from)| (*partition, from.position()))
            .collect()
    }

    fn token(&self) -> String {
        token::encode(self.fingerprint, &self.positions())
    }

    /// The token of the final status: for a manual-ack stream, each
    /// partition from its oldest message delivered but not acknowledged, so
    /// resuming (on any replica) delivers those again and skips nothing;
    /// otherwise where the next batch would have started.
    fn final_token(&self) -> String {
        let mut positions = self.positions();
        if self.spec.ack_mode == AckMode::Manual {
            for (partition, position) in &mut positions {
                if let Some(oldest) = self.in_flight.oldest(*partition) {
                    *position = Position::Offset(oldest);
                }
            }
        }
        token::encode(self.fingerprint, &positions)
    }
}

/// A message's payload and header bytes, as counted against limits.
/// What an idle session waits for (see [`Session::wanted`]).
struct Wanted {
    /// Partitions with the offset each is read from next.
    next: Vec<(u32, Option<u64>)>,
    /// For a named consumer, the partitions the watcher should show.
    partitions: Option<Expected>,
}

/// The partitions a named consumer expects its topic to have.
enum Expected {
    /// At least one (it reads one partition it asked for).
    Some,
    /// These (it reads them all).
    Exactly(Vec<u32>),
}

impl Expected {
    fn differs(&self, ends: &LogEnds) -> bool {
        match self {
            Self::Some => partitions_differ(ends, true, &[]),
            Self::Exactly(partitions) => partitions_differ(ends, false, partitions),
        }
    }
}

/// Whether a topic's partitions (`ends`) differ from what a named consumer
/// reads: with `explicit`, the one partition it asked for, so only a topic
/// with none (gone) differs; else exactly `partitions`.
fn partitions_differ(ends: &LogEnds, explicit: bool, partitions: &[u32]) -> bool {
    if explicit {
        ends.is_empty()
    } else {
        !ends.keys().eq(partitions.iter())
    }
}

/// Ready when the watcher's partition ends show a message at or past a
/// wanted offset; with `changes_only`, only in a value published after the
/// wait began. Never ready without `wanted`, or once the watcher is gone.
async fn news_in(ends: &mut watch::Receiver<Ends>, wanted: Option<Wanted>, changes_only: bool) {
    let Some(wanted) = wanted else {
        return std::future::pending().await;
    };
    let has_news = |ends: &Ends| {
        let Some(ends) = ends else {
            return false;
        };
        wanted
            .partitions
            .as_ref()
            .is_some_and(|expected| expected.differs(ends))
            || wanted
                .next
                .iter()
                .any(|(partition, next)| match (ends.get(partition), next) {
                    // A message at or past the position, or a log now
                    // shorter than it (purged): either way, read again.
                    (Some(end), Some(next)) => {
                        end.is_some_and(|end| end >= *next) || is_past_log_end_of(*next, *end)
                    }
                    (Some(Some(_)), None) => true,
                    _ => false,
                })
    };
    if changes_only {
        ends.borrow_and_update();
    } else if has_news(&ends.borrow_and_update()) {
        return;
    }
    while ends.changed().await.is_ok() {
        if has_news(&ends.borrow_and_update()) {
            return;
        }
    }
    std::future::pending().await
}

/// Whether a partition whose last message is `log_end` (`None`: it holds
/// none) ends before position `next`, the offset to be read next.
fn is_past_log_end_of(next: u64, log_end: Option<u64>) -> bool {
    match log_end {
        Some(end) => end + 1 < next,
        None => next > 0,
    }
}

/// The id of a subscription read by `reader`: what it acknowledges, for an
/// Ack on any replica. A group is named by its numeric id, which names its
/// ack mailbox.
fn subscription_id(reader: &Reader, spec: &Spec) -> Result<String, IggyError> {
    let consumer = match reader.group_id {
        Some(group_id) => Consumer::group(Identifier::numeric(group_id)?),
        None => spec.consumer.clone(),
    };
    Ok(SubscriptionRef {
        client_id: reader.client_id,
        nonce: *Uuid::new_v4().as_bytes(),
        stream: spec.stream.clone(),
        topic: spec.topic.clone(),
        consumer,
        manual: spec.ack_mode == AckMode::Manual,
        redelivery: spec.redelivery,
    }
    .encode())
}

fn stored_bytes(message: &IggyMessage) -> u64 {
    (message.payload.len() + message.user_headers.as_ref().map_or(0, |h| h.len())) as u64
}

/// A stored message as delivered to a client.
pub fn delivered(partition: u32, message: IggyMessage) -> proto::DeliveredMessage {
    crate::metrics::count_delivered(1, message.payload.len() as u64);
    let headers = message
        .user_headers_map()
        .ok()
        .flatten()
        .map(|headers| headers::from_iggy(&headers))
        .unwrap_or_default();
    proto::DeliveredMessage {
        partition_id: partition,
        offset: message.header.offset,
        id: Uuid::from_u128(message.header.id)
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .to_owned(),
        timestamp_micros: message.header.timestamp,
        headers,
        payload: message.payload,
        delivery_attempt: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_logs_bounds_say_a_position_is_past_its_end() {
        // Messages 0..=9, reading on at 10: not past the end.
        assert!(!is_past_log_end_of(10, Some(9)));
        // Reading at 12 when the log ends at 9: truncated.
        assert!(is_past_log_end_of(12, Some(9)));
        // An empty partition ends before any position but the first.
        assert!(is_past_log_end_of(5, None));
        assert!(!is_past_log_end_of(0, None));
    }
}
