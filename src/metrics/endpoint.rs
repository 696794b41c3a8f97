//! The Prometheus scrape endpoint: `GET /metrics` on its own listener, so
//! metrics stay reachable (and private) apart from the gRPC port.

use axum::{Router, http::header, response::IntoResponse, routing::get};
use std::future::Future;
use tokio::net::TcpListener;

/// The content type of the Prometheus text format that prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], super::render())
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(metrics));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
