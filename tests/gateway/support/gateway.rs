//! A gateway served in-process on `127.0.0.1:0`, with clients for it.

use iggy_grpc::{
    Config, ServeError,
    proto::{
        admin_service_client::AdminServiceClient, messaging_service_client::MessagingServiceClient,
    },
};
use std::{net::SocketAddr, time::Duration};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_stream::StreamExt;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A running gateway; stopped when [`TestGateway::stop`] is called.
pub struct TestGateway {
    channel: Channel,
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

/// The gateway's settings for `iggy_url`, sized for tests: a small pool
/// that gives up quickly, and a short shutdown grace.
fn test_sized(iggy_url: &str) -> Config {
    let mut config = Config::for_connection_string(iggy_url);
    config.pool.size = 4;
    config.pool.acquire_timeout = Duration::from_secs(2);
    config.transport.shutdown_grace = Duration::from_secs(5);
    config
}

impl TestGateway {
    /// Starts a gateway for `iggy_url` with test-sized settings; returns as
    /// soon as it accepts connections (Iggy may still be unreachable).
    pub async fn start(iggy_url: &str) -> Self {
        Self::start_with(test_sized(iggy_url)).await
    }

    /// Starts a gateway with `config`.
    pub async fn start_with(config: Config) -> Self {
        Self::start_with_tls(config, None).await
    }

    /// Starts a gateway with `config`; its channel speaks TLS with `tls`
    /// when given (the gateway's config must turn TLS on).
    pub async fn start_with_tls(config: Config, tls: Option<ClientTlsConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(iggy_grpc::serve(listener, config, async move {
            let _ = shutdown_rx.await;
        }));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = Channel::from_shared(format!("{scheme}://{address}")).expect("uri");
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).expect("client TLS");
        }
        Self {
            channel: endpoint.connect_lazy(),
            address,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// The address the gateway listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Starts a gateway and waits until its health is SERVING.
    pub async fn start_ready(iggy_url: &str) -> Self {
        Self::start_ready_with(test_sized(iggy_url)).await
    }

    /// Starts a gateway with `config` and waits until its health is SERVING.
    pub async fn start_ready_with(config: Config) -> Self {
        let gateway = Self::start_with(config).await;
        gateway.wait_for_health("", ServingStatus::Serving).await;
        gateway
    }

    pub fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    pub fn messaging(&self) -> MessagingServiceClient<Channel> {
        MessagingServiceClient::new(self.channel.clone())
    }

    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The current health of `service` ("" for the whole gateway).
    pub async fn health_status(&self, service: &str) -> ServingStatus {
        let response = self
            .health()
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check");
        response.into_inner().status()
    }

    /// Waits, on the health Watch stream, until `service` reports `wanted`.
    pub async fn wait_for_health(&self, service: &str, wanted: ServingStatus) {
        let mut updates = self
            .health()
            .watch(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health watch")
            .into_inner();
        while let Some(update) = updates.next().await {
            if update.expect("health update").status() == wanted {
                return;
            }
        }
        panic!("health watch ended before {service:?} became {wanted:?}");
    }

    /// Starts a graceful shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task).await.expect("gateway task")
    }

    /// Signals shutdown without waiting; `stop` then collects the result.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
