//! Where a message goes: the partition for a balanced, explicit or keyed
//! publish, computed by the gateway from a cached partition count. Poll
//! reads the same cache for a topic's ids and partitions.
//!
//! Keys are hashed exactly as Iggy's SDK producers hash them (XXH32, seed 0,
//! modulo the partition count), so gateway and native producers that share a
//! topic put one key on one partition.

use crate::{
    error::{GatewayError, not_found},
    iggy::IggyPool,
    proto::{self, partitioning::Kind},
    validate::FieldPath,
};
use bytes::Bytes;
use iggy::prelude::{Identifier, StreamClient, TopicClient};
use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// Longest message key Iggy accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// Most topics whose partition counts are cached; the cache starts over
/// beyond it, so memory stays bounded however many topics are published to.
const MAX_CACHED_TOPICS: usize = 10_000;

/// How one entry's partition is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Round-robin over the partitions.
    Balanced,
    /// This partition.
    Partition(u32),
    /// The partition of this key.
    Key(Bytes),
}

impl Route {
    /// The route a request field asks for; `default` when the field is unset.
    pub fn parse(
        field: &FieldPath<'_>,
        partitioning: Option<&proto::Partitioning>,
        default: &Route,
    ) -> Result<Self, GatewayError> {
        match partitioning.and_then(|p| p.kind.as_ref()) {
            None => Ok(default.clone()),
            Some(Kind::Balanced(())) => Ok(Self::Balanced),
            Some(Kind::PartitionId(id)) => Ok(Self::Partition(*id)),
            Some(Kind::Key(key)) if key.is_empty() || key.len() > MAX_KEY_BYTES => {
                Err(GatewayError::invalid(
                    field.field("key"),
                    format!("must be 1-{MAX_KEY_BYTES} bytes, got {}", key.len()),
                ))
            }
            Some(Kind::Key(key)) => Ok(Self::Key(key.clone())),
        }
    }

    /// True when the partition depends on the topic's partition count.
    pub fn needs_count(&self) -> bool {
        !matches!(self, Self::Partition(_))
    }
}

/// The partition a key maps to among `count` partitions, as Iggy's SDK
/// computes it.
pub fn key_partition(key: &[u8], count: u32) -> u32 {
    iggy_common::calculate_32(key) % count.max(1)
}

/// Caches each topic's ids and partition count, and keeps the balanced
/// rotation.
pub struct PartitionRouter {
    ttl: Duration,
    topics: Mutex<HashMap<String, TopicState>>,
}

/// What the gateway caches of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    /// The stream's numeric id.
    pub stream_id: u32,
    /// The topic's numeric id.
    pub topic_id: u32,
    /// How many partitions the topic has.
    pub partitions: u32,
}

struct TopicState {
    /// None until a lookup filled it (a balanced route may come first).
    info: Option<TopicInfo>,
    read_at: Instant,
    next_balanced: u32,
}

impl PartitionRouter {
    /// A router whose cached counts are trusted for `ttl`. Changes made
    /// through this gateway are seen at once; changes made directly in Iggy
    /// within `ttl`, and at once when a send hits a removed partition.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            topics: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets every cached count (partitions or topics changed).
    pub fn invalidate_all(&self) {
        self.lock().clear();
    }

    /// The topic's partition count, from the cache unless `refresh`.
    pub async fn partition_count(
        &self,
        pool: &IggyPool,
        stream: &Identifier,
        topic: &Identifier,
        refresh: bool,
    ) -> Result<u32, GatewayError> {
        Ok(self.topic(pool, stream, topic, refresh).await?.partitions)
    }

    /// The topic's ids and partition count, from the cache unless
    /// `refresh`; a miss costs one pooled call (stream, then topic).
    pub async fn topic(
        &self,
        pool: &IggyPool,
        stream: &Identifier,
        topic: &Identifier,
        refresh: bool,
    ) -> Result<TopicInfo, GatewayError> {
        let key = topic_key(stream, topic);
        if !refresh
            && let Some(state) = self.lock().get(&key)
            && let Some(info) = state.info
            && state.read_at.elapsed() < self.ttl
        {
            return Ok(info);
        }
        let (stream, topic) = (stream.clone(), topic.clone());
        let info = pool
            .call(move |client| async move {
                let stream_details = client
                    .get_stream(&stream)
                    .await?
                    .ok_or_else(|| not_found::stream(&stream))?;
                let topic_details = client
                    .get_topic(&stream, &topic)
                    .await?
                    .ok_or_else(|| not_found::topic(&stream, &topic))?;
                Ok(TopicInfo {
                    stream_id: stream_details.id,
                    topic_id: topic_details.id,
                    partitions: topic_details.partitions_count,
                })
            })
            .await?;
        let mut topics = self.lock();
        if topics.len() >= MAX_CACHED_TOPICS && !topics.contains_key(&key) {
            topics.clear();
        }
        let state = topics.entry(key).or_insert(TopicState {
            info: None,
            read_at: Instant::now(),
            next_balanced: 0,
        });
        state.info = Some(info);
        state.read_at = Instant::now();
        Ok(info)
    }

    /// The partition for `route` in a topic of `count` partitions. Balanced
    /// routes take the next partition of the topic's rotation.
    pub fn partition(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        route: &Route,
        count: u32,
    ) -> u32 {
        match route {
            Route::Partition(id) => *id,
            Route::Key(key) => key_partition(key, count),
            Route::Balanced => {
                let mut topics = self.lock();
                let state = topics
                    .entry(topic_key(stream, topic))
                    .or_insert(TopicState {
                        info: None,
                        read_at: Instant::now(),
                        next_balanced: 0,
                    });
                let partition = state.next_balanced % count.max(1);
                state.next_balanced = state.next_balanced.wrapping_add(1);
                partition
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TopicState>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn topic_key(stream: &Identifier, topic: &Identifier) -> String {
    format!("{stream}/{topic}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Identifier, Identifier) {
        (
            Identifier::named("s").expect("id"),
            Identifier::named("t").expect("id"),
        )
    }

    #[test]
    fn keys_land_where_the_sdk_puts_them() {
        // XXH32 with seed 0, as iggy's SDK resolves `Partitioning::messages_key`.
        for key in [&b"order-1"[..], b"order-2", b"\x00\xff", b"k"] {
            let expected = iggy_common::calculate_32(key) % 7;
            assert_eq!(key_partition(key, 7), expected);
        }
    }

    #[test]
    fn balanced_rotates_over_the_partitions() {
        let router = PartitionRouter::new(Duration::from_secs(1));
        let (stream, topic) = ids();
        let picked: Vec<u32> = (0..6)
            .map(|_| router.partition(&stream, &topic, &Route::Balanced, 3))
            .collect();
        assert_eq!(picked, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn keys_are_bounded() {
        let long = proto::Partitioning {
            kind: Some(Kind::Key(Bytes::from(vec![1u8; 256]))),
        };
        assert!(
            Route::parse(
                &FieldPath::root("partitioning"),
                Some(&long),
                &Route::Balanced
            )
            .is_err()
        );
        let empty = proto::Partitioning {
            kind: Some(Kind::Key(Bytes::new())),
        };
        assert!(
            Route::parse(
                &FieldPath::root("partitioning"),
                Some(&empty),
                &Route::Balanced
            )
            .is_err()
        );
        assert_eq!(
            Route::parse(&FieldPath::root("partitioning"), None, &Route::Balanced)
                .expect("default"),
            Route::Balanced
        );
    }
}
