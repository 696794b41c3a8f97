//! The test harness: a real Iggy (shared by the whole test binary, or private
//! for tests that kill it), gateways served on `127.0.0.1:0`, and real tonic
//! clients. Tests wait on readiness signals, never on sleeps.

mod fixtures;
mod gateway;
mod iggy;
mod mesh;
mod process;
mod raw;
mod subscription;

pub use fixtures::{by_name, new_topic, purge_topic, stored, stored_offset, wait_for_index_files};
pub use gateway::TestGateway;
pub use iggy::{SharedIggy, private_iggy, sdk_client, server_binary};
pub use mesh::balanced;
pub use process::GatewayProcess;
pub use raw::{grpc_frame, raw_call};
pub use subscription::{Event, Subscription};

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A test body: an async function of the environment.
pub type TestBody = fn(Env) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// What every test gets: the shared Iggy and a way to run async code.
#[derive(Clone)]
pub struct Env {
    /// The Iggy shared by this test binary.
    pub iggy: Arc<SharedIggy>,
}

impl Env {
    /// A name no other test in this run uses.
    pub fn unique(&self, prefix: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// A gateway connected to the shared Iggy, ready to serve.
    pub async fn gateway(&self) -> TestGateway {
        TestGateway::start_ready(&self.iggy.connection_string).await
    }
}

/// The longest a single test may run before it fails instead of hanging CI.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Asserts a call failed with `code`, and returns the status for more checks.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got OK: {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// The field a BadRequest detail of `status` names.
pub fn bad_request_field(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .bad_request()
        .and_then(|bad_request| bad_request.field_violations.first())
        .map(|violation| violation.field.clone())
}

/// The ErrorInfo reason of `status`.
pub fn error_reason(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
}

/// The delay a RetryInfo detail of `status` asks the client to wait.
pub fn retry_delay(status: &Status) -> Option<Duration> {
    status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
}
