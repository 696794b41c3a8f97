//! `AdminService`: thin handlers that validate a request, make the Iggy call
//! on a pooled connection and convert the answer back.

mod convert;
mod groups;
mod offsets;
mod partitions;
mod purge;
mod streams;
mod system;
mod topics;

pub use convert::{duration, system_time, timestamp};
pub use system::StatsCache;

use crate::{
    edge::{
        StreamRef,
        access::{self, NamesStream},
    },
    error::GatewayError,
    iggy::{
        IggyPool,
        missing::{self, Named, NamesResources},
    },
    messaging::PartitionRouter,
    proto::{self, admin_service_server::AdminService},
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The AdminService implementation.
#[derive(Clone)]
pub struct Admin {
    pool: IggyPool,
    router: Arc<PartitionRouter>,
    stats: Arc<StatsCache>,
}

impl Admin {
    /// Serves admin calls over `pool`, caching stats in `stats`; `router`
    /// forgets cached partition counts when partitions or topics change.
    pub fn new(pool: IggyPool, router: Arc<PartitionRouter>, stats: Arc<StatsCache>) -> Self {
        Self {
            pool,
            router,
            stats,
        }
    }

    /// Runs a call that changes partition counts, then drops cached counts.
    async fn changing_partitions<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        let result = call.await;
        self.router.invalidate_all();
        result
    }
}

/// The request's body when the caller may use the stream it names.
fn admit<T: NamesStream>(request: Request<T>) -> Result<T, Status> {
    access::admit(request).map_err(GatewayError::into_status)
}

fn respond<T>(result: Result<T, GatewayError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(GatewayError::into_status)
}

