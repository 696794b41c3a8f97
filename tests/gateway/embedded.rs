//! The real binary in embedded mode: it starts its own iggy-server, serves,
//! and on SIGTERM turns NOT_SERVING, exits 0 and stops the server.

use crate::support::{Env, TestBody};
use iggy_grpc::proto::{self, admin_service_client::AdminServiceClient};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use std::{net::TcpListener, process::Stdio};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![(
        "embedded::binary_runs_its_own_iggy_and_stops_on_sigterm",
        |env| Box::pin(binary_embedded(env)),
    )]
}

async fn binary_embedded(env: Env) {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let data_dir = std::env::temp_dir().join(env.unique("embedded-data"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_iggy-grpc"))
        .args(["--embedded", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
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
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

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
    AdminServiceClient::new(channel)
        .create_stream(proto::CreateStreamRequest { name: stream })
        .await
        .expect("the embedded Iggy serves admin calls");

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
    drain.await.expect("log drain");

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
