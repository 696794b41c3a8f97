//! Process-wide metrics in Prometheus form: calls by method and gRPC code
//! with latency, messages and bytes in and out, subscriptions, the Iggy pool,
//! and what the edge refused. [`endpoint`] serves them on their own port.
//!
//! The registry is global so any part of the gateway can count without
//! plumbing; label values come from closed sets (known methods, gRPC codes,
//! fixed reasons), so the series stay bounded.

pub mod endpoint;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use std::{
    sync::{LazyLock, OnceLock},
    time::Duration,
};

/// Labels of per-call series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: String,
}

/// Labels of per-method latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

/// Labels naming a reason or kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Family<MethodLabels, Histogram, fn() -> Histogram>,
    published_messages: Counter,
    published_bytes: Counter,
    delivered_messages: Counter,
    delivered_bytes: Counter,
    active_subscriptions: Gauge,
    subscription_polls: Counter,
    pool_live: Gauge,
    pool_total: Gauge,
    iggy_reconnects: Counter,
    auth_failures: Family<ReasonLabels, Counter>,
    rate_limited: Family<ReasonLabels, Counter>,
    load_shed: Counter,
    http2_refused_streams: Counter,
}

/// Latency buckets from 0.25 ms to about 8 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("iggy_grpc");
    let metrics = Metrics {
        registry: Registry::default(),
        calls: Family::default(),
        latency: Family::new_with_constructor(latency_histogram),
        published_messages: Counter::default(),
        published_bytes: Counter::default(),
        delivered_messages: Counter::default(),
        delivered_bytes: Counter::default(),
        active_subscriptions: Gauge::default(),
        subscription_polls: Counter::default(),
        pool_live: Gauge::default(),
        pool_total: Gauge::default(),
        iggy_reconnects: Counter::default(),
        auth_failures: Family::default(),
        rate_limited: Family::default(),
        load_shed: Counter::default(),
        http2_refused_streams: Counter::default(),
    };
    registry.register(
        "calls",
        "Finished gRPC calls by method and status code",
        metrics.calls.clone(),
    );
    registry.register(
        "call_duration_seconds",
        "gRPC call duration by method, from arrival to the last response byte",
        metrics.latency.clone(),
    );
    registry.register(
        "published_messages",
        "Messages stored in Iggy by publish calls",
        metrics.published_messages.clone(),
    );
    registry.register(
        "published_bytes",
        "Payload bytes stored in Iggy by publish calls",
        metrics.published_bytes.clone(),
    );
    registry.register(
        "delivered_messages",
        "Messages delivered to subscribers and pollers",
        metrics.delivered_messages.clone(),
    );
    registry.register(
        "delivered_bytes",
        "Payload bytes delivered to subscribers and pollers",
        metrics.delivered_bytes.clone(),
    );
    registry.register(
        "active_subscriptions",
        "Subscribe streams open now",
        metrics.active_subscriptions.clone(),
    );
    registry.register(
        "subscription_polls",
        "Polls subscriptions and their topic watchers sent to Iggy",
        metrics.subscription_polls.clone(),
    );
    registry.register(
        "pool_connections_live",
        "Pooled Iggy connections logged in now",
        metrics.pool_live.clone(),
    );
    registry.register(
        "pool_connections",
        "Pooled Iggy connections configured",
        metrics.pool_total.clone(),
    );
    registry.register(
        "iggy_reconnects",
        "Pooled Iggy connections re-established after a loss",
        metrics.iggy_reconnects.clone(),
    );
    registry.register(
        "auth_failures",
        "Calls refused by authentication, by reason",
        metrics.auth_failures.clone(),
    );
    registry.register(
        "rate_limited",
        "Calls refused by a rate limit, by limit (requests or messages)",
        metrics.rate_limited.clone(),
    );
    registry.register(
        "load_shed",
        "Calls refused because the gateway was at its concurrency limit",
        metrics.load_shed.clone(),
    );
    registry.register(
        "http2_refused_streams",
        "Streams HTTP/2 reset before they reached gRPC (malformed headers and the like)",
        metrics.http2_refused_streams.clone(),
    );
    Metrics {
        registry,
        ..metrics
    }
});

