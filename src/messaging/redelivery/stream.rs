//! A Consume stream with redelivery: two subscriptions of one consumer, to
//! the topic and to its retry topic, merged into one stream, and the
//! client's acks, nacks and extensions served against both.
//!
//! One task owns the stream. It forwards the topic's deliveries, holds each
//! copy from the retry topic until its delay is over and then delivers it
//! under its original partition and offset, and keeps a [`Ledger`] of what
//! is out. A nack or a passed deadline copies the message (read back from
//! Iggy) into the retry topic, or into the dead-letter topic on its last
//! attempt, and only then settles it where it was, so nothing is lost if
//! the gateway stops in between (it is delivered once more instead).

use super::{
    Policy,
    copies::{self, Control, CopyOf, DeadOrigin, Origin},
    extension,
    handover::retry_topic_of,
    ledger::{Key, Ledger, Miss},
    nack_delay,
};
use crate::{
    error::{GatewayError, not_found},
    iggy::IggyPool,
    messaging::consume::ack_result,
    messaging::subscribe::{Credit, Grant, SessionAcks, Spec, SubscribeStream, Subscriptions},
    proto::{self, AckOutcome, consume_request, consume_response, subscribe_response::Kind},
};
use iggy::prelude::{
    Consumer, ConsumerOffsetClient, Identifier, IggyMessage, IggyTimestamp, MessageClient,
    Partitioning, PollingStrategy, StreamClient, TopicClient, TopicCreateOptions,
};
use iggy_common::IggyErrorDiscriminants as E;
use std::{collections::BTreeMap, pin::Pin, time::Duration};
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Status, Streaming};
use tracing::{debug, warn};

/// What the stream sends.
type Out = Result<proto::ConsumeResponse, Status>;

/// Responses waiting for the transport.
const OUT_QUEUE: usize = 16;
/// Copies the retry subscription may have out (held or delivered).
const COPIES_IN_FLIGHT: u32 = 1_000;
/// How long a failed redelivery waits before it is tried again.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(1);

/// Where the stream's topics are.
struct Topics {
    stream: Identifier,
    topic: Identifier,
    /// The stream's and topic's names, for dead letters.
    names: (String, String),
    retry: Identifier,
    dead_letter: Option<Identifier>,
}

/// Starts a Consume stream with redelivery (see [`open`]).
pub async fn consume(
    subscriptions: &Subscriptions,
    pool: &IggyPool,
    request: proto::SubscribeRequest,
    credit: (Option<Credit>, Option<mpsc::Sender<Grant>>),
    policy: Policy,
    requests: Streaming<proto::ConsumeRequest>,
) -> Result<Pin<Box<dyn Stream<Item = Out> + Send + 'static>>, GatewayError> {
    let out = open(subscriptions, pool, request, credit, policy, Some(requests)).await?;
    Ok(Box::pin(ReceiverStream::new(out)))
}

/// Starts a Subscribe stream with redelivery: what a Consume stream sends,
/// its acks, nacks and extensions coming through the retry topic instead
/// (the Ack, Nack and ExtendAckDeadline calls, on any replica).
pub async fn subscribe(
    subscriptions: &Subscriptions,
    pool: &IggyPool,
    request: proto::SubscribeRequest,
    policy: Policy,
) -> Result<SubscribeStream, GatewayError> {
    let out = open(subscriptions, pool, request, (None, None), policy, None).await?;
    let deliveries = ReceiverStream::new(out).filter_map(|item| match item {
        Ok(proto::ConsumeResponse {
            kind: Some(consume_response::Kind::Delivery(delivery)),
        }) => Some(Ok(delivery)),
        Ok(_) => None,
        Err(status) => Some(Err(status)),
    });
    Ok(Box::pin(deliveries))
}

