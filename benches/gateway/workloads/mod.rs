//! The workloads, each a function of the running setup that returns its
//! table rows. They run in this order: the latency workloads before
//! `read`, whose large fill leaves Iggy flushing for a while.

pub mod frames;
pub mod latency;
pub mod poll;
pub mod publish;
pub mod read;
pub mod scale;
pub mod subscriptions;

use crate::processes::{GatewayProcess, Helper};
use iggy::prelude::IggyClient;
use std::sync::Arc;
use tonic::transport::Channel;

/// Sizes of a run, from the environment.
pub struct Settings {
    /// Concurrent clients per path (BENCH_CLIENTS).
    pub clients: u64,
    /// Batched-publish calls per client (BENCH_BATCHES).
    pub batches: u64,
    /// Messages read by the subscribe workload (BENCH_READ_MESSAGES).
    pub read_messages: u64,
    /// Seconds per latency workload (BENCH_SECONDS).
    pub seconds: u64,
    /// Seconds of the slow-subscriber workload (BENCH_SLOW_SECONDS).
    pub slow_seconds: u64,
    /// Rounds of each throughput workload (BENCH_ROUNDS).
    pub rounds: u64,
}

/// Everything the workloads reach Iggy through.
pub struct Bench {
    pub settings: Settings,
    pub iggy_pid: u32,
    pub gateway: GatewayProcess,
    /// SDK clients over TCP, straight to Iggy (the first also administers).
    pub tcp_clients: Vec<Arc<IggyClient>>,
    /// SDK clients over TCP through the byte relay.
    pub relay_clients: Vec<Arc<IggyClient>>,
    /// SDK clients over Iggy's HTTP API.
    pub http_clients: Vec<Arc<IggyClient>>,
    /// One channel per client to the gateway.
    pub channels: Vec<Channel>,
    /// One channel per client to the bare gateway.
    pub bare_channels: Vec<Channel>,
    pub relay: Helper,
    pub bare: Helper,
}

impl Bench {
    /// The client that creates and deletes topics.
    pub fn admin(&self) -> &IggyClient {
        &self.tcp_clients[0]
    }

    /// The process between the clients and Iggy whose CPU a path is charged
    /// (the "g" of c+g+i): the relay or the bare gateway on their paths,
    /// else the gateway (idle on the direct and http paths).
    pub fn middle_pid(&self, mode: &str) -> u32 {
        match mode {
            "relay" => self.relay.pid(),
            "bare" => self.bare.pid(),
            _ => self.gateway.pid,
        }
    }

    /// The processes a throughput path is charged: the middle one and Iggy.
    pub fn pids(&self, mode: &str) -> (u32, u32) {
        (self.middle_pid(mode), self.iggy_pid)
    }
}
