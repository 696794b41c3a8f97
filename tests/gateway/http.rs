//! HTTP/JSON, Server-Sent Events and gRPC-Web, with curl as the client:
//! the route table in docs/http.md is the proto's, every curl example there
//! runs as written against a live gateway and a real Iggy, and the edge
//! rules hold the same on every transport.

use crate::support::{
    Env, TestBody, TestGateway, bad_request_field, by_name, error_reason, new_topic,
};
use bytes::Bytes;
use iggy_grpc::{config::Config, edge::RateSpec, proto, web::BodyRule};
use libtest_mimic::{Failed, Trial};
use prost::Message;
use std::{path::Path, process::Stdio};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt},
    process::Command,
};
use tonic::{
    Code, Request, Status,
    codegen::http::{HeaderMap, HeaderName, HeaderValue},
    metadata::MetadataValue,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The address the docs' examples use; the tests put the gateway's there.
const DOC_ADDRESS: &str = "localhost:50051";

/// The first line of an example that streams until stopped.
const STREAMS_MARK: &str = "# Streams until you stop it";

/// The prefix every topic route shares, written `T` in the table.
const TOPIC_PREFIX: &str = "/v1/streams/{stream}/topics/{topic}";

pub fn tests() -> Vec<Trial> {
    vec![Trial::test(
        "http::route_table_matches_the_proto",
        route_table,
    )]
}

pub fn iggy_tests() -> Vec<(&'static str, TestBody)> {
    vec![
        ("http::curl_examples_run_as_written", |env| {
            Box::pin(curl_examples(env))
        }),
        ("http::edge_rules_match_on_every_transport", |env| {
            Box::pin(edge_rules(env))
        }),
        (
            "http::sse_cut_and_resumed_with_last_event_id_loses_nothing",
            |env| Box::pin(sse_resumes(env)),
        ),
        ("http::sse_delivers_every_kind_of_header", |env| {
            Box::pin(sse_headers(env))
        }),
        ("http::cors_preflights_and_grpc_web_streams", |env| {
            Box::pin(cors_and_grpc_web_streams(env))
        }),
    ]
}

/// The route table rows the proto declares, as docs/http.md writes them.
fn declared_rows() -> Result<Vec<String>, Failed> {
    let routes = iggy_grpc::web::routes()?;
    let mut rows = vec!["| GET | `/health` | liveness | — |".to_owned()];
    for route in routes.iter() {
        let template = match route.template().strip_prefix(TOPIC_PREFIX) {
            Some(rest) => format!("T{rest}"),
            None => route.template().to_owned(),
        };
        let rpc = route.rpc.full_name();
        let rpc = rpc.strip_prefix("iggy.gateway.v1.").unwrap_or(rpc);
        let body = match route.body {
            BodyRule::Whole => "JSON",
            BodyRule::None if route.rpc.is_server_streaming() => "— (SSE)",
            BodyRule::None => "—",
        };
        rows.push(format!(
            "| {} | `{template}` | `{rpc}` | {body} |",
            route.http_method()
        ));
    }
    Ok(rows)
}

fn doc() -> Result<String, Failed> {
    Ok(std::fs::read_to_string(
        Path::new(ROOT).join("docs/http.md"),
    )?)
}

fn route_table() -> Result<(), Failed> {
    let doc = doc()?;
    let mut documented: Vec<String> = doc
        .lines()
        .skip_while(|line| !line.starts_with("| HTTP | path | RPC | body |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(str::to_owned)
        .collect();
    let mut declared = declared_rows()?;
    documented.sort();
    declared.sort();
    if documented != declared {
        return Err(format!(
            "docs/http.md's route table differs from the proto's routes; the proto declares:\n{}",
            declared.join("\n")
        )
        .into());
    }
    Ok(())
}

/// The ```sh blocks of docs/http.md, in order.
fn shell_blocks(doc: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Every curl example, in order, in one shell, with the gateway's address
/// for the docs' one; a streaming example runs for a few seconds (in a
/// shell of its own, which sees the exported variables) and must have
/// delivered a batch.
async fn curl_examples(env: Env) {
    let gateway = TestGateway::start_ready_with(Config {
        iggy_url: env.iggy.connection_string.clone(),
        ..Config::default()
    })
    .await;
    let doc = doc().expect("docs/http.md");
    let blocks = shell_blocks(&doc);
    assert!(blocks.len() >= 5, "docs/http.md has its curl examples");
    // The examples' stream, unique to this run, still reads as written.
    let stream = env.unique("orders");
    let address = gateway.address().to_string();
    let mut script = String::from("set -euo pipefail -x\n");
    for block in blocks {
        let block = block
            .replace(DOC_ADDRESS, &address)
            .replace("/v1/streams/orders", &format!("/v1/streams/{stream}"))
            .replace(r#""name":"orders""#, &format!(r#""name":"{stream}""#));
        if block.starts_with(STREAMS_MARK) {
            script.push_str(&format!(
                "events=$(timeout 4 bash -c {} || [ $? -eq 124 ])\n\
                 grep -q 'event: subscribed' <<<\"$events\"\n\
                 grep -q 'event: batch' <<<\"$events\"\n",
                shell_quote(&format!("set -euo pipefail\n{block}"))
            ));
        } else {
            script.push_str(&block);
        }
    }
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("bash runs");
    assert!(
        output.status.success(),
        "a docs/http.md example failed (the trace ends at it):\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    gateway.stop().await.expect("stops");
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A call the edge cases make, on every transport.
#[derive(Clone)]
enum Call {
    Publish(proto::PublishRequest),
    Subscribe(proto::SubscribeRequest),
}

/// One edge rule, as each transport must show it.
struct Case {
    name: &'static str,
    key: Option<&'static str>,
    request_id: Option<String>,
    call: Call,
    /// The same call as HTTP/JSON: method, path and query, body.
    rest: (&'static str, String, Option<String>),
    code: Code,
    reason: &'static str,
    field: Option<&'static str>,
}

/// What a client sees of a refusal.
#[derive(Debug, PartialEq)]
struct Refusal {
    code: Code,
    reason: Option<String>,
    field: Option<String>,
    retry_after: bool,
}

impl Refusal {
    fn of(status: &Status, headers_retry_after: bool) -> Self {
        Self {
            code: status.code(),
            reason: error_reason(status),
            field: bad_request_field(status),
            retry_after: headers_retry_after || status.metadata().get("retry-after").is_some(),
        }
    }
}

/// Runs curl with `args`; returns the HTTP status, headers and body.
async fn curl(args: &[String], body: Option<Vec<u8>>) -> (u16, HeaderMap, Vec<u8>) {
    let mut command = Command::new("curl");
    command.args(["-sS", "-i", "--max-time", "20"]).args(args);
    if body.is_some() {
        command.args(["--data-binary", "@-"]);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&body.unwrap_or_default())
        .await
        .expect("body written");
    drop(stdin);
    let output = child.wait_with_output().await.expect("curl ends");
    assert!(output.status.success(), "curl failed: {args:?}");
    let split = output
        .stdout
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&output.stdout[..split]).to_string();
    let body = output.stdout[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.trim().as_bytes()),
                HeaderValue::from_str(value.trim()),
            )
        {
            headers.append(name, value);
        }
    }
    (status, headers, body)
}

fn header_args(case: &Case) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(key) = case.key {
        args.extend(["-H".to_owned(), format!("x-api-key: {key}")]);
    }
    if let Some(id) = &case.request_id {
        args.extend(["-H".to_owned(), format!("x-request-id: {id}")]);
    }
    args
}

/// The case over HTTP/JSON (Server-Sent Events for Subscribe).
async fn over_rest(gateway: &TestGateway, case: &Case) -> Refusal {
    let (method, path, body) = &case.rest;
    let mut args = header_args(case);
    args.extend([
        "-X".to_owned(),
        (*method).to_owned(),
        format!("http://{}{path}", gateway.address()),
    ]);
    if matches!(case.call, Call::Subscribe(_)) {
        args.extend(["-H".to_owned(), "accept: text/event-stream".to_owned()]);
    }
    let (status, headers, body) = curl(&args, body.clone().map(String::into_bytes)).await;
    assert!(
        headers.contains_key("x-request-id"),
        "{}: no request id on the JSON answer",
        case.name
    );
    let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON status");
    let code = Code::from_i32(json["code"].as_i64().unwrap_or(-1) as i32);
    assert_eq!(
        status,
        iggy_grpc::web::http_status(code).as_u16(),
        "{}: HTTP status for {code:?}",
        case.name
    );
    let details = json["details"].as_array().cloned().unwrap_or_default();
    let detail = |kind: &str| {
        details
            .iter()
            .find(|d| {
                d["@type"].as_str() == Some(&format!("type.googleapis.com/google.rpc.{kind}"))
            })
            .cloned()
    };
    Refusal {
        code,
        reason: detail("ErrorInfo").and_then(|d| d["reason"].as_str().map(str::to_owned)),
        field: detail("BadRequest")
            .and_then(|d| d["fieldViolations"][0]["field"].as_str().map(str::to_owned)),
        retry_after: headers.contains_key("retry-after"),
    }
}

/// The case over gRPC-Web, HTTP/1.1.
async fn over_grpc_web(gateway: &TestGateway, case: &Case) -> Refusal {
    let (method, message) = match &case.call {
        Call::Publish(request) => ("Publish", request.encode_to_vec()),
        Call::Subscribe(request) => ("Subscribe", request.encode_to_vec()),
    };
    let mut args = header_args(case);
    args.extend([
        "--http1.1".to_owned(),
        "-H".to_owned(),
        "content-type: application/grpc-web+proto".to_owned(),
        "-H".to_owned(),
        "x-grpc-web: 1".to_owned(),
        format!(
            "http://{}/iggy.gateway.v1.MessagingService/{method}",
            gateway.address()
        ),
    ]);
    let mut framed = vec![0];
    framed.extend((message.len() as u32).to_be_bytes());
    framed.extend(message);
    let (status, mut headers, body) = curl(&args, Some(framed)).await;
    assert_eq!(status, 200, "{}: gRPC-Web answers 200", case.name);
    // A trailers frame (flag 0x80) carries the status when the headers do not.
    let mut rest = body.as_slice();
    while rest.len() >= 5 {
        let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let (frame, next) = rest[5..].split_at(length.min(rest.len() - 5));
        if rest[0] & 0x80 != 0 {
            for line in String::from_utf8_lossy(frame).split("\r\n") {
                if let Some((name, value)) = line.split_once(':')
                    && let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.trim().as_bytes()),
                        HeaderValue::from_str(value.trim()),
                    )
                {
                    headers.append(name, value);
                }
            }
        }
        rest = next;
    }
    let status = Status::from_header_map(&headers).expect("a gRPC status");
    Refusal::of(&status, headers.contains_key("retry-after"))
}

/// The case over gRPC.
async fn over_grpc(gateway: &TestGateway, case: &Case) -> Refusal {
    fn request<T>(case: &Case, body: T) -> Request<T> {
        let mut request = Request::new(body);
        if let Some(key) = case.key {
            request
                .metadata_mut()
                .insert("x-api-key", MetadataValue::try_from(key).expect("ascii"));
        }
        if let Some(id) = &case.request_id {
            request.metadata_mut().insert(
                "x-request-id",
                MetadataValue::try_from(id.as_str()).expect("ascii"),
            );
        }
        request
    }
    let mut client = gateway.messaging();
    let status = match &case.call {
        Call::Publish(body) => client
            .publish(request(case, body.clone()))
            .await
            .expect_err("refused"),
        Call::Subscribe(body) => match client.subscribe(request(case, body.clone())).await {
            Err(status) => status,
            Ok(stream) => stream.into_inner().message().await.expect_err("refused"),
        },
    };
    Refusal::of(&status, false)
}

fn publish_to(stream: &str, topic: &str, id: &str, payload: usize) -> proto::PublishRequest {
    proto::PublishRequest {
        stream: by_name(stream),
        topic: by_name(topic),
        message: Some(proto::Message {
            id: id.to_owned(),
            payload: Bytes::from(vec![b'x'; payload]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn publish_json(id: &str, payload: usize) -> String {
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; payload]);
    format!(r#"{{"message":{{"id":"{id}","payload":"{payload}"}}}}"#)
}

fn subscribe_to(stream: &str, topic: &str, batch_size: u32) -> proto::SubscribeRequest {
    proto::SubscribeRequest {
        stream: by_name(stream),
        topic: by_name(topic),
        consumer: Some(proto::Consumer {
            kind: Some(proto::consumer::Kind::Name("web-edge".into())),
        }),
        batch_size,
        ..Default::default()
    }
}

/// Keys, scopes, allow-lists, bad input, size limits, request ids and rate
/// limits answer the same code, reason and field over HTTP/JSON (SSE for
/// Subscribe), gRPC-Web and gRPC, and JSON answers carry the mapped HTTP
/// status, the request id and `Retry-After`.
async fn edge_rules(env: Env) {
    let open = env.gateway().await;
    let (stream, topic) = new_topic(&env, &open, 1).await;
    let (other, other_topic) = new_topic(&env, &open, 1).await;
    open.stop().await.expect("stops");
    let mut config = Config::for_connection_string(&env.iggy.connection_string);
    config.edge.api_keys = Some(format!(
        "admin:{ADMIN}:admin+publish+subscribe;writer:{WRITER}:publish:{stream};reader:{READER}:subscribe"
    ));
    // Every wrong key would count towards a lockout of the test's address.
    config.edge.auth_max_failures = 0;
    config.transport.max_request_bytes = 4096;
    let gateway = TestGateway::start_ready_with(config).await;

    let uuid = "0190b6a2-4f5e-7c2d-9a1b-3c4d5e6f7a8b";
    let topic_path = format!("/v1/streams/{stream}/topics/{topic}");
    let publish = Call::Publish(publish_to(&stream, &topic, uuid, 10));
    let publish_rest = (
        "POST",
        format!("{topic_path}/messages"),
        Some(publish_json(uuid, 10)),
    );
    let subscribe = Call::Subscribe(subscribe_to(&stream, &topic, 0));
    let subscribe_rest = (
        "GET",
        format!("{topic_path}/subscribe?consumer.name=web-edge"),
        None,
    );
    let cases = [
        Case {
            name: "no key",
            key: None,
            request_id: None,
            call: publish.clone(),
            rest: publish_rest.clone(),
            code: Code::Unauthenticated,
            reason: "API_KEY_MISSING",
            field: None,
        },
        Case {
            name: "a wrong key",
            key: Some("not-a-key-0123456789"),
            request_id: None,
            call: subscribe.clone(),
            rest: subscribe_rest.clone(),
            code: Code::Unauthenticated,
            reason: "API_KEY_INVALID",
            field: None,
        },
        Case {
            name: "a key without the scope",
            key: Some(READER),
            request_id: None,
            call: publish.clone(),
            rest: publish_rest.clone(),
            code: Code::PermissionDenied,
            reason: "SCOPE_MISSING",
            field: None,
        },
        Case {
            name: "a stream outside the key's allow-list",
            key: Some(WRITER),
            request_id: None,
            call: Call::Publish(publish_to(&other, &other_topic, uuid, 10)),
            rest: (
                "POST",
                format!("/v1/streams/{other}/topics/{other_topic}/messages"),
                Some(publish_json(uuid, 10)),
            ),
            code: Code::PermissionDenied,
            reason: "STREAM_NOT_ALLOWED",
            field: None,
        },
        Case {
            name: "a bad message id",
            key: Some(ADMIN),
            request_id: None,
            call: Call::Publish(publish_to(&stream, &topic, "not-a-uuid", 10)),
            rest: (
                "POST",
                format!("{topic_path}/messages"),
                Some(publish_json("not-a-uuid", 10)),
            ),
            code: Code::InvalidArgument,
            reason: "INVALID_ARGUMENT",
            field: Some("message.id"),
        },
        Case {
            name: "a bad batch size",
            key: Some(ADMIN),
            request_id: None,
            call: Call::Subscribe(subscribe_to(&stream, &topic, 20_000)),
            rest: (
                "GET",
                format!("{topic_path}/subscribe?consumer.name=web-edge&batchSize=20000"),
                None,
            ),
            code: Code::InvalidArgument,
            reason: "INVALID_ARGUMENT",
            field: Some("batch_size"),
        },
        Case {
            name: "a request over the size limit",
            key: Some(ADMIN),
            request_id: None,
            call: Call::Publish(publish_to(&stream, &topic, uuid, 8000)),
            rest: (
                "POST",
                format!("{topic_path}/messages"),
                Some(publish_json(uuid, 8000)),
            ),
            code: Code::OutOfRange,
            reason: "REQUEST_TOO_LARGE",
            field: None,
        },
        Case {
            name: "an invalid request id",
            key: Some(ADMIN),
            request_id: Some("x".repeat(129)),
            call: subscribe.clone(),
            rest: subscribe_rest.clone(),
            code: Code::InvalidArgument,
            reason: "INVALID_ARGUMENT",
            field: Some("x-request-id"),
        },
    ];
    for case in &cases {
        let expected = Refusal {
            code: case.code,
            reason: Some(case.reason.to_owned()),
            field: case.field.map(str::to_owned),
            retry_after: false,
        };
        let transport = if matches!(case.call, Call::Subscribe(_)) {
            "SSE"
        } else {
            "HTTP/JSON"
        };
        assert_eq!(
            over_rest(&gateway, case).await,
            expected,
            "{}: {transport}",
            case.name
        );
        assert_eq!(
            over_grpc_web(&gateway, case).await,
            expected,
            "{}: gRPC-Web",
            case.name
        );
        assert_eq!(
            over_grpc(&gateway, case).await,
            expected,
            "{}: gRPC",
            case.name
        );
    }
    gateway.stop().await.expect("stops");

    // Rate limits: one request a second per caller, so of a few calls in a
    // row some are refused, with a time to wait, on every transport.
    let mut config = Config::for_connection_string(&env.iggy.connection_string);
    config.edge.request_rate = RateSpec::new(1, Some(1));
    let limited = TestGateway::start_ready_with(config).await;
    let case = Case {
        name: "over the request rate",
        key: None,
        request_id: None,
        call: publish,
        rest: publish_rest,
        code: Code::ResourceExhausted,
        reason: "RATE_LIMITED",
        field: None,
    };
    let expected = Refusal {
        code: Code::ResourceExhausted,
        reason: Some("RATE_LIMITED".to_owned()),
        field: None,
        retry_after: true,
    };
    for transport in ["HTTP/JSON", "gRPC-Web", "gRPC"] {
        let mut refusals = Vec::new();
        for _ in 0..4 {
            let refusal = match transport {
                "HTTP/JSON" => rest_or_ok(&limited, &case).await,
                "gRPC-Web" => grpc_web_or_ok(&limited, &case).await,
                _ => grpc_or_ok(&limited, &case).await,
            };
            refusals.extend(refusal);
        }
        assert!(
            !refusals.is_empty(),
            "{transport}: four calls in a row were all let through"
        );
        for refusal in refusals {
            assert_eq!(refusal, expected, "{transport}");
        }
    }
    limited.stop().await.expect("stops");
}

/// A publish over HTTP/JSON: None when it was stored.
async fn rest_or_ok(gateway: &TestGateway, case: &Case) -> Option<Refusal> {
    let (method, path, body) = &case.rest;
    let url = format!("http://{}{path}", gateway.address());
    let (status, _, _) = curl(
        &["-X".to_owned(), (*method).to_owned(), url],
        body.clone().map(String::into_bytes),
    )
    .await;
    if status == 200 {
        None
    } else {
        Some(over_rest(gateway, case).await)
    }
}

async fn grpc_web_or_ok(gateway: &TestGateway, case: &Case) -> Option<Refusal> {
    let refusal = over_grpc_web(gateway, case).await;
    (refusal.code != Code::Ok).then_some(refusal)
}

async fn grpc_or_ok(gateway: &TestGateway, case: &Case) -> Option<Refusal> {
    let Call::Publish(body) = &case.call else {
        return None;
    };
    match gateway.messaging().publish(body.clone()).await {
        Ok(_) => None,
        Err(status) => Some(Refusal::of(&status, false)),
    }
}

const ADMIN: &str = "web-admin-secret-0123456789";
const WRITER: &str = "web-writer-secret-0123456789";
const READER: &str = "web-reader-secret-0123456789";

/// One SSE event as read: its name, id and JSON data.
#[derive(Debug, Default)]
struct Event {
    name: String,
    id: Option<String>,
    data: serde_json::Value,
}

/// Reads the events `curl -N` prints.
struct EventReader {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl EventReader {
    async fn open(url: &str, last_event_id: Option<&str>) -> Self {
        let mut command = Command::new("curl");
        command.args(["-sSN", "-H", "accept: text/event-stream", url]);
        if let Some(id) = last_event_id {
            command.args(["-H", &format!("last-event-id: {id}")]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("curl runs");
        let stdout = child.stdout.take().expect("stdout");
        Self {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        }
    }

    /// The next event (comments skipped).
    async fn next(&mut self) -> Event {
        let mut event = Event::default();
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .expect("reads")
                .expect("the stream goes on");
            if line.is_empty() {
                if !event.name.is_empty() {
                    return event;
                }
            } else if let Some(name) = line.strip_prefix("event: ") {
                event.name = name.to_owned();
            } else if let Some(id) = line.strip_prefix("id: ") {
                event.id = Some(id.to_owned());
            } else if let Some(data) = line.strip_prefix("data: ") {
                event.data = serde_json::from_str(data).expect("JSON data");
            }
        }
    }

    /// Cuts the connection, as a network failure would.
    async fn cut(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The (partition, offset) of every message in a batch event.
fn positions(event: &Event) -> Vec<(u64, u64)> {
    event.data["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .map(|message| {
                    (
                        message["partitionId"].as_u64().unwrap_or(u64::MAX),
                        message["offset"]
                            .as_str()
                            .and_then(|offset| offset.parse().ok())
                            .unwrap_or(u64::MAX),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn publish_some(gateway: &TestGateway, stream: &str, topic: &str, count: usize) {
    let mut client = gateway.messaging();
    for _ in 0..count {
        client
            .publish(publish_to(stream, topic, "", 16))
            .await
            .expect("published");
    }
}

/// An SSE stream cut after its first batch and reopened with the last
/// event id delivers every message exactly once: no repeat, no gap.
async fn sse_resumes(env: Env) {
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 2).await;
    publish_some(&gateway, &stream, &topic, 10).await;
    let url = format!(
        "http://{}/v1/streams/{stream}/topics/{topic}/subscribe?consumer.name=sse&start.first&batchSize=3",
        gateway.address()
    );

    let mut first = EventReader::open(&url, None).await;
    let subscribed = first.next().await;
    assert_eq!(subscribed.name, "subscribed", "{subscribed:?}");
    assert!(subscribed.data["subscriptionId"].is_string());
    let batch = first.next().await;
    assert_eq!(batch.name, "batch");
    let last_id = batch.id.clone().expect("a batch has an id");
    assert_eq!(batch.data["resumeToken"].as_str(), Some(last_id.as_str()));
    let mut seen = positions(&batch);
    first.cut().await;

    publish_some(&gateway, &stream, &topic, 10).await;
    let mut second = EventReader::open(&url, Some(&last_id)).await;
    assert_eq!(second.next().await.name, "subscribed");
    let reading = async {
        while seen.len() < 20 {
            let event = second.next().await;
            assert_eq!(event.name, "batch", "{event:?}");
            seen.extend(positions(&event));
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), reading)
        .await
        .unwrap_or_else(|_| panic!("all 20 messages arrive; seen {seen:?} after {last_id}"));
    second.cut().await;
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "a message came twice: {seen:?}");
    let per_partition = |partition| sorted.iter().filter(|(p, _)| *p == partition).count();
    for partition in [0, 1] {
        let offsets: Vec<u64> = sorted
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, offset)| *offset)
            .collect();
        assert_eq!(
            offsets,
            (0..per_partition(partition) as u64).collect::<Vec<_>>(),
            "partition {partition} has a gap"
        );
    }
    assert_eq!(sorted.len(), 20);
    gateway.stop().await.expect("stops");
}

/// Headers of each kind, and the publisher's `traceparent`, arrive in an
/// SSE batch as the protobuf JSON mapping writes them.
async fn sse_headers(env: Env) {
    use proto::header_value::Kind;
    let gateway = env.gateway().await;
    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let values = [
        ("text", Kind::StringValue("acme \"é\"".into())),
        ("raw", Kind::BytesValue(Bytes::from_static(b"\x00\xff"))),
        ("flag", Kind::BoolValue(true)),
        ("small", Kind::Int32Value(-7)),
        ("big", Kind::Int64Value(i64::MIN)),
        ("count", Kind::Uint64Value(u64::MAX)),
        ("ratio", Kind::DoubleValue(f64::NEG_INFINITY)),
    ];
    let mut publish = publish_to(&stream, &topic, "", 16);
    if let Some(message) = publish.message.as_mut() {
        message.headers = values
            .iter()
            .map(|(key, kind)| {
                let value = proto::HeaderValue {
                    kind: Some(kind.clone()),
                };
                ((*key).to_owned(), value)
            })
            .collect();
    }
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut request = Request::new(publish);
    request
        .metadata_mut()
        .insert("traceparent", MetadataValue::from_static(traceparent));
    gateway
        .messaging()
        .publish(request)
        .await
        .expect("published");

    let url = format!(
        "http://{}/v1/streams/{stream}/topics/{topic}/subscribe?consumer.name=sse-headers&start.first",
        gateway.address()
    );
    let mut events = EventReader::open(&url, None).await;
    assert_eq!(events.next().await.name, "subscribed");
    let batch = events.next().await;
    events.cut().await;
    assert_eq!(batch.name, "batch", "{batch:?}");
    assert_eq!(
        batch.data["messages"][0]["headers"],
        serde_json::json!({
            "text": {"stringValue": "acme \"é\""},
            "raw": {"bytesValue": "AP8="},
            "flag": {"boolValue": true},
            "small": {"int32Value": -7},
            "big": {"int64Value": i64::MIN.to_string()},
            "count": {"uint64Value": u64::MAX.to_string()},
            "ratio": {"doubleValue": "-Infinity"},
            "traceparent": {"stringValue": traceparent},
        }),
        "{batch:?}"
    );
    gateway.stop().await.expect("stops");
}

/// CORS: preflights answered for allowed origins only, the gRPC and
/// request-id headers exposed; none without `--cors-allowed-origins`; and
/// a gRPC-Web server stream over HTTP/1.1 delivers its first message.
async fn cors_and_grpc_web_streams(env: Env) {
    let allowed = "http://app.example.test";
    let mut config = Config::for_connection_string(&env.iggy.connection_string);
    config.edge.cors_allowed_origins = vec![allowed.to_owned()];
    let gateway = TestGateway::start_ready_with(config).await;
    let url = format!(
        "http://{}/iggy.gateway.v1.MessagingService/Publish",
        gateway.address()
    );
    let preflight = |origin: &str| {
        vec![
            "-X".to_owned(),
            "OPTIONS".to_owned(),
            "-H".to_owned(),
            format!("origin: {origin}"),
            "-H".to_owned(),
            "access-control-request-method: POST".to_owned(),
            "-H".to_owned(),
            "access-control-request-headers: content-type,x-grpc-web,x-api-key".to_owned(),
            url.clone(),
        ]
    };
    let (status, headers, _) = curl(&preflight(allowed), None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], allowed);
    let allowed_headers = headers["access-control-allow-headers"]
        .to_str()
        .expect("ascii");
    assert!(allowed_headers.contains("x-api-key"), "{allowed_headers}");
    let (_, headers, _) = curl(&preflight("http://evil.example.test"), None).await;
    assert!(!headers.contains_key("access-control-allow-origin"));

    let (stream, topic) = new_topic(&env, &gateway, 1).await;
    let ping = format!("http://{}/v1/ping", gateway.address());
    let (status, headers, _) =
        curl(&["-H".to_owned(), format!("origin: {allowed}"), ping], None).await;
    assert_eq!(status, 200);
    let exposed = headers["access-control-expose-headers"]
        .to_str()
        .expect("ascii");
    for header in [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-request-id",
    ] {
        assert!(exposed.contains(header), "{header} not exposed: {exposed}");
    }

    // gRPC-Web Subscribe over HTTP/1.1: its first message is `subscribed`.
    let message = subscribe_to(&stream, &topic, 0).encode_to_vec();
    let mut framed = vec![0];
    framed.extend((message.len() as u32).to_be_bytes());
    framed.extend(message);
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--http1.1",
            "--max-time",
            "30",
            "--data-binary",
            "@-",
        ])
        .args([
            "-H",
            "content-type: application/grpc-web+proto",
            "-H",
            "x-grpc-web: 1",
        ])
        .arg(format!(
            "http://{}/iggy.gateway.v1.MessagingService/Subscribe",
            gateway.address()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&framed).await.expect("written");
    drop(stdin);
    let mut stdout = child.stdout.take().expect("stdout");
    let mut prefix = [0; 5];
    stdout.read_exact(&mut prefix).await.expect("a frame");
    assert_eq!(prefix[0], 0, "a data frame");
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    let mut body = vec![0; 5 + length];
    stdout
        .read_exact(&mut body[5..])
        .await
        .expect("the whole frame");
    drop(child);
    let first = proto::SubscribeResponse::decode(&body[5..5 + length]).expect("a response");
    assert!(
        matches!(
            first.kind,
            Some(proto::subscribe_response::Kind::Subscribed(_))
        ),
        "{first:?}"
    );
    gateway.stop().await.expect("stops");

    let closed = env.gateway().await;
    let url = format!("http://{}/v1/ping", closed.address());
    let (_, headers, _) = curl(
        &[
            "-X".to_owned(),
            "OPTIONS".to_owned(),
            "-H".to_owned(),
            format!("origin: {allowed}"),
            "-H".to_owned(),
            "access-control-request-method: GET".to_owned(),
            url,
        ],
        None,
    )
    .await;
    assert!(
        !headers.contains_key("access-control-allow-origin"),
        "no origin is allowed by default"
    );
    closed.stop().await.expect("stops");
}