/// Checks the policy against the request, opens the topic's subscription,
/// finds the topics (creating the retry topic), opens the retry topic's
/// subscription, and starts the task that merges them; returns what the
/// task sends.
async fn open(
    subscriptions: &Subscriptions,
    pool: &IggyPool,
    request: proto::SubscribeRequest,
    credit: (Option<Credit>, Option<mpsc::Sender<Grant>>),
    policy: Policy,
    requests: Option<Streaming<proto::ConsumeRequest>>,
) -> Result<mpsc::Receiver<Out>, GatewayError> {
    let spec = Spec::subscribe(&request, subscriptions.limits())?;
    if spec.ack_mode != crate::messaging::subscribe::AckMode::Manual {
        return Err(GatewayError::invalid(
            policy.field.as_str(),
            "needs ack_mode ACK_MODE_MANUAL",
        ));
    }
    let (main, main_acks) = subscriptions.start(request.clone(), credit.0).await?;
    // After the topic's subscription started: a group it created exists.
    let topics = find_topics(pool, &spec, &policy).await?;
    let retry_request = proto::SubscribeRequest {
        topic: Some(proto::ResourceId {
            kind: Some(proto::resource_id::Kind::Name(topics.retry.to_string())),
        }),
        partition_id: None,
        start: None,
        create_group: spec.is_group(),
        flow_control: Some(proto::FlowControl {
            max_in_flight_messages: COPIES_IN_FLIGHT,
            max_in_flight_bytes: 0,
        }),
        redelivery: None,
        ..request
    };
    let (retry, retry_acks) = subscriptions.start(retry_request, None).await?;
    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let named = (!spec.is_group()).then(|| spec.consumer.clone());
    let conductor = Conductor {
        pool: pool.clone(),
        topics,
        policy,
        named,
        ledger: Ledger::default(),
        held: BTreeMap::new(),
        main_acks,
        retry_acks,
        grants: credit.1,
        out,
        token: String::new(),
    };
    tokio::spawn(conductor.run(main, Some(retry), requests));
    Ok(out_rx)
}

/// Resolves the topic, checks the dead-letter topic exists, and makes sure
/// the consumer's retry topic does (another replica may be making it too).
async fn find_topics(
    pool: &IggyPool,
    spec: &Spec,
    policy: &Policy,
) -> Result<Topics, GatewayError> {
    let (stream, topic, dead_letter) = (
        spec.stream.clone(),
        spec.topic.clone(),
        policy.dead_letter_topic.clone(),
    );
    let (stream_name, details, dead) = pool
        .call(move |client| async move {
            let stream_details = client.get_stream(&stream).await?;
            let details = client.get_topic(&stream, &topic).await?;
            let dead = match &dead_letter {
                Some(dead_letter) => Some(client.get_topic(&stream, dead_letter).await?),
                None => None,
            };
            Ok((stream_details.map(|s| s.name), details, dead))
        })
        .await?;
    let stream_name = stream_name.ok_or_else(|| not_found::stream(&spec.stream))?;
    let details = details.ok_or_else(|| not_found::topic(&spec.stream, &spec.topic))?;
    if let (Some(None), Some(dead_letter)) = (&dead, &policy.dead_letter_topic) {
        return Err(not_found::topic(&spec.stream, dead_letter).into());
    }
    let retry = retry_topic_of(pool, &spec.stream, &spec.topic, details.id, &spec.consumer).await?;
    let (stream, name) = (spec.stream.clone(), retry.clone());
    pool.call(move |client| async move {
        if client.get_topic(&stream, &name).await?.is_some() {
            return Ok(());
        }
        let options = TopicCreateOptions {
            partitions_count: Some(1),
            ..TopicCreateOptions::default()
        };
        let text = name.get_string_value()?;
        match client.create_topic(&stream, &text, &options).await {
            Ok(_) => Ok(()),
            Err(error) if E::from(&error) == E::TopicNameAlreadyExists => Ok(()),
            Err(error) => Err(error),
        }
    })
    .await?;
    Ok(Topics {
        stream: spec.stream.clone(),
        topic: Identifier::numeric(details.id)?,
        names: (stream_name, details.name),
        retry,
        dead_letter: policy.dead_letter_topic.clone(),
    })
}

/// A copy read from the retry topic, waiting for its delay to pass.
struct Held {
    copy: CopyOf,
    copy_offset: u64,
    message: proto::DeliveredMessage,
}

/// The task that owns one stream.
struct Conductor {
    pool: IggyPool,
    topics: Topics,
    policy: Policy,
    /// A named consumer, whose stored offset shows acks taken by names.
    named: Option<Consumer>,
    ledger: Ledger,
    /// Copies not due yet, by when they are due and their retry offset.
    held: BTreeMap<(u64, u64), Held>,
    main_acks: SessionAcks,
    retry_acks: SessionAcks,
    grants: Option<mpsc::Sender<Grant>>,
    out: mpsc::Sender<Out>,
    /// The last resume token the topic's subscription sent: copies carry it.
    token: String,
}

