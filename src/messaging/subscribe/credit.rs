//! Flow-control credit that a Consume client grants: the stream sends only
//! as many messages (and payload bytes) as granted, and waits for more.

use tokio::sync::mpsc;

/// More messages and bytes the client allows.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub messages: u64,
    pub bytes: u64,
}

/// What a stream may still send, and where further grants arrive.
#[derive(Debug)]
pub struct Credit {
    messages: u64,
    /// `None`: no byte limit.
    bytes: Option<u64>,
    /// `None` once the client stopped sending.
    grants: Option<mpsc::Receiver<Grant>>,
}

impl Credit {
    /// Credit of `initial` (bytes 0: no byte limit), topped up by `grants`.
    pub fn new(initial: Grant, grants: mpsc::Receiver<Grant>) -> Self {
        Self {
            messages: initial.messages,
            bytes: (initial.bytes > 0).then_some(initial.bytes),
            grants: Some(grants),
        }
    }

    /// True when nothing more may be sent until the client grants more.
    pub fn is_exhausted(&self) -> bool {
        self.messages == 0 || self.bytes == Some(0)
    }

    /// How many more messages may be sent, at most `limit`.
    pub fn room(&self, limit: u32) -> u32 {
        u32::try_from(self.messages.min(u64::from(limit))).unwrap_or(limit)
    }

    /// Takes `messages` and `bytes` off the credit (a batch may go past the
    /// byte credit by its last message).
    pub fn spend(&mut self, messages: u64, bytes: u64) {
        self.messages = self.messages.saturating_sub(messages);
        if let Some(left) = &mut self.bytes {
            *left = left.saturating_sub(bytes);
        }
    }

    /// Adds a grant.
    pub fn add(&mut self, grant: Grant) {
        self.messages = self.messages.saturating_add(grant.messages);
        if let Some(left) = &mut self.bytes {
            *left = left.saturating_add(grant.bytes);
        }
    }

    /// The next grant; never ready once the client stopped sending.
    pub async fn next_grant(&mut self) -> Grant {
        if let Some(grants) = &mut self.grants {
            if let Some(grant) = grants.recv().await {
                return grant;
            }
            self.grants = None;
        }
        std::future::pending().await
    }
}

/// The next grant of an optional credit; never ready without one.
pub async fn next_grant(credit: &mut Option<Credit>) -> Grant {
    match credit {
        Some(credit) => credit.next_grant().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_is_spent_and_granted() {
        let (_grants, receiver) = mpsc::channel(1);
        let mut credit = Credit::new(
            Grant {
                messages: 3,
                bytes: 100,
            },
            receiver,
        );
        assert_eq!(credit.room(10), 3);
        credit.spend(2, 60);
        assert!(!credit.is_exhausted());
        credit.spend(1, 10);
        assert!(credit.is_exhausted(), "no messages left");
        credit.add(Grant {
            messages: 5,
            bytes: 0,
        });
        assert_eq!(credit.room(2), 2);
        credit.spend(1, 50);
        assert!(credit.is_exhausted(), "bytes spent past the credit");
    }

    #[test]
    fn zero_bytes_means_no_byte_limit() {
        let (_grants, receiver) = mpsc::channel(1);
        let mut credit = Credit::new(
            Grant {
                messages: 2,
                bytes: 0,
            },
            receiver,
        );
        credit.spend(1, u64::MAX);
        assert!(!credit.is_exhausted());
    }
}
