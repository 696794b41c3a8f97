//! Fuzz and property tests of every decoder, encoder and parser the project
//! wrote itself (proptest; cargo-fuzz needs a nightly toolchain, which the
//! build machines do not have).
//!
//! `cargo test --lib fuzz::` runs each target on a few hundred inputs (CI
//! does, as part of `cargo test`); docs/fuzzing.md gives the command for a
//! million inputs per target. The hand codecs are held to prost: any request
//! prost encodes, the PublishBatch reader decodes to the same value; any
//! bytes at all, it accepts or refuses exactly as prost does; any answer the
//! hand encoders write, prost decodes to the same value. The strategies
//! build every message with all its fields named, so a field added to the
//! proto breaks this file's build until it is generated here too.

use crate::{
    edge::{RequestId, Traceparent, keys},
    messaging::{headers, subscribe},
    proto::{
        self, BatchEntryResult, BatchMessage, DeliveredMessage, EntryError, HeaderValue,
        MessageBatch, Partitioning, PublishBatchRequest, PublishBatchResponse, PublishResult,
        ResourceId, SubscribeResponse, batch_answer, batch_entry_result::Outcome, batch_request,
        header_value::Kind, partitioning, resource_id, subscribe_batch, subscribe_response,
    },
    validate::{self, FieldPath},
};
use bytes::Bytes;
use proptest::{collection, option, prelude::*};
use prost::Message as _;
use std::collections::HashMap;
use tonic::codegen::http;

