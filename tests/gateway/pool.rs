//! The connection pool against a real Iggy: a bounded wait for a busy pool,
//! and a connection that survives a caller who gives up mid-call.

use crate::support::{Env, TestBody};
use iggy::prelude::SystemClient;
use iggy_grpc::{
    error::GatewayError,
    iggy::{IggyPool, IggyTarget, PoolOptions},
};
use std::time::Duration;
use tokio::sync::oneshot;

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        (
            "pool::busy_pool_answers_resource_exhausted_after_the_timeout",
            |env| Box::pin(busy_pool(env)),
        ),
        (
            "pool::cancelled_caller_leaves_the_connection_usable",
            |env| Box::pin(cancelled_caller(env)),
        ),
    ]
}

async fn ready_pool(env: &Env, size: usize) -> IggyPool {
    let target = IggyTarget::parse(&env.iggy.connection_string).expect("target");
    let pool = IggyPool::start(
        target,
        PoolOptions {
            size,
            acquire_timeout: Duration::from_millis(200),
            ..PoolOptions::default()
        },
    );
    let mut status = pool.watch_status();
    status
        .wait_for(|status| status.live == size)
        .await
        .expect("pool status");
    pool
}

async fn busy_pool(env: Env) {
    let pool = ready_pool(&env, 1).await;
    let (started_tx, started) = oneshot::channel();
    let (release, release_rx) = oneshot::channel::<()>();
    let holder = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.call(move |client| async move {
                let _ = started_tx.send(());
                let _ = release_rx.await;
                client.ping().await
            })
            .await
        })
    };
    started.await.expect("holder got the only connection");

    let waited = pool.call(|client| async move { client.ping().await }).await;
    match waited {
        Err(GatewayError::PoolExhausted { pool_size: 1, .. }) => {}
        other => panic!("expected PoolExhausted, got {other:?}"),
    }
    let status = GatewayError::PoolExhausted {
        pool_size: 1,
        retry_after: Duration::from_millis(200),
    }
    .into_status();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);

    release.send(()).expect("release");
    holder
        .await
        .expect("holder task")
        .expect("held call succeeds");
    pool.call(|client| async move { client.ping().await })
        .await
        .expect("the connection is back in the pool");
    pool.close();
}

async fn cancelled_caller(env: Env) {
    let pool = ready_pool(&env, 1).await;
    let (started_tx, started) = oneshot::channel();
    let (release, release_rx) = oneshot::channel::<()>();
    let (finished_tx, finished) = oneshot::channel();
    let caller = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.call(move |client| async move {
                let _ = started_tx.send(());
                let _ = release_rx.await;
                let pinged = client.ping().await;
                let _ = finished_tx.send(());
                pinged
            })
            .await
        })
    };
    started.await.expect("call started");
    caller.abort(); // the client went away while its Iggy call was running
    assert!(caller.await.is_err_and(|error| error.is_cancelled()));

    release.send(()).expect("release");
    finished
        .await
        .expect("the Iggy call still ran to completion");
    pool.call(|client| async move { client.ping().await })
        .await
        .expect("the connection returned to the pool intact");
    assert_eq!(pool.status().live, 1);
    pool.close();
}
