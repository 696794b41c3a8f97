//! `MessagingService`: publish (single, batch, typed events), subscribe,
//! poll and ack.

mod ack;
mod consume;
mod deadline;
mod events;
pub mod headers;
mod nack;
mod poll;
mod publish;
mod redelivery;
pub mod subscribe;

pub use publish::{Idempotency, PartitionRouter, PublishLimits, Publisher, key_partition};

use crate::{
    edge::{CallContext, Principal, RateLimits, Refusal, Traceparent, access},
    error::GatewayError,
    iggy::{
        IggyPool,
        missing::{self, Named, NamesResources},
    },
    metrics,
    proto::{self, messaging_service_server::MessagingService},
    validate::{self, FieldPath},
};
use iggy::prelude::{Identifier, IggyTimestamp};
use publish::{Entries, Entry, EntryResult, Route, Stamp};
use std::{sync::Arc, time::Duration};
use subscribe::{SubscribeLimits, Subscriptions};
use tonic::{Request, Response, Status};

/// The MessagingService implementation.
#[derive(Clone)]
pub struct Messaging {
    pool: IggyPool,
    router: Arc<PartitionRouter>,
    publisher: Publisher,
    limits: PublishLimits,
    subscriptions: Arc<Subscriptions>,
    subscribe_limits: SubscribeLimits,
    rate_limits: Arc<RateLimits>,
}

impl Messaging {
    /// Serves messaging calls: publishing through `publisher` within
    /// `limits`, streams through `subscriptions`, polls and acks over `pool`
    /// (polls find topics in `router`, the cache the publisher routes by);
    /// publishers' message rates are held to `rate_limits`.
    pub fn new(
        pool: IggyPool,
        router: Arc<PartitionRouter>,
        publisher: Publisher,
        limits: PublishLimits,
        subscriptions: Arc<Subscriptions>,
        subscribe_limits: SubscribeLimits,
        rate_limits: Arc<RateLimits>,
    ) -> Self {
        Self {
            pool,
            router,
            publisher,
            limits,
            subscriptions,
            subscribe_limits,
            rate_limits,
        }
    }

    /// Admits a publish of `count` messages by the caller, or refuses it
    /// over the caller's message rate.
    fn admit_messages(&self, caller: &Caller, count: usize) -> Result<(), GatewayError> {
        match self.rate_limits.admit_messages(&caller.principal, count) {
            Ok(()) => Ok(()),
            Err(refusal) => {
                metrics::count_rate_limited("messages");
                Err(match refusal {
                    Refusal::RetryAfter(retry_after) => GatewayError::RateLimited {
                        what: "messages",
                        retry_after,
                    },
                    Refusal::LargerThanBurst(burst) => GatewayError::OverRateBurst { count, burst },
                })
            }
        }
    }

    fn check_batch_size(&self, field: &str, len: usize) -> Result<(), GatewayError> {
        if len == 0 {
            return Err(GatewayError::invalid(field, "must have at least one entry"));
        }
        if len > self.limits.max_batch_messages {
            return Err(GatewayError::invalid(
                field,
                format!(
                    "has {len} entries; the limit is {}",
                    self.limits.max_batch_messages
                ),
            ));
        }
        Ok(())
    }

    /// Publishes validated `entries` for `caller` (idempotently, or not):
    /// admitted against the caller's message rate, then sent within the
    /// client's deadline.
    async fn send(
        &self,
        caller: &Caller,
        deadline: Option<Duration>,
        (stream, topic): (&Identifier, &Identifier),
        entries: Entries,
        idempotent: bool,
    ) -> Result<Vec<EntryResult>, GatewayError> {
        self.admit_messages(caller, entries.len())?;
        let publish = self.publisher.publish(stream, topic, entries, idempotent);
        let sent = deadline::write_within(deadline, publish).await;
        // Iggy answers a publish to a missing stream or topic with a
        // partition error: say which is missing, for the whole call.
        let named = Named::topic(stream, topic);
        match sent {
            Err(error) => Err(missing::explain(&self.pool, &named, error).await),
            Ok(results)
                if results
                    .iter()
                    .any(|result| result.as_ref().is_err_and(missing::is_not_found)) =>
            {
                match missing::find(&self.pool, &named).await {
                    Some(error) => Err(error),
                    None => Ok(results),
                }
            }
            sent => sent,
        }
    }

