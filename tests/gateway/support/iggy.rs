//! Finding or starting the real Iggy the tests run against.

use iggy::prelude::IggyClient;
use iggy_grpc::iggy::{
    IggyTarget,
    embedded::{EmbeddedIggy, EmbeddedOptions, SERVER_BIN_ENV, find_on_path},
};
use std::{path::PathBuf, time::Duration};

/// The variable naming an already running Iggy to test against.
pub const TEST_ADDRESS_ENV: &str = "IGGY_TEST_ADDRESS";

/// The Iggy every test of this binary shares (unique names keep tests apart).
pub struct SharedIggy {
    /// A root connection string for it.
    pub connection_string: String,
    embedded: Option<EmbeddedIggy>,
}

impl SharedIggy {
    /// Uses `IGGY_TEST_ADDRESS` (a connection string, or host:port with the
    /// default iggy/iggy credentials) when set; else starts the iggy-server
    /// that [`server_binary`] finds. `None` when there is none.
    pub async fn find_or_start() -> Option<Self> {
        if let Ok(address) = std::env::var(TEST_ADDRESS_ENV)
            && !address.is_empty()
        {
            let connection_string = if address.contains("://") {
                address
            } else {
                format!("iggy://iggy:iggy@{address}")
            };
            return Some(Self {
                connection_string,
                embedded: None,
            });
        }
        let binary = server_binary()?;
        let options = EmbeddedOptions {
            binary: Some(binary),
            ..EmbeddedOptions::default()
        };
        match EmbeddedIggy::start(options).await {
            Ok(embedded) => Some(Self {
                connection_string: embedded.connection_string(),
                embedded: Some(embedded),
            }),
            Err(error) => panic!("cannot start the shared iggy-server: {error}"),
        }
    }

    /// Stops the server if this harness started it.
    pub async fn stop(self) {
        if let Some(embedded) = self.embedded {
            embedded.stop().await;
        }
    }
}

/// The iggy-server binary the tests run: `IGGY_SERVER_BIN`, else
/// `iggy-server` on `PATH`, else the 0.9.0-edge.5 build kept beside the
/// repository for tests (`../shared/iggy-server/`).
pub fn server_binary() -> Option<PathBuf> {
    if let Some(binary) = std::env::var_os(SERVER_BIN_ENV).filter(|value| !value.is_empty()) {
        return Some(PathBuf::from(binary));
    }
    find_on_path("iggy-server").or_else(|| {
        let beside =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/iggy-server/iggy-server");
        beside.is_file().then_some(beside)
    })
}

/// A private iggy-server for tests that kill or restart it.
pub async fn private_iggy() -> EmbeddedIggy {
    match EmbeddedIggy::start(EmbeddedOptions {
        binary: server_binary(),
        stop_grace: Duration::from_secs(5),
        ..EmbeddedOptions::default()
    })
    .await
    {
        Ok(embedded) => embedded,
        Err(error) => panic!("cannot start a private iggy-server: {error}"),
    }
}

/// A direct Iggy SDK client, to check what the gateway stored.
pub async fn sdk_client(connection_string: &str) -> IggyClient {
    let target = IggyTarget::parse(connection_string).expect("valid connection string");
    target
        .connect(Duration::from_secs(10))
        .await
        .expect("direct SDK connection to Iggy")
}
