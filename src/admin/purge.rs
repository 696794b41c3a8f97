//! Purges that have landed by the time they answer.
//!
//! iggy-server 0.9 answers PurgeTopic and PurgeStream once the purge is
//! committed, but empties each partition later, on its own reconciler's
//! timing. Messages published in between are wiped with the old ones, though
//! their publish was acknowledged. So a purge through the gateway answers
//! only once every partition has let go of its oldest message from before
//! the purge; a publish after that is kept.

use crate::{error::GatewayError, iggy::IggyPool};
use iggy::prelude::{Consumer, Identifier, MessageClient, PollingStrategy};
use std::{future::Future, time::Duration};
use tokio::time::Instant;

/// How long a purge may take to land before the caller is told to retry.
const LAND_LIMIT: Duration = Duration::from_secs(10);
/// The first pause between checks; it doubles up to [`MAX_RECHECK`].
const FIRST_RECHECK: Duration = Duration::from_millis(1);
const MAX_RECHECK: Duration = Duration::from_millis(50);
/// Who the checks poll as. Polls here store no offset, so the name only
/// shows in Iggy's own logs.
const CHECK_CONSUMER: &str = "iggy-grpc-purge-check";

/// One partition a purge is to empty.
#[derive(Debug, Clone)]
pub struct PartitionRef {
    /// The stream, as the request named it.
    pub stream: Identifier,
    /// The topic, by Iggy's numeric id.
    pub topic: Identifier,
    /// 0-based.
    pub partition: u32,
}

impl PartitionRef {
    /// Every partition of topic `topic_id` (with `partitions` partitions).
    pub fn all_of(
        stream: &Identifier,
        topic_id: u32,
        partitions: u32,
    ) -> Result<Vec<Self>, GatewayError> {
        let topic = Identifier::numeric(topic_id)?;
        Ok((0..partitions)
            .map(|partition| Self {
                stream: stream.clone(),
                topic: topic.clone(),
                partition,
            })
            .collect())
    }
}

/// A message that a landed purge has removed.
#[derive(Debug)]
pub struct Marker {
    at: PartitionRef,
    /// The message's id and the time Iggy stored it: a message published
    /// after the purge cannot match both.
    id: u128,
    timestamp: u64,
}

/// The oldest message of each partition that has one, to be watched for.
pub async fn oldest_messages(
    pool: &IggyPool,
    partitions: Vec<PartitionRef>,
) -> Result<Vec<Marker>, GatewayError> {
    let mut markers = Vec::with_capacity(partitions.len());
    for at in partitions {
        if let Some((id, timestamp)) = first_message(pool, &at).await? {
            markers.push(Marker { at, id, timestamp });
        }
    }
    Ok(markers)
}

/// Returns once no partition still starts with its marker, or answers
/// UNAVAILABLE (PURGE_PENDING) after [`LAND_LIMIT`].
pub async fn wait_until_landed(pool: &IggyPool, markers: Vec<Marker>) -> Result<(), GatewayError> {
    wait_until_gone(markers, |at| async move { first_message(pool, &at).await }).await
}

/// The wait of [`wait_until_landed`], reading a partition's first message
/// with `first` (Iggy, or a fake broker in tests).
async fn wait_until_gone<F, Fut>(mut markers: Vec<Marker>, mut first: F) -> Result<(), GatewayError>
where
    F: FnMut(PartitionRef) -> Fut,
    Fut: Future<Output = Result<Option<(u128, u64)>, GatewayError>>,
{
    let deadline = Instant::now() + LAND_LIMIT;
    let mut pause = FIRST_RECHECK;
    loop {
        let mut still = Vec::with_capacity(markers.len());
        for marker in markers {
            if first(marker.at.clone()).await? == Some((marker.id, marker.timestamp)) {
                still.push(marker);
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if Instant::now() + pause > deadline {
            return Err(GatewayError::PurgePending {
                waited: LAND_LIMIT,
                partitions: still.len(),
            });
        }
        markers = still;
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RECHECK);
    }
}

/// The id and storage time of a partition's first retained message.
async fn first_message(
    pool: &IggyPool,
    at: &PartitionRef,
) -> Result<Option<(u128, u64)>, GatewayError> {
    let at = at.clone();
    let polled = pool
        .call(move |client| async move {
            let consumer = Consumer::new(Identifier::named(CHECK_CONSUMER)?);
            client
                .poll_messages(
                    &at.stream,
                    &at.topic,
                    Some(at.partition),
                    &consumer,
                    &PollingStrategy::first(),
                    1,
                    false,
                )
                .await
        })
        .await?;
    Ok(polled
        .messages
        .first()
        .map(|message| (message.header.id, message.header.timestamp)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        cell::{Cell, RefCell},
        collections::HashMap,
    };
    use tonic::Code;

    fn marker(partition: u32, id: u128) -> Marker {
        Marker {
            at: PartitionRef {
                stream: Identifier::named("s").expect("id"),
                topic: Identifier::numeric(1).expect("id"),
                partition,
            },
            id,
            timestamp: 7,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_that_never_lands_answers_purge_pending_after_the_limit() {
        let started = Instant::now();
        let checks = Cell::new(0);
        // A broker whose reconciler never runs: partition 0 keeps its message.
        let result = wait_until_gone(vec![marker(0, 41)], |_| {
            checks.set(checks.get() + 1);
            async { Ok(Some((41, 7))) }
        })
        .await;
        let Err(error) = result else {
            panic!("a purge that never lands must not answer OK");
        };
        assert_eq!(error.code(), Code::Unavailable);
        assert_eq!(error.reason(), "PURGE_PENDING");
        assert!(
            matches!(error, GatewayError::PurgePending { partitions: 1, .. }),
            "{error:?}"
        );
        let waited = started.elapsed();
        assert!(
            waited > LAND_LIMIT - MAX_RECHECK && waited <= LAND_LIMIT,
            "gave up after {waited:?}"
        );
        assert!(checks.get() > 100, "rechecked until the limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_answers_once_every_partition_let_go_of_its_marker() {
        // Partition 0 is emptied on the third check; partition 1 already
        // starts with a newer message (a different id) on the first.
        let checks: RefCell<HashMap<u32, u32>> = Default::default();
        let result = wait_until_gone(vec![marker(0, 41), marker(1, 42)], |at| {
            let seen = {
                let mut checks = checks.borrow_mut();
                let count = checks.entry(at.partition).or_default();
                *count += 1;
                *count
            };
            async move {
                Ok(match (at.partition, seen) {
                    (0, 1..=2) => Some((41, 7)),
                    (0, _) => None,
                    _ => Some((99, 7)),
                })
            }
        })
        .await;
        assert!(result.is_ok(), "{result:?}");
        let checks = checks.into_inner();
        assert_eq!(checks[&0], 3, "partition 0 was checked until it emptied");
        assert_eq!(
            checks[&1], 1,
            "a partition that moved on is not checked again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_check_ends_the_wait_with_its_error() {
        let result = wait_until_gone(vec![marker(0, 41)], |_| async {
            Err(GatewayError::Internal("Iggy went away".into()))
        })
        .await;
        assert!(
            matches!(result, Err(GatewayError::Internal(_))),
            "{result:?}"
        );
    }
}
