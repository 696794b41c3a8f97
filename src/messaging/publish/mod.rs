//! Publishing: validated entries are routed to partitions, grouped so each
//! partition gets one `send_messages` call, sent concurrently over the pool,
//! and answered with one result per entry in request order.

mod idempotency;
mod outgoing;
mod route;

pub use idempotency::Idempotency;
pub use outgoing::{Outgoing, PublishLimits, Stamp, build, message_id};
pub use route::{PartitionRouter, Route, key_partition};

use crate::{
    error::{GatewayError, is_connection_lost},
    iggy::IggyPool,
    messaging::subscribe::Wakeups,
    metrics, proto,
};
use futures_util::future::join_all;
use idempotency::{IdMap, Seen};
use iggy::prelude::{
    Identifier, IggyError, IggyMessage, IggyTimestamp, MessageClient, Partitioning,
    SendMessagesResponse,
};
use iggy_common::IggyErrorDiscriminants;
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

/// One message to publish and how its partition is chosen.
#[derive(Debug)]
pub struct Entry {
    pub route: Route,
    pub outgoing: Outgoing,
}

/// The outcome of one entry: where it was stored, or why not.
pub type EntryResult = Result<proto::PublishResult, GatewayError>;

/// Sends entries to Iggy.
#[derive(Clone)]
pub struct Publisher {
    pool: IggyPool,
    router: Arc<PartitionRouter>,
    wakeups: Arc<Wakeups>,
    idempotency: Arc<Idempotency>,
}

impl Entry {
    /// This entry as an idempotent publish sends it when `idempotent`: a
    /// balanced one goes to the partition of its id, so every replica
    /// checks the same partition for it.
    pub fn idempotent_if(self, idempotent: bool) -> Self {
        match self.route {
            Route::Balanced if idempotent => {
                let id = self.outgoing.message.header.id.to_le_bytes();
                Self {
                    route: Route::Key(bytes::Bytes::copy_from_slice(&id)),
                    outgoing: self.outgoing,
                }
            }
            _ => self,
        }
    }
}

/// Entries to publish, as three parallel vectors: a batch bound for one
/// partition is then sent as it was built, without moving every message
/// again into its partition's group.
#[derive(Debug, Default)]
pub struct Entries {
    routes: Vec<Route>,
    ids: Vec<String>,
    messages: Vec<IggyMessage>,
}

impl Entries {
    /// Room for `size` entries.
    pub fn with_capacity(size: usize) -> Self {
        Self {
            routes: Vec::with_capacity(size),
            ids: Vec::with_capacity(size),
            messages: Vec::with_capacity(size),
        }
    }

    /// Adds `entry` after the others.
    pub fn push(&mut self, Entry { route, outgoing }: Entry) {
        self.routes.push(route);
        self.ids.push(outgoing.id);
        self.messages.push(outgoing.message);
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The entries one by one, in order.
    fn into_entries(self) -> impl Iterator<Item = Entry> {
        self.routes
            .into_iter()
            .zip(self.ids)
            .zip(self.messages)
            .map(|((route, id), message)| Entry {
                route,
                outgoing: Outgoing { id, message },
            })
    }
}

impl From<Entry> for Entries {
    fn from(entry: Entry) -> Self {
        let mut entries = Self::with_capacity(1);
        entries.push(entry);
        entries
    }
}

impl FromIterator<Entry> for Entries {
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut entries = Self::with_capacity(iter.size_hint().0);
        for entry in iter {
            entries.push(entry);
        }
        entries
    }
}

/// The entries bound for one partition, in request order, with their
/// places in the request.
struct Group {
    partition: u32,
    indices: Vec<usize>,
    entries: Entries,
}

/// What one group's send produced; the messages come back so that a send
/// Iggy refused can be routed again.
struct Sent {
    group: Group,
    result: Result<SendMessagesResponse, IggyError>,
    /// Idempotent entries found stored already, answered without a send.
    duplicates: Vec<(usize, proto::PublishResult)>,
    /// Idempotent entries repeating an id sent in this group: the request
    /// index, and the position in the group of the entry they repeat.
    repeats: Vec<(usize, usize)>,
}

impl Sent {
    fn plain(group: Group, result: Result<SendMessagesResponse, IggyError>) -> Self {
        Self {
            group,
            result,
            duplicates: Vec::new(),
            repeats: Vec::new(),
        }
    }
}

