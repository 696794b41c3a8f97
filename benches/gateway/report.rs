//! The one table a run prints, and the comparisons under it.

use crate::messages::PAYLOAD;
use std::time::Duration;

/// One line of the table.
pub struct Row {
    pub workload: &'static str,
    /// The way to Iggy (direct, relay, bare, gateway, http, ...).
    pub mode: &'static str,
    /// Messages (or calls, polls, MiB: see `unit`) per second.
    pub rate: f64,
    pub unit: &'static str,
    /// p50, p99, p99.9 (latency rows only).
    pub latency: Option<(Duration, Duration, Duration)>,
    /// CPU microseconds per message: clients, gateway, iggy-server.
    pub cpu: Option<[f64; 3]>,
    /// The rate of each round, in the order run (throughput rows only).
    pub rounds: Vec<f64>,
}

impl Row {
    /// A throughput row: messages per second and CPU per message.
    pub fn throughput(
        workload: &'static str,
        mode: &'static str,
        rate: f64,
        cpu: [f64; 3],
    ) -> Self {
        Self {
            cpu: Some(cpu),
            ..Self::figure(workload, mode, rate, "msgs/s")
        }
    }

    /// A latency row from sorted latencies, at the `rate` achieved.
    pub fn latency(
        workload: &'static str,
        mode: &'static str,
        rate: f64,
        sorted: &[Duration],
    ) -> Self {
        Self {
            latency: Some((
                percentile(sorted, 0.5),
                percentile(sorted, 0.99),
                percentile(sorted, 0.999),
            )),
            ..Self::figure(workload, mode, rate, "calls/s")
        }
    }

    /// A row of one figure in `unit`.
    pub fn figure(
        workload: &'static str,
        mode: &'static str,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            workload,
            mode,
            rate: value,
            unit,
            latency: None,
            cpu: None,
            rounds: Vec::new(),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The row of `workload` on path `mode`, if it was measured.
fn find_row<'a>(rows: &'a [Row], workload: &str, mode: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|row| row.workload == workload && row.mode == mode)
}

fn millis(duration: Duration) -> String {
    format!("{:.2}ms", duration.as_secs_f64() * 1e3)
}

/// Prints the table, then what it says in ratios.
pub fn print(rows: &[Row], clients: u64, rounds: u64) {
    println!("\niggy-grpc benchmark (iggy-server on loopback, {clients} clients, 1 KiB messages)");
    println!("throughput rows: each path's best of {rounds} rounds, the paths taking turns");
    println!(
        "{:<34} {:<13} {:>11} {:<8} {:>8} {:>9} {:>9} {:>9} {:>6} {:>17}",
        "workload",
        "path",
        "rate",
        "unit",
        "MB/s",
        "p50",
        "p99",
        "p999",
        "vs dir",
        "cpu us/msg c+g+i"
    );
    for row in rows {
        let direct = find_row(rows, row.workload, "direct").map(|r| r.rate);
        let ratio = match (row.latency, direct) {
            (None, Some(direct)) if row.mode != "direct" => format!("{:.2}", row.rate / direct),
            _ => "-".into(),
        };
        let (p50, p99, p999) = row.latency.map_or_else(
            || ("-".into(), "-".into(), "-".into()),
            |(a, b, c)| (millis(a), millis(b), millis(c)),
        );
        let megabytes = if row.unit == "msgs/s" {
            format!("{:.1}", row.rate * PAYLOAD as f64 / 1e6)
        } else {
            "-".into()
        };
        let cpu = row.cpu.map_or_else(
            || "-".into(),
            |[clients, gateway, iggy]| format!("{clients:.2}+{gateway:.2}+{iggy:.2}"),
        );
        println!(
            "{:<34} {:<13} {:>11.1} {:<8} {:>8} {:>9} {:>9} {:>9} {:>6} {:>17}",
            row.workload, row.mode, row.rate, row.unit, megabytes, p50, p99, p999, ratio, cpu
        );
    }
    print_comparisons(rows);
}

