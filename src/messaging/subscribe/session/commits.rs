//! How a subscription stores its consumer's offsets: after the transport
//! takes a batch (auto-ack), on an ack (manual), and when another replica
//! took the ack; never moving a stored offset back, and never past what
//! the log still holds.

use super::{AckCommand, End, Session};
use crate::{
    error::GatewayError,
    messaging::subscribe::{
        self,
        reader::{is_assignment_stale, is_past_log_end},
        spec::AckMode,
    },
};
use std::collections::BTreeMap;
use tokio::time::Instant;
use tracing::warn;

impl Session {
    /// Stores the offsets of batches the transport has taken (auto-ack).
    pub(super) async fn apply_commits(&mut self) -> Result<(), End> {
        let mut latest: BTreeMap<u32, u64> = BTreeMap::new();
        while let Ok(commit) = self.wiring.commits.try_recv() {
            for (partition, offset) in commit {
                let entry = latest.entry(partition).or_insert(offset);
                *entry = (*entry).max(offset);
            }
        }
        for (partition, offset) in latest {
            self.store(partition, offset).await?;
        }
        Ok(())
    }

    async fn store(&mut self, partition: u32, offset: u64) -> Result<(), End> {
        if self
            .committed
            .get(&partition)
            .is_some_and(|stored| *stored >= offset)
        {
            return Ok(());
        }
        match self.reader.commit(partition, offset).await {
            Ok(()) => {
                self.committed.insert(partition, offset);
                Ok(())
            }
            // The partition moved to another member: its offset is theirs now.
            Err(error) if is_assignment_stale(&error) => {
                self.refresh_at = Instant::now();
                Ok(())
            }
            // The log was truncated since the delivery: the messages are gone
            // and nothing is left to store. Storing a lower offset instead
            // would mark new, undelivered messages as consumed.
            Err(error) if is_past_log_end(&error) => {
                // Confirmed by the log's bounds, or it is not a truncation:
                // end the stream with the error rather than drop the offset.
                let log_end = self.reader.log_end(partition).await?;
                if log_end.is_some_and(|end| offset <= end) {
                    return Err(error.into());
                }
                warn!(
                    subscription = %self.id,
                    partition,
                    offset,
                    "offset not stored: the log no longer reaches it (purged, or lost in an Iggy crash)"
                );
                self.committed.remove(&partition);
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Releases what was acknowledged through other replicas: they store a
    /// named consumer's offset in Iggy, and a group's in its ack mailbox,
    /// which [`Reader::stored_offset`] reads with the group's own. A group
    /// member then stores the group's offset itself (only a member may).
    pub(super) async fn learn_acks_taken_elsewhere(&mut self) -> Result<(), End> {
        for partition in self.in_flight.partitions() {
            let stored = match self.reader.stored_offset(partition).await {
                Ok(Some(stored)) => stored,
                Ok(None) => continue,
                Err(error) if is_assignment_stale(&error) => {
                    self.refresh_at = Instant::now();
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let delivered = self.delivered.get(&partition).copied();
            if delivered.is_none_or(|last| stored > last) {
                // Stored by someone else beyond what this stream delivered
                // (another subscription of the same consumer): not ours.
                continue;
            }
            if self.reader.is_member() {
                self.store(partition, stored).await?;
            } else {
                self.note_stored(partition, stored);
            }
            // Messages settled on their own right after it are done too.
            if let Some(done) = self.in_flight.release(partition, stored)
                && done > stored
            {
                self.store(partition, done).await?;
            }
        }
        Ok(())
    }

    /// Records that Iggy holds `offset` for `partition`.
    fn note_stored(&mut self, partition: u32, offset: u64) {
        let entry = self.committed.entry(partition).or_insert(offset);
        *entry = (*entry).max(offset);
    }

    /// Serves one Ack: only delivered offsets may be acknowledged.
    pub(super) async fn acknowledge(&mut self, command: AckCommand) {
        let result = if command.only {
            self.settled(command.partition, command.offset).await
        } else {
            self.acknowledged(command.partition, command.offset).await
        };
        let _ = command.reply.send(result);
    }

    /// Settles one message in flight on its own; the stored offset moves
    /// once every message before it is done.
    async fn settled(&mut self, partition: u32, offset: u64) -> Result<(), GatewayError> {
        if !self.in_flight.holds(partition, offset) {
            return Err(GatewayError::FailedPrecondition {
                reason: "OFFSET_NOT_DELIVERED",
                message: format!("offset {offset} of partition {partition} is not in flight"),
            });
        }
        match self.in_flight.settle(partition, offset) {
            Some(done) => self.stored(partition, done).await,
            None => Ok(()),
        }
    }

    /// Stores `offset` for an ack: the stream's end, not the client's,
    /// when the store fails.
    async fn stored(&mut self, partition: u32, offset: u64) -> Result<(), GatewayError> {
        match self.store(partition, offset).await {
            Ok(()) => Ok(()),
            Err(End::Failed(error)) => Err(error),
            Err(End::ClientGone) => Err(GatewayError::SubscriptionNotFound(self.id.clone())),
        }
    }

    async fn acknowledged(&mut self, partition: u32, offset: u64) -> Result<(), GatewayError> {
        if self.spec.ack_mode != AckMode::Manual {
            return Err(subscribe::not_manual_ack());
        }
        match self.delivered.get(&partition) {
            Some(last) if offset <= *last => {}
            Some(last) => {
                return Err(GatewayError::FailedPrecondition {
                    reason: "OFFSET_NOT_DELIVERED",
                    message: format!(
                        "offset {offset} of partition {partition} was not delivered on this subscription (last delivered: {last})"
                    ),
                });
            }
            None => {
                return Err(GatewayError::FailedPrecondition {
                    reason: "OFFSET_NOT_DELIVERED",
                    message: format!(
                        "nothing of partition {partition} was delivered on this subscription"
                    ),
                });
            }
        }
        // Another replica may have stored a later offset for this consumer:
        // an ack never moves the stored offset back.
        if self
            .committed
            .get(&partition)
            .is_none_or(|known| *known < offset)
        {
            match self.reader.stored_offset(partition).await {
                Ok(Some(stored)) => self.note_stored(partition, stored),
                Ok(None) => {}
                Err(error) => return Err(error),
            }
        }
        self.stored(partition, offset).await?;
        // Messages settled on their own right after it are done too.
        match self.in_flight.release(partition, offset) {
            Some(done) if done > offset => self.stored(partition, done).await,
            _ => Ok(()),
        }
    }
}