impl Publisher {
    /// A publisher over `pool`, routing with `router`, waking this topic's
    /// subscriptions through `wakeups` after each publish, checking
    /// idempotent entries against what `idempotency` has seen.
    pub fn new(
        pool: IggyPool,
        router: Arc<PartitionRouter>,
        wakeups: Arc<Wakeups>,
        idempotency: Arc<Idempotency>,
    ) -> Self {
        Self {
            pool,
            router,
            wakeups,
            idempotency,
        }
    }

    /// Publishes `entries` to one topic; with `idempotent`, an entry whose
    /// id its partition already holds within the window is answered as a
    /// duplicate instead. The outer error is for the whole call (unknown
    /// stream or topic, Iggy unreachable before anything was sent);
    /// otherwise each entry has its own result, in request order.
    pub async fn publish(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        entries: Entries,
        idempotent: bool,
    ) -> Result<Vec<EntryResult>, GatewayError> {
        let mut results: Vec<Option<EntryResult>> = (0..entries.len()).map(|_| None).collect();
        // The entries still to send and their places in the request: at
        // first all of them, in order.
        let mut positions: Vec<usize> = (0..entries.len()).collect();
        let mut pending = entries;
        // A stale partition count can route to a partition that was removed;
        // Iggy then refuses the send (nothing stored), the count is read
        // again and those entries are routed once more.
        for refresh in [false, true] {
            let groups = self
                .group(
                    stream,
                    topic,
                    std::mem::take(&mut pending),
                    std::mem::take(&mut positions),
                    refresh,
                )
                .await?;
            let sends = groups.into_iter().map(|group| {
                let (stream, topic) = (stream.clone(), topic.clone());
                async move {
                    if idempotent {
                        self.send_idempotent(stream, topic, group).await
                    } else {
                        self.send(stream, topic, group).await
                    }
                }
            });
            for sent in join_all(sends).await {
                if let Ok(sent) = &sent {
                    for (index, duplicate) in &sent.duplicates {
                        results[*index] = Some(Ok(duplicate.clone()));
                    }
                }
                match sent {
                    Ok(Sent {
                        group,
                        result: Ok(response),
                        repeats,
                        ..
                    }) => {
                        let base = response
                            .confirmations
                            .iter()
                            .find(|c| c.partition_id == group.partition)
                            .map(|c| c.base_offset);
                        let stored: Vec<proto::PublishResult> = group
                            .entries
                            .ids
                            .into_iter()
                            .enumerate()
                            .map(|(position, id)| proto::PublishResult {
                                id,
                                partition_id: group.partition,
                                offset: base.map(|base| base + position as u64),
                                duplicate: false,
                            })
                            .collect();
                        for (index, position) in repeats {
                            if let Some(first) = stored.get(position) {
                                results[index] = Some(Ok(proto::PublishResult {
                                    duplicate: true,
                                    ..first.clone()
                                }));
                            }
                        }
                        for (index, result) in group.indices.into_iter().zip(stored) {
                            results[index] = Some(Ok(result));
                        }
                    }
                    Ok(Sent {
                        group,
                        result: Err(error),
                        repeats,
                        ..
                    }) if !refresh && is_missing_partition(&error) => {
                        self.router.invalidate_all();
                        let error = send_error(error, stream, topic, group.partition);
                        for (index, _) in repeats {
                            results[index] = Some(Err(error.clone()));
                        }
                        for (index, entry) in
                            group.indices.into_iter().zip(group.entries.into_entries())
                        {
                            if entry.route.needs_count() {
                                positions.push(index);
                                pending.push(entry);
                            } else {
                                results[index] = Some(Err(error.clone()));
                            }
                        }
                    }
                    Ok(Sent {
                        group,
                        result: Err(error),
                        repeats,
                        ..
                    }) => {
                        let error = GatewayError::from_write(error);
                        for index in group
                            .indices
                            .into_iter()
                            .chain(repeats.into_iter().map(|r| r.0))
                        {
                            results[index] = Some(Err(error.clone()));
                        }
                    }
                    Err((indices, error)) => {
                        for index in indices {
                            results[index] = Some(Err(error.clone()));
                        }
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
        }
        self.wakeups.wake(stream, topic);
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(GatewayError::Internal(
                        "an entry was left without a result".into(),
                    ))
                })
            })
            .collect())
    }

    /// Reads the partition count if any entry needs it, then groups.
    async fn group(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        entries: Entries,
        positions: Vec<usize>,
        refresh: bool,
    ) -> Result<Vec<Group>, GatewayError> {
        let count = if entries.routes.iter().any(Route::needs_count) {
            Some(
                self.router
                    .partition_count(&self.pool, stream, topic, refresh)
                    .await?,
            )
        } else {
            None
        };
        Ok(group_by_partition(
            &self.router,
            stream,
            topic,
            entries,
            positions,
            count.unwrap_or(1),
        ))
    }

    /// One `send_messages` call for one partition's entries.
    async fn send(
        &self,
        stream: Identifier,
        topic: Identifier,
        mut group: Group,
    ) -> Result<Sent, (Vec<usize>, GatewayError)> {
        let indices = group.indices.clone();
        self.pool
            .run(
                move |client| async move {
                    let partitioning = Partitioning::partition_id(group.partition);
                    let result = client
                        .send_messages(&stream, &topic, &partitioning, &mut group.entries.messages)
                        .await;
                    if result.is_ok() {
                        let messages = &group.entries.messages;
                        let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
                        metrics::count_published(messages.len() as u64, bytes as u64);
                    }
                    Sent::plain(group, result)
                },
                |sent: &Sent| sent.result.as_ref().is_err_and(is_connection_lost),
            )
            .await
            .map_err(|error| (indices, error))
    }

    /// One partition's idempotent entries: what the partition holds within
    /// the window is read first, entries whose id it holds are answered as
    /// duplicates, and the rest sent. Runs to the end in a task of its own
    /// with the partition locked, even when the caller gives up, so the
    /// next idempotent send to the partition sees this one's outcome.
    async fn send_idempotent(
        &self,
        stream: Identifier,
        topic: Identifier,
        group: Group,
    ) -> Result<Sent, (Vec<usize>, GatewayError)> {
        let indices = group.indices.clone();
        let publisher = self.clone();
        let task = tokio::spawn(async move {
            let idempotency = Arc::clone(&publisher.idempotency);
            let seen = idempotency.partition(&stream, &topic, group.partition);
            let mut seen = seen.lock().await;
            let partition = group.partition;
            let (fresh, duplicates, repeats) =
                match publisher.check(&stream, &topic, group, &mut seen).await {
                    Ok(checked) => checked,
                    Err((indices, error)) => return Err((indices, error)),
                };
            let mut sent = if fresh.entries.is_empty() {
                Sent::plain(
                    fresh,
                    Ok(SendMessagesResponse {
                        confirmations: Vec::new(),
                    }),
                )
            } else {
                publisher.send(stream, topic, fresh).await?
            };
            if let Ok(response) = &sent.result
                && let Some(base) = response
                    .confirmations
                    .iter()
                    .find(|c| c.partition_id == partition)
                    .map(|c| c.base_offset)
            {
                let now = IggyTimestamp::now().as_micros();
                for (position, message) in sent.group.entries.messages.iter().enumerate() {
                    seen.record(message.header.id, base + position as u64, now);
                }
                seen.sent(base, sent.group.entries.len() as u64);
            }
            sent.duplicates = duplicates;
            sent.repeats = repeats;
            Ok(sent)
        });
        task.await.unwrap_or_else(|error| {
            Err((
                indices,
                GatewayError::Internal(format!("idempotent send failed: {error}")),
            ))
        })
    }

    /// Splits `group` into the entries to send, those whose id the
    /// partition holds (answered with the stored copy, once Iggy confirms
    /// that offset still holds that id), and those repeating an id earlier
    /// in the group.
    async fn check(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        group: Group,
        seen: &mut Seen,
    ) -> Result<Checked, (Vec<usize>, GatewayError)> {
        let idempotency = &self.idempotency;
        let partition = group.partition;
        let mut known = Known::default();
        for attempt in 0..2 {
            if let Err(error) = idempotency
                .catch_up(&self.pool, stream, topic, partition, seen)
                .await
            {
                return Err((group.indices, error));
            }
            let since = idempotency.since(IggyTimestamp::now().as_micros());
            known = Known::of(&group.entries.messages, seen, since);
            let mut confirmed = true;
            for (position, offset) in &known.stored {
                let id = group.entries.messages[*position].header.id;
                match idempotency
                    .holds(&self.pool, stream, topic, partition, *offset, id)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => confirmed = false,
                    Err(error) => return Err((group.indices, error)),
                }
            }
            if confirmed || attempt == 1 {
                break;
            }
            // The log is not what was read: read the window again.
            seen.reset();
        }
        if known.stored.is_empty() && known.repeats.is_empty() {
            // The usual batch: every id is new, sent as built.
            return Ok((group, Vec::new(), Vec::new()));
        }
        Ok(split(group, &known))
    }
}

