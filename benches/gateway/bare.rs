//! The bare gateway: `PublishBatch` answered with the Iggy SDK and nothing
//! else (no validation, no layers, no limits, no metrics, no logs), on
//! tonic's stock prost codec (not the crate's hand-written one), in a
//! process of its own, written as the SDK's and tonic's documentation would
//! have it. Its batched-publish
//! rate is what the stack alone (tonic, prost, the SDK) allows on this
//! machine, before any of the gateway's own work; the relay's is what a
//! process of its own allows.

use futures_util::future::BoxFuture;
use iggy::prelude::{Identifier, IggyClient, IggyMessage, MessageClient, Partitioning};
use iggy_grpc::{
    iggy::IggyTarget,
    proto::{
        BatchEntryResult, PublishBatchRequest, PublishBatchResponse, PublishResult, ResourceId,
        batch_entry_result::Outcome, partitioning, resource_id,
    },
};
use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tonic::{
    Request, Response, Status,
    body::Body,
    codegen::http,
    server::{Grpc, NamedService, UnaryService},
};
use tonic_prost::ProstCodec;
use uuid::Uuid;

/// Connections to Iggy, taken in turn by the calls.
struct BareGateway {
    clients: Vec<IggyClient>,
    next: AtomicUsize,
}

/// Serves the bare gateway on `listener`, with `connections` SDK clients of
/// `connection_string`.
pub async fn serve(listener: tokio::net::TcpListener, connection_string: &str, connections: u16) {
    let target = IggyTarget::parse(connection_string).expect("target");
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(
            target
                .connect(Duration::from_secs(10))
                .await
                .expect("connect to Iggy"),
        );
    }
    let service = StockCodecServer(Arc::new(BareGateway {
        clients,
        next: AtomicUsize::new(0),
    }));
    tonic::transport::Server::builder()
        // The gateway's frame size: a batch crosses in a few large frames.
        .max_frame_size(Some(1 << 20))
        .add_service(service)
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await
        .expect("serve");
}

/// The Iggy identifier of a stream or topic field.
fn identifier(id: Option<ResourceId>) -> Result<Identifier, Status> {
    match id.and_then(|id| id.kind) {
        Some(resource_id::Kind::Name(name)) => {
            Identifier::named(&name).map_err(|e| Status::invalid_argument(e.to_string()))
        }
        Some(resource_id::Kind::Id(number)) => {
            Identifier::numeric(number).map_err(|e| Status::invalid_argument(e.to_string()))
        }
        None => Err(Status::invalid_argument("stream and topic are required")),
    }
}

impl BareGateway {
    /// Stores a batch on its explicit partition, answering each entry.
    async fn publish_batch(
        &self,
        request: Request<PublishBatchRequest>,
    ) -> Result<Response<PublishBatchResponse>, Status> {
        let request = request.into_inner();
        let (stream, topic) = (identifier(request.stream)?, identifier(request.topic)?);
        let partition = match request.partitioning.and_then(|p| p.kind) {
            Some(partitioning::Kind::PartitionId(partition)) => partition,
            _ => return Err(Status::unimplemented("only an explicit partition id")),
        };
        let mut ids = Vec::with_capacity(request.messages.len());
        let mut messages = Vec::with_capacity(request.messages.len());
        for entry in request.messages {
            let message = entry.message.unwrap_or_default();
            let id = Uuid::new_v4();
            messages.push(
                IggyMessage::builder()
                    .id(id.as_u128())
                    .payload(message.payload)
                    .build()
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            );
            ids.push(id);
        }
        let client = &self.clients[self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()];
        client
            .send_messages(
                &stream,
                &topic,
                &Partitioning::partition_id(partition),
                &mut messages,
            )
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let results = ids
            .into_iter()
            .map(|id| BatchEntryResult {
                outcome: Some(Outcome::Stored(PublishResult {
                    id: id.hyphenated().to_string(),
                    partition_id: partition,
                    offset: None,
                    duplicate: false,
                })),
            })
            .collect();
        Ok(Response::new(PublishBatchResponse { results }))
    }
}

/// The MessagingService's PublishBatch on the stock codec; every other
/// method answers UNIMPLEMENTED.
#[derive(Clone)]
struct StockCodecServer(Arc<BareGateway>);

impl NamedService for StockCodecServer {
    const NAME: &'static str = "iggy.gateway.v1.MessagingService";
}

impl tower::Service<http::Request<Body>> for StockCodecServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let gateway = Arc::clone(&self.0);
        Box::pin(async move {
            if request.uri().path() != "/iggy.gateway.v1.MessagingService/PublishBatch" {
                return Ok(Status::unimplemented("PublishBatch only").into_http());
            }
            let mut grpc = Grpc::new(ProstCodec::default()).max_decoding_message_size(64 << 20);
            Ok(grpc.unary(PublishBatch(gateway), request).await)
        })
    }
}

struct PublishBatch(Arc<BareGateway>);

impl UnaryService<PublishBatchRequest> for PublishBatch {
    type Response = PublishBatchResponse;
    type Future = BoxFuture<'static, Result<Response<PublishBatchResponse>, Status>>;

    fn call(&mut self, request: Request<PublishBatchRequest>) -> Self::Future {
        let gateway = Arc::clone(&self.0);
        Box::pin(async move { gateway.publish_batch(request).await })
    }
}
