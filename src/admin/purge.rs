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
use std::time::Duration;
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
pub async fn wait_until_landed(
    pool: &IggyPool,
    mut markers: Vec<Marker>,
) -> Result<(), GatewayError> {
    let deadline = Instant::now() + LAND_LIMIT;
    let mut pause = FIRST_RECHECK;
    loop {
        let mut still = Vec::with_capacity(markers.len());
        for marker in markers {
            if first_message(pool, &marker.at).await? == Some((marker.id, marker.timestamp)) {
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
