//! Assembles the gateway and serves it on a listener the caller has bound.

mod read_buffer;

use crate::{
    admin::{Admin, StatsCache},
    config::{Config, EdgeConfig},
    edge::{
        ApiKeys, Lockout, RateLimits,
        keys::KeysError,
        method,
        tls::{self, TlsError},
    },
    health,
    iggy::{IggyPool, IggyTarget, PoolOptions, TargetError},
    layers::{
        AuthLayer, Authenticator, CallContextLayer, CallLogLayer, ErrorDetailsLayer, LoadShedLayer,
        RateLimitLayer,
    },
    messaging::{
        Idempotency, Messaging, PartitionRouter, Publisher,
        subscribe::{Subscriptions, Wakeups},
    },
    metrics,
    proto::{
        self, admin_service_server::AdminServiceServer,
        messaging_service_server::MessagingServiceServer,
    },
    web::{self, RouteError, WebLayer, cors::OriginError},
};
use std::{future::Future, sync::Arc};
use tokio::{net::TcpListener, sync::watch};
use tonic::transport::{Server, ServerTlsConfig, server::TcpIncoming};
use tonic_health::ServingStatus;
use tower::ServiceBuilder;
use tracing::{info, warn};

/// The largest HTTP/2 frame the gateway accepts from clients.
const MAX_FRAME_BYTES: u32 = 1 << 20;

/// How much of a request body a client may send before the gateway has
/// read it: a 1 MiB batch with its framing (hyper's default window is
/// 1 MiB) then crosses without waiting for a WINDOW_UPDATE.
const STREAM_WINDOW_BYTES: u32 = 4 << 20;

/// The same for all streams of one connection: a few batches at once.
const CONNECTION_WINDOW_BYTES: u32 = 8 << 20;

/// Why the gateway could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] TargetError),
    /// The reflection service could not be built from the descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The API keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP/JSON routes in the descriptors cannot be served.
    #[error(transparent)]
    Routes(#[from] RouteError),
    /// An origin in the CORS allow-list is not one.
    #[error(transparent)]
    Cors(#[from] OriginError),
    /// The metrics address could not be bound.
    #[error("cannot listen for metrics on {address}: {source}")]
    MetricsListen {
        /// The address asked for.
        address: std::net::SocketAddr,
        /// Why binding it failed.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl ServeError {
    /// Whether the configuration is at fault (bad keys, TLS files, Iggy
    /// URL), as opposed to a failure while serving.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::Config(_) | Self::Keys(_) | Self::Tls(_) | Self::Cors(_)
        )
    }
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
/// in-flight calls get `config.transport.shutdown_grace` to finish. With
/// `config.metrics_listen` set, Prometheus metrics are served there too.
///
/// The listener is bound by the caller, so tests bind `127.0.0.1:0`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let target = IggyTarget::parse(&config.iggy_url)?;
    let edge = Edge::load(&config.edge)?;
    let cors = web::cors::layer(&config.edge.cors_allowed_origins)?;
    let routes = web::routes()?;
    let metrics_endpoint = match config.metrics_listen {
        Some(address) => Some(serve_metrics(address).await?),
        None => None,
    };
    let transport = config.transport;
    info!(
        iggy = target.server_address(),
        pool_size = config.pool.size,
        "starting"
    );
    let pool = IggyPool::start(target.clone(), config.pool.clone());
    let readers = IggyPool::start(
        target.clone(),
        PoolOptions {
            size: config.subscribe.read_connections,
            ..config.pool.clone()
        },
    );

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health::set_all(&health_reporter, ServingStatus::NotServing).await;
    let (shutting_down, shutting_down_rx) = watch::channel(false);
    let health_task = health::track(
        health_reporter.clone(),
        pool.watch_status(),
        readers.watch_status(),
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
        readers.clone(),
        config.subscribe.clone(),
        transport.max_connection_age,
        shutting_down_rx.clone(),
        Arc::clone(&wakeups),
    ));
    let messaging = Messaging::new(
        pool.clone(),
        Arc::clone(&router),
        Publisher::new(
            pool.clone(),
            router,
            wakeups,
            Arc::new(Idempotency::new(config.idempotency_window)),
        ),
        config.publish,
        subscriptions,
        config.subscribe.clone(),
        Arc::clone(&edge.rate_limits),
    );
    let max_request = transport.max_request_bytes;
    let pool_metrics = track_pool_metrics(pool.watch_status());

    // The order is explained in `layers`: outermost first. The web comes
    // before the gRPC edge: CORS answers preflights, JSON and gRPC-Web
    // requests become gRPC calls, and the edge sees only those.
    let layers = ServiceBuilder::new()
        .option_layer(cors)
        .layer(WebLayer::new(
            routes,
            max_request.saturating_mul(web::JSON_BYTES_PER_MESSAGE_BYTE),
        ))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(ErrorDetailsLayer::new(max_request))
        // Stamps arrival right after the transport starts its own clock
        // for `grpc-timeout`.
        .layer(CallContextLayer)
        .layer(CallLogLayer::new(method::known_methods()))
        .layer(AuthLayer::new(edge.authenticator))
        .layer(RateLimitLayer::new(edge.rate_limits))
        .layer(LoadShedLayer::new(transport.max_concurrent_calls))
        .into_inner();
    let mut builder = Server::builder()
        // JSON, Server-Sent Events and gRPC-Web come over HTTP/1.1 too.
        .accept_http1(true)
        .max_concurrent_streams(transport.max_concurrent_streams)
        .http2_keepalive_interval(transport.http2_keepalive_interval)
        .http2_keepalive_timeout(Some(transport.http2_keepalive_timeout))
        // HTTP/2 frames of up to 1 MiB (the default is 16 KiB): a 1 MiB
        // batch then crosses the socket in a few large reads, not 64+.
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES));
    if let Some(max_age) = transport.max_connection_age {
        // A GOAWAY at the age: calls in progress go on, and a subscription
        // stream ends itself within its age and grace. (tonic's own grace
        // would skip the GOAWAY and cut the connection, streams and all.)
        builder = builder.max_connection_age(max_age.age);
    }
    if let Some(tls) = edge.tls {
        builder = builder.tls_config(tls)?;
    }

    let (stop_accepting, mut stop_accepting_rx) = watch::channel(false);
    let server = builder
        .layer(layers)
        // Every service decodes requests up to the same limit.
        .add_service(health_service.max_decoding_message_size(max_request))
        .add_service(reflection_v1.max_decoding_message_size(max_request))
        .add_service(reflection_v1alpha.max_decoding_message_size(max_request))
        .add_service(AdminServiceServer::new(admin).max_decoding_message_size(max_request))
        .add_service(MessagingServiceServer::new(messaging).max_decoding_message_size(max_request))
        // The listener comes from the caller, so tonic cannot set socket
        // options itself: without TCP_NODELAY every response waits ~40 ms for
        // the client's delayed ACK (Nagle's algorithm).
        .serve_with_incoming_shutdown(
            tokio_stream::StreamExt::map(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                |connection| connection.map(read_buffer::ReadBuffered::new),
            ),
            async move {
                let _ = stop_accepting_rx.wait_for(|stop| *stop).await;
            },
        );
    tokio::pin!(server);

    tokio::select! {
        result = &mut server => {
            pool.close();
            readers.close();
            stop_metrics(metrics_endpoint).await;
            return result.map_err(ServeError::from);
        }
        () = shutdown => {}
    }

    info!(grace = ?transport.shutdown_grace, "shutting down");
    // Health first, so load balancers stop sending before calls are refused.
    shutting_down.send_replace(true);
    health::set_all(&health_reporter, ServingStatus::NotServing).await;
    let _ = health_task.await;
    stop_accepting.send_replace(true);
    let result = match tokio::time::timeout(transport.shutdown_grace, &mut server).await {
        Ok(result) => result.map_err(ServeError::from),
        Err(_) => {
            warn!("shutdown grace period over; dropping the calls still running");
            Ok(())
        }
    };
    pool.close();
    readers.close();
    pool_metrics.abort();
    stop_metrics(metrics_endpoint).await;
    info!("stopped");
    result
}

