//! Command-line flags with environment-variable fallbacks, and the library
//! configuration they make. Only the binary parses flags or reads the
//! environment.

use clap::{Parser, ValueEnum};
use iggy_grpc::{
    Config,
    config::{EdgeConfig, MaxAge, TlsFiles, TransportConfig},
    edge::RateSpec,
    iggy::PoolOptions,
    messaging::{PublishLimits, subscribe::SubscribeLimits},
};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// iggy-grpc: a gRPC gateway for Apache Iggy.
///
/// Publish to, subscribe to and administer an Iggy server from any language
/// with a gRPC stack. Every flag can also be set by the environment variable
/// named in its help.
#[derive(Debug, Clone, Parser)]
#[command(name = "iggy-grpc", version)]
pub struct Args {
    /// Address the gateway listens on: gRPC, gRPC-Web and HTTP/JSON.
    #[arg(long, env = "IGGY_GRPC_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// Iggy to connect to: iggy://user:password@host:port (ignored with --embedded).
    #[arg(
        long,
        env = "IGGY_CONNECTION_STRING",
        default_value = "iggy://iggy:iggy@127.0.0.1:8090",
        hide_env_values = true
    )]
    pub iggy_url: String,

    /// Number of pooled Iggy connections for publish and admin calls (1-1024);
    /// each serves one call at a time.
    #[arg(long, env = "IGGY_GRPC_POOL_SIZE", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub pool_size: u16,

    /// How long a call waits for a free pooled connection before
    /// RESOURCE_EXHAUSTED (e.g. 500ms, 5s).
    #[arg(long, env = "IGGY_GRPC_POOL_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub pool_timeout: Duration,

    /// Start and supervise a local iggy-server instead of connecting to one.
    #[arg(long, env = "IGGY_EMBEDDED")]
    pub embedded: bool,

    /// The iggy-server binary for --embedded (default: iggy-server on PATH).
    #[arg(long, env = "IGGY_SERVER_BIN")]
    pub iggy_server_bin: Option<PathBuf>,

    /// Data directory of the embedded Iggy (default: a throwaway directory
    /// under the OS temp dir, removed on exit).
    #[arg(long, env = "IGGY_GRPC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// How long in-flight calls may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "IGGY_GRPC_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How long GetStats answers from its cache before asking Iggy again.
    #[arg(long, env = "IGGY_GRPC_STATS_TTL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub stats_ttl: Duration,

    /// Largest payload of one published message, in bytes (Iggy's ceiling is 64 MB).
    #[arg(long, env = "IGGY_GRPC_MAX_PAYLOAD_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=64_000_000))]
    pub max_payload_bytes: u64,

    /// Largest total size of one message's headers, in bytes (Iggy's ceiling is 100 KB).
    #[arg(long, env = "IGGY_GRPC_MAX_HEADERS_BYTES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_headers_bytes: u64,

    /// Most entries in one PublishBatch or PublishEventBatch call.
    #[arg(long, env = "IGGY_GRPC_MAX_BATCH_MESSAGES", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_batch_messages: u64,

    /// Largest gRPC request the gateway decodes, in bytes.
    #[arg(long, env = "IGGY_GRPC_MAX_REQUEST_BYTES", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=1_073_741_824))]
    pub max_request_bytes: u64,

    /// How long a topic's partition count is trusted before it is read again
    /// (changes made through the gateway apply at once).
    #[arg(long, env = "IGGY_GRPC_PARTITION_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub partition_cache_ttl: Duration,

    /// How long after Iggy stored a message an idempotent publish of its id
    /// is answered as a duplicate rather than stored again (1s-24h).
    #[arg(long, env = "IGGY_GRPC_IDEMPOTENCY_WINDOW", default_value = "2m", value_parser = parse_idempotency_window)]
    pub idempotency_window: Duration,

    /// Most concurrent Subscribe and Consume streams; more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "IGGY_GRPC_MAX_SUBSCRIPTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_subscriptions: u64,

    /// Most concurrent consumer-group members and manual-ack subscriptions
    /// among them: each holds an Iggy connection of its own (other named
    /// consumers only share the subscription pool).
    #[arg(long, env = "IGGY_GRPC_MAX_GROUP_MEMBERS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_group_members: u64,

    /// Iggy connections the named consumers' reads and the topic watchers
    /// share (the subscription pool, apart from the publish/admin pool).
    #[arg(long, env = "IGGY_GRPC_SUBSCRIBE_CONNECTIONS", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub subscribe_connections: u64,

    /// Longest pause between reads of an idle topic's partition ends, one
    /// watcher per topic for all its idle subscriptions (bounds the topic's
    /// idle poll rate and the delivery delay of messages from other
    /// producers).
    #[arg(long, env = "IGGY_GRPC_IDLE_POLL_BACKOFF", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub idle_poll_backoff: Duration,

    /// Heartbeat interval of idle streams when the request sets none.
    #[arg(long, env = "IGGY_GRPC_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,

    /// API keys file (TOML, or JSON when it ends in .json); see the README
    /// for its shape. With no keys at all, authentication is off.
    #[arg(long, env = "IGGY_GRPC_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// API keys as `id:secret:scope+scope[:stream+stream]`, separated by `;`
    /// (secrets are hashed at start; prefer the environment variable over
    /// the flag, which other users can see in the process list).
    #[arg(long, env = "IGGY_GRPC_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,

    /// Require a valid API key (any scope) for reflection; health stays open.
    #[arg(long, env = "IGGY_GRPC_REFLECTION_REQUIRES_KEY")]
    pub reflection_requires_key: bool,

    /// Failed authentications from one address that lock it out (0: never).
    #[arg(long, env = "IGGY_GRPC_AUTH_MAX_FAILURES", default_value_t = 10)]
    pub auth_max_failures: u32,

    /// The window failures are counted in, and how long a lockout lasts.
    #[arg(long, env = "IGGY_GRPC_AUTH_LOCKOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub auth_lockout: Duration,

    /// Requests per second per principal (key, certificate, or peer address
    /// when auth is off); 0: unlimited. Keys may set their own.
    #[arg(long, env = "IGGY_GRPC_RATE_LIMIT_REQUESTS", default_value_t = 0)]
    pub rate_limit_requests: u32,

    /// Requests a principal may send at once above its rate (default: one second's worth).
    #[arg(long, env = "IGGY_GRPC_RATE_LIMIT_REQUEST_BURST")]
    pub rate_limit_request_burst: Option<u32>,

    /// Published messages per second per principal (a batch costs its
    /// size); 0: unlimited. Keys may set their own.
    #[arg(long, env = "IGGY_GRPC_RATE_LIMIT_MESSAGES", default_value_t = 0)]
    pub rate_limit_messages: u32,

    /// Messages a principal may publish at once above its rate (default:
    /// one second's worth); also the largest batch it can send.
    #[arg(long, env = "IGGY_GRPC_RATE_LIMIT_MESSAGE_BURST")]
    pub rate_limit_message_burst: Option<u32>,

    /// Browser origins allowed to call across origins (CORS, for gRPC-Web,
    /// JSON and Server-Sent Events), comma-separated, e.g.
    /// `https://app.example.com`; `*` allows any origin. None by default.
    #[arg(long, env = "IGGY_GRPC_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,

    /// Most calls in progress across all connections; more are refused at
    /// once with RESOURCE_EXHAUSTED (health checks are never refused).
    #[arg(long, env = "IGGY_GRPC_MAX_CONCURRENT_CALLS", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_concurrent_calls: u64,

    /// Most concurrent HTTP/2 streams (calls) on one client connection.
    #[arg(long, env = "IGGY_GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    /// Interval of HTTP/2 keepalive pings to idle clients (0s: off).
    #[arg(long, env = "IGGY_GRPC_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long a keepalive ping may go unanswered before the connection is closed.
    #[arg(long, env = "IGGY_GRPC_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// Age at which connections get a GOAWAY and Subscribe/Consume streams
    /// end with a resume token, so long-lived streams re-balance across
    /// replicas (0s: never).
    #[arg(long, env = "IGGY_GRPC_MAX_CONNECTION_AGE", default_value = "0s", value_parser = humantime::parse_duration)]
    pub max_connection_age: Duration,

    /// How long a manual-ack stream at its maximum age may still take acks
    /// for the messages it has in flight.
    #[arg(long, env = "IGGY_GRPC_MAX_CONNECTION_AGE_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub max_connection_age_grace: Duration,

    /// Server certificate chain (PEM); turns TLS on (needs --tls-key).
    #[arg(long, env = "IGGY_GRPC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Server private key (PEM).
    #[arg(long, env = "IGGY_GRPC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA (PEM) that client certificates must chain to: turns on mutual TLS.
    /// A client certificate's common name can stand in for an API key.
    #[arg(long, env = "IGGY_GRPC_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Address of the Prometheus endpoint (GET /metrics); empty: off.
    #[arg(long, env = "IGGY_GRPC_METRICS_LISTEN", default_value = "0.0.0.0:50052", value_parser = optional_address)]
    pub metrics_listen: OptionalAddress,

    /// Instead of serving: ask the gateway listening at --listen (on
    /// loopback when it listens on all addresses) for its gRPC health and
    /// exit 0 if SERVING, 1 otherwise. For container health checks.
    #[arg(long)]
    pub health_check: bool,

    /// Log output format.
    #[arg(long, env = "IGGY_GRPC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A socket address that may be switched off with an empty value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddress(pub Option<SocketAddr>);