/// What woke the task.
enum Event {
    Main(Option<Result<proto::SubscribeResponse, Status>>),
    Retry(Option<Result<proto::SubscribeResponse, Status>>),
    Request(Option<proto::ConsumeRequest>),
    Timer,
    ClientGone,
}

impl Conductor {
    async fn run(
        mut self,
        mut main: SubscribeStream,
        mut retry: Option<SubscribeStream>,
        mut requests: Option<Streaming<proto::ConsumeRequest>>,
    ) {
        // `Subscribed` goes first, before any copy.
        if !self.on_main(main.next().await).await {
            return;
        }
        loop {
            let timer = self.next_timer();
            let out = self.out.clone();
            let event = tokio::select! {
                () = out.closed() => Event::ClientGone,
                item = main.next() => Event::Main(item),
                item = next_of(&mut retry) => Event::Retry(item),
                request = next_request(&mut requests) => Event::Request(request),
                () = sleep_until(timer) => Event::Timer,
            };
            match event {
                Event::ClientGone => return,
                Event::Main(item) => {
                    if !self.on_main(item).await {
                        return;
                    }
                }
                Event::Retry(Some(Ok(response))) => {
                    if !self.forward_copies(response).await {
                        return;
                    }
                }
                Event::Retry(end) => {
                    // Reading copies failed: the stream goes on without
                    // them; a later stream of this consumer delivers them.
                    warn!(
                        ?end,
                        "the retry topic's subscription ended; copies wait for the next stream"
                    );
                    retry = None;
                }
                Event::Request(None) => requests = None,
                Event::Request(Some(request)) => {
                    if !self.serve(request).await {
                        return;
                    }
                }
                Event::Timer => {
                    if !self.on_timer().await {
                        return;
                    }
                }
            }
        }
    }

    /// Forwards what the topic's subscription sent; false once it ended
    /// (its final status forwarded) or the client is gone.
    async fn on_main(&mut self, item: Option<Result<proto::SubscribeResponse, Status>>) -> bool {
        match item {
            Some(Ok(response)) => self.forward_delivery(response).await,
            Some(Err(status)) => {
                let _ = self.out.send(Err(status)).await;
                false
            }
            None => false,
        }
    }

