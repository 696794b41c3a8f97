//! Idempotent publish: a message whose id is already stored in its partition
//! within the window is not stored again.
//!
//! Iggy has no conditional append and no id index, so the check reads the
//! partition itself: before an idempotent send, the replica reads what the
//! partition gained since it last looked (from any producer: another
//! replica, a native client, itself before a restart) and keeps the ids it
//! saw within the window. What Iggy holds is the only state, so the check
//! holds across replicas and restarts. One replica sends a partition's
//! idempotent messages one send at a time, and finishes a send even when
//! its caller gave up, so a retry after an unknown outcome waits for the
//! first attempt's answer (docs/delivery.md, "Idempotent publish").

use crate::{error::GatewayError, iggy::IggyPool};
use iggy::prelude::{Identifier, IggyTimestamp, PollingStrategy};
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

/// A map keyed by message id.
pub type IdMap<V> = HashMap<u128, V, foldhash::fast::RandomState>;

/// Messages read per poll while catching up.
const CATCH_UP_BATCH: u32 = 1_000;
/// Most partitions whose ids one replica keeps; beyond it they start over
/// (each is read again from Iggy when next used).
const MAX_PARTITIONS: usize = 10_000;

/// The ids a partition held within the window, as far as it was read.
#[derive(Debug, Default)]
pub struct Seen {
    /// The next offset to read; `None` until a read found where the window's
    /// messages are.
    next: Option<u64>,
    /// Each id's first stored copy: its offset and when Iggy stored it.
    ids: IdMap<(u64, u64)>,
    /// Ids in the order they were stored, for expiry.
    order: VecDeque<(u64, u128)>,
}

impl Seen {
    /// Notes that `id` is stored at `offset` since `stored_at` (Unix
    /// microseconds); the first copy of an id is the one that counts.
    pub fn record(&mut self, id: u128, offset: u64, stored_at: u64) {
        if let std::collections::hash_map::Entry::Vacant(entry) = self.ids.entry(id) {
            entry.insert((offset, stored_at));
            self.order.push_back((stored_at, id));
        }
    }

    /// The offset of `id`'s stored copy, if it was stored at or after
    /// `since` (Unix microseconds).
    pub fn find(&self, id: u128, since: u64) -> Option<u64> {
        self.ids
            .get(&id)
            .filter(|(_, stored_at)| *stored_at >= since)
            .map(|(offset, _)| *offset)
    }

    /// Forgets ids stored before `since`.
    pub fn expire(&mut self, since: u64) {
        while let Some(&(stored_at, id)) = self.order.front() {
            if stored_at >= since {
                break;
            }
            self.order.pop_front();
            if self.ids.get(&id).is_some_and(|(_, at)| *at == stored_at) {
                self.ids.remove(&id);
            }
        }
    }

    /// After a send of `count` messages stored from `base`: when nothing
    /// else was appended since the last read, the next read starts past
    /// them (they are recorded already).
    pub fn sent(&mut self, base: u64, count: u64) {
        if self.next == Some(base) {
            self.next = Some(base + count);
        }
    }

    /// Starts over: the partition's log is not what was read (Iggy lost
    /// or purged messages).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The ids seen per partition, on this replica.
pub struct Idempotency {
    window: Duration,
    partitions: Mutex<HashMap<PartitionKey, Arc<tokio::sync::Mutex<Seen>>>>,
}

/// A partition as a publish names it.
type PartitionKey = (String, String, u32);

impl Idempotency {
    /// Ids count as stored for `window` after Iggy stored them.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            partitions: Mutex::default(),
        }
    }

    /// What this replica has seen of one partition; lock it across the
    /// check and the send, so one replica sends a partition's idempotent
    /// messages one send at a time.
    pub fn partition(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        partition: u32,
    ) -> Arc<tokio::sync::Mutex<Seen>> {
        let key = (stream.to_string(), topic.to_string(), partition);
        let mut partitions = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if partitions.len() >= MAX_PARTITIONS && !partitions.contains_key(&key) {
            partitions.clear();
        }
        Arc::clone(partitions.entry(key).or_default())
    }

    /// The start of the window at `now` (Unix microseconds).
    pub fn since(&self, now: u64) -> u64 {
        now.saturating_sub(u64::try_from(self.window.as_micros()).unwrap_or(u64::MAX))
    }

    /// Whether the message at `offset` of `partition` still has `id` (a
    /// log that Iggy lost messages of may hold another one there now).
    pub async fn holds(
        &self,
        pool: &IggyPool,
        stream: &Identifier,
        topic: &Identifier,
        partition: u32,
        offset: u64,
        id: u128,
    ) -> Result<bool, GatewayError> {
        let polled = pool
            .peek(stream, topic, partition, PollingStrategy::offset(offset), 1)
            .await?;
        Ok(polled
            .messages
            .first()
            .is_some_and(|message| message.header.offset == offset && message.header.id == id))
    }

    /// Reads what `partition` gained since `seen` last looked, recording
    /// the ids stored within the window.
    pub async fn catch_up(
        &self,
        pool: &IggyPool,
        stream: &Identifier,
        topic: &Identifier,
        partition: u32,
        seen: &mut Seen,
    ) -> Result<(), GatewayError> {
        let since = self.since(IggyTimestamp::now().as_micros());
        seen.expire(since);
        loop {
            let strategy = match seen.next {
                Some(offset) => PollingStrategy::offset(offset),
                None => PollingStrategy::timestamp(IggyTimestamp::from(since)),
            };
            let polled = pool
                .peek(stream, topic, partition, strategy, CATCH_UP_BATCH)
                .await?;
            let Some(last) = polled.messages.last().map(|m| m.header.offset) else {
                // Nothing new. A log that ends before what was read lost
                // messages: read the window again.
                if seen
                    .next
                    .is_some_and(|next| next > polled.current_offset + 1)
                {
                    seen.reset();
                    continue;
                }
                return Ok(());
            };
            if seen.next.is_some_and(|next| last < next) {
                seen.reset();
                continue;
            }
            for message in &polled.messages {
                if message.header.timestamp >= since {
                    seen.record(
                        message.header.id,
                        message.header.offset,
                        message.header.timestamp,
                    );
                }
            }
            seen.next = Some(last + 1);
            if polled.messages.len() < CATCH_UP_BATCH as usize {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_counts_within_the_window_and_its_first_copy_wins() {
        let mut seen = Seen::default();
        seen.record(7, 10, 1_000);
        seen.record(7, 12, 1_500);
        seen.record(8, 11, 2_000);
        assert_eq!(seen.find(7, 500), Some(10), "the first copy");
        assert_eq!(seen.find(7, 1_001), None, "stored before the window");
        assert_eq!(seen.find(9, 0), None);
        seen.expire(1_200);
        assert_eq!(seen.find(7, 0), None, "expired");
        assert_eq!(seen.find(8, 0), Some(11));
    }

    #[test]
    fn a_send_moves_the_next_read_only_when_nothing_came_between() {
        let mut seen = Seen {
            next: Some(5),
            ..Seen::default()
        };
        seen.sent(5, 3);
        assert_eq!(seen.next, Some(8));
        seen.sent(10, 2);
        assert_eq!(seen.next, Some(8), "offsets 8 and 9 are someone else's");
        let mut cold = Seen::default();
        cold.sent(0, 1);
        assert_eq!(cold.next, None);
    }

    #[test]
    fn the_window_starts_its_length_before_now() {
        let idempotency = Idempotency::new(Duration::from_secs(2));
        assert_eq!(idempotency.since(5_000_000), 3_000_000);
        assert_eq!(idempotency.since(1), 0);
    }
}
