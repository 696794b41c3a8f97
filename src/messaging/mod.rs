//! `MessagingService`: publish, subscribe, poll and ack.
//!
//! The contract is complete in the proto; the calls answer UNIMPLEMENTED until
//! their behaviour lands (publish and subscribe have issues of their own).

use crate::{
    error::GatewayError,
    iggy::IggyPool,
    proto::{self, messaging_service_server::MessagingService},
};
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The MessagingService implementation.
#[derive(Clone)]
pub struct Messaging {
    #[allow(dead_code)] // used by publish and subscribe, which come next
    pool: IggyPool,
}

impl Messaging {
    /// Serves messaging calls over `pool`.
    pub fn new(pool: IggyPool) -> Self {
        Self { pool }
    }
}

fn unimplemented<T>(method: &'static str) -> Result<Response<T>, Status> {
    Err(GatewayError::Unimplemented(method).into_status())
}

/// The server stream type of `Subscribe`.
pub type SubscribeStream =
    Pin<Box<dyn Stream<Item = Result<proto::SubscribeResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl MessagingService for Messaging {
    type SubscribeStream = SubscribeStream;

    async fn publish(
        &self,
        _request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishResponse>, Status> {
        unimplemented("Publish")
    }

    async fn publish_batch(
        &self,
        _request: Request<proto::PublishBatchRequest>,
    ) -> Result<Response<proto::PublishBatchResponse>, Status> {
        unimplemented("PublishBatch")
    }

    async fn publish_event(
        &self,
        _request: Request<proto::PublishEventRequest>,
    ) -> Result<Response<proto::PublishEventResponse>, Status> {
        unimplemented("PublishEvent")
    }

    async fn publish_event_batch(
        &self,
        _request: Request<proto::PublishEventBatchRequest>,
    ) -> Result<Response<proto::PublishEventBatchResponse>, Status> {
        unimplemented("PublishEventBatch")
    }

    async fn subscribe(
        &self,
        _request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        unimplemented("Subscribe")
    }

    async fn poll(
        &self,
        _request: Request<proto::PollRequest>,
    ) -> Result<Response<proto::PollResponse>, Status> {
        unimplemented("Poll")
    }

    async fn ack(
        &self,
        _request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckResponse>, Status> {
        unimplemented("Ack")
    }
}
