//! Every refusal is explained: a table over every RPC the gateway serves of
//! requests a generated client would never send, each answered with a
//! google.rpc ErrorInfo reason; and a batch split into many small HTTP/2
//! frames is decoded as the same batch.

use crate::support::{
    Env, TestBody, TestGateway, by_name, error_reason, grpc_frame, new_topic, raw_call, sdk_client,
    stored,
};
use bytes::{BufMut, Bytes, BytesMut};
use iggy_grpc::{Config, edge::method, proto};
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        (
            "refusals::every_rpc_explains_each_kind_of_bad_request",
            |env| Box::pin(every_rpc_explains(env)),
        ),
        (
            "refusals::a_batch_in_small_frames_is_published_whole",
            |env| Box::pin(batch_in_small_frames(env)),
        ),
    ]
}

/// The request size limit of the table's gateway.
const LIMIT: usize = 4096;

/// A request that no client library would send, and what it must get.
struct Case {
    name: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Bytes,
    code: Code,
    reason: &'static str,
}

fn cases() -> Vec<Case> {
    // Field 1, length-delimited, claims 5 bytes, has 1: no message decodes it.
    let undecodable = grpc_frame(&[0x0a, 0x05, 0x01], false);
    let mut cut_off = BytesMut::new();
    cut_off.put_u8(0);
    cut_off.put_u32(100);
    cut_off.put_slice(&[0; 10]);
    let mut over_limit = BytesMut::new();
    over_limit.put_u8(0);
    over_limit.put_u32(u32::try_from(LIMIT + 1).unwrap_or(u32::MAX));
    vec![
        Case {
            name: "a body that does not decode",
            headers: &[],
            body: undecodable,
            code: Code::InvalidArgument,
            reason: "MALFORMED_REQUEST",
        },
        Case {
            name: "a body cut off inside its message",
            headers: &[],
            body: cut_off.freeze(),
            code: Code::InvalidArgument,
            reason: "MALFORMED_REQUEST",
        },
        Case {
            name: "a message over --max-request-bytes",
            headers: &[],
            body: over_limit.freeze(),
            code: Code::OutOfRange,
            reason: "REQUEST_TOO_LARGE",
        },
        Case {
            name: "an unsupported grpc-encoding",
            headers: &[("grpc-encoding", "gzip")],
            body: grpc_frame(&[], true),
            code: Code::Unimplemented,
            reason: "UNSUPPORTED_ENCODING",
        },
        Case {
            name: "the compressed flag without an encoding",
            headers: &[],
            body: grpc_frame(&[], true),
            code: Code::Internal,
            reason: "INVALID_COMPRESSION_FLAG",
        },
    ]
}

/// The reflection services' one method streams both ways, so its messages
/// are decoded after the call began: tonic-reflection ends the stream (OK)
/// at the first that fails. Only refusals made before that apply to it.
fn refused_before_the_call(case: &Case) -> bool {
    case.reason == "UNSUPPORTED_ENCODING"
}

async fn every_rpc_explains(env: Env) {
    let mut config = Config::for_connection_string(&env.iggy.connection_string);
    config.transport.max_request_bytes = LIMIT;
    let gateway = TestGateway::start_ready_with(config).await;
    let mut methods: Vec<String> = method::known_methods().into_iter().collect();
    methods.sort();
    assert!(methods.len() >= 34, "every RPC is listed: {methods:?}");

    let mut failures = Vec::new();
    for method in &methods {
        let path = format!("/{method}");
        for case in cases() {
            let answer = raw_call(
                gateway.address(),
                &path,
                case.headers,
                case.body.clone(),
                16_384,
            )
            .await;
            let reason = error_reason(&answer.status);
            if method.starts_with("grpc.reflection.") && !refused_before_the_call(&case) {
                continue;
            }
            if answer.status.code() != case.code || reason.as_deref() != Some(case.reason) {
                failures.push(format!("{method}, {}: {:?}", case.name, answer.status));
            }
            if case.reason == "REQUEST_TOO_LARGE" {
                let limit = answer
                    .status
                    .get_error_details()
                    .error_info()
                    .and_then(|info| info.metadata.get("limit_bytes").cloned());
                if limit != Some(LIMIT.to_string()) {
                    failures.push(format!(
                        "{method}: the limit is not in ErrorInfo: {limit:?}"
                    ));
                }
            }
        }
    }
    for path in [
        "/iggy.gateway.v1.MessagingService/NoSuchMethod",
        "/no.such.Service/Call",
    ] {
        let answer = raw_call(gateway.address(), path, &[], grpc_frame(&[], false), 16_384).await;
        if answer.status.code() != Code::Unimplemented
            || error_reason(&answer.status).as_deref() != Some("UNKNOWN_METHOD")
            || !answer.status.message().contains(path)
        {
            failures.push(format!("{path}: {:?}", answer.status));
        }
    }
    assert!(
        failures.is_empty(),
        "{} refusals without their reason:\n{}",
        failures.len(),
        failures.join("\n")
    );
    gateway.stop().await.expect("clean stop");
}

fn entry(index: usize) -> proto::BatchMessage {
    let mut headers = std::collections::HashMap::new();
    if index.is_multiple_of(3) {
        headers.insert(
            "n".to_owned(),
            proto::HeaderValue {
                kind: Some(proto::header_value::Kind::Uint64Value(index as u64)),
            },
        );
    }
    proto::BatchMessage {
        message: Some(proto::Message {
            id: String::new(),
            payload: Bytes::from(vec![u8::try_from(index % 251).unwrap_or(0); 700]),
            headers,
        }),
        partitioning: None,
    }
}

async fn batch_in_small_frames(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let entries: Vec<_> = (0..60).map(entry).collect();
    let request = proto::PublishBatchRequest {
        stream: by_name(&stream),
        topic: by_name(&topic),
        partitioning: None,
        messages: entries.clone(),
        idempotent: false,
    };
    let body = grpc_frame(&request.encode_to_vec(), false);
    // One frame of the whole body, HTTP/2's default 16 KiB, and 100 bytes.
    for frame_bytes in [body.len(), 16_384, 100] {
        let answer = raw_call(
            gateway.address(),
            "/iggy.gateway.v1.MessagingService/PublishBatch",
            &[],
            body.clone(),
            frame_bytes,
        )
        .await;
        assert_eq!(answer.status.code(), Code::Ok, "{:?}", answer.status);
        let response = proto::PublishBatchResponse::decode(answer.body.slice(5..))
            .expect("a PublishBatch answer");
        assert_eq!(response.results.len(), entries.len());
        for result in &response.results {
            assert!(
                matches!(
                    result.outcome,
                    Some(proto::batch_entry_result::Outcome::Stored(_))
                ),
                "{result:?}"
            );
        }
    }
    let iggy = sdk_client(&env.iggy.connection_string).await;
    let messages = stored(&iggy, &stream, &topic, 0).await;
    assert_eq!(messages.len(), 3 * entries.len());
    for (index, message) in messages.iter().enumerate() {
        let sent = entries[index % entries.len()]
            .message
            .as_ref()
            .map(|m| &m.payload);
        assert_eq!(Some(&message.payload), sent, "message {index}");
        let has_header = message
            .user_headers_map()
            .ok()
            .flatten()
            .is_some_and(|headers| !headers.is_empty());
        assert_eq!(
            has_header,
            (index % entries.len()) % 3 == 0,
            "message {index}"
        );
    }
    gateway.stop().await.expect("clean stop");
}
