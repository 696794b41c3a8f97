//! Instructions per message of each hand-written codec path against prost,
//! counted by callgrind (deterministic, unlike wall time on a shared host).
//!
//! `cargo bench --bench codec` builds this and, when valgrind is installed,
//! runs every path under callgrind twice (with `ITERATIONS` and with none),
//! and prints the instructions one message costs on each path and the hand
//! path's saving. A hand path stays only while it saves 15% or more
//! (docs/performance.md). `codec PATH N` runs one path N times, for callgrind.

use bytes::Bytes;
use iggy_grpc::proto::{
    self, BatchEntryResult, BatchMessage, DeliveredMessage, MessageBatch, PublishBatchRequest,
    PublishBatchResponse, PublishResult, SubscribeResponse, batch_answer, batch_entry_result,
    batch_request, subscribe_batch, subscribe_response,
};
use iggy_grpc::web;
use prost::Message;
use prost_reflect::MessageDescriptor;
use std::{hint::black_box, process::Command};

/// Messages per request or answer, as in the throughput benchmark's batches.
const BATCH: usize = 1_000;
/// Messages per Subscribe batch (the default batch size).
const DELIVERED: usize = 100;
const ITERATIONS: u64 = 200;

const UUID: &str = "6f2b0c1e-7a3d-4e55-9d0a-1b2c3d4e5f60";

fn request_bytes() -> Bytes {
    let request = PublishBatchRequest {
        stream: Some(proto::ResourceId {
            kind: Some(proto::resource_id::Kind::Name("bench".into())),
        }),
        topic: Some(proto::ResourceId {
            kind: Some(proto::resource_id::Kind::Name("bench".into())),
        }),
        partitioning: None,
        messages: (0..BATCH)
            .map(|_| BatchMessage {
                message: Some(proto::Message {
                    id: UUID.into(),
                    payload: Bytes::from(vec![7; 1024]),
                    headers: Default::default(),
                }),
                partitioning: None,
            })
            .collect(),
        idempotent: false,
    };
    Bytes::from(request.encode_to_vec())
}

fn results() -> Vec<BatchEntryResult> {
    (0..BATCH as u64)
        .map(|offset| BatchEntryResult {
            outcome: Some(batch_entry_result::Outcome::Stored(PublishResult {
                id: UUID.into(),
                partition_id: 1,
                offset: Some(1_000_000 + offset),
                duplicate: false,
            })),
        })
        .collect()
}

fn batch() -> MessageBatch {
    MessageBatch {
        messages: (0..DELIVERED as u64)
            .map(|offset| DeliveredMessage {
                partition_id: 1,
                offset: 1_000_000 + offset,
                id: UUID.into(),
                timestamp_micros: 1_700_000_000_000_000 + offset,
                headers: Default::default(),
                payload: Bytes::from(vec![7; 1024]),
                delivery_attempt: 1,
            })
            .collect(),
        resume_token: "AQAAAAABAAAAQEIPAAAAAAA".into(),
    }
}

/// [`batch`] with the `traceparent` header the gateway stores when a
/// publisher sends one, as every message published under tracing has.
fn traced_batch() -> MessageBatch {
    let mut batch = batch();
    for message in &mut batch.messages {
        message.headers.insert(
            "traceparent".into(),
            proto::HeaderValue {
                kind: Some(proto::header_value::Kind::StringValue(
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                )),
            },
        );
    }
    batch
}

/// One codec path: its name, messages per run, and the work of one run.
struct Path {
    name: &'static str,
    messages: usize,
    run: fn(),
}

fn paths() -> Vec<Path> {
    vec![
        Path {
            name: "publish-batch-decode-hand",
            messages: BATCH,
            run: || {
                let bytes = request_bytes_cached();
                black_box(batch_request::decode(bytes).ok());
            },
        },
        Path {
            name: "publish-batch-decode-prost",
            messages: BATCH,
            run: || {
                let bytes = request_bytes_cached();
                black_box(PublishBatchRequest::decode(bytes).ok());
            },
        },
        Path {
            name: "batch-answer-encode-hand",
            messages: BATCH,
            run: || {
                let results = results_cached();
                let mut buf = Vec::with_capacity(batch_answer::encoded_len(results));
                batch_answer::encode(results, &mut buf);
                black_box(buf);
            },
        },
        Path {
            name: "batch-answer-encode-prost",
            messages: BATCH,
            run: || {
                let answer = answer_cached();
                let mut buf = Vec::with_capacity(answer.encoded_len());
                answer.encode_raw(&mut buf);
                black_box(buf);
            },
        },
        Path {
            name: "subscribe-batch-encode-hand",
            messages: DELIVERED,
            run: || {
                let measured = subscribe_batch::measure(batch_cached());
                let mut buf = Vec::with_capacity(measured.encoded_len());
                measured.encode(&mut buf);
                black_box(buf);
            },
        },
        Path {
            name: "subscribe-batch-encode-prost",
            messages: DELIVERED,
            run: || {
                let response = response_cached();
                let mut buf = Vec::with_capacity(response.encoded_len());
                response.encode_raw(&mut buf);
                black_box(buf);
            },
        },
        Path {
            name: "sse-batch-event-hand",
            messages: DELIVERED,
            run: || {
                let (output, bytes) = sse_input_cached();
                black_box(web::batch_event::of(output, bytes));
            },
        },
        Path {
            name: "sse-batch-event-prost-reflect",
            messages: DELIVERED,
            run: || {
                let (output, bytes) = sse_input_cached();
                black_box(web::sse::general_event(output, bytes.clone()));
            },
        },
        Path {
            name: "sse-traced-event-hand",
            messages: DELIVERED,
            run: || {
                let (output, bytes) = sse_traced_input_cached();
                black_box(web::batch_event::of(output, bytes));
            },
        },
        Path {
            name: "sse-traced-event-prost-reflect",
            messages: DELIVERED,
            run: || {
                let (output, bytes) = sse_traced_input_cached();
                black_box(web::sse::general_event(output, bytes.clone()));
            },
        },
    ]
}

