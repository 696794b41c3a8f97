//! Server statistics (cached) and ping.

use super::convert;
use crate::{error::GatewayError, iggy::IggyPool, proto};
use iggy::prelude::SystemClient;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Mutex;

/// How long past its TTL a cached figure may still be served while Iggy is
/// unreachable.
const MAX_STALENESS: Duration = Duration::from_secs(60);

/// Caches `GetStats` for a TTL. Concurrent callers share one Iggy call, and
/// while Iggy is briefly away the last figures are served, marked stale.
pub struct StatsCache {
    ttl: Duration,
    last: Mutex<Option<(proto::GetStatsResponse, Instant)>>,
}

impl StatsCache {
    /// A cache whose entries are fresh for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            last: Mutex::new(None),
        }
    }

    /// The statistics, from the cache when fresh.
    pub async fn get(&self, pool: &IggyPool) -> Result<proto::GetStatsResponse, GatewayError> {
        let mut last = self.last.lock().await;
        if let Some((cached, fetched)) = last.as_ref()
            && fetched.elapsed() < self.ttl
        {
            return Ok(cached.clone());
        }
        let fetched = pool
            .call(|client| async move { client.get_stats().await })
            .await;
        match fetched {
            Ok(stats) => {
                let response = convert::stats(&stats, SystemTime::now());
                *last = Some((response.clone(), Instant::now()));
                Ok(response)
            }
            Err(error) => match last.as_ref() {
                Some((cached, fetched))
                    if error.code() == tonic::Code::Unavailable
                        && fetched.elapsed() < self.ttl + MAX_STALENESS =>
                {
                    Ok(proto::GetStatsResponse {
                        stale: true,
                        ..cached.clone()
                    })
                }
                _ => Err(error),
            },
        }
    }
}

pub async fn ping(pool: &IggyPool) -> Result<proto::PingResponse, GatewayError> {
    let latency = pool
        .call(|client| async move {
            let started = Instant::now();
            client.ping().await?;
            Ok(started.elapsed())
        })
        .await?;
    Ok(proto::PingResponse {
        latency: Some(convert::duration(latency)),
    })
}