    /// The earliest of the next deadline and the next held copy's due time.
    fn next_timer(&self) -> Option<Instant> {
        let copy = self.held.keys().next().map(|(due, _)| instant_of(*due));
        match (self.ledger.next_deadline(), copy) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends one response; false once the client is gone.
    async fn send(&self, kind: consume_response::Kind) -> bool {
        self.out
            .send(Ok(proto::ConsumeResponse { kind: Some(kind) }))
            .await
            .is_ok()
    }

    async fn forward_delivery(&mut self, response: proto::SubscribeResponse) -> bool {
        match &response.kind {
            Some(Kind::Batch(batch)) => {
                self.token.clone_from(&batch.resume_token);
                let deadline = Instant::now() + self.policy.ack_deadline;
                for message in &batch.messages {
                    self.ledger
                        .delivered((message.partition_id, message.offset), deadline);
                }
            }
            Some(Kind::Heartbeat(heartbeat)) => self.token.clone_from(&heartbeat.resume_token),
            _ => {}
        }
        self.send(consume_response::Kind::Delivery(response)).await
    }

    async fn forward_copies(&mut self, response: proto::SubscribeResponse) -> bool {
        let Some(Kind::Batch(batch)) = response.kind else {
            return true;
        };
        let now = IggyTimestamp::now().as_micros();
        for mut message in batch.messages {
            let copy_offset = message.offset;
            if let Some(control) = copies::control_of_delivered(&message.headers) {
                self.apply(control).await;
                let _ = self.retry_acks.settle(0, copy_offset).await;
                continue;
            }
            let Some(copy) = copies::copy_of_delivered(&message.headers) else {
                // Not a copy the gateway wrote: nothing to deliver.
                let _ = self.retry_acks.settle(0, copy_offset).await;
                continue;
            };
            copies::strip_delivered(&mut message.headers);
            message.partition_id = copy.origin.partition;
            message.offset = copy.origin.offset;
            message.timestamp_micros = copy.origin.stored_at;
            message.delivery_attempt = copy.attempt;
            let held = Held {
                copy,
                copy_offset,
                message,
            };
            if copy.not_before > now {
                self.held.insert((copy.not_before, copy_offset), held);
            } else if !self.deliver_copy(held).await {
                return false;
            }
        }
        true
    }

    /// Applies what a unary call handed over; a request for a message no
    /// longer out (settled, or from a stream before this one) does nothing.
    async fn apply(&mut self, control: Control) {
        let key = control.key();
        if let Err(Outcome::Failed(error)) = self.perform(control).await {
            warn!(partition = key.0, offset = key.1, %error, "a handed-over ack or nack failed");
        }
    }

    /// Delivers a copy that is due; false once the client is gone.
    async fn deliver_copy(&mut self, held: Held) -> bool {
        let key = (held.copy.origin.partition, held.copy.origin.offset);
        let deadline = Instant::now() + self.policy.ack_deadline;
        if !self
            .ledger
            .delivered_copy(key, held.copy.attempt, held.copy_offset, deadline)
        {
            // The retry topic holds this message twice: one is enough.
            let _ = self.retry_acks.settle(0, held.copy_offset).await;
            return true;
        }
        let batch = proto::MessageBatch {
            messages: vec![held.message],
            resume_token: self.token.clone(),
        };
        let response = proto::SubscribeResponse {
            kind: Some(Kind::Batch(batch)),
        };
        self.send(consume_response::Kind::Delivery(response)).await
    }

    async fn on_timer(&mut self) -> bool {
        let now = IggyTimestamp::now().as_micros();
        while let Some(entry) = self.held.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let held = entry.remove();
            if !self.deliver_copy(held).await {
                return false;
            }
        }
        for key in self.ledger.due(Instant::now()) {
            let Ok(delivery) = self.ledger.take(key) else {
                continue;
            };
            if delivery.copy_offset.is_none() && self.acked_by_names(key).await {
                continue;
            }
            match self
                .deliver_again(
                    key,
                    delivery.attempt,
                    delivery.copy_offset,
                    Duration::ZERO,
                    "ack deadline expired",
                )
                .await
            {
                Ok(()) => self.ledger.expired(key),
                Err(error) => {
                    warn!(partition = key.0, offset = key.1, %error, "redelivery after an ack deadline failed; trying again");
                    let retry_at = Instant::now() + RETRY_FAILED_AFTER;
                    self.ledger.restore(
                        key,
                        super::ledger::Delivery {
                            deadline: retry_at,
                            ..delivery
                        },
                    );
                }
            }
        }
        true
    }

    /// Serves one request after `start`; false once the client is gone.
    async fn serve(&mut self, request: proto::ConsumeRequest) -> bool {
        let (key, control) = match request.kind {
            Some(consume_request::Kind::Ack(ack)) => {
                let (partition, offset) = (ack.partition_id, ack.offset);
                ((partition, offset), Ok(Control::Ack { partition, offset }))
            }
            Some(consume_request::Kind::Nack(nack)) => {
                let (partition, offset) = (nack.partition_id, nack.offset);
                let control = nack_delay("nack.delay", nack.delay.as_ref())
                    .map(|delay| Control::Nack {
                        partition,
                        offset,
                        delay,
                        reason: nack.reason,
                    })
                    .map_err(|error| Outcome::Invalid("INVALID_NACK_DELAY", error.to_string()));
                ((partition, offset), control)
            }
            Some(consume_request::Kind::Extend(extend)) => {
                let (partition, offset) = (extend.partition_id, extend.offset);
                let control = extension("extend.extension", extend.extension.as_ref())
                    .map(|extension| Control::Extend {
                        partition,
                        offset,
                        extension,
                    })
                    .map_err(|error| Outcome::Invalid("INVALID_EXTENSION", error.to_string()));
                ((partition, offset), control)
            }
            Some(consume_request::Kind::Credit(credit)) => {
                if let Some(grants) = &self.grants {
                    let grant = Grant {
                        messages: credit.messages,
                        bytes: credit.bytes,
                    };
                    if grants.send(grant).await.is_err() {
                        return false;
                    }
                }
                return true;
            }
            Some(consume_request::Kind::Start(_)) | None => return true,
        };
        let outcome = match control {
            Ok(control) => self.perform(control).await,
            Err(invalid) => Err(invalid),
        };
        self.send(consume_response::Kind::AckResult(result(key, outcome)))
            .await
    }

