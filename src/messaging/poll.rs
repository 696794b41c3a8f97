//! Unary Poll: one batch with the same consumer, start and ack options as
//! Subscribe, for clients that cannot stream. Named consumers read over the
//! pool; a group member needs membership, so it polls on a connection of its
//! own that joins the group for the call and leaves after it.

use crate::{
    error::GatewayError,
    iggy::{
        IggyPool,
        missing::{self, Named, is_not_found},
    },
    messaging::{
        PartitionRouter,
        subscribe::{
            AckMode, Position, Positions, ReadFrom, Reader, Spec, Start, SubscribeLimits,
            decode_token, delivered, encode_token, fingerprint,
        },
    },
    proto,
};
use iggy::prelude::IggyError;
use std::collections::BTreeMap;

/// Serves one Poll call. A named consumer's poll is one Iggy call in steady
/// state (two with `NEXT`, which reads the stored offset, and with `LAST`,
/// which reads where each partition ends): the topic's ids
/// and partitions come from the router's cache, refreshed when a poll finds
/// something missing.
pub async fn poll(
    pool: &IggyPool,
    router: &PartitionRouter,
    limits: &SubscribeLimits,
    request: proto::PollRequest,
) -> Result<proto::PollResponse, GatewayError> {
    let spec = Spec::poll(&request, limits)?;
    if spec.is_group() {
        let reader = Reader::open(pool, spec.clone()).await?;
        let ids = reader.ids;
        let partitions = reader.partitions().await;
        let result = match partitions {
            Ok((_, partitions)) => read(&reader, &spec, ids, partitions).await,
            Err(error) => Err(error),
        };
        reader.close().await;
        return result;
    }
    let mut topic = router.topic(pool, &spec.stream, &spec.topic, false).await?;
    if let Some(partition) = spec.partition
        && partition >= topic.partitions
    {
        // Partitions may have been added in Iggy since the count was read.
        topic = router.topic(pool, &spec.stream, &spec.topic, true).await?;
    }
    let partitions = match spec.partition {
        Some(partition) if partition >= topic.partitions => {
            return Err(GatewayError::Iggy(IggyError::PartitionNotFound(
                partition as usize,
                spec.topic.clone(),
                spec.stream.clone(),
            )));
        }
        Some(partition) => vec![partition],
        None => (0..topic.partitions).collect(),
    };
    let ids = (topic.stream_id, topic.topic_id);
    let reader = Reader::over_pool(pool, spec.clone(), ids);
    match read(&reader, &spec, ids, partitions).await {
        Err(error) if is_not_found(&error) => {
            // The topic or a partition went away: read it afresh next time,
            // and say which, as the request named it.
            router.invalidate_all();
            let named = Named {
                partition: spec.partition,
                ..Named::topic(&spec.stream, &spec.topic)
            };
            Err(missing::explain(pool, &named, error).await)
        }
        result => result,
    }
}

async fn read(
    source: &Reader,
    spec: &Spec,
    ids: (u32, u32),
    partitions: Vec<u32>,
) -> Result<proto::PollResponse, GatewayError> {
    let topic_fingerprint = fingerprint(ids.0, ids.1);
    let resume = match &spec.start {
        Start::Resume(token) => Some(decode_token(
            "start.resume_token",
            token,
            topic_fingerprint,
        )?),
        _ => None,
    };
    let log_ends = source.start_ends(&spec.start).await?;
    let mut next = Positions::new();
    let mut messages = Vec::new();
    let mut last_read: BTreeMap<u32, u64> = BTreeMap::new();
    // Start at a different partition each call, so one busy partition does
    // not starve the others.
    let first = rand::random_range(0..partitions.len().max(1));
    for index in 0..partitions.len() {
        let partition = partitions[(first + index) % partitions.len()];
        let by_request = match resume.as_ref().and_then(|r| r.get(&partition)) {
            Some(position) => Some(ReadFrom::from(*position)),
            None => ReadFrom::at_start(&spec.start, log_ends.as_ref(), partition),
        };
        let from = match by_request {
            Some(from) => from,
            None => ReadFrom::Offset(source.stored_offset(partition).await?.map_or(0, |o| o + 1)),
        };
        // Where the partition continues if this poll delivers none of it.
        next.insert(partition, from.position());
        let room = spec.batch_size.saturating_sub(messages.len() as u32);
        if room == 0 {
            continue;
        }
        let polled = source.poll(partition, from, room).await?;
        for message in polled.messages {
            let offset = message.header.offset;
            next.insert(partition, Position::Offset(offset + 1));
            last_read.insert(partition, offset);
            messages.push(delivered(partition, message));
        }
    }
    if spec.ack_mode == AckMode::Auto {
        for (partition, offset) in &last_read {
            source.commit(*partition, *offset).await?;
        }
    }
    Ok(proto::PollResponse {
        messages,
        resume_token: encode_token(topic_fingerprint, &next),
    })
}