/// What a group's ids are: positions whose id the partition holds (with
/// its offset), and positions repeating an earlier position's id.
#[derive(Default)]
struct Known {
    stored: Vec<(usize, u64)>,
    repeats: Vec<(usize, usize)>,
}

impl Known {
    fn of(messages: &[IggyMessage], seen: &Seen, since: u64) -> Self {
        let mut known = Self::default();
        let mut firsts = IdMap::with_capacity_and_hasher(messages.len(), Default::default());
        for (position, message) in messages.iter().enumerate() {
            let id = message.header.id;
            if let Some(offset) = seen.find(id, since) {
                known.stored.push((position, offset));
            } else if let Some(&first) = firsts.get(&id) {
                known.repeats.push((position, first));
            } else {
                firsts.insert(id, position);
            }
        }
        known
    }
}

/// The entries to send, the duplicates answered, and the repeats within
/// the group.
type Checked = (
    Group,
    Vec<(usize, proto::PublishResult)>,
    Vec<(usize, usize)>,
);

/// Splits a group by what is [`Known`] of its ids: the entries to send,
/// the duplicates answered with their stored copy, and the repeats, each
/// with the position of the entry it repeats in the group sent.
fn split(group: Group, known: &Known) -> Checked {
    let Group {
        partition,
        indices,
        entries,
    } = group;
    let stored: HashMap<usize, u64> = known.stored.iter().copied().collect();
    let repeats: HashMap<usize, usize> = known.repeats.iter().copied().collect();
    let mut fresh = Group {
        partition,
        indices: Vec::with_capacity(indices.len()),
        entries: Entries::with_capacity(indices.len()),
    };
    // Where each position sent ends up in the group sent.
    let mut sent_at = HashMap::new();
    let mut duplicates = Vec::new();
    let mut repeated = Vec::new();
    for (position, (index, entry)) in indices.into_iter().zip(entries.into_entries()).enumerate() {
        if let Some(&offset) = stored.get(&position) {
            duplicates.push((
                index,
                proto::PublishResult {
                    id: entry.outgoing.id,
                    partition_id: partition,
                    offset: Some(offset),
                    duplicate: true,
                },
            ));
        } else if let Some(first) = repeats.get(&position) {
            if let Some(&at) = sent_at.get(first) {
                repeated.push((index, at));
            }
        } else {
            sent_at.insert(position, fresh.entries.len());
            fresh.indices.push(index);
            fresh.entries.push(entry);
        }
    }
    (fresh, duplicates, repeated)
}

