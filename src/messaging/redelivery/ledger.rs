//! What a Consume stream with redelivery has delivered and not settled:
//! each message's delivery attempt and ack deadline, whether it came from
//! the topic itself or from the retry topic, and what an ack, nack or
//! extension of it does. Pure state; the stream does the Iggy calls.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use tokio::time::Instant;

/// A message as the client names it: its partition and offset in the topic.
pub type Key = (u32, u64);

/// Most recently expired messages remembered, to answer a late ack EXPIRED.
const EXPIRED_REMEMBERED: usize = 10_000;

/// One delivery waiting to be settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// 1 for the first delivery, one more for each redelivery.
    pub attempt: u32,
    /// When it is delivered again unless acked, nacked or extended.
    pub deadline: Instant,
    /// For a copy from the retry topic, its offset there; `None` for the
    /// message in the topic itself.
    pub copy_offset: Option<u64>,
}

/// What an ack changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Acked {
    /// Messages of the topic itself were settled: pass the ack on to the
    /// topic's subscription.
    pub in_topic: bool,
    /// Offsets in the retry topic of the copies it settled.
    pub copies: Vec<u64>,
}

/// Why an ack, nack or extension did not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Not delivered on this stream.
    NotDelivered,
    /// Settled already.
    AlreadySettled,
    /// Its deadline passed; it is being delivered again.
    Expired,
}

/// The deliveries of one stream.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Messages of the topic itself, delivered once.
    first: HashMap<Key, Delivery>,
    /// Copies from the retry topic.
    copies: HashMap<Key, Delivery>,
    deadlines: BTreeSet<(Instant, Key)>,
    /// The last offset delivered of each partition (either way).
    last: BTreeMap<u32, u64>,
    expired: VecDeque<Key>,
}

impl Ledger {
    /// Notes a first delivery of `key`, due by `deadline`.
    pub fn delivered(&mut self, key: Key, deadline: Instant) {
        self.note_last(key);
        let delivery = Delivery {
            attempt: 1,
            deadline,
            copy_offset: None,
        };
        if let Some(old) = self.first.insert(key, delivery) {
            self.deadlines.remove(&(old.deadline, key));
        }
        self.deadlines.insert((deadline, key));
    }

    /// Notes a delivery of a copy (at `copy_offset` in the retry topic) of
    /// `key`; false, and nothing noted, when a copy of `key` is out already
    /// (the retry topic holds it twice): settle this one unseen.
    pub fn delivered_copy(
        &mut self,
        key: Key,
        attempt: u32,
        copy_offset: u64,
        deadline: Instant,
    ) -> bool {
        if self.copies.contains_key(&key) {
            return false;
        }
        // Out again: an ack of it now settles this copy.
        self.expired.retain(|expired| *expired != key);
        self.note_last(key);
        self.copies.insert(
            key,
            Delivery {
                attempt,
                deadline,
                copy_offset: Some(copy_offset),
            },
        );
        self.deadlines.insert((deadline, key));
        true
    }

    fn note_last(&mut self, (partition, offset): Key) {
        let last = self.last.entry(partition).or_insert(offset);
        *last = (*last).max(offset);
    }

    /// A cumulative ack: everything of `partition` up to and including
    /// `offset` is done, first deliveries and copies alike.
    pub fn ack(&mut self, partition: u32, offset: u64) -> Result<Acked, Miss> {
        let mut acked = Acked::default();
        let done = |key: &Key| key.0 == partition && key.1 <= offset;
        let first: Vec<Key> = self.first.keys().copied().filter(done).collect();
        for key in first {
            if let Some(delivery) = self.first.remove(&key) {
                self.deadlines.remove(&(delivery.deadline, key));
                acked.in_topic = true;
            }
        }
        let copies: Vec<Key> = self.copies.keys().copied().filter(done).collect();
        for key in copies {
            if let Some(delivery) = self.copies.remove(&key) {
                self.deadlines.remove(&(delivery.deadline, key));
                acked.copies.extend(delivery.copy_offset);
            }
        }
        if acked.in_topic || !acked.copies.is_empty() {
            return Ok(acked);
        }
        Err(self.miss((partition, offset)))
    }

    /// Takes `key` out to be delivered again (a nack, or its deadline
    /// passed): the copy when one is out, else the first delivery.
    pub fn take(&mut self, key: Key) -> Result<Delivery, Miss> {
        let delivery = match self.copies.remove(&key) {
            Some(delivery) => delivery,
            None => self.first.remove(&key).ok_or_else(|| self.miss(key))?,
        };
        self.deadlines.remove(&(delivery.deadline, key));
        Ok(delivery)
    }

    /// Puts back what [`Self::take`] took, when delivering it again failed.
    pub fn restore(&mut self, key: Key, delivery: Delivery) {
        let map = if delivery.copy_offset.is_some() {
            &mut self.copies
        } else {
            &mut self.first
        };
        map.insert(key, delivery);
        self.deadlines.insert((delivery.deadline, key));
    }

