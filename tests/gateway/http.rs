//! HTTP/JSON, Server-Sent Events and gRPC-Web, with curl as the client:
//! the route table in docs/http.md is the proto's, every curl example there
//! runs as written against a live gateway and a real Iggy, and the edge
//! rules hold the same on every transport.

use crate::support::{Env, TestBody, TestGateway};
use iggy_grpc::{config::Config, web::BodyRule};
use libtest_mimic::{Failed, Trial};
use std::{path::Path, process::Stdio};
use tokio::process::Command;

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
    vec![("http::curl_examples_run_as_written", |env| {
        Box::pin(curl_examples(env))
    })]
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
