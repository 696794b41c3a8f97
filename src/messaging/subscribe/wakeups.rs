//! Wakes idle subscriptions of a topic as soon as this gateway publishes to
//! it, so delivery does not wait for the topic's watcher. Messages from
//! other producers are found by the watcher.

use iggy::prelude::Identifier;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError, Weak},
};
use tokio::sync::Notify;

/// Subscriptions waiting for news, by `stream/topic` as clients name them.
#[derive(Default)]
pub struct Wakeups {
    waiting: Mutex<HashMap<String, Vec<Weak<Notify>>>>,
}

/// The key of a topic named as `stream`/`topic` (by name or by id).
pub fn key(stream: &Identifier, topic: &Identifier) -> String {
    format!("{stream}/{topic}")
}

impl Wakeups {
    /// Registers `notify` under every way a publisher may name the topic.
    /// It is dropped from the registry once the subscription drops it.
    pub fn register(&self, keys: &[String], notify: &Arc<Notify>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            let list = waiting.entry(key.clone()).or_default();
            // Ended subscriptions are pruned when the list doubles (and at
            // every wake), so opening stays cheap with thousands on a topic.
            if list.len().is_power_of_two() {
                list.retain(|weak| weak.strong_count() > 0);
            }
            list.push(Arc::downgrade(notify));
        }
    }

    /// Wakes every subscription of the topic.
    pub fn wake(&self, stream: &Identifier, topic: &Identifier) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = waiting.get_mut(&key(stream, topic)) {
            list.retain(|weak| match weak.upgrade() {
                Some(notify) => {
                    notify.notify_one();
                    true
                }
                None => false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_publish_wakes_its_topic_under_any_name() {
        let wakeups = Wakeups::default();
        let notify = Arc::new(Notify::new());
        let by_name = Identifier::named("orders").expect("id");
        let by_id = Identifier::numeric(3).expect("id");
        let topic = Identifier::named("created").expect("id");
        wakeups.register(&[key(&by_name, &topic), key(&by_id, &topic)], &notify);
        wakeups.wake(&by_id, &topic);
        notify.notified().await; // the stored permit completes at once
        drop(notify);
        wakeups.wake(&by_name, &topic); // a dropped subscription is pruned, not woken
        assert!(
            wakeups
                .waiting
                .lock()
                .expect("lock")
                .get(&key(&by_name, &topic))
                .is_none_or(Vec::is_empty)
        );
    }
}
