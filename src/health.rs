//! Keeps grpc.health.v1 truthful: SERVING only while both pools (publish and
//! admin calls; subscriptions) have a connection that reaches Iggy and the
//! gateway is not shutting down.

use crate::{
    iggy::PoolStatus,
    proto::{admin_service_server, messaging_service_server},
};
use tokio::{sync::watch, task::JoinHandle};
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::info;

/// The services whose health is reported, besides the overall "" entry.
pub const SERVICES: [&str; 2] = [
    messaging_service_server::SERVICE_NAME,
    admin_service_server::SERVICE_NAME,
];

/// Sets every reported service to `status`. The overall "" entry changes
/// last, so whoever sees it change finds the services already changed.
pub async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
    reporter.set_service_status("", status).await;
}

/// Follows the pools' status and the shutdown flag until shutdown, updating
/// health on every change.
pub fn track(
    reporter: HealthReporter,
    mut pool: watch::Receiver<PoolStatus>,
    mut readers: watch::Receiver<PoolStatus>,
    mut shutting_down: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reported = None;
        loop {
            let serving = pool.borrow_and_update().is_serving()
                && readers.borrow_and_update().is_serving()
                && !*shutting_down.borrow();
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if reported != Some(status) {
                info!(?status, pool = ?*pool.borrow(), subscription_pool = ?*readers.borrow(), "health changed");
                set_all(&reporter, status).await;
                reported = Some(status);
            }
            if *shutting_down.borrow() {
                return;
            }
            tokio::select! {
                changed = pool.changed() => if changed.is_err() { return },
                changed = readers.changed() => if changed.is_err() { return },
                changed = shutting_down.changed() => if changed.is_err() { return },
            }
        }
    })
}
