//! Brute-force protection: a peer that fails authentication too often in a
//! window is locked out for that window, even with a correct key. The map of
//! peers is bounded; when full, expired records go first, then the oldest.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Most peers tracked at once.
pub const MAX_TRACKED_PEERS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

impl Record {
    fn expired(&self, now: Instant, window: Duration) -> bool {
        match self.locked_until {
            Some(until) => now >= until,
            None => now.duration_since(self.since) >= window,
        }
    }
}

/// Failed-attempt counts and lockouts per peer address.
#[derive(Debug)]
pub struct Lockout {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    peers: Mutex<HashMap<IpAddr, Record>>,
}

impl Lockout {
    /// Locks a peer out for `window` after `max_failures` failures within
    /// `window` (0 turns lockout off).
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self::with_capacity(max_failures, window, MAX_TRACKED_PEERS)
    }

    fn with_capacity(max_failures: u32, window: Duration, capacity: usize) -> Self {
        Self {
            max_failures,
            window,
            capacity: capacity.max(1),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(remaining)` while `peer` is locked out.
    pub fn check(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let peers = self.lock();
        match peers.get(&peer).and_then(|record| record.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failed attempt; `Some(lock)` when it locks the peer out.
    pub fn record_failure(&self, peer: IpAddr, now: Instant) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        let mut peers = self.lock();
        if !peers.contains_key(&peer) && peers.len() >= self.capacity {
            self.make_room(&mut peers, now);
        }
        let record = peers.entry(peer).or_insert(Record {
            failures: 0,
            since: now,
            locked_until: None,
        });
        if record.expired(now, self.window) {
            *record = Record {
                failures: 0,
                since: now,
                locked_until: None,
            };
        }
        record.failures = record.failures.saturating_add(1);
        if record.failures >= self.max_failures && record.locked_until.is_none() {
            record.locked_until = Some(now + self.window);
            return Some(self.window);
        }
        None
    }

    /// Forgets the failures of a peer that just authenticated.
    pub fn record_success(&self, peer: IpAddr) {
        let mut peers = self.lock();
        if peers
            .get(&peer)
            .is_some_and(|record| record.locked_until.is_none())
        {
            peers.remove(&peer);
        }
    }

    /// How many peers are tracked.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn make_room(&self, peers: &mut HashMap<IpAddr, Record>, now: Instant) {
        peers.retain(|_, record| !record.expired(now, self.window));
        if peers.len() >= self.capacity
            && let Some(oldest) = peers
                .iter()
                .min_by_key(|(_, record)| record.since)
                .map(|(peer, _)| *peer)
        {
            peers.remove(&oldest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Record>> {
        // A panic while holding the lock cannot leave a record half-written
        // in a way that matters; keep serving.
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn repeated_failures_lock_the_peer_out_for_the_window() {
        let window = Duration::from_secs(60);
        let lockout = Lockout::new(3, window);
        let start = Instant::now();
        assert_eq!(lockout.record_failure(ip(1), start), None);
        assert_eq!(lockout.record_failure(ip(1), start), None);
        assert_eq!(lockout.record_failure(ip(1), start), Some(window));
        let later = start + Duration::from_secs(20);
        assert_eq!(lockout.check(ip(1), later), Err(Duration::from_secs(40)));
        // A success during the lockout does not lift it.
        lockout.record_success(ip(1));
        assert!(lockout.check(ip(1), later).is_err());
        assert_eq!(lockout.check(ip(2), later), Ok(()));
        assert_eq!(lockout.check(ip(1), start + window), Ok(()));
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_add_up() {
        let window = Duration::from_secs(10);
        let lockout = Lockout::new(2, window);
        let start = Instant::now();
        assert_eq!(lockout.record_failure(ip(1), start), None);
        assert_eq!(lockout.record_failure(ip(1), start + window), None);
        assert_eq!(
            lockout.record_failure(ip(1), start + window + Duration::from_secs(1)),
            Some(window)
        );
    }

    #[test]
    fn a_success_clears_the_count() {
        let lockout = Lockout::new(2, Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(lockout.record_failure(ip(1), now), None);
        lockout.record_success(ip(1));
        assert_eq!(lockout.record_failure(ip(1), now), None);
        assert_eq!(lockout.tracked(), 1);
    }

    #[test]
    fn the_map_stays_bounded_under_many_peers() {
        let lockout = Lockout::with_capacity(5, Duration::from_secs(60), 100);
        let now = Instant::now();
        for n in 0..=u8::MAX {
            lockout.record_failure(ip(n), now + Duration::from_millis(u64::from(n)));
        }
        assert_eq!(lockout.tracked(), 100);
        // The newest peer is still tracked; the oldest were evicted.
        assert_eq!(
            lockout.record_failure(ip(u8::MAX), now + Duration::from_secs(1)),
            None
        );
        assert_eq!(lockout.tracked(), 100);
    }

    #[test]
    fn zero_failures_turns_lockout_off() {
        let lockout = Lockout::new(0, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(lockout.record_failure(ip(1), now), None);
        }
        assert_eq!(lockout.check(ip(1), now), Ok(()));
        assert_eq!(lockout.tracked(), 0);
    }
}
