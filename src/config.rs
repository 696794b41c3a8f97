//! The gateway's settings as the library takes them: plain values with
//! `Default`, grouped by concern. The binary builds one from its flags and
//! environment variables (`src/bin/iggy-grpc/args.rs`); tests and library
//! users build one in code. Nothing here reads the environment.

use crate::{
    edge::RateSpec,
    iggy::PoolOptions,
    messaging::{PublishLimits, subscribe::SubscribeLimits},
};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Everything [`crate::serve`] needs besides its listener.
#[derive(Debug, Clone)]
pub struct Config {
    /// Iggy to connect to: `iggy://user:password@host:port`.
    pub iggy_url: String,
    /// The pool of Iggy connections for publish and admin calls.
    pub pool: PoolOptions,
    /// Size limits on what a publish may carry.
    pub publish: PublishLimits,
    /// Bounds and defaults for subscriptions.
    pub subscribe: SubscribeLimits,
    /// Keys, lockout, rate limits and TLS.
    pub edge: EdgeConfig,
    /// HTTP/2 and call limits, and the shutdown grace.
    pub transport: TransportConfig,
    /// How long a topic's partition count is trusted before it is read again
    /// (changes made through the gateway apply at once).
    pub partition_cache_ttl: Duration,
    /// How long GetStats answers from its cache before asking Iggy again.
    pub stats_ttl: Duration,
    /// How long after Iggy stored a message an idempotent publish of its id
    /// is answered as a duplicate rather than stored again.
    pub idempotency_window: Duration,
    /// Where to serve Prometheus metrics (`GET /metrics`); `None`: nowhere.
    /// Off by default in the library; the binary's default is `0.0.0.0:50052`.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            iggy_url: "iggy://iggy:iggy@127.0.0.1:8090".to_owned(),
            pool: PoolOptions::default(),
            publish: PublishLimits::default(),
            subscribe: SubscribeLimits::default(),
            edge: EdgeConfig::default(),
            transport: TransportConfig::default(),
            partition_cache_ttl: Duration::from_secs(1),
            stats_ttl: Duration::from_secs(5),
            idempotency_window: Duration::from_secs(120),
            metrics_listen: None,
        }
    }
}

impl Config {
    /// Every default, for the Iggy at `iggy_url`.
    pub fn for_connection_string(iggy_url: impl Into<String>) -> Self {
        Self {
            iggy_url: iggy_url.into(),
            ..Self::default()
        }
    }
}

/// Who may call, and how much.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// An API keys file (TOML, or JSON when it ends in `.json`).
    pub api_keys_file: Option<PathBuf>,
    /// API keys as `id:secret:scope+scope[:stream+stream]`, `;`-separated.
    /// With no keys at all, authentication is off.
    pub api_keys: Option<String>,
    /// Whether reflection needs a valid key (health stays open).
    pub reflection_requires_key: bool,
    /// Failed authentications from one address that lock it out (0: never).
    pub auth_max_failures: u32,
    /// The window failures are counted in, and how long a lockout lasts.
    pub auth_lockout: Duration,
    /// Requests per second per principal; `None`: unlimited.
    pub request_rate: Option<RateSpec>,
    /// Published messages per second per principal; `None`: unlimited.
    pub message_rate: Option<RateSpec>,
    /// TLS; `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// Browser origins (`https://app.example.com`) allowed to call the
    /// gateway across origins (CORS); `*` allows any; none by default.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            api_keys_file: None,
            api_keys: None,
            reflection_requires_key: false,
            auth_max_failures: 10,
            auth_lockout: Duration::from_secs(300),
            request_rate: None,
            message_rate: None,
            tls: None,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// The PEM files TLS is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// A CA client certificates must chain to: turns on mutual TLS.
    pub client_ca: Option<PathBuf>,
}

/// HTTP/2 and call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportConfig {
    /// Largest gRPC request message decoded, in bytes.
    pub max_request_bytes: usize,
    /// Most calls in progress across all connections; more are refused at
    /// once with RESOURCE_EXHAUSTED (health checks never are).
    pub max_concurrent_calls: usize,
    /// Most concurrent HTTP/2 streams (calls) on one client connection.
    pub max_concurrent_streams: u32,
    /// Interval of HTTP/2 keepalive pings to idle clients; `None`: off.
    pub http2_keepalive_interval: Option<Duration>,
    /// How long a keepalive ping may go unanswered before the connection closes.
    pub http2_keepalive_timeout: Duration,
    /// How long in-flight calls may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Connections and subscription streams older than this move on, so
    /// long-lived streams re-balance across replicas; `None`: never.
    pub max_connection_age: Option<MaxAge>,
}

/// When connections and subscription streams are asked to move on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxAge {
    /// A connection gets an HTTP/2 GOAWAY at this age (new calls go to a
    /// fresh connection); a Subscribe or Consume stream ends at this age
    /// from its own start (up to 10% sooner, so streams opened together
    /// do not all leave together) with UNAVAILABLE, STREAM_MAX_AGE and a
    /// resume token.
    pub age: Duration,
    /// How long a manual-ack stream at its age may still take acks for the
    /// messages it has in flight before it ends.
    pub grace: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 64 * 1024 * 1024,
            max_concurrent_calls: 1024,
            max_concurrent_streams: 256,
            http2_keepalive_interval: Some(Duration::from_secs(30)),
            http2_keepalive_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            max_connection_age: None,
        }
    }
}