/// An Iggy identifier: a number, or a name of 1-255 bytes. (Test-only code:
/// Iggy refuses only 0 and empty or over-long names, which the ranges leave
/// out, so the `expect`s cannot fire.)
fn identifier() -> impl Strategy<Value = iggy::prelude::Identifier> {
    prop_oneof![
        (1..u32::MAX).prop_map(|id| iggy::prelude::Identifier::numeric(id).expect("nonzero")),
        "[a-z0-9.-]{1,255}".prop_map(|name| iggy::prelude::Identifier::named(&name).expect("name")),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn resource_id() -> impl Strategy<Value = Option<ResourceId>> {
    option::of(
        prop_oneof![
            ".{0,12}".prop_map(resource_id::Kind::Name),
            any::<u32>().prop_map(resource_id::Kind::Id),
        ]
        .prop_map(|kind| ResourceId { kind: Some(kind) }),
    )
}

fn partitioning() -> impl Strategy<Value = Option<Partitioning>> {
    option::of(
        option::of(prop_oneof![
            Just(partitioning::Kind::Balanced(())),
            any::<u32>().prop_map(partitioning::Kind::PartitionId),
            bytes(8).prop_map(partitioning::Kind::Key),
        ])
        .prop_map(|kind| Partitioning { kind }),
    )
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    option::of(prop_oneof![
        ".{0,8}".prop_map(Kind::StringValue),
        bytes(8).prop_map(Kind::BytesValue),
        any::<bool>().prop_map(Kind::BoolValue),
        any::<i32>().prop_map(Kind::Int32Value),
        any::<i64>().prop_map(Kind::Int64Value),
        any::<u32>().prop_map(Kind::Uint32Value),
        any::<u64>().prop_map(Kind::Uint64Value),
        // Finite, so that equality means what it says.
        (-1e30f32..1e30).prop_map(Kind::FloatValue),
        (-1e300f64..1e300).prop_map(Kind::DoubleValue),
    ])
    .prop_map(|kind| HeaderValue { kind })
}

fn headers() -> impl Strategy<Value = HashMap<String, HeaderValue>> {
    collection::hash_map("[a-z]{0,6}", header_value(), 0..3)
}

fn message() -> impl Strategy<Value = proto::Message> {
    // Mostly the usual entry (an id and a payload), which the reader reads
    // itself; sometimes headers, which it leaves to prost.
    (
        prop_oneof![Just(String::new()), ".{0,40}"],
        bytes(64),
        prop_oneof![3 => Just(HashMap::new()), 1 => headers()],
    )
        .prop_map(|(id, payload, headers)| proto::Message {
            id,
            payload,
            headers,
        })
}

fn batch_request() -> impl Strategy<Value = PublishBatchRequest> {
    (
        resource_id(),
        resource_id(),
        partitioning(),
        collection::vec(
            (
                option::of(message()),
                prop_oneof![3 => Just(None), 1 => partitioning()],
            )
                .prop_map(|(message, partitioning)| BatchMessage {
                    message,
                    partitioning,
                }),
            0..12,
        ),
        any::<bool>(),
    )
        .prop_map(
            |(stream, topic, partitioning, messages, idempotent)| PublishBatchRequest {
                stream,
                topic,
                partitioning,
                messages,
                idempotent,
            },
        )
}

/// Bytes near valid requests: an encoded request with some bytes replaced,
/// cut short, or run on.
fn near_request_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        batch_request(),
        collection::vec((any::<usize>(), any::<u8>()), 0..4),
        option::of(any::<usize>()),
        collection::vec(any::<u8>(), 0..4),
    )
        .prop_map(|(request, replacements, cut, tail)| {
            let mut bytes = request.encode_to_vec();
            for (at, byte) in replacements {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            bytes.extend(tail);
            bytes
        })
}

fn entry_result() -> impl Strategy<Value = BatchEntryResult> {
    option::of(prop_oneof![
        (
            prop_oneof![Just(String::new()), ".{0,40}", ".{60,80}"],
            any::<u32>(),
            option::of(any::<u64>()),
            any::<bool>(),
        )
            .prop_map(|(id, partition_id, offset, duplicate)| {
                Outcome::Stored(PublishResult {
                    id,
                    partition_id,
                    offset,
                    duplicate,
                })
            }),
        (any::<i32>(), ".{0,12}", ".{0,20}").prop_map(|(code, reason, message)| {
            Outcome::Error(EntryError {
                code,
                reason,
                message,
            })
        }),
    ])
    .prop_map(|outcome| BatchEntryResult { outcome })
}

fn delivered() -> impl Strategy<Value = DeliveredMessage> {
    (
        any::<u32>(),
        any::<u64>(),
        prop_oneof![Just(String::new()), ".{0,40}", ".{60,80}"],
        any::<u64>(),
        prop_oneof![3 => Just(HashMap::new()), 1 => headers()],
        bytes(64),
        prop_oneof![Just(1u32), any::<u32>()],
    )
        .prop_map(
            |(partition_id, offset, id, timestamp_micros, headers, payload, delivery_attempt)| {
                DeliveredMessage {
                    partition_id,
                    offset,
                    id,
                    timestamp_micros,
                    headers,
                    payload,
                    delivery_attempt,
                }
            },
        )
}

proptest! {
    #[test]
    fn batch_request_reader_decodes_what_prost_encodes(request in batch_request()) {
        let decoded = batch_request::decode(Bytes::from(request.encode_to_vec()));
        prop_assert_eq!(decoded.ok(), Some(request));
    }

    #[test]
    fn batch_request_reader_agrees_with_prost_on_any_bytes(
        bytes in prop_oneof![near_request_bytes(), collection::vec(any::<u8>(), 0..64)],
    ) {
        let ours = batch_request::decode(Bytes::from(bytes.clone()));
        let prost = PublishBatchRequest::decode(bytes.as_slice());
        prop_assert_eq!(ours.is_ok(), prost.is_ok(), "{:?} / {:?}", ours, prost);
        prop_assert_eq!(ours.ok(), prost.ok());
    }

    #[test]
    fn batch_answer_writes_what_prost_decodes(results in collection::vec(entry_result(), 0..12)) {
        let mut written = Vec::with_capacity(batch_answer::encoded_len(&results));
        batch_answer::encode(&results, &mut written);
        prop_assert_eq!(written.len(), batch_answer::encoded_len(&results));
        let decoded = PublishBatchResponse::decode(written.as_slice());
        prop_assert_eq!(decoded.ok(), Some(PublishBatchResponse { results }));
    }

    #[test]
    fn subscribe_batch_writes_what_prost_decodes(
        messages in collection::vec(delivered(), 0..8),
        resume_token in ".{0,24}",
    ) {
        let batch = MessageBatch { messages, resume_token };
        let measured = subscribe_batch::measure(&batch);
        let mut written = Vec::with_capacity(measured.encoded_len());
        measured.encode(&mut written);
        prop_assert_eq!(written.len(), measured.encoded_len());
        let decoded = SubscribeResponse::decode(written.as_slice());
        let expected = SubscribeResponse { kind: Some(subscribe_response::Kind::Batch(batch)) };
        prop_assert_eq!(decoded.ok(), Some(expected));
    }

    #[test]
    fn subscribe_batch_events_say_what_the_general_path_says(
        messages in collection::vec(delivered(), 0..8),
        resume_token in ".{0,24}",
    ) {
        let batch = MessageBatch { messages, resume_token };
        let response = SubscribeResponse { kind: Some(subscribe_response::Kind::Batch(batch)) };
        let (ours, general) = crate::web::batch_event::both(&response);
        let ours = ours.ok_or_else(|| TestCaseError::fail("a batch is written by hand"))?;
        prop_assert!(
            crate::web::batch_event::same_event(&ours, &general),
            "{:?} / {:?}", ours, general
        );
    }

    #[test]
    fn resume_tokens_round_trip_and_any_text_is_refused_cleanly(
        positions in collection::btree_map(
            any::<u32>(),
            prop_oneof![
                any::<u64>().prop_map(subscribe::Position::Offset),
                any::<u64>().prop_map(subscribe::Position::Time),
            ],
            0..8,
        ),
        fingerprint in any::<u32>(),
        text in prop_oneof![".{0,64}", "[A-Za-z0-9_-]{0,64}"],
    ) {
        let token = subscribe::encode_token(fingerprint, &positions);
        prop_assert_eq!(subscribe::decode_token("start.resume_token", &token, fingerprint).ok(), Some(positions));
        let _ = subscribe::decode_token("start.resume_token", &text, fingerprint);
    }

    #[test]
    fn subscription_ids_round_trip_and_any_text_is_refused_cleanly(
        client_id in any::<u32>(),
        nonce in any::<[u8; 16]>(),
        stream in identifier(),
        topic in identifier(),
        consumer in identifier(),
        group in any::<bool>(),
        manual in any::<bool>(),
        redelivery in any::<bool>(),
        text in prop_oneof![".{0,64}", "[A-Za-z0-9_-]{0,96}"],
    ) {
        let reference = subscribe::SubscriptionRef {
            client_id,
            nonce,
            stream,
            topic,
            consumer: if group {
                iggy::prelude::Consumer::group(consumer)
            } else {
                iggy::prelude::Consumer::new(consumer)
            },
            manual,
            redelivery,
        };
        prop_assert_eq!(subscribe::SubscriptionRef::decode(&reference.encode()), Some(reference));
        let _ = subscribe::SubscriptionRef::decode(&text);
    }

    #[test]
    fn api_key_variables_and_files_never_panic(
        text in prop_oneof![
            ".{0,80}",
            "([a-z]{0,6}:[a-z0-9-]{0,20}:(publish|subscribe|admin|x)([+](publish|admin))?(:[a-z]{0,4})?;){0,3}",
        ],
        file in prop_oneof![
            ".{0,80}",
            "\\[\\[keys\\]\\]\nid = \"[a-z]{0,4}\"\nsecret_sha256 = \"[0-9a-f]{0,64}\"\nscopes = \\[(\"publish\"|\"x\")?\\]\n",
            "\\{\"keys\": \\[\\{\"id\": \"[a-z]{0,4}\", \"scopes\": \\[\\], \"tls_common_name\": \".{0,4}\"\\}\\]\\}",
        ],
    ) {
        let _ = keys::parse_env(&text);
        let _ = keys::parse_file("keys.toml", &file, false);
        let _ = keys::parse_file("keys.json", &file, true);
    }

    #[test]
    fn request_ids_and_traceparents_never_panic(
        raw in collection::vec(any::<u8>(), 0..160),
        traceparent in "[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.{0,4})?",
    ) {
        if let Ok(value) = http::HeaderValue::from_bytes(&raw) {
            if let Ok(id) = RequestId::from_header(Some(&value)) {
                prop_assert!(id.as_str().len() <= 128);
            }
            let _ = Traceparent::from_header(Some(&value));
        }
        if let Ok(value) = http::HeaderValue::from_str(&traceparent)
            && let Some(kept) = Traceparent::from_header(Some(&value))
        {
            prop_assert_eq!(kept.as_str(), traceparent.as_str());
        }
    }

    #[test]
    fn headers_convert_to_iggy_and_back(headers in headers()) {
        let field = FieldPath::root("message.headers");
        if let Ok(converted) = headers::to_iggy(&field, &headers, 100_000) {
            let back = converted.as_ref().map(headers::from_iggy).unwrap_or_default();
            prop_assert_eq!(back, headers);
        }
    }

    #[test]
    fn validation_never_panics(
        name in ".{0,300}",
        id in resource_id(),
        group in option::of(".{0,10}"),
        count in any::<u32>(),
    ) {
        if let Ok(kept) = validate::name("name", &name) {
            prop_assert!(!kept.is_empty() && kept.len() <= 255);
        }
        let _ = validate::resource_id("stream", id.as_ref());
        let consumer = group.map(|group| proto::Consumer { kind: Some(proto::consumer::Kind::Group(group)) });
        let _ = validate::consumer("consumer", consumer.as_ref());
        let _ = validate::partitions_count("partitions_count", count);
    }
}
