//! Assembles the gateway and serves it on a listener the caller has bound.

use crate::{
    admin::{Admin, StatsCache},
    config::Config,
    health,
    iggy::{IggyPool, IggyTarget, TargetError},
    layers::ArrivalLayer,
    messaging::{
        Messaging, PartitionRouter, Publisher,
        subscribe::{Subscriptions, Wakeups},
    },
    proto::{
        self, admin_service_server::AdminServiceServer,
        messaging_service_server::MessagingServiceServer,
    },
};
use std::{future::Future, sync::Arc};
use tokio::{net::TcpListener, sync::watch};
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::ServingStatus;
use tracing::{info, warn};

/// Why the gateway could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] TargetError),
    /// The reflection service could not be built from the descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("gRPC server error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Reflection over the gateway's own protos, grpc.health.v1 and both
/// reflection versions, so either version lists every service served.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// Serves the gateway on `listener` until `shutdown` completes, then shuts
/// down gracefully: health turns NOT_SERVING first, new calls are refused,
/// in-flight calls get `config.shutdown_grace` to finish.
///
/// The listener is bound by the caller, so tests bind `127.0.0.1:0`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let target = IggyTarget::parse(&config.iggy_url)?;
    info!(
        iggy = target.server_address(),
        pool_size = config.pool_size,
        "starting"
    );
    let pool = IggyPool::start(target, config.pool_options());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health::set_all(&health_reporter, ServingStatus::NotServing).await;
    let (shutting_down, shutting_down_rx) = watch::channel(false);
    let health_task = health::track(
        health_reporter.clone(),
        pool.watch_status(),
        shutting_down_rx.clone(),
    );

    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let router = Arc::new(PartitionRouter::new(config.partition_cache_ttl));
    let admin = Admin::new(
        pool.clone(),
        Arc::clone(&router),
        Arc::new(StatsCache::new(config.stats_ttl)),
    );
    let wakeups = Arc::new(Wakeups::default());
    let subscriptions = Arc::new(Subscriptions::new(
        pool.clone(),
        config.subscribe_limits(),
        shutting_down_rx.clone(),
        Arc::clone(&wakeups),
    ));
    let messaging = Messaging::new(
        pool.clone(),
        Publisher::new(pool.clone(), router, wakeups),
        config.publish_limits(),
        subscriptions,
        config.subscribe_limits(),
    );
    let max_request = config.max_request_bytes();

    let (stop_accepting, mut stop_accepting_rx) = watch::channel(false);
    let server = Server::builder()
        // Innermost of the transport's layers: stamps arrival right after
        // the transport starts its own clock for `grpc-timeout`.
        .layer(ArrivalLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AdminServiceServer::new(admin).max_decoding_message_size(max_request))
        .add_service(MessagingServiceServer::new(messaging).max_decoding_message_size(max_request))
        // The listener comes from the caller, so tonic cannot set socket
        // options itself: without TCP_NODELAY every response waits ~40 ms for
        // the client's delayed ACK (Nagle's algorithm).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                let _ = stop_accepting_rx.wait_for(|stop| *stop).await;
            },
        );
    tokio::pin!(server);

    tokio::select! {
        result = &mut server => {
            pool.close();
            return result.map_err(ServeError::from);
        }
        () = shutdown => {}
    }

    info!(grace = ?config.shutdown_grace, "shutting down");
    // Health first, so load balancers stop sending before calls are refused.
    shutting_down.send_replace(true);
    health::set_all(&health_reporter, ServingStatus::NotServing).await;
    let _ = health_task.await;
    stop_accepting.send_replace(true);
    let result = match tokio::time::timeout(config.shutdown_grace, &mut server).await {
        Ok(result) => result.map_err(ServeError::from),
        Err(_) => {
            warn!("shutdown grace period over; dropping the calls still running");
            Ok(())
        }
    };
    pool.close();
    info!("stopped");
    result
}
