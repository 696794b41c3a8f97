//! How a workload is measured: settings from the environment, paths taking
//! turns round by round, and the CPU each process used per message.

use crate::report::Row;
use std::{
    env,
    time::{Duration, Instant},
};

/// One round of a throughput workload on one path: msgs/s and the CPU
/// microseconds per message of clients, gateway and iggy-server.
pub type Sample = (f64, [f64; 3]);

/// A throughput workload's rounds, per path in the order first run.
#[derive(Default)]
pub struct Rounds(Vec<(&'static str, Vec<Sample>)>);

impl Rounds {
    pub fn add(&mut self, mode: &'static str, sample: Sample) {
        match self.0.iter_mut().find(|(name, _)| *name == mode) {
            Some((_, samples)) => samples.push(sample),
            None => self.0.push((mode, vec![sample])),
        }
    }

    /// One row per path: its fastest round, with that round's CPU costs.
    /// The best round is the one least disturbed by the rest of the machine
    /// (iggy-server has slow spells of its own, which slow the direct path
    /// most), so comparing best rounds does not flatter the gateway.
    pub fn rows(&self, workload: &'static str) -> impl Iterator<Item = Row> + '_ {
        self.0.iter().map(move |(mode, samples)| {
            let (rate, cpu) = samples
                .iter()
                .copied()
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap_or((0.0, [0.0; 3]));
            Row {
                rounds: samples.iter().map(|(rate, _)| *rate).collect(),
                ..Row::throughput(workload, mode, rate, cpu)
            }
        })
    }
}

/// Runs `run` (given the path and the round) on each of `paths` that
/// BENCH_PATHS selects, `rounds` times, the paths taking turns.
pub async fn take_turns(
    rounds: u64,
    paths: &[&'static str],
    mut run: impl AsyncFnMut(&'static str, u64) -> Sample,
) -> Rounds {
    let mut samples = Rounds::default();
    for round in 0..rounds {
        for &mode in paths {
            if selected("BENCH_PATHS", mode) {
                samples.add(mode, run(mode, round).await);
            }
        }
    }
    samples
}

/// One run of a throughput workload: once iggy-server is idle, runs
/// `workload` (which returns msgs/s) and charges the gateway and iggy-server
/// (`pids`) and this process the CPU each used per message.
pub async fn measure(
    pids: (u32, u32),
    messages: f64,
    workload: impl Future<Output = f64>,
) -> Sample {
    let (gateway_pid, iggy_pid) = pids;
    settle(iggy_pid).await;
    let before = Cpu::now(gateway_pid, iggy_pid);
    let rate = workload.await;
    (
        rate,
        Cpu::now(gateway_pid, iggy_pid).per_message_since(before, messages),
    )
}

pub fn setting(name: &str, default: u64) -> u64 {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// True when the workload (or path) is selected by `variable` (all when unset).
pub fn selected(variable: &str, name: &str) -> bool {
    env::var(variable).map_or(true, |list| list.split(',').any(|item| item.trim() == name))
}

/// CPU seconds (user + system) used so far by a process, from
/// /proc/PID/stat (fields 14 and 15, in USER_HZ = 100 ticks per second).
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it never do.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<f64>().ok());
    // After the name: state is field 3, so utime (14) and stime (15) sit at 11 and 12.
    ticks(11).unwrap_or(0.0) / 100.0 + ticks(12).unwrap_or(0.0) / 100.0
}

/// Waits (at most 15 s) until iggy-server is idle: after a large write it
/// goes on persisting for a while, and the path measured next would pay for
/// the one measured before.
pub async fn settle(iggy_pid: u32) {
    let pid = iggy_pid.to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let before = cpu_seconds(&pid);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if cpu_seconds(&pid) - before < 0.01 {
            return; // under 5% of a core
        }
    }
}

/// CPU seconds used so far by the bench process (the clients), the gateway
/// and iggy-server.
#[derive(Clone, Copy)]
pub struct Cpu([f64; 3]);

impl Cpu {
    pub fn now(gateway_pid: u32, iggy_pid: u32) -> Self {
        Self([
            cpu_seconds("self"),
            cpu_seconds(&gateway_pid.to_string()),
            cpu_seconds(&iggy_pid.to_string()),
        ])
    }

    /// Microseconds of CPU per message since `start`: clients, gateway, iggy.
    pub fn per_message_since(self, start: Cpu, messages: f64) -> [f64; 3] {
        [0, 1, 2].map(|i| (self.0[i] - start.0[i]) * 1e6 / messages)
    }
}
