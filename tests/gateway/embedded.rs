//! The real binary in embedded mode: it starts its own iggy-server, serves,
//! answers its own `--health-check`, exposes Prometheus metrics, logs one
//! line per call without secrets, and on SIGTERM turns NOT_SERVING, exits 0
//! and stops the server.

use crate::support::{Env, TestBody, TestGateway, server_binary};
use iggy_grpc::{
    Config,
    proto::{self, admin_service_client::AdminServiceClient},
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use std::{net::TcpListener, process::Stdio};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::Command,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        (
            "embedded::binary_runs_its_own_iggy_and_stops_on_sigterm",
            |env| Box::pin(binary_embedded(env)),
        ),
        (
            "embedded::the_library_serves_metrics_like_the_binary",
            |env| Box::pin(library_metrics(env)),
        ),
    ]
}

/// `serve` with `metrics_listen` set serves the same endpoint the binary
/// does, and stops it when the gateway stops.
async fn library_metrics(env: Env) {
    let port = free_port();
    let mut config = Config::for_connection_string(&env.iggy.connection_string);
    config.metrics_listen = Some(([127, 0, 0, 1], port).into());
    let gateway = TestGateway::start_ready_with(config).await;
    gateway
        .admin()
        .ping(proto::PingRequest {})
        .await
        .expect("ping");
    let metrics = scrape(port).await;
    assert!(
        metrics.contains(
            "iggy_grpc_calls_total{method=\"iggy.gateway.v1.AdminService/Ping\",code=\"OK\"}"
        ),
        "{metrics}"
    );
    gateway.stop().await.expect("clean stop");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the metrics endpoint stops with the gateway"
    );
}

/// The API key the test calls with; it must never appear in the log.
const SECRET: &str = "embedded-test-secret-0123456789";
/// The W3C trace context the logged call sends, expected on its log line.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// The body of `GET /metrics` at `port`.
async fn scrape(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
}

async fn binary_embedded(env: Env) {
    let port = free_port();
    let metrics_port = free_port();
    let data_dir = std::env::temp_dir().join(env.unique("embedded-data"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_iggy-grpc"))
        .args(["--embedded", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--iggy-server-bin")
        .arg(server_binary().expect("the shared Iggy was started from a binary"))
        .args(["--log-format", "json"])
        .env("IGGY_GRPC_API_KEYS", format!("ops:{SECRET}:admin"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start iggy-grpc --embedded");

    // Ready when the gateway says it is starting the pool (after its Iggy
    // answered); then health tells when the pool is connected.
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut log = Vec::new();
    while let Some(line) = lines.next_line().await.expect("read log") {
        let starting = line.contains("\"starting\"");
        log.push(line);
        if starting {
            break;
        }
    }
    let ready_line = log
        .iter()
        .find(|line| line.contains("embedded Iggy is ready"))
        .unwrap_or_else(|| panic!("no readiness line in {log:#?}"));
    let iggy_address = ready_line
        .split("\"tcp\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the readiness line names the Iggy address")
        .to_owned();
    assert!(
        std::net::TcpStream::connect(&iggy_address).is_ok(),
        "embedded Iggy listens on {iggy_address}"
    );
    let drain = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            log.push(line);
        }
        log
    });

    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the gateway");
    let mut health = HealthClient::new(channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    while let Some(update) = watch.next().await {
        if update.expect("update").status() == ServingStatus::Serving {
            break;
        }
    }
    let stream = env.unique("stream");
    let mut create = tonic::Request::new(proto::CreateStreamRequest { name: stream });
    create
        .metadata_mut()
        .insert("x-api-key", SECRET.parse().expect("ascii"));
    create
        .metadata_mut()
        .insert("x-request-id", "embedded-create-1".parse().expect("ascii"));
    create
        .metadata_mut()
        .insert("traceparent", TRACEPARENT.parse().expect("ascii"));
    AdminServiceClient::new(channel)
        .create_stream(create)
        .await
        .expect("the embedded Iggy serves admin calls");

    // The binary probes itself for container health checks.
    let probe = Command::new(env!("CARGO_BIN_EXE_iggy-grpc"))
        .args(["--health-check", "--listen", &format!("0.0.0.0:{port}")])
        .output()
        .await
        .expect("run --health-check");
    assert_eq!(probe.status.code(), Some(0), "{probe:?}");
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "SERVING");

    let metrics = scrape(metrics_port).await;
    for expected in [
        r#"iggy_grpc_calls_total{method="iggy.gateway.v1.AdminService/CreateStream",code="OK"} 1"#,
        "iggy_grpc_pool_connections_live ",
        "iggy_grpc_call_duration_seconds_bucket{",
        "iggy_grpc_active_subscriptions ",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }

    let pid = Pid::from_raw(i32::try_from(child.id().expect("pid")).expect("pid fits"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let mut saw_not_serving = false;
    while let Some(update) = watch.next().await {
        match update {
            Ok(update) if update.status() == ServingStatus::NotServing => {
                saw_not_serving = true;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    drop(watch);
    assert!(saw_not_serving, "health turned NOT_SERVING on SIGTERM");
    let status = child.wait().await.expect("wait");
    assert_eq!(status.code(), Some(0), "exit 0 after a graceful shutdown");
    let log = drain.await.expect("log drain");
    let call_line = log
        .iter()
        .find(|line| line.contains("call finished") && line.contains("CreateStream"))
        .unwrap_or_else(|| panic!("no call line in {log:#?}"));
    for field in [
        r#""code":"OK""#,
        r#""request_id":"embedded-create-1""#,
        r#""principal":"key:ops""#,
        &format!(r#""traceparent":"{TRACEPARENT}""#),
        "duration_ms",
    ] {
        assert!(
            call_line.contains(field),
            "{field} missing from {call_line}"
        );
    }
    assert!(
        log.iter().all(|line| !line.contains(SECRET)),
        "the API key leaked into the log"
    );
    let probe_after = Command::new(env!("CARGO_BIN_EXE_iggy-grpc"))
        .args(["--health-check", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .await
        .expect("run --health-check");
    assert_eq!(
        probe_after.status.code(),
        Some(1),
        "a stopped gateway is not healthy"
    );

    // The embedded server is gone: its port no longer accepts connections.
    assert!(
        std::net::TcpStream::connect(&iggy_address).is_err(),
        "embedded Iggy stopped with the gateway"
    );
    let password = std::fs::read_to_string(data_dir.join("iggy-grpc-root-password"))
        .expect("credentials kept in the data dir");
    assert!(!password.trim().is_empty());
    let server_log = std::fs::read_to_string(data_dir.join("iggy-server.log")).unwrap_or_default();
    assert!(!server_log.is_empty(), "server log kept in the data dir");
    let _ = std::fs::remove_dir_all(&data_dir);
}