/// Routes entries (at `positions` in the request) among `count` partitions
/// and groups them per partition, keeping request order within each group.
/// All balanced entries of one call share the next partition of the
/// rotation, so each partition touched costs exactly one `send_messages`
/// call.
fn group_by_partition(
    router: &PartitionRouter,
    stream: &Identifier,
    topic: &Identifier,
    entries: Entries,
    positions: Vec<usize>,
    count: u32,
) -> Vec<Group> {
    let mut balanced = None;
    let partitions: Vec<u32> = entries
        .routes
        .iter()
        .map(|route| match route {
            Route::Balanced => {
                *balanced.get_or_insert_with(|| router.partition(stream, topic, route, count))
            }
            _ => router.partition(stream, topic, route, count),
        })
        .collect();
    if let Some(&first) = partitions.first()
        && partitions.iter().all(|&partition| partition == first)
    {
        // The usual batch: one partition, so one group, sent as built.
        return vec![Group {
            partition: first,
            indices: positions,
            entries,
        }];
    }
    // Sized up front: a group's vectors never grow (and move every message
    // again) while a 1,000-message batch is sorted into them.
    let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
    for partition in &partitions {
        *sizes.entry(*partition).or_default() += 1;
    }
    let mut groups: BTreeMap<u32, Group> = sizes
        .into_iter()
        .map(|(partition, size)| {
            let group = Group {
                partition,
                indices: Vec::with_capacity(size),
                entries: Entries::with_capacity(size),
            };
            (partition, group)
        })
        .collect();
    for ((entry, index), partition) in entries.into_entries().zip(positions).zip(partitions) {
        let Some(group) = groups.get_mut(&partition) else {
            continue; // every partition was counted above
        };
        group.indices.push(index);
        group.entries.push(entry);
    }
    groups.into_values().collect()
}

