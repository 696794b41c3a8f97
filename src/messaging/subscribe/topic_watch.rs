//! One watcher per topic for all its idle subscriptions on this replica: it
//! asks Iggy for the topic's partition ends over the pool, quickly after a
//! change and backing off to the idle limit while nothing changes, and
//! publishes them. An idle subscription waits for an end past its position
//! instead of polling Iggy itself, so idle cost is per topic, not per
//! subscriber, and messages from any producer (another replica, a native
//! client) are found.

use crate::{iggy::IggyPool, metrics};
use iggy::prelude::{Identifier, TopicClient, TopicDetails};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle};

/// The offset of the last message of each partition (`None`: no messages);
/// no partitions once the topic is gone.
pub type LogEnds = BTreeMap<u32, Option<u64>>;

/// What the watcher has seen: `None` until its first read.
pub type Ends = Option<Arc<LogEnds>>;

/// The first pause after a change; doubles up to the idle limit.
const FIRST_BACKOFF: Duration = Duration::from_millis(1);

/// The topics watched on this replica.
pub struct TopicWatches {
    pool: IggyPool,
    max_backoff: Duration,
    watches: Mutex<HashMap<(u32, u32), Weak<TopicWatch>>>,
}

/// A topic's watcher, shared by its subscriptions; it stops with the last.
pub struct TopicWatch {
    ends: watch::Receiver<Ends>,
    task: JoinHandle<()>,
}

impl Drop for TopicWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TopicWatch {
    /// The partition ends as last read, to wait on.
    pub fn ends(&self) -> watch::Receiver<Ends> {
        self.ends.clone()
    }
}

impl TopicWatches {
    /// Watches over `pool`, backing off to `max_backoff` while idle.
    pub fn new(pool: IggyPool, max_backoff: Duration) -> Self {
        Self {
            pool,
            max_backoff,
            watches: Mutex::default(),
        }
    }

    /// The watcher of the topic with these numeric ids, started if none runs.
    pub fn watch(&self, stream_id: u32, topic_id: u32) -> Arc<TopicWatch> {
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        watches.retain(|_, watch| watch.strong_count() > 0);
        if let Some(watch) = watches.get(&(stream_id, topic_id)).and_then(Weak::upgrade) {
            return watch;
        }
        let (sender, ends) = watch::channel(None);
        let task = tokio::spawn(run(
            self.pool.clone(),
            stream_id,
            topic_id,
            self.max_backoff,
            sender,
        ));
        let watch = Arc::new(TopicWatch { ends, task });
        watches.insert((stream_id, topic_id), Arc::downgrade(&watch));
        watch
    }
}

/// The partition ends a topic's details give.
pub fn log_ends(details: &TopicDetails) -> LogEnds {
    details
        .partitions
        .iter()
        .map(|p| (p.id, (p.messages_count > 0).then_some(p.current_offset)))
        .collect()
}

async fn run(
    pool: IggyPool,
    stream_id: u32,
    topic_id: u32,
    max_backoff: Duration,
    sender: watch::Sender<Ends>,
) {
    let (Ok(stream), Ok(topic)) = (
        Identifier::numeric(stream_id),
        Identifier::numeric(topic_id),
    ) else {
        return;
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        let (stream, topic) = (stream.clone(), topic.clone());
        metrics::count_subscription_poll();
        let read = pool
            .call(move |client| async move { client.get_topic(&stream, &topic).await })
            .await;
        let ends: Option<LogEnds> = match read {
            Ok(Some(details)) => Some(log_ends(&details)),
            // The topic is gone: no partitions, so its subscriptions look
            // again and end.
            Ok(None) => Some(LogEnds::new()),
            // Iggy is unreachable: the subscriptions meet it on their own.
            Err(_) => None,
        };
        match ends {
            Some(ends) if sender.borrow().as_deref() != Some(&ends) => {
                sender.send_replace(Some(Arc::new(ends)));
                backoff = FIRST_BACKOFF;
            }
            _ => backoff = (backoff * 2).min(max_backoff),
        }
        tokio::time::sleep(backoff).await;
    }
}