/// The call series of one method, looked up once: recording a call then
/// allocates nothing and hashes no labels. A series appears in the
/// exposition with the method's first call (with that code, for counts).
#[derive(Debug)]
pub struct MethodCalls {
    method: String,
    latency: OnceLock<Histogram>,
    /// One count per gRPC code, indexed by the code's number (0-16).
    by_code: [OnceLock<Counter>; CODES],
}

/// How many gRPC codes there are (`OK` = 0 to `UNAUTHENTICATED` = 16).
const CODES: usize = 17;

impl MethodCalls {
    /// The series of `method` (`package.Service/Method`, or a shared label
    /// such as `unknown`).
    pub fn new(method: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            latency: OnceLock::new(),
            by_code: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The method label.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Records a finished call with gRPC status `code` that took `elapsed`.
    pub fn record(&self, code: tonic::Code, elapsed: Duration) {
        let counter = usize::try_from(i32::from(code))
            .ok()
            .and_then(|index| self.by_code.get(index));
        match counter {
            Some(counter) => counter.get_or_init(|| self.call_counter(code)).inc(),
            // Not a code tonic knows today; counted the slow way.
            None => self.call_counter(code).inc(),
        };
        self.latency
            .get_or_init(|| {
                METRICS
                    .latency
                    .get_or_create(&MethodLabels {
                        method: self.method.clone(),
                    })
                    .clone()
            })
            .observe(elapsed.as_secs_f64());
    }

    fn call_counter(&self, code: tonic::Code) -> Counter {
        METRICS
            .calls
            .get_or_create(&CallLabels {
                method: self.method.clone(),
                code: code_name(code).to_owned(),
            })
            .clone()
    }
}

/// Counts `messages` published with `bytes` of payload.
pub fn count_published(messages: u64, bytes: u64) {
    METRICS.published_messages.inc_by(messages);
    METRICS.published_bytes.inc_by(bytes);
}

/// Counts `messages` delivered with `bytes` of payload.
pub fn count_delivered(messages: u64, bytes: u64) {
    METRICS.delivered_messages.inc_by(messages);
    METRICS.delivered_bytes.inc_by(bytes);
}

/// Marks a subscription opened (`+1`) or closed (`-1`).
pub fn add_active_subscriptions(delta: i64) {
    METRICS.active_subscriptions.inc_by(delta);
}

/// Counts one poll a subscription sent to Iggy.
pub fn count_subscription_poll() {
    METRICS.subscription_polls.inc();
}

/// Polls subscriptions have sent to Iggy since the process started.
pub fn subscription_polls() -> u64 {
    METRICS.subscription_polls.get()
}

/// Sets the pool gauges.
pub fn set_pool(live: usize, total: usize) {
    METRICS
        .pool_live
        .set(i64::try_from(live).unwrap_or(i64::MAX));
    METRICS
        .pool_total
        .set(i64::try_from(total).unwrap_or(i64::MAX));
}

/// Counts a pooled connection re-established after a loss.
pub fn count_iggy_reconnect() {
    METRICS.iggy_reconnects.inc();
}

/// Counts a call refused by authentication for `reason`.
pub fn count_auth_failure(reason: &str) {
    METRICS
        .auth_failures
        .get_or_create(&ReasonLabels {
            reason: reason.to_owned(),
        })
        .inc();
}

/// Counts a call refused by the `what` (requests or messages) rate limit.
pub fn count_rate_limited(what: &str) {
    METRICS
        .rate_limited
        .get_or_create(&ReasonLabels {
            reason: what.to_owned(),
        })
        .inc();
}

/// Counts a call shed at the concurrency limit.
pub fn count_load_shed() {
    METRICS.load_shed.inc();
}

/// Counts a stream HTTP/2 refused before it reached gRPC.
pub fn count_http2_refused_stream() {
    METRICS.http2_refused_streams.inc();
}

/// Every metric in the Prometheus text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry);
    out
}

/// The conventional upper-case name of a gRPC code (`OK`, `NOT_FOUND`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_show_up_by_method_and_code() {
        MethodCalls::new("iggy.gateway.v1.AdminService/TestOnlyMethod")
            .record(tonic::Code::NotFound, Duration::from_millis(3));
        let text = render();
        assert!(
            text.contains(
                r#"iggy_grpc_calls_total{method="iggy.gateway.v1.AdminService/TestOnlyMethod",code="NOT_FOUND"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("iggy_grpc_call_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE iggy_grpc_pool_connections_live gauge"),
            "{text}"
        );
    }
}