    /// Does what an ack, nack or extension asks, from the stream or handed
    /// over by a unary call.
    async fn perform(&mut self, control: Control) -> Result<(), Outcome> {
        match control {
            Control::Ack { partition, offset } => self.ack((partition, offset)).await,
            Control::Nack {
                partition,
                offset,
                delay,
                reason,
            } => self.nack((partition, offset), delay, &reason).await,
            Control::Extend {
                partition,
                offset,
                extension,
            } => self
                .ledger
                .extend((partition, offset), Instant::now() + extension)
                .map_err(Outcome::Missed),
        }
    }

    async fn ack(&mut self, (partition, offset): Key) -> Result<(), Outcome> {
        let acked = self
            .ledger
            .ack(partition, offset)
            .map_err(Outcome::Missed)?;
        for copy_offset in acked.copies {
            self.retry_acks
                .settle(0, copy_offset)
                .await
                .map_err(Outcome::Failed)?;
        }
        if acked.in_topic {
            self.main_acks
                .ack(partition, offset)
                .await
                .map_err(Outcome::Failed)?;
        }
        Ok(())
    }

    async fn nack(&mut self, key: Key, delay: Duration, reason: &str) -> Result<(), Outcome> {
        let delivery = self.ledger.take(key).map_err(Outcome::Missed)?;
        let (attempt, copy_offset) = (delivery.attempt, delivery.copy_offset);
        match self
            .deliver_again(key, attempt, copy_offset, delay, reason)
            .await
        {
            Ok(()) => Ok(()),
            Err(error) => {
                self.ledger.restore(key, delivery);
                Err(Outcome::Failed(error))
            }
        }
    }

    /// Copies the message `key` (delivery `attempt`; a copy at
    /// `copy_offset` in the retry topic, else the original) into the retry
    /// topic to go out again after `delay`, or into the dead-letter topic
    /// when that attempt was the last; then settles it where it was.
    async fn deliver_again(
        &mut self,
        key: Key,
        attempt: u32,
        copy_offset: Option<u64>,
        delay: Duration,
        reason: &str,
    ) -> Result<(), GatewayError> {
        let (topic, partition, offset) = match copy_offset {
            Some(copy_offset) => (self.topics.retry.clone(), 0, copy_offset),
            None => (self.topics.topic.clone(), key.0, key.1),
        };
        let Some(message) = self.read(&topic, partition, offset).await? else {
            // Gone from Iggy (purged, expired): nothing to deliver again.
            warn!(
                partition = key.0,
                offset = key.1,
                "a message to deliver again is no longer stored"
            );
            return self.settle(key, copy_offset).await;
        };
        let origin = match copy_offset {
            Some(_) => copies::copy_of(&copies::headers_of(&message))
                .map(|copy| copy.origin)
                .ok_or_else(|| GatewayError::Internal("a retry copy lost its headers".into()))?,
            None => Origin {
                partition: key.0,
                offset: key.1,
                stored_at: message.header.timestamp,
            },
        };
        let now = IggyTimestamp::now().as_micros();
        let (target, copy) = if self.policy.is_last(attempt) {
            let from = DeadOrigin {
                stream: &self.topics.names.0,
                topic: &self.topics.names.1,
                origin,
            };
            let letter = copies::dead_letter(&message, &from, attempt, reason, now);
            let target = self
                .topics
                .dead_letter
                .clone()
                .unwrap_or_else(|| topic.clone());
            (target, letter)
        } else {
            let copy = CopyOf {
                origin,
                attempt: attempt + 1,
                not_before: now + u64::try_from(delay.as_micros()).unwrap_or(u64::MAX),
            };
            let copy = copies::retry_copy(&message, copy, reason, now);
            (self.topics.retry.clone(), copy)
        };
        self.write(target, copy).await?;
        self.settle(key, copy_offset).await
    }

    /// Whether a named consumer's stored offset covers `key`: an Ack by
    /// names took it (the topic's subscription frees its room).
    async fn acked_by_names(&self, (partition, offset): Key) -> bool {
        let Some(consumer) = self.named.clone() else {
            return false;
        };
        let (stream, topic) = (self.topics.stream.clone(), self.topics.topic.clone());
        let stored = self
            .pool
            .call(move |client| async move {
                client
                    .get_consumer_offset(&consumer, &stream, &topic, Some(partition))
                    .await
            })
            .await;
        matches!(stored, Ok(Some(stored)) if stored.stored_offset >= offset)
    }