fn print_comparisons(rows: &[Row]) {
    let p50 = |workload, mode| find_row(rows, workload, mode).and_then(|r| r.latency.map(|l| l.0));
    if let (Some(gateway), Some(direct)) = (
        p50("single publish", "gateway"),
        p50("single publish", "direct"),
    ) {
        println!(
            "single publish p50: gateway - direct = {:+.3} ms",
            (gateway.as_secs_f64() - direct.as_secs_f64()) * 1e3
        );
    }
    if let (Some(hop), Some(floor)) = (
        p50("health check (no Iggy)", "gateway"),
        p50("health check (bare tonic)", "floor"),
    ) {
        println!(
            "the gRPC hop alone (no Iggy call): p50 {:.3} ms; to a bare tonic server {:.3} ms; the gateway adds {:+.3} ms",
            hop.as_secs_f64() * 1e3,
            floor.as_secs_f64() * 1e3,
            (hop.as_secs_f64() - floor.as_secs_f64()) * 1e3
        );
    }
    for workload in ["batched publish", "subscribe read", "unary poll"] {
        let rounds = |mode| find_row(rows, workload, mode).map_or(&[][..], |r| &r.rounds);
        for mode in ["bare", "gateway"] {
            let by_round: Vec<String> = rounds(mode)
                .iter()
                .zip(rounds("direct"))
                .map(|(path, direct)| format!("{:.2}", path / direct))
                .collect();
            if !by_round.is_empty() {
                println!(
                    "{workload}: {mode} / direct by round = {}",
                    by_round.join(" ")
                );
            }
        }
        let rate = |mode| find_row(rows, workload, mode).map(|r| r.rate);
        let cpu = |mode| find_row(rows, workload, mode).and_then(|r| r.cpu);
        if let (Some([_, plain, plain_iggy]), Some([_, checked, checked_iggy])) =
            (cpu("gateway"), cpu("idempotent"))
        {
            println!(
                "{workload}: idempotent costs the gateway {:+.2} us/msg and iggy-server {:+.2} us/msg; rate {:.2} of gateway",
                checked - plain,
                checked_iggy - plain_iggy,
                rate("idempotent").unwrap_or_default() / rate("gateway").unwrap_or(f64::NAN)
            );
        }
        if let (Some(gateway), Some(http)) = (rate("gateway"), rate("http")) {
            println!("{workload}: gateway / http = {:.2}", gateway / http);
        }
        for (mode, what) in [
            (
                "relay",
                "a bare byte relay in its own process (the floor of any gateway process)",
            ),
            (
                "bare",
                "a bare gateway (tonic's stock codec and the SDK, nothing else)",
            ),
        ] {
            if let (Some(floor), Some(direct), Some(gateway)) =
                (rate(mode), rate("direct"), rate("gateway"))
            {
                println!(
                    "{workload}: {what} reaches {:.2} of direct; the gateway {:.2} of it",
                    floor / direct,
                    gateway / floor
                );
            }
        }
        // What bounds each path: Iggy near 1.0 means its one shard is full;
        // all near the machine's core count means the cores are.
        let busy: Vec<String> = rows
            .iter()
            .filter(|row| row.workload == workload)
            .filter_map(|row| {
                let [clients, gateway, iggy] = row.cpu?;
                let cores = |us_per_message: f64| row.rate * us_per_message / 1e6;
                Some(format!(
                    "{} {:.2} / {:.2}",
                    row.mode,
                    cores(clients + gateway + iggy),
                    cores(iggy)
                ))
            })
            .collect();
        if !busy.is_empty() {
            println!(
                "{workload}: cores busy, all / iggy-server: {}",
                busy.join(", ")
            );
        }
    }
    let gateway_cpu =
        |workload, mode| find_row(rows, workload, mode).and_then(|row| row.cpu.map(|cpu| cpu[1]));
    let frames = "publish, raw HTTP/2 client";
    if let (Some(small), Some(large)) = (
        gateway_cpu(frames, "16KiB frames"),
        gateway_cpu(frames, "1MiB frames"),
    ) {
        println!(
            "{frames}: the gateway's CPU per message in 16 KiB frames is {:.2}x that in 1 MiB frames",
            small / large
        );
    }
    // What the JSON mapping costs the gateway beside protobuf.
    for (workload, json, grpc) in [
        (frames, "JSON 16KiB frames", "16KiB frames"),
        ("subscribe read", "sse", "gateway"),
    ] {
        if let (Some(json_cpu), Some(grpc_cpu)) =
            (gateway_cpu(workload, json), gateway_cpu(workload, grpc))
        {
            println!(
                "{workload}: JSON ({json}) costs the gateway {:+.2} us/msg over gRPC ({grpc})",
                json_cpu - grpc_cpu
            );
        }
    }
}