    async fn publish_one(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<proto::PublishResponse, GatewayError> {
        let deadline = deadline::remaining(&request);
        let caller = Caller::of(&request)?;
        let request = access::admit(request)?;
        let stream = validate::resource_id("stream", request.stream.as_ref())?;
        let topic = validate::resource_id("topic", request.topic.as_ref())?;
        let route = Route::parse(
            &FieldPath::root("partitioning"),
            request.partitioning.as_ref(),
            &Route::Balanced,
        )?;
        let field = FieldPath::root("message");
        if request.idempotent {
            require_id(&field, request.message.as_ref())?;
        }
        let outgoing = publish::build(&field, request.message, &self.limits, caller.stamp())?;
        let entry = Entry { route, outgoing }.idempotent_if(request.idempotent);
        let result = single(
            self.send(
                &caller,
                deadline,
                (&stream, &topic),
                Entries::from(entry),
                request.idempotent,
            )
            .await?,
        )?;
        Ok(proto::PublishResponse {
            result: Some(result),
        })
    }

    async fn publish_many(
        &self,
        request: Request<proto::PublishBatchRequest>,
    ) -> Result<proto::PublishBatchResponse, GatewayError> {
        let deadline = deadline::remaining(&request);
        let caller = Caller::of(&request)?;
        let request = access::admit(request)?;
        let stream = validate::resource_id("stream", request.stream.as_ref())?;
        let topic = validate::resource_id("topic", request.topic.as_ref())?;
        self.check_batch_size("messages", request.messages.len())?;
        let default_route = Route::parse(
            &FieldPath::root("partitioning"),
            request.partitioning.as_ref(),
            &Route::Balanced,
        )?;
        let messages = FieldPath::root("messages");
        let mut entries = Entries::with_capacity(request.messages.len());
        let idempotent = request.idempotent;
        for (index, entry) in request.messages.into_iter().enumerate() {
            let field = messages.index(index);
            let message = field.field("message");
            if idempotent {
                require_id(&message, entry.message.as_ref())?;
            }
            let entry = Entry {
                route: Route::parse(
                    &field.field("partitioning"),
                    entry.partitioning.as_ref(),
                    &default_route,
                )?,
                outgoing: publish::build(&message, entry.message, &self.limits, caller.stamp())?,
            };
            entries.push(entry.idempotent_if(idempotent));
        }
        let results = self
            .send(&caller, deadline, (&stream, &topic), entries, idempotent)
            .await?;
        Ok(proto::PublishBatchResponse {
            results: batch_results(results),
        })
    }

    async fn publish_event_one(
        &self,
        request: Request<proto::PublishEventRequest>,
    ) -> Result<proto::PublishEventResponse, GatewayError> {
        let deadline = deadline::remaining(&request);
        let caller = Caller::of(&request)?;
        let request = access::admit(request)?;
        let stream = validate::resource_id("stream", request.stream.as_ref())?;
        let topic = validate::resource_id("topic", request.topic.as_ref())?;
        let event = events::build(
            &FieldPath::root("event"),
            request.event,
            &self.limits,
            caller.stamp(),
        )?;
        let route = Route::parse(
            &FieldPath::root("partitioning"),
            request.partitioning.as_ref(),
            &event.default_route,
        )?;
        let entries = Entries::from(Entry {
            route,
            outgoing: event.outgoing,
        });
        let result = single(
            self.send(&caller, deadline, (&stream, &topic), entries, false)
                .await?,
        )?;
        Ok(proto::PublishEventResponse {
            result: Some(result),
        })
    }

    async fn publish_event_many(
        &self,
        request: Request<proto::PublishEventBatchRequest>,
    ) -> Result<proto::PublishEventBatchResponse, GatewayError> {
        let deadline = deadline::remaining(&request);
        let caller = Caller::of(&request)?;
        let request = access::admit(request)?;
        let stream = validate::resource_id("stream", request.stream.as_ref())?;
        let topic = validate::resource_id("topic", request.topic.as_ref())?;
        self.check_batch_size("events", request.events.len())?;
        let events = FieldPath::root("events");
        let entries = request
            .events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                let event = events::build(
                    &events.index(index),
                    Some(event),
                    &self.limits,
                    caller.stamp(),
                )?;
                Ok(Entry {
                    route: event.default_route,
                    outgoing: event.outgoing,
                })
            })
            .collect::<Result<Entries, GatewayError>>()?;
        let results = self
            .send(&caller, deadline, (&stream, &topic), entries, false)
            .await?;
        Ok(proto::PublishEventBatchResponse {
            results: batch_results(results),
        })
    }
}

/// Who is publishing, and the trace context to store on their messages.
struct Caller {
    principal: Arc<Principal>,
    traceparent: Option<Traceparent>,
    /// When the gateway accepted the call, in Unix microseconds.
    accepted_at: u64,
}

impl Caller {
    fn of<T>(request: &Request<T>) -> Result<Self, GatewayError> {
        Ok(Self {
            principal: access::principal(request)?,
            traceparent: CallContext::of(request.extensions())
                .and_then(|context| context.traceparent())
                .cloned(),
            accepted_at: IggyTimestamp::now().as_micros(),
        })
    }