/// Iggy refused a send because the partition does not exist (any more).
/// Iggy 0.9 answers a send to a missing partition with the generic
/// `ResourceNotFound`; either way nothing was stored.
fn is_missing_partition(error: &IggyError) -> bool {
    matches!(
        IggyErrorDiscriminants::from(error),
        IggyErrorDiscriminants::PartitionNotFound | IggyErrorDiscriminants::ResourceNotFound
    )
}

/// The error for entries whose send failed, naming a missing partition as
/// such rather than as Iggy's generic "resource not found".
fn send_error(
    error: IggyError,
    stream: &Identifier,
    topic: &Identifier,
    partition: u32,
) -> GatewayError {
    if is_missing_partition(&error) {
        return GatewayError::Iggy(IggyError::PartitionNotFound(
            partition as usize,
            topic.clone(),
            stream.clone(),
        ));
    }
    GatewayError::from_write(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::FieldPath;
    use bytes::Bytes;
    use std::time::Duration;

    fn entry(index: usize, route: Route) -> Entry {
        let message = proto::Message {
            id: String::new(),
            payload: Bytes::from(format!("entry {index}")),
            headers: Default::default(),
        };
        let outgoing = build(
            &FieldPath::root("message"),
            Some(message),
            &PublishLimits::default(),
            Stamp::default(),
        )
        .expect("valid");
        Entry { route, outgoing }
    }

    #[test]
    fn one_group_per_partition_in_request_order() {
        let router = PartitionRouter::new(Duration::from_secs(1));
        let stream = Identifier::named("s").expect("id");
        let topic = Identifier::named("t").expect("id");
        let keys: Vec<Bytes> = (0..3).map(|k| Bytes::from(format!("key-{k}"))).collect();
        let mut entries = Vec::new();
        for index in 0..30 {
            let route = match index % 4 {
                0 => Route::Balanced,
                1 => Route::Partition(3),
                _ => Route::Key(keys[index % 3].clone()),
            };
            entries.push(entry(index, route));
        }
        let expected: std::collections::BTreeSet<u32> = entries
            .iter()
            .map(|entry| match &entry.route {
                Route::Balanced => 0, // the first balanced pick of this router
                Route::Partition(p) => *p,
                Route::Key(key) => key_partition(key, 5),
            })
            .collect();
        // Places in a request where these 30 entries are every other one.
        let positions: Vec<usize> = (0..30).map(|index| 2 * index + 1).collect();
        let entries = entries.into_iter().collect();
        let groups = group_by_partition(&router, &stream, &topic, entries, positions.clone(), 5);
        assert_eq!(
            groups
                .iter()
                .map(|g| g.partition)
                .collect::<std::collections::BTreeSet<_>>(),
            expected,
            "exactly one send per partition touched"
        );
        for group in &groups {
            assert!(
                group.indices.windows(2).all(|w| w[0] < w[1]),
                "request order kept"
            );
            assert_eq!(group.indices.len(), group.entries.len());
            for (index, message) in group.indices.iter().zip(&group.entries.messages) {
                let expected = format!("entry {}", (index - 1) / 2);
                assert_eq!(
                    message.payload,
                    expected.as_bytes(),
                    "each message keeps its place"
                );
            }
        }
        let mut all: Vec<usize> = groups.iter().flat_map(|g| g.indices.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, positions, "each entry keeps its place in the request");
    }

    #[test]
    fn a_batch_for_one_partition_is_one_group_in_request_order() {
        let router = PartitionRouter::new(Duration::from_secs(1));
        let stream = Identifier::named("s").expect("id");
        let topic = Identifier::named("t").expect("id");
        let entries: Vec<Entry> = (0..10)
            .map(|index| entry(index, Route::Partition(2)))
            .collect();
        let payloads: Vec<Bytes> = entries
            .iter()
            .map(|entry| entry.outgoing.message.payload.clone())
            .collect();
        let positions: Vec<usize> = (0..10).map(|index| 3 * index).collect();
        let entries = entries.into_iter().collect();
        let groups = group_by_partition(&router, &stream, &topic, entries, positions.clone(), 5);
        let [group] = groups.as_slice() else {
            panic!("expected one group, got {}", groups.len());
        };
        assert_eq!(group.partition, 2);
        assert_eq!(group.indices, positions);
        let grouped: Vec<Bytes> = group
            .entries
            .messages
            .iter()
            .map(|m| m.payload.clone())
            .collect();
        assert_eq!(grouped, payloads, "request order kept");
        assert_eq!(group.entries.ids.len(), 10);
        assert_eq!(group.entries.routes.len(), 10);
    }
}