fn request_bytes_cached() -> Bytes {
    static BYTES: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    BYTES.get_or_init(request_bytes).clone()
}

fn results_cached() -> &'static [BatchEntryResult] {
    static RESULTS: std::sync::OnceLock<Vec<BatchEntryResult>> = std::sync::OnceLock::new();
    RESULTS.get_or_init(results)
}

fn answer_cached() -> &'static PublishBatchResponse {
    static ANSWER: std::sync::OnceLock<PublishBatchResponse> = std::sync::OnceLock::new();
    ANSWER.get_or_init(|| PublishBatchResponse { results: results() })
}

fn response_cached() -> &'static SubscribeResponse {
    static RESPONSE: std::sync::OnceLock<SubscribeResponse> = std::sync::OnceLock::new();
    RESPONSE.get_or_init(|| SubscribeResponse {
        kind: Some(subscribe_response::Kind::Batch(batch())),
    })
}

/// A Subscribe batch's encoding, and its descriptor, as the SSE path gets them.
fn sse_input_cached() -> &'static (MessageDescriptor, Bytes) {
    static INPUT: std::sync::OnceLock<(MessageDescriptor, Bytes)> = std::sync::OnceLock::new();
    INPUT.get_or_init(|| sse_input(response_cached()))
}

/// [`sse_input_cached`] of [`traced_batch`].
fn sse_traced_input_cached() -> &'static (MessageDescriptor, Bytes) {
    static INPUT: std::sync::OnceLock<(MessageDescriptor, Bytes)> = std::sync::OnceLock::new();
    INPUT.get_or_init(|| {
        sse_input(&SubscribeResponse {
            kind: Some(subscribe_response::Kind::Batch(traced_batch())),
        })
    })
}

fn sse_input(response: &SubscribeResponse) -> (MessageDescriptor, Bytes) {
    let output = web::descriptors()
        .ok()
        .and_then(|pool| pool.get_message_by_name("iggy.gateway.v1.SubscribeResponse"))
        .expect("the gateway's descriptors");
    (output, Bytes::from(response.encode_to_vec()))
}

fn batch_cached() -> &'static MessageBatch {
    static BATCH: std::sync::OnceLock<MessageBatch> = std::sync::OnceLock::new();
    BATCH.get_or_init(batch)
}

/// Instructions callgrind counts for `path` run `iterations` times.
fn instructions(path: &str, iterations: u64) -> Option<u64> {
    let out = std::env::temp_dir().join(format!("codec-{path}-{iterations}.callgrind"));
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(std::env::current_exe().ok()?)
        .args([path, &iterations.to_string()])
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|line| line.strip_prefix("summary: "))
        .and_then(|total| total.trim().parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Run by callgrind: one path, N times (setup runs even for N = 0).
    if let [name, iterations] = args.as_slice()
        && let Some(path) = paths().into_iter().find(|path| path.name == name)
    {
        let _ = (
            request_bytes_cached(),
            results_cached(),
            batch_cached(),
            answer_cached(),
            response_cached(),
            sse_input_cached(),
            sse_traced_input_cached(),
        );
        for _ in 0..iterations.parse::<u64>().unwrap_or(0) {
            (path.run)();
        }
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("valgrind is not installed: no instruction counts (apt-get install valgrind)");
        return;
    }
    println!("instructions per message (callgrind, {ITERATIONS} runs each)");
    println!("{:<32} {:>12}", "path", "per message");
    let mut per_message = Vec::new();
    for path in paths() {
        let (Some(full), Some(setup)) = (
            instructions(path.name, ITERATIONS),
            instructions(path.name, 0),
        ) else {
            println!("{:<32} {:>12}", path.name, "failed");
            continue;
        };
        let each = full.saturating_sub(setup) as f64 / (ITERATIONS as f64 * path.messages as f64);
        println!("{:<32} {:>12.1}", path.name, each);
        per_message.push((path.name, each));
    }
    for pair in per_message.chunks(2) {
        if let [(hand, hand_cost), (_, prost_cost)] = pair {
            let saving = 100.0 * (1.0 - hand_cost / prost_cost);
            let verdict = if saving >= 15.0 {
                "keeps its place"
            } else {
                "UNDER 15%: use prost"
            };
            println!("{hand}: saves {saving:.0}% against the general path ({verdict})");
        }
    }
}
