//! Process-wide counters of what the gateway asks of Iggy, for benchmarks
//! and (later) the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

static SUBSCRIPTION_POLLS: AtomicU64 = AtomicU64::new(0);

/// Counts one poll a subscription sent to Iggy.
pub fn count_subscription_poll() {
    SUBSCRIPTION_POLLS.fetch_add(1, Ordering::Relaxed);
}

/// Polls subscriptions have sent to Iggy since the process started.
pub fn subscription_polls() -> u64 {
    SUBSCRIPTION_POLLS.load(Ordering::Relaxed)
}
