//! Consume: subscribe and acknowledge on one bidirectional stream. The
//! first request starts a subscription as Subscribe would; the requests
//! after it are served in order by a task of their own, acks straight to the
//! subscription (no id, no registry), credit into its flow control, and
//! every ack's result is sent back between the deliveries.

use crate::{
    edge::{
        Principal,
        access::{self, NamesStream},
    },
    error::GatewayError,
    iggy::IggyPool,
    messaging::{
        redelivery,
        subscribe::{Credit, Grant, SessionAcks, Subscriptions},
    },
    proto::{self, AckOutcome, consume_request, consume_response},
};
use std::pin::Pin;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Status, Streaming};

/// The server stream a Consume call returns.
pub type ConsumeStream =
    Pin<Box<dyn Stream<Item = Result<proto::ConsumeResponse, Status>> + Send + 'static>>;

/// Ack results waiting to be sent, and credit grants to be applied.
const QUEUE: usize = 64;

/// Starts a Consume stream from its first request; with
/// `start.redelivery`, one that also serves nacks and ack deadlines, over
/// `pool` (see [`redelivery`]).
pub async fn consume(
    subscriptions: &Subscriptions,
    pool: &IggyPool,
    principal: &Principal,
    mut requests: Streaming<proto::ConsumeRequest>,
) -> Result<ConsumeStream, Status> {
    let start = match requests.message().await? {
        Some(proto::ConsumeRequest {
            kind: Some(consume_request::Kind::Start(start)),
        }) => start,
        _ => {
            return Err(GatewayError::invalid(
                "start",
                "the first request of a Consume stream must be `start`",
            )
            .into_status());
        }
    };
    let subscription = start
        .subscription
        .ok_or_else(|| GatewayError::invalid("start.subscription", "is required").into_status())?;
    access::check_stream(principal, subscription.stream()).map_err(GatewayError::into_status)?;
    let (credit, grants) = match start.initial_credit {
        Some(initial) if initial.messages == 0 => {
            return Err(GatewayError::invalid(
                "start.initial_credit.messages",
                "must be at least 1 (leave initial_credit out for no credit limit)",
            )
            .into_status());
        }
        Some(initial) => {
            let (grants, receiver) = mpsc::channel(QUEUE);
            let initial = Grant {
                messages: initial.messages,
                bytes: initial.bytes,
            };
            (Some(Credit::new(initial, receiver)), Some(grants))
        }
        None => (None, None),
    };
    if let Some(redelivery) = &subscription.redelivery {
        let field = "start.subscription.redelivery";
        let policy =
            redelivery::Policy::parse(field, redelivery).map_err(GatewayError::into_status)?;
        return redelivery::consume(
            subscriptions,
            pool,
            subscription,
            (credit, grants),
            policy,
            requests,
        )
        .await
        .map_err(GatewayError::into_status);
    }
    let (deliveries, acks) = subscriptions
        .start(subscription, credit)
        .await
        .map_err(GatewayError::into_status)?;
    let (results, results_rx) = mpsc::channel(QUEUE);
    tokio::spawn(serve_requests(requests, acks, grants, results));
    let deliveries = deliveries.map(|response| {
        response.map(|delivery| proto::ConsumeResponse {
            kind: Some(consume_response::Kind::Delivery(delivery)),
        })
    });
    let results = ReceiverStream::new(results_rx).map(|result| {
        Ok(proto::ConsumeResponse {
            kind: Some(consume_response::Kind::AckResult(result)),
        })
    });
    Ok(Box::pin(deliveries.merge(results)))
}

/// Serves the requests after `start` until the client stops sending or the
/// subscription ends.
async fn serve_requests(
    mut requests: Streaming<proto::ConsumeRequest>,
    acks: SessionAcks,
    grants: Option<mpsc::Sender<Grant>>,
    results: mpsc::Sender<proto::AckResult>,
) {
    while let Ok(Some(request)) = requests.message().await {
        let result = match request.kind {
            Some(consume_request::Kind::Ack(ack)) => {
                let outcome = acks.ack(ack.partition_id, ack.offset).await;
                result(ack.partition_id, ack.offset, outcome)
            }
            Some(consume_request::Kind::Credit(credit)) => {
                if let Some(grants) = &grants {
                    let grant = Grant {
                        messages: credit.messages,
                        bytes: credit.bytes,
                    };
                    if grants.send(grant).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            Some(consume_request::Kind::Nack(nack)) => {
                unsupported(nack.partition_id, nack.offset, "nack")
            }
            Some(consume_request::Kind::Extend(extend)) => {
                unsupported(extend.partition_id, extend.offset, "deadline extension")
            }
            Some(consume_request::Kind::Start(_)) | None => continue,
        };
        if results.send(result).await.is_err() {
            return;
        }
    }
}

fn result(partition_id: u32, offset: u64, outcome: Result<(), GatewayError>) -> proto::AckResult {
    match outcome {
        Ok(()) => ack_result(
            (partition_id, offset),
            AckOutcome::Ok,
            String::new(),
            String::new(),
        ),
        Err(error) => {
            let kind = if error.reason() == "OFFSET_NOT_DELIVERED" {
                AckOutcome::NotDelivered
            } else {
                AckOutcome::Failed
            };
            ack_result(
                (partition_id, offset),
                kind,
                error.reason(),
                error.to_string(),
            )
        }
    }
}

fn unsupported(partition_id: u32, offset: u64, what: &str) -> proto::AckResult {
    let message = format!("a {what} needs a stream started with redelivery");
    ack_result(
        (partition_id, offset),
        AckOutcome::Unsupported,
        "UNSUPPORTED".into(),
        message,
    )
}

/// The result of an ack, nack or extension of `offset` of `partition_id`.
pub fn ack_result(
    (partition_id, offset): (u32, u64),
    outcome: AckOutcome,
    reason: String,
    message: String,
) -> proto::AckResult {
    proto::AckResult {
        partition_id,
        offset,
        outcome: outcome as i32,
        reason,
        message,
    }
}