impl Admin {
    /// Answers `result`; a not-found error first names which of the
    /// resources the request `named` is missing (see [`missing`]).
    async fn answer<T>(
        &self,
        named: &Named,
        result: Result<T, GatewayError>,
    ) -> Result<Response<T>, Status> {
        match result {
            Err(error) => respond(Err(missing::explain(&self.pool, named, error).await)),
            ok => respond(ok),
        }
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn create_stream(
        &self,
        request: Request<proto::CreateStreamRequest>,
    ) -> Result<Response<proto::CreateStreamResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, streams::create(&self.pool, r).await)
            .await
    }

    async fn get_stream(
        &self,
        request: Request<proto::GetStreamRequest>,
    ) -> Result<Response<proto::GetStreamResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, streams::get(&self.pool, r).await).await
    }

    async fn list_streams(
        &self,
        request: Request<proto::ListStreamsRequest>,
    ) -> Result<Response<proto::ListStreamsResponse>, Status> {
        let principal = access::principal(&request).map_err(GatewayError::into_status)?;
        let mut listed = respond(streams::list(&self.pool).await)?;
        // A key restricted to some streams sees only those.
        listed.get_mut().streams.retain(|stream| {
            principal.may_use_stream(StreamRef::Name(&stream.name))
                || principal.may_use_stream(StreamRef::Id(stream.id))
        });
        Ok(listed)
    }

    async fn update_stream(
        &self,
        request: Request<proto::UpdateStreamRequest>,
    ) -> Result<Response<proto::UpdateStreamResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, streams::update(&self.pool, r).await)
            .await
    }

    async fn delete_stream(
        &self,
        request: Request<proto::DeleteStreamRequest>,
    ) -> Result<Response<proto::DeleteStreamResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        let result = self
            .changing_partitions(streams::delete(&self.pool, r))
            .await;
        self.answer(&named, result).await
    }

    async fn purge_stream(
        &self,
        request: Request<proto::PurgeStreamRequest>,
    ) -> Result<Response<proto::PurgeStreamResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, streams::purge(&self.pool, r).await)
            .await
    }

    async fn create_topic(
        &self,
        request: Request<proto::CreateTopicRequest>,
    ) -> Result<Response<proto::CreateTopicResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        let result = self
            .changing_partitions(topics::create(&self.pool, r))
            .await;
        self.answer(&named, result).await
    }

    async fn get_topic(
        &self,
        request: Request<proto::GetTopicRequest>,
    ) -> Result<Response<proto::GetTopicResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, topics::get(&self.pool, r).await).await
    }

    async fn list_topics(
        &self,
        request: Request<proto::ListTopicsRequest>,
    ) -> Result<Response<proto::ListTopicsResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, topics::list(&self.pool, r).await).await
    }

    async fn update_topic(
        &self,
        request: Request<proto::UpdateTopicRequest>,
    ) -> Result<Response<proto::UpdateTopicResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, topics::update(&self.pool, r).await)
            .await
    }

    async fn delete_topic(
        &self,
        request: Request<proto::DeleteTopicRequest>,
    ) -> Result<Response<proto::DeleteTopicResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        let result = self
            .changing_partitions(topics::delete(&self.pool, r))
            .await;
        self.answer(&named, result).await
    }

    async fn purge_topic(
        &self,
        request: Request<proto::PurgeTopicRequest>,
    ) -> Result<Response<proto::PurgeTopicResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, topics::purge(&self.pool, r).await)
            .await
    }

    async fn create_partitions(
        &self,
        request: Request<proto::CreatePartitionsRequest>,
    ) -> Result<Response<proto::CreatePartitionsResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        let result = self
            .changing_partitions(partitions::create(&self.pool, r))
            .await;
        self.answer(&named, result).await
    }

    async fn delete_partitions(
        &self,
        request: Request<proto::DeletePartitionsRequest>,
    ) -> Result<Response<proto::DeletePartitionsResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        let result = self
            .changing_partitions(partitions::delete(&self.pool, r))
            .await;
        self.answer(&named, result).await
    }

    async fn create_consumer_group(
        &self,
        request: Request<proto::CreateConsumerGroupRequest>,
    ) -> Result<Response<proto::CreateConsumerGroupResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, groups::create(&self.pool, r).await)
            .await
    }

    async fn get_consumer_group(
        &self,
        request: Request<proto::GetConsumerGroupRequest>,
    ) -> Result<Response<proto::GetConsumerGroupResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, groups::get(&self.pool, r).await).await
    }

    async fn list_consumer_groups(
        &self,
        request: Request<proto::ListConsumerGroupsRequest>,
    ) -> Result<Response<proto::ListConsumerGroupsResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, groups::list(&self.pool, r).await).await
    }

    async fn delete_consumer_group(
        &self,
        request: Request<proto::DeleteConsumerGroupRequest>,
    ) -> Result<Response<proto::DeleteConsumerGroupResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, groups::delete(&self.pool, r).await)
            .await
    }

    async fn get_consumer_offset(
        &self,
        request: Request<proto::GetConsumerOffsetRequest>,
    ) -> Result<Response<proto::GetConsumerOffsetResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, offsets::get(&self.pool, r).await).await
    }

    async fn store_consumer_offset(
        &self,
        request: Request<proto::StoreConsumerOffsetRequest>,
    ) -> Result<Response<proto::StoreConsumerOffsetResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, offsets::store(&self.pool, r).await)
            .await
    }

    async fn delete_consumer_offset(
        &self,
        request: Request<proto::DeleteConsumerOffsetRequest>,
    ) -> Result<Response<proto::DeleteConsumerOffsetResponse>, Status> {
        let r = admit(request)?;
        let named = r.named();
        self.answer(&named, offsets::delete(&self.pool, r).await)
            .await
    }

    async fn get_stats(
        &self,
        _request: Request<proto::GetStatsRequest>,
    ) -> Result<Response<proto::GetStatsResponse>, Status> {
        respond(self.stats.get(&self.pool).await)
    }

    async fn ping(
        &self,
        _request: Request<proto::PingRequest>,
    ) -> Result<Response<proto::PingResponse>, Status> {
        respond(system::ping(&self.pool).await)
    }
}