    /// Settles what was copied: the copy in the retry topic, or the
    /// original in its partition. A subscription that no longer holds it
    /// (a consumer group gave the partition to another member) leaves it to
    /// the new holder, which delivers it once more: settled as far as this
    /// stream goes.
    async fn settle(&self, key: Key, copy_offset: Option<u64>) -> Result<(), GatewayError> {
        let settled = match copy_offset {
            Some(copy_offset) => self.retry_acks.settle(0, copy_offset).await,
            None => self.main_acks.settle(key.0, key.1).await,
        };
        match settled {
            Err(error) if error.reason() == "OFFSET_NOT_DELIVERED" => {
                debug!(
                    partition = key.0,
                    offset = key.1,
                    "no longer held here; left to its new holder"
                );
                Ok(())
            }
            settled => settled,
        }
    }

    /// The message at `offset` of `partition`, read back from Iggy.
    async fn read(
        &self,
        topic: &Identifier,
        partition: u32,
        offset: u64,
    ) -> Result<Option<IggyMessage>, GatewayError> {
        let strategy = PollingStrategy::offset(offset);
        let stream = &self.topics.stream;
        let polled = self
            .pool
            .peek(stream, topic, partition, strategy, 1)
            .await?;
        Ok(polled
            .messages
            .into_iter()
            .find(|message| message.header.offset == offset))
    }

    /// Appends `message` to `topic` (a retry topic's one partition, or a
    /// dead-letter topic, balanced).
    async fn write(&self, topic: Identifier, message: IggyMessage) -> Result<(), GatewayError> {
        let partitioning = if topic == self.topics.retry {
            Partitioning::partition_id(0)
        } else {
            Partitioning::balanced()
        };
        let stream = self.topics.stream.clone();
        self.pool
            .call(move |client| async move {
                let mut messages = vec![message];
                client
                    .send_messages(&stream, &topic, &partitioning, &mut messages)
                    .await
                    .map(|_| ())
            })
            .await
            .map_err(|error| match error {
                GatewayError::Iggy(error) => GatewayError::from_write(error),
                error => error,
            })
    }
}

/// Why an ack, nack or extension did not take.
enum Outcome {
    Missed(Miss),
    Invalid(&'static str, String),
    Failed(GatewayError),
}

fn result((partition_id, offset): Key, outcome: Result<(), Outcome>) -> proto::AckResult {
    let (outcome, reason, message) = match outcome {
        Ok(()) => (AckOutcome::Ok, String::new(), String::new()),
        Err(Outcome::Missed(Miss::NotDelivered)) => (
            AckOutcome::NotDelivered,
            "OFFSET_NOT_DELIVERED".to_owned(),
            format!("offset {offset} of partition {partition_id} was not delivered on this stream"),
        ),
        Err(Outcome::Missed(Miss::AlreadySettled)) => (
            AckOutcome::AlreadySettled,
            "ALREADY_SETTLED".to_owned(),
            format!("offset {offset} of partition {partition_id} is settled already"),
        ),
        Err(Outcome::Missed(Miss::Expired)) => (
            AckOutcome::Expired,
            "ACK_DEADLINE_EXPIRED".to_owned(),
            format!(
                "the ack deadline of offset {offset} of partition {partition_id} passed; it is delivered again"
            ),
        ),
        Err(Outcome::Invalid(reason, message)) => (AckOutcome::Invalid, reason.to_owned(), message),
        Err(Outcome::Failed(error)) => (AckOutcome::Failed, error.reason(), error.to_string()),
    };
    ack_result((partition_id, offset), outcome, reason, message)
}

/// The next request of a Consume stream; never ready without one.
async fn next_request(
    requests: &mut Option<Streaming<proto::ConsumeRequest>>,
) -> Option<proto::ConsumeRequest> {
    match requests {
        Some(requests) => requests.message().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// The next item of an optional stream; never ready without one.
async fn next_of(
    stream: &mut Option<SubscribeStream>,
) -> Option<Result<proto::SubscribeResponse, Status>> {
    match stream {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The instant of a Unix time in microseconds (now, if it has passed).
fn instant_of(micros: u64) -> Instant {
    let now = IggyTimestamp::now().as_micros();
    Instant::now() + Duration::from_micros(micros.saturating_sub(now))
}
