//! Health follows Iggy: NOT_SERVING while it is unreachable, SERVING again
//! after it returns, NOT_SERVING during shutdown.

use crate::support::{Env, TestBody, TestGateway, error_reason, expect_code, private_iggy};
use iggy_grpc::{Config, health::SERVICES, proto};
use std::{net::TcpListener, time::Duration};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt;

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        ("health::gateway_without_iggy_answers_unavailable", |env| {
            Box::pin(without_iggy(env))
        }),
        ("health::follows_iggy_through_a_crash_and_restart", |env| {
            Box::pin(crash_and_restart(env))
        }),
        (
            "health::shutdown_turns_not_serving_and_serve_returns",
            |env| Box::pin(shutdown(env)),
        ),
    ]
}

/// A loopback address nothing listens on.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    address.to_string()
}

async fn without_iggy(_env: Env) {
    let gateway = TestGateway::start(&format!("iggy://iggy:iggy@{}", closed_port())).await;
    assert_eq!(gateway.health_status("").await, ServingStatus::NotServing);
    for service in SERVICES {
        assert_eq!(
            gateway.health_status(service).await,
            ServingStatus::NotServing
        );
    }
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        gateway.admin().list_streams(proto::ListStreamsRequest {}),
    )
    .await
    .expect("answers instead of hanging");
    let status = expect_code(answered, Code::Unavailable);
    assert_eq!(error_reason(&status).as_deref(), Some("IGGY_UNAVAILABLE"));
    assert!(
        status.get_error_details().retry_info().is_some(),
        "says when to retry"
    );
    gateway.stop().await.expect("stops cleanly without Iggy");
}

async fn crash_and_restart(env: Env) {
    let iggy = private_iggy().await;
    // Stats are re-read on every call, so a cached answer while Iggy is away
    // can only come from the stale fallback.
    let mut config = Config::for_connection_string(iggy.connection_string());
    config.stats_ttl = Duration::ZERO;
    let gateway = TestGateway::start_ready_with(config).await;
    let mut admin = gateway.admin();
    let stream = env.unique("stream");
    admin
        .create_stream(proto::CreateStreamRequest {
            name: stream.clone(),
        })
        .await
        .expect("create before the crash");
    let stats = admin
        .get_stats(proto::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert!(!stats.stale);

    iggy.kill().expect("kill iggy-server");
    gateway.wait_for_health("", ServingStatus::NotServing).await;
    for service in SERVICES {
        assert_eq!(
            gateway.health_status(service).await,
            ServingStatus::NotServing
        );
    }
    expect_code(
        admin.list_streams(proto::ListStreamsRequest {}).await,
        Code::Unavailable,
    );
    let cached = admin
        .get_stats(proto::GetStatsRequest {})
        .await
        .expect("stats served from the cache while Iggy is away")
        .into_inner();
    assert!(cached.stale, "marked stale: {cached:?}");
    assert_eq!(cached.fetched_at, stats.fetched_at);

    // The supervisor restarts Iggy; the same gateway recovers by itself.
    iggy.wait_ready().await;
    gateway.wait_for_health("", ServingStatus::Serving).await;
    let streams = admin
        .list_streams(proto::ListStreamsRequest {})
        .await
        .expect("list after recovery")
        .into_inner()
        .streams;
    assert!(
        streams.iter().any(|s| s.name == stream),
        "data survived the crash"
    );
    admin
        .create_stream(proto::CreateStreamRequest {
            name: env.unique("after"),
        })
        .await
        .expect("create after recovery");

    gateway.stop().await.expect("clean stop");
    iggy.stop().await;
}

async fn shutdown(env: Env) {
    let mut gateway = env.gateway().await;
    let mut watch = gateway
        .health()
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("first update").expect("status");
    assert_eq!(first.status(), ServingStatus::Serving);

    gateway.begin_shutdown();
    let next = watch
        .next()
        .await
        .expect("update on shutdown")
        .expect("status");
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    gateway
        .stop()
        .await
        .expect("serve returns Ok after a graceful shutdown");
}