    /// Moves `key`'s deadline to `deadline`.
    pub fn extend(&mut self, key: Key, deadline: Instant) -> Result<(), Miss> {
        let miss = self.miss(key);
        let delivery = match self.copies.get_mut(&key) {
            Some(delivery) => delivery,
            None => self.first.get_mut(&key).ok_or(miss)?,
        };
        self.deadlines.remove(&(delivery.deadline, key));
        delivery.deadline = deadline;
        self.deadlines.insert((deadline, key));
        Ok(())
    }

    /// Remembers that `key` expired, to answer a late ack or extension.
    pub fn expired(&mut self, key: Key) {
        if self.expired.len() >= EXPIRED_REMEMBERED {
            self.expired.pop_front();
        }
        self.expired.push_back(key);
    }

    /// The earliest deadline, if any delivery is out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// The deliveries whose deadline is at or before `now`, earliest first.
    pub fn due(&self, now: Instant) -> Vec<Key> {
        self.deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, key)| *key)
            .collect()
    }

    /// Why `key` is not out: expired, settled, or never delivered.
    fn miss(&self, key: Key) -> Miss {
        if self.expired.contains(&key) {
            Miss::Expired
        } else if self.last.get(&key.0).is_some_and(|last| key.1 <= *last) {
            Miss::AlreadySettled
        } else {
            Miss::NotDelivered
        }
    }

    /// Messages out, first deliveries and copies.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.first.len() + self.copies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: u64) -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now) + Duration::from_secs(seconds)
    }

    #[test]
    fn a_cumulative_ack_settles_first_deliveries_and_copies_up_to_it() {
        let mut ledger = Ledger::default();
        for offset in 0..4 {
            ledger.delivered((0, offset), at(10));
        }
        ledger.delivered((1, 0), at(10));
        assert!(ledger.delivered_copy((0, 1), 2, 70, at(20)));
        let acked = ledger.ack(0, 2).expect("acked");
        assert!(acked.in_topic);
        assert_eq!(acked.copies, vec![70]);
        assert_eq!(ledger.len(), 2, "(0, 3) and (1, 0) are out");
        assert_eq!(ledger.ack(0, 2), Err(Miss::AlreadySettled));
        assert_eq!(
            ledger.ack(0, 9),
            Ok(Acked {
                in_topic: true,
                copies: vec![]
            })
        );
        assert_eq!(ledger.ack(0, 10), Err(Miss::NotDelivered));
    }

    #[test]
    fn a_nacked_message_is_taken_copy_first_and_can_be_put_back() {
        let mut ledger = Ledger::default();
        ledger.delivered((0, 5), at(10));
        assert!(ledger.delivered_copy((0, 5), 3, 12, at(30)));
        assert!(
            !ledger.delivered_copy((0, 5), 3, 13, at(30)),
            "a second copy of one message"
        );
        let copy = ledger.take((0, 5)).expect("copy");
        assert_eq!((copy.attempt, copy.copy_offset), (3, Some(12)));
        let first = ledger.take((0, 5)).expect("first");
        assert_eq!((first.attempt, first.copy_offset), (1, None));
        assert_eq!(ledger.take((0, 5)), Err(Miss::AlreadySettled));
        ledger.restore((0, 5), first);
        assert_eq!(ledger.take((0, 5)), Ok(first));
        assert_eq!(ledger.take((0, 6)), Err(Miss::NotDelivered));
    }

    #[test]
    fn deadlines_come_due_in_order_and_extensions_move_them() {
        let mut ledger = Ledger::default();
        ledger.delivered((0, 0), at(10));
        ledger.delivered((0, 1), at(5));
        ledger.delivered((0, 2), at(20));
        assert_eq!(ledger.next_deadline(), Some(at(5)));
        assert_eq!(ledger.due(at(10)), vec![(0, 1), (0, 0)]);
        ledger.extend((0, 1), at(40)).expect("extended");
        assert_eq!(ledger.due(at(10)), vec![(0, 0)]);
        assert_eq!(ledger.extend((0, 9), at(40)), Err(Miss::NotDelivered));
        assert_eq!(ledger.extend((0, 0), at(40)).map(|_| ()), Ok(()));
        let taken = ledger.take((0, 0)).expect("due");
        ledger.expired((0, 0));
        assert_eq!(taken.attempt, 1);
        assert_eq!(ledger.ack(0, 0), Err(Miss::Expired));
        assert_eq!(ledger.next_deadline(), Some(at(20)));
        assert!(ledger.delivered_copy((0, 0), 2, 3, at(50)));
        assert!(ledger.ack(0, 0).is_ok(), "the copy is out now");
        assert_eq!(ledger.ack(0, 0), Err(Miss::AlreadySettled));
    }
}
