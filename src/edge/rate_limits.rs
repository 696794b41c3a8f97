//! Per-principal rate limits with governor: requests per second, and
//! messages per second for publishing, where a batch costs its number of
//! messages.
//!
//! Keys with their own limits get their own limiter. Everyone else (keys
//! without overrides, certificate principals, peers when auth is off) shares
//! one keyed limiter on the global quota, keyed by principal; its idle keys
//! are pruned whenever it tracks [`MAX_TRACKED_PRINCIPALS`] or more.

use super::{ApiKeys, Principal, principal::Identity};
use governor::{
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use std::{collections::HashMap, num::NonZeroU32, time::Duration};

/// Above this many tracked principals, idle ones are pruned.
pub const MAX_TRACKED_PRINCIPALS: usize = 10_000;

/// A rate: a sustained count per second and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    /// Sustained rate per second.
    pub per_second: NonZeroU32,
    /// How many may be spent at once after an idle spell.
    pub burst: NonZeroU32,
}

impl RateSpec {
    /// A rate of `per_second` with a burst of `burst` (default: one second's worth).
    pub fn new(per_second: u32, burst: Option<u32>) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second)?;
        let burst = burst.and_then(NonZeroU32::new).unwrap_or(per_second);
        Some(Self { per_second, burst })
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the rate: retry after this long.
    RetryAfter(Duration),
    /// The batch alone is larger than the burst; it can never pass.
    LargerThanBurst(u32),
}

/// One dimension of limits (requests or messages).
#[derive(Debug)]
struct Limiter {
    per_key: HashMap<String, DefaultDirectRateLimiter>,
    shared: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl Limiter {
    fn new(global: Option<RateSpec>, overrides: impl Iterator<Item = (String, RateSpec)>) -> Self {
        Self {
            per_key: overrides
                .map(|(id, spec)| (id, RateLimiter::direct(spec.quota())))
                .collect(),
            shared: global.map(|spec| RateLimiter::keyed(spec.quota())),
            clock: DefaultClock::default(),
        }
    }

    fn is_off(&self) -> bool {
        self.per_key.is_empty() && self.shared.is_none()
    }

    fn check(&self, principal: &Principal, cost: u32) -> Result<(), Refusal> {
        let Some(cost) = NonZeroU32::new(cost) else {
            return Ok(());
        };
        let own = match principal.identity() {
            Identity::Key(id) => self.per_key.get(id),
            Identity::Certificate(_) | Identity::Peer(_) => None,
        };
        let outcome = if let Some(limiter) = own {
            limiter.check_n(cost)
        } else if let Some(shared) = &self.shared {
            if shared.len() >= MAX_TRACKED_PRINCIPALS {
                shared.retain_recent();
                shared.shrink_to_fit();
            }
            shared.check_key_n(principal.label_key(), cost)
        } else {
            return Ok(());
        };
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Refusal::RetryAfter(
                not_until.wait_time_from(self.clock.now()),
            )),
            Err(insufficient) => Err(Refusal::LargerThanBurst(insufficient.0)),
        }
    }

    fn tracked(&self) -> usize {
        self.shared.as_ref().map_or(0, |shared| shared.len())
    }
}

/// The request and message limits of every principal.
#[derive(Debug)]
pub struct RateLimits {
    requests: Limiter,
    messages: Limiter,
}

impl RateLimits {
    /// Global `requests` and `messages` rates (None: unlimited), overridden
    /// per key where a key sets its own.
    pub fn new(requests: Option<RateSpec>, messages: Option<RateSpec>, keys: &ApiKeys) -> Self {
        let overrides = |pick: fn(&super::ApiKey) -> Option<RateSpec>| {
            keys.iter()
                .filter_map(move |key| pick(key).map(|spec| (key.id().to_owned(), spec)))
        };
        Self {
            requests: Limiter::new(requests, overrides(|key| key.requests)),
            messages: Limiter::new(messages, overrides(|key| key.messages)),
        }
    }

    /// Whether any request limit is configured.
    pub fn limits_requests(&self) -> bool {
        !self.requests.is_off()
    }

    /// Admits one request of `principal`, or says how long to wait.
    pub fn admit_request(&self, principal: &Principal) -> Result<(), Refusal> {
        self.requests.check(principal, 1)
    }

    /// Admits `count` published messages of `principal`.
    pub fn admit_messages(&self, principal: &Principal, count: usize) -> Result<(), Refusal> {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        self.messages.check(principal, count)
    }

    /// How many principals share the global limiters' state right now.
    pub fn tracked_principals(&self) -> usize {
        self.requests.tracked().max(self.messages.tracked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::{keys::key_with_secret, principal::Scope};

    fn peer(address: &str) -> Principal {
        Principal::unrestricted(Identity::Peer(address.into()))
    }

    #[test]
    fn requests_over_the_burst_are_refused_with_a_wait() {
        let limits = RateLimits::new(RateSpec::new(1, Some(2)), None, &ApiKeys::default());
        let caller = peer("10.0.0.1");
        assert_eq!(limits.admit_request(&caller), Ok(()));
        assert_eq!(limits.admit_request(&caller), Ok(()));
        let Err(Refusal::RetryAfter(wait)) = limits.admit_request(&caller) else {
            panic!("the third request within a second must wait");
        };
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another principal has its own bucket.
        assert_eq!(limits.admit_request(&peer("10.0.0.2")), Ok(()));
    }

    #[test]
    fn a_batch_costs_its_number_of_messages() {
        let limits = RateLimits::new(None, RateSpec::new(100, None), &ApiKeys::default());
        let caller = peer("10.0.0.1");
        assert_eq!(limits.admit_messages(&caller, 60), Ok(()));
        assert!(matches!(
            limits.admit_messages(&caller, 60),
            Err(Refusal::RetryAfter(_))
        ));
        assert_eq!(
            limits.admit_messages(&caller, 101),
            Err(Refusal::LargerThanBurst(100))
        );
        assert!(!limits.limits_requests());
        assert_eq!(limits.admit_request(&caller), Ok(()));
    }

    #[test]
    fn a_key_override_replaces_the_global_limit() {
        let mut generous = key_with_secret("bulk", "0123456789abcdef", vec![Scope::Publish], None);
        generous.requests = RateSpec::new(1000, None);
        let keys = ApiKeys::from_keys(vec![generous]).expect("keys");
        let limits = RateLimits::new(RateSpec::new(1, None), None, &keys);
        let bulk = keys.authenticate("0123456789abcdef").expect("key");
        for _ in 0..500 {
            assert_eq!(limits.admit_request(&bulk.principal), Ok(()));
        }
        let other = peer("10.0.0.3");
        assert_eq!(limits.admit_request(&other), Ok(()));
        assert!(limits.admit_request(&other).is_err());
    }

    #[test]
    fn idle_principals_are_pruned_past_the_bound() {
        // Each peer spends its burst of one at a million per second, so it is
        // refilled (and so prunable) a microsecond later: pruning keeps the
        // map bounded.
        let limits = RateLimits::new(RateSpec::new(1_000_000, Some(1)), None, &ApiKeys::default());
        for n in 0..=2 * MAX_TRACKED_PRINCIPALS {
            let _ = limits.admit_request(&peer(&format!("peer-{n}")));
        }
        assert!(
            limits.tracked_principals() <= MAX_TRACKED_PRINCIPALS,
            "{} tracked",
            limits.tracked_principals()
        );
    }
}