    /// What each message of the call carries: its trace context and the
    /// moment the call was accepted.
    fn stamp(&self) -> Stamp<'_> {
        Stamp {
            traceparent: self.traceparent.as_ref().map(Traceparent::as_str),
            accepted_at: self.accepted_at,
        }
    }
}

/// The one result of a single publish, as the call's own outcome.
/// An idempotent publish needs the id it is checked by.
fn require_id(field: &FieldPath<'_>, message: Option<&proto::Message>) -> Result<(), GatewayError> {
    match message {
        Some(message) if message.id.is_empty() => Err(GatewayError::invalid(
            field.field("id"),
            "is required when idempotent is set: the id is the idempotency key",
        )),
        _ => Ok(()),
    }
}

fn single(results: Vec<EntryResult>) -> Result<proto::PublishResult, GatewayError> {
    results.into_iter().next().unwrap_or_else(|| {
        Err(GatewayError::Internal(
            "a publish produced no result".into(),
        ))
    })
}

fn batch_results(results: Vec<EntryResult>) -> Vec<proto::BatchEntryResult> {
    results
        .into_iter()
        .map(|result| proto::BatchEntryResult {
            outcome: Some(match result {
                Ok(stored) => proto::batch_entry_result::Outcome::Stored(stored),
                Err(error) => proto::batch_entry_result::Outcome::Error(proto::EntryError {
                    code: error.code() as i32,
                    reason: error.reason(),
                    message: error.to_string(),
                }),
            }),
        })
        .collect()
}

fn respond<T>(result: Result<T, GatewayError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(GatewayError::into_status)
}

/// The server stream type of `Subscribe`.
pub type SubscribeStream = subscribe::SubscribeStream;

#[tonic::async_trait]
impl MessagingService for Messaging {
    type SubscribeStream = SubscribeStream;
    type ConsumeStream = consume::ConsumeStream;

    async fn consume(
        &self,
        request: Request<tonic::Streaming<proto::ConsumeRequest>>,
    ) -> Result<Response<Self::ConsumeStream>, Status> {
        let principal = access::principal(&request).map_err(GatewayError::into_status)?;
        let stream = consume::consume(
            &self.subscriptions,
            &self.pool,
            &principal,
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishResponse>, Status> {
        respond(self.publish_one(request).await)
    }

    async fn publish_batch(
        &self,
        request: Request<proto::PublishBatchRequest>,
    ) -> Result<Response<proto::PublishBatchResponse>, Status> {
        respond(self.publish_many(request).await)
    }

    async fn publish_event(
        &self,
        request: Request<proto::PublishEventRequest>,
    ) -> Result<Response<proto::PublishEventResponse>, Status> {
        respond(self.publish_event_one(request).await)
    }

    async fn publish_event_batch(
        &self,
        request: Request<proto::PublishEventBatchRequest>,
    ) -> Result<Response<proto::PublishEventBatchResponse>, Status> {
        respond(self.publish_event_many(request).await)
    }

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = access::admit(request).map_err(GatewayError::into_status)?;
        match &request.redelivery {
            Some(redelivery) => {
                let policy = redelivery::Policy::parse("redelivery", redelivery);
                let subscriptions = &self.subscriptions;
                respond(match policy {
                    Ok(policy) => {
                        redelivery::subscribe(subscriptions, &self.pool, request, policy).await
                    }
                    Err(error) => Err(error),
                })
            }
            None => respond(self.subscriptions.subscribe(request).await),
        }
    }

    async fn nack(
        &self,
        request: Request<proto::NackRequest>,
    ) -> Result<Response<proto::NackResponse>, Status> {
        let principal = access::principal(&request).map_err(GatewayError::into_status)?;
        respond(nack::nack(&self.pool, &principal, request.into_inner()).await)
    }

    async fn extend_ack_deadline(
        &self,
        request: Request<proto::ExtendAckDeadlineRequest>,
    ) -> Result<Response<proto::ExtendAckDeadlineResponse>, Status> {
        let principal = access::principal(&request).map_err(GatewayError::into_status)?;
        respond(nack::extend(&self.pool, &principal, request.into_inner()).await)
    }

    async fn poll(
        &self,
        request: Request<proto::PollRequest>,
    ) -> Result<Response<proto::PollResponse>, Status> {
        let request = access::admit(request).map_err(GatewayError::into_status)?;
        respond(poll::poll(&self.pool, &self.router, &self.subscribe_limits, request).await)
    }

    async fn ack(
        &self,
        request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckResponse>, Status> {
        let principal = access::principal(&request).map_err(GatewayError::into_status)?;
        let request = access::admit(request).map_err(GatewayError::into_status)?;
        let named = request.named();
        let result = match ack::ack(&self.subscriptions, &principal, request).await {
            Err(error) => Err(missing::explain(&self.pool, &named, error).await),
            ok => ok,
        };
        respond(result)
    }
}
