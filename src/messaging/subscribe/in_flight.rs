//! What a manual-ack subscription has delivered and not yet had acknowledged,
//! bounded by message and byte limits.

use std::collections::{BTreeMap, VecDeque};

/// Delivered-but-unacknowledged messages, per partition in offset order.
#[derive(Debug, Default)]
pub struct InFlight {
    partitions: BTreeMap<u32, VecDeque<(u64, u64)>>,
    messages: u64,
    bytes: u64,
}

impl InFlight {
    /// Records a delivered message of `bytes` payload bytes.
    pub fn add(&mut self, partition: u32, offset: u64, bytes: u64) {
        self.partitions
            .entry(partition)
            .or_default()
            .push_back((offset, bytes));
        self.messages += 1;
        self.bytes += bytes;
    }

    /// Releases every message of `partition` up to and including `offset`.
    pub fn release(&mut self, partition: u32, offset: u64) {
        if let Some(queue) = self.partitions.get_mut(&partition) {
            while queue.front().is_some_and(|(first, _)| *first <= offset) {
                if let Some((_, bytes)) = queue.pop_front() {
                    self.messages -= 1;
                    self.bytes -= bytes;
                }
            }
        }
    }

    /// Forgets a partition (no longer read): its messages will be delivered
    /// again to whoever reads it next.
    pub fn forget(&mut self, partition: u32) {
        if let Some(queue) = self.partitions.remove(&partition) {
            for (_, bytes) in queue {
                self.messages -= 1;
                self.bytes -= bytes;
            }
        }
    }

    /// The oldest message of `partition` in flight, if any.
    pub fn oldest(&self, partition: u32) -> Option<u64> {
        self.partitions
            .get(&partition)
            .and_then(|queue| queue.front())
            .map(|(offset, _)| *offset)
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
}
