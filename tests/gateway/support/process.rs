//! The gateway binary in a process of its own, for tests that kill it.

use std::{net::SocketAddr, process::Stdio, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::transport::Channel;

/// A running `iggy-grpc` process.
pub struct GatewayProcess {
    child: Child,
    /// Where it serves gRPC.
    pub address: SocketAddr,
}

impl GatewayProcess {
    /// Starts the binary for `iggy_url` on a port of its own choosing, with
    /// `args` besides, and returns once it logged where it listens.
    pub async fn start(iggy_url: &str, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iggy-grpc"))
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", ""])
            .args(["--iggy-url", iggy_url, "--log-format", "text"])
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start iggy-grpc");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read the log") {
                if line.contains("listening")
                    && let Some(address) = line
                        .split_whitespace()
                        .find_map(|word| word.strip_prefix("listen="))
                {
                    return address.parse().expect("a socket address");
                }
            }
            panic!("the gateway exited before it listened");
        })
        .await
        .expect("the gateway logged where it listens");
        // Keep reading, so a full pipe never blocks the gateway's logging.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, address }
    }

    /// A channel to it.
    pub fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address))
            .expect("uri")
            .connect_lazy()
    }

    /// Kills it with SIGKILL, as a crashed or evicted pod goes: nothing is
    /// closed or left cleanly.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }
}
