//! Read-ahead for a subscription to one partition that is catching up.
//! While Iggy keeps answering polls in full, the reader is behind the log,
//! and the next poll asks for several of the client's batches at once: one
//! Iggy round trip then feeds several batches (the round trip, not the
//! bytes, was what held a catching-up reader back). How far it reads ahead
//! is bounded in bytes, judged by the size of the messages just read.

/// Client batches one poll may fetch while catching up.
const BATCHES_PER_POLL: u32 = 4;
/// The most bytes one read-ahead poll should bring in.
const MAX_POLL_BYTES: u64 = 8 << 20;

/// Whether the last poll came back full, and how large its messages were.
#[derive(Debug, Default)]
pub struct ReadAhead {
    /// Set while catching up: the mean size of the last poll's messages.
    message_bytes: Option<u64>,
}

impl ReadAhead {
    /// How many messages the next poll asks for, for delivery in batches of
    /// `batch_size`: one batch, or several while catching up.
    pub fn count(&self, batch_size: u32) -> u32 {
        let Some(message_bytes) = self.message_bytes else {
            return batch_size;
        };
        let within_bytes = u32::try_from(MAX_POLL_BYTES / message_bytes.max(1)).unwrap_or(u32::MAX);
        batch_size
            .saturating_mul(BATCHES_PER_POLL)
            .min(within_bytes)
            .max(batch_size)
    }

    /// Records a poll that asked for `asked` messages and got `got`,
    /// carrying `bytes` in all.
    pub fn note(&mut self, asked: u32, got: usize, bytes: u64) {
        let full = got > 0 && got >= asked as usize;
        self.message_bytes = full.then(|| bytes / got as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_several_batches_ahead_only_while_polls_come_back_full() {
        let mut ahead = ReadAhead::default();
        assert_eq!(
            ahead.count(1000),
            1000,
            "a new subscription reads one batch"
        );
        ahead.note(1000, 1000, 1000 * 1024);
        assert_eq!(
            ahead.count(1000),
            4000,
            "behind the log: four batches per poll"
        );
        ahead.note(4000, 2500, 2500 * 1024);
        assert_eq!(ahead.count(1000), 1000, "caught up: back to one batch");
    }

    #[test]
    fn large_messages_limit_how_far_it_reads_ahead() {
        let mut ahead = ReadAhead::default();
        ahead.note(100, 100, 100 << 20); // 1 MiB messages
        assert_eq!(ahead.count(100), 100, "never less than one batch");
        ahead.note(100, 100, 100 * (64 << 10)); // 64 KiB messages
        assert_eq!(ahead.count(100), 128, "8 MiB at most");
    }
}