/// What the edge layers need, loaded from the configuration.
struct Edge {
    authenticator: Arc<Authenticator>,
    rate_limits: Arc<RateLimits>,
    tls: Option<ServerTlsConfig>,
}

impl Edge {
    fn load(config: &EdgeConfig) -> Result<Self, ServeError> {
        let keys = ApiKeys::load(config.api_keys_file.as_deref(), config.api_keys.as_deref())?;
        if keys.is_empty() {
            warn!(
                "AUTHENTICATION IS OFF: no API keys are configured (--api-keys-file, \
                 IGGY_GRPC_API_KEYS); every caller may publish, subscribe and administer"
            );
        } else {
            info!(keys = keys.iter().count(), "API key authentication is on");
        }
        let rate_limits = Arc::new(RateLimits::new(
            config.request_rate,
            config.message_rate,
            &keys,
        ));
        let authenticator = Arc::new(Authenticator::new(
            keys,
            Lockout::new(config.auth_max_failures, config.auth_lockout),
            !config.reflection_requires_key,
        ));
        let tls = match &config.tls {
            Some(files) => {
                let tls = tls::server_config(&files.cert, &files.key, files.client_ca.as_deref())?;
                info!(mutual = files.client_ca.is_some(), "TLS is on");
                Some(tls)
            }
            None => None,
        };
        Ok(Self {
            authenticator,
            rate_limits,
            tls,
        })
    }
}

/// Binds `address` and serves Prometheus metrics there until stopped.
async fn serve_metrics(
    address: std::net::SocketAddr,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, ServeError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::MetricsListen { address, source })?;
    let bound = listener.local_addr().unwrap_or(address);
    info!(listen = %bound, "serving Prometheus metrics at /metrics");
    Ok(tokio::spawn(metrics::endpoint::serve(
        listener,
        std::future::pending(),
    )))
}

/// Stops the metrics endpoint; its port is free when this returns.
async fn stop_metrics(endpoint: Option<tokio::task::JoinHandle<std::io::Result<()>>>) {
    if let Some(endpoint) = endpoint {
        endpoint.abort();
        let _ = endpoint.await;
    }
}

/// Keeps the pool gauges in step with the pool.
fn track_pool_metrics(
    mut status: watch::Receiver<crate::iggy::PoolStatus>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let current = *status.borrow_and_update();
            metrics::set_pool(current.live, current.total);
            if status.changed().await.is_err() {
                return;
            }
        }
    })
}
