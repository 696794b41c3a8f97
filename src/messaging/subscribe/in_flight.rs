//! What a manual-ack subscription has delivered and not yet had acknowledged,
//! bounded by message and byte limits.

use std::collections::{BTreeMap, VecDeque};

/// Delivered-but-unacknowledged messages, per partition in offset order;
/// a message settled on its own (nacked into redelivery) stays in its place,
/// marked, until the ones before it are acknowledged too.
#[derive(Debug, Default)]
pub struct InFlight {
    partitions: BTreeMap<u32, VecDeque<Entry>>,
    messages: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Entry {
    offset: u64,
    bytes: u64,
    settled: bool,
}

impl InFlight {
    /// Records a delivered message of `bytes` payload bytes.
    pub fn add(&mut self, partition: u32, offset: u64, bytes: u64) {
        self.partitions
            .entry(partition)
            .or_default()
            .push_back(Entry {
                offset,
                bytes,
                settled: false,
            });
        self.messages += 1;
        self.bytes += bytes;
    }

    /// Releases every message of `partition` up to and including `offset`,
    /// and the settled ones right after them; returns the last offset
    /// released, up to which the partition is done.
    pub fn release(&mut self, partition: u32, offset: u64) -> Option<u64> {
        let queue = self.partitions.get_mut(&partition)?;
        let mut last = None;
        while let Some(first) = queue.front() {
            if first.offset > offset && !first.settled {
                break;
            }
            if let Some(entry) = queue.pop_front() {
                if !entry.settled {
                    self.messages -= 1;
                    self.bytes -= entry.bytes;
                }
                last = Some(entry.offset);
            }
        }
        last
    }

    /// Settles one message of `partition` on its own: its room is free at
    /// once. Returns the offset up to which the partition is done, when
    /// that moved (the message was the oldest in flight); `None` otherwise,
    /// and for a message not in flight.
    pub fn settle(&mut self, partition: u32, offset: u64) -> Option<u64> {
        let queue = self.partitions.get_mut(&partition)?;
        let at = queue
            .binary_search_by_key(&offset, |entry| entry.offset)
            .ok()?;
        let entry = &mut queue[at];
        if entry.settled {
            return None;
        }
        entry.settled = true;
        self.messages -= 1;
        self.bytes -= entry.bytes;
        if at != 0 {
            return None;
        }
        let mut last = None;
        while queue.front().is_some_and(|entry| entry.settled) {
            last = queue.pop_front().map(|entry| entry.offset);
        }
        last
    }

    /// Whether `offset` of `partition` is in flight and not settled.
    pub fn holds(&self, partition: u32, offset: u64) -> bool {
        self.partitions.get(&partition).is_some_and(|queue| {
            queue
                .binary_search_by_key(&offset, |entry| entry.offset)
                .is_ok_and(|at| !queue[at].settled)
        })
    }

    /// Forgets a partition (no longer read): its messages will be delivered
    /// again to whoever reads it next.
    pub fn forget(&mut self, partition: u32) {
        if let Some(queue) = self.partitions.remove(&partition) {
            for entry in queue.into_iter().filter(|entry| !entry.settled) {
                self.messages -= 1;
                self.bytes -= entry.bytes;
            }
        }
    }

    /// The oldest message of `partition` in flight, if any.
    pub fn oldest(&self, partition: u32) -> Option<u64> {
        self.partitions
            .get(&partition)
            .and_then(|queue| queue.front())
            .map(|entry| entry.offset)
    }

    /// The partitions with messages in flight.
    pub fn partitions(&self) -> Vec<u32> {
        self.partitions
            .iter()
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(partition, _)| *partition)
            .collect()
    }

    /// How many more messages may be delivered under `max_messages`.
    pub fn room(&self, max_messages: u32) -> u32 {
        u32::try_from(u64::from(max_messages).saturating_sub(self.messages)).unwrap_or(u32::MAX)
    }

    /// True when no more may be delivered until something is acknowledged.
    pub fn is_full(&self, max_messages: u32, max_bytes: u64) -> bool {
        self.messages >= u64::from(max_messages) || self.bytes >= max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_free_room_up_to_the_offset() {
        let mut in_flight = InFlight::default();
        for offset in 0..5 {
            in_flight.add(0, offset, 10);
        }
        in_flight.add(1, 0, 10);
        assert!(in_flight.is_full(6, 1_000));
        in_flight.release(0, 2);
        assert_eq!(in_flight.oldest(0), Some(3));
        assert!(!in_flight.is_full(4, 1_000));
        assert!(in_flight.is_full(3, 1_000));
        assert!(in_flight.is_full(100, 30), "30 bytes still in flight");
        in_flight.forget(1);
        in_flight.release(0, 10);
        assert!(!in_flight.is_full(1, 1));
    }

    #[test]
    fn a_message_settled_on_its_own_frees_room_and_waits_for_those_before_it() {
        let mut in_flight = InFlight::default();
        for offset in 10..15 {
            in_flight.add(0, offset, 10);
        }
        assert_eq!(in_flight.settle(0, 12), None, "10 and 11 are still out");
        assert!(!in_flight.holds(0, 12) && in_flight.holds(0, 11));
        assert_eq!(in_flight.settle(0, 12), None, "settled once");
        assert!(!in_flight.is_full(5, 50), "its room is free");
        assert_eq!(in_flight.settle(0, 99), None, "never delivered");
        assert_eq!(in_flight.settle(0, 10), Some(10));
        assert_eq!(in_flight.oldest(0), Some(11));
        assert_eq!(
            in_flight.release(0, 11),
            Some(12),
            "11 acked, 12 was settled"
        );
        assert_eq!(in_flight.oldest(0), Some(13));
        assert_eq!(in_flight.settle(0, 14), None);
        assert_eq!(in_flight.settle(0, 13), Some(14));
        assert_eq!(in_flight.oldest(0), None);
        assert!(!in_flight.is_full(1, 1));
    }
}