fn optional_address(text: &str) -> Result<OptionalAddress, String> {
    if text.trim().is_empty() {
        return Ok(OptionalAddress(None));
    }
    text.parse()
        .map(|address| OptionalAddress(Some(address)))
        .map_err(|_| format!("`{text}` is not an address like 0.0.0.0:50052 (or empty for off)"))
}

/// The idempotency window: a duration of 1 s to 24 h.
fn parse_idempotency_window(text: &str) -> Result<Duration, String> {
    let window = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&window) {
        return Err(format!("`{text}` is outside 1s-24h"));
    }
    Ok(window)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Args {
    /// The library configuration these flags ask for.
    pub fn config(&self) -> Config {
        let subscribe_defaults = SubscribeLimits::default();
        Config {
            iggy_url: self.iggy_url.clone(),
            pool: PoolOptions {
                size: usize::from(self.pool_size),
                acquire_timeout: self.pool_timeout,
                ..PoolOptions::default()
            },
            publish: PublishLimits {
                max_payload_bytes: to_usize(self.max_payload_bytes),
                max_headers_bytes: to_usize(self.max_headers_bytes),
                max_batch_messages: to_usize(self.max_batch_messages),
            },
            subscribe: SubscribeLimits {
                max_subscriptions: to_usize(self.max_subscriptions),
                max_group_members: to_usize(self.max_group_members),
                read_connections: to_usize(self.subscribe_connections),
                max_idle_backoff: self.idle_poll_backoff.max(Duration::from_millis(1)),
                default_heartbeat: self.heartbeat_interval.clamp(
                    subscribe_defaults.min_heartbeat,
                    subscribe_defaults.max_heartbeat,
                ),
                ..subscribe_defaults
            },
            edge: EdgeConfig {
                api_keys_file: self.api_keys_file.clone(),
                api_keys: self.api_keys.clone(),
                reflection_requires_key: self.reflection_requires_key,
                auth_max_failures: self.auth_max_failures,
                auth_lockout: self.auth_lockout,
                request_rate: RateSpec::new(
                    self.rate_limit_requests,
                    self.rate_limit_request_burst,
                ),
                message_rate: RateSpec::new(
                    self.rate_limit_messages,
                    self.rate_limit_message_burst,
                ),
                tls: match (&self.tls_cert, &self.tls_key) {
                    (Some(cert), Some(key)) => Some(TlsFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                        client_ca: self.tls_client_ca.clone(),
                    }),
                    _ => None,
                },
                cors_allowed_origins: self.cors_allowed_origins.clone(),
            },
            transport: TransportConfig {
                max_request_bytes: to_usize(self.max_request_bytes),
                max_concurrent_calls: to_usize(self.max_concurrent_calls),
                max_concurrent_streams: self.max_concurrent_streams,
                http2_keepalive_interval: (!self.http2_keepalive_interval.is_zero())
                    .then_some(self.http2_keepalive_interval),
                http2_keepalive_timeout: self.http2_keepalive_timeout,
                shutdown_grace: self.shutdown_grace,
                max_connection_age: (!self.max_connection_age.is_zero()).then_some(MaxAge {
                    age: self.max_connection_age,
                    grace: self.max_connection_age_grace,
                }),
            },
            partition_cache_ttl: self.partition_cache_ttl,
            idempotency_window: self.idempotency_window,
            stats_ttl: self.stats_ttl,
            metrics_listen: self.metrics_listen.0,
        }
    }
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary's defaults are the library's, but for the metrics
    /// endpoint, which the binary serves by default and the library does not.
    #[test]
    fn default_flags_make_the_default_config() {
        let config = Args::parse_from(["iggy-grpc"]).config();
        let library = Config::default();
        assert_eq!(config.iggy_url, library.iggy_url);
        assert_eq!(format!("{:?}", config.pool), format!("{:?}", library.pool));
        assert_eq!(
            format!("{:?}", config.publish),
            format!("{:?}", library.publish)
        );
        assert_eq!(
            format!("{:?}", config.subscribe),
            format!("{:?}", library.subscribe)
        );
        assert_eq!(format!("{:?}", config.edge), format!("{:?}", library.edge));
        assert_eq!(config.transport, library.transport);
        assert_eq!(config.partition_cache_ttl, library.partition_cache_ttl);
        assert_eq!(config.stats_ttl, library.stats_ttl);
        assert_eq!(config.metrics_listen, "0.0.0.0:50052".parse().ok());
        assert_eq!(library.metrics_listen, None);
    }
}
