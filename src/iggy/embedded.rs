//! Runs and supervises a local `iggy-server` process: embedded mode of the
//! gateway, and the Iggy of the test harness.
//!
//! The server gets its own data directory, free loopback ports and root
//! credentials of its own; the supervisor waits until it answers, restarts it
//! with backoff if it dies, and on stop sends SIGTERM, then kills it after a
//! grace period.

use super::{Backoff, IggyTarget};
use iggy::prelude::SystemClient;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use std::{
    env, io,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::{
    process::{Child, Command},
    sync::watch,
    task::JoinHandle,
};
use tracing::{error, info, warn};

/// The variable naming the server binary, when it is not on `PATH`.
pub const SERVER_BIN_ENV: &str = "IGGY_SERVER_BIN";
const SERVER_BIN_NAME: &str = "iggy-server";
const ROOT_USERNAME: &str = "iggy-grpc";
const CREDENTIALS_FILE: &str = "iggy-grpc-root-password";
const LOG_FILE: &str = "iggy-server.log";

/// How to run the embedded server.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The `iggy-server` binary; else `IGGY_SERVER_BIN`, else `PATH`.
    pub binary: Option<PathBuf>,
    /// Where Iggy keeps its data; a fresh directory under the OS temp dir,
    /// removed on stop, when unset.
    pub data_dir: Option<PathBuf>,
    /// How long the server may take to answer after it starts.
    pub startup_timeout: Duration,
    /// How long the server may take to exit after SIGTERM.
    pub stop_grace: Duration,
    /// Also serve Iggy's HTTP API on a free loopback port.
    pub http: bool,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            binary: None,
            data_dir: None,
            startup_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
            http: false,
        }
    }
}

/// Why the embedded server could not be run.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No binary was given and none is on `PATH`.
    #[error(
        "iggy-server not found: set {SERVER_BIN_ENV} (or --iggy-server-bin) to the iggy-server \
         binary, or put it on PATH"
    )]
    BinaryNotFound,
    /// The data directory or log file could not be prepared.
    #[error("cannot prepare the embedded Iggy data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The process could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The process exited or never answered.
    #[error("embedded iggy-server did not become ready: {reason}; last log lines:\n{log_tail}")]
    NotReady {
        /// What was seen.
        reason: String,
        /// The end of the server's log.
        log_tail: String,
    },
}

/// A running, supervised `iggy-server`.
pub struct EmbeddedIggy {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
}

struct Shared {
    binary: PathBuf,
    data_dir: PathBuf,
    owns_data_dir: bool,
    tcp: SocketAddr,
    http: Option<SocketAddr>,
    password: String,
    stop_grace: Duration,
    pid: Mutex<Option<u32>>,
    ready: watch::Sender<bool>,
}

impl EmbeddedIggy {
    /// Starts the server and returns once it answers a ping.
    pub async fn start(options: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let binary = resolve_binary(options.binary.as_deref())?;
        let (data_dir, owns_data_dir) = match &options.data_dir {
            Some(dir) => (dir.clone(), false),
            None => (
                env::temp_dir().join(format!("iggy-grpc-{}", uuid::Uuid::new_v4().simple())),
                true,
            ),
        };
        std::fs::create_dir_all(&data_dir).map_err(|source| EmbeddedError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let password = root_password(&data_dir)?;
        let shared = Arc::new(Shared {
            binary,
            tcp: free_loopback_port(&data_dir)?,
            http: if options.http {
                Some(free_loopback_port(&data_dir)?)
            } else {
                None
            },
            data_dir,
            owns_data_dir,
            password,
            stop_grace: options.stop_grace,
            pid: Mutex::new(None),
            ready: watch::channel(false).0,
        });
        let mut child = shared.spawn()?;
        if let Err(error) = shared.wait_ready(&mut child, options.startup_timeout).await {
            shared.terminate(child).await;
            shared.remove_owned_data_dir();
            return Err(error);
        }
        info!(tcp = %shared.tcp, data_dir = %shared.data_dir.display(), "embedded Iggy is ready");
        let (stop, stop_requested) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(Arc::clone(&shared), child, stop_requested));
        Ok(Self {
            shared,
            stop,
            supervisor,
        })
    }

    /// A connection string for the root user of this server.
    pub fn connection_string(&self) -> String {
        format!(
            "iggy://{ROOT_USERNAME}:{}@{}",
            self.shared.password, self.shared.tcp
        )
    }

    /// The server's TCP address.
    pub fn tcp_address(&self) -> SocketAddr {
        self.shared.tcp
    }

    /// The server's HTTP API address, when it was asked for.
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.shared.http
    }

    /// The directory the server keeps its data and log in.
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// The root user's name and password, e.g. for Iggy's HTTP API.
    pub fn credentials(&self) -> (&str, &str) {
        (ROOT_USERNAME, &self.shared.password)
    }

    /// Kills the server process at once (SIGKILL), as a crash would; the
    /// supervisor then restarts it. For fault tests.
    pub fn kill(&self) -> io::Result<()> {
        self.shared.ready.send_replace(false);
        match self.current_pid() {
            Ok(pid) => signal(pid, Signal::SIGKILL),
            Err(_) => Ok(()),
        }
    }

    /// Stops the server process (SIGSTOP) without ending it: it keeps its
    /// connections open but answers nothing, as a hung server would. Returns
    /// once every thread of the process has stopped (a signal is delivered
    /// asynchronously). For fault tests; [`EmbeddedIggy::thaw`] resumes it.
    pub async fn freeze(&self) -> io::Result<()> {
        let pid = self.current_pid()?;
        signal(pid, Signal::SIGSTOP)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(pid)? {
            if tokio::time::Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "iggy-server did not stop",
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) -> io::Result<()> {
        self.signal_current(Signal::SIGCONT)
    }

    fn signal_current(&self, signal_to_send: Signal) -> io::Result<()> {
        signal(self.current_pid()?, signal_to_send)
    }

    /// The pid of the server process now running (the benchmark reads its
    /// CPU time).
    pub fn current_pid(&self) -> io::Result<u32> {
        self.shared
            .pid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "iggy-server is not running"))
    }

    /// Waits until the (re)started server answers again.
    pub async fn wait_ready(&self) {
        let mut ready = self.shared.ready.subscribe();
        // An error means the supervisor is gone; nothing will become ready.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Stops the server: SIGTERM, then SIGKILL after the grace period.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if let Err(error) = self.supervisor.await {
            error!(%error, "embedded Iggy supervisor failed");
        }
        self.shared.remove_owned_data_dir();
    }
}

impl Shared {
    fn spawn(&self) -> Result<Child, EmbeddedError> {
        let log_path = self.data_dir.join(LOG_FILE);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| EmbeddedError::DataDir {
                path: log_path,
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| EmbeddedError::DataDir {
            path: self.data_dir.clone(),
            source,
        })?;
        let mut command = Command::new(&self.binary);
        command
            // Run inside the data directory so no config.toml or .env of the
            // caller's working directory is picked up.
            .current_dir(&self.data_dir)
            .env("IGGY_SYSTEM_PATH", self.data_dir.join("data"))
            .env("IGGY_TCP_ADDRESS", self.tcp.to_string())
            .env("IGGY_QUIC_ENABLED", "false")
            .env("IGGY_WEBSOCKET_ENABLED", "false")
            .env("IGGY_ROOT_USERNAME", ROOT_USERNAME)
            .env("IGGY_ROOT_PASSWORD", &self.password)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        match self.http {
            Some(http) => command.env("IGGY_HTTP_ADDRESS", http.to_string()),
            None => command.env("IGGY_HTTP_ENABLED", "false"),
        };
        // One shard unless the operator chose otherwise: the gateway and the
        // server share the machine.
        if env::var_os("IGGY_SYSTEM_SHARDING_CPU_ALLOCATION").is_none() {
            command.env("IGGY_SYSTEM_SHARDING_CPU_ALLOCATION", "1");
        }
        let child = command.spawn().map_err(|source| EmbeddedError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        *self.pid.lock().unwrap_or_else(PoisonError::into_inner) = child.id();
        Ok(child)
    }

    async fn wait_ready(&self, child: &mut Child, timeout: Duration) -> Result<(), EmbeddedError> {
        let target = IggyTarget::parse(&format!(
            "iggy://{ROOT_USERNAME}:{}@{}",
            self.password, self.tcp
        ))
        .map_err(|error| self.not_ready(error.to_string()))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(250));
        loop {
            if let Ok(client) = target.connect(Duration::from_secs(2)).await
                && client.ping().await.is_ok()
            {
                self.ready.send_replace(true);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(self.not_ready(format!("the process exited with {status}")));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.not_ready(format!("no answer within {timeout:?}")));
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    fn not_ready(&self, reason: String) -> EmbeddedError {
        EmbeddedError::NotReady {
            reason,
            log_tail: log_tail(&self.data_dir.join(LOG_FILE)),
        }
    }

    async fn terminate(&self, mut child: Child) {
        if let Some(pid) = child.id()
            && let Err(error) = signal(pid, Signal::SIGTERM)
        {
            warn!(%error, "cannot send SIGTERM to iggy-server");
        }
        match tokio::time::timeout(self.stop_grace, child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                warn!(grace = ?self.stop_grace, "iggy-server ignored SIGTERM; killing it");
                let _ = child.kill().await;
            }
        }
        *self.pid.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.ready.send_replace(false);
    }

    fn remove_owned_data_dir(&self) {
        if self.owns_data_dir
            && let Err(error) = std::fs::remove_dir_all(&self.data_dir)
        {
            warn!(%error, dir = %self.data_dir.display(), "cannot remove the embedded Iggy data dir");
        }
    }
}

/// Restarts the server whenever it exits, until asked to stop.
async fn supervise(shared: Arc<Shared>, mut child: Child, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        tokio::select! {
            () = stopped(&mut stop) => {
                shared.terminate(child).await;
                return;
            }
            status = child.wait() => {
                *shared.pid.lock().unwrap_or_else(PoisonError::into_inner) = None;
                shared.ready.send_replace(false);
                warn!(?status, "embedded iggy-server exited; restarting");
            }
        }
        // Restart, with backoff between failed attempts.
        loop {
            tokio::select! {
                () = stopped(&mut stop) => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
            match shared.spawn() {
                Ok(restarted) => {
                    child = restarted;
                    tokio::select! {
                        () = stopped(&mut stop) => {
                            shared.terminate(child).await;
                            return;
                        }
                        ready = shared.wait_ready(&mut child, Duration::from_secs(60)) => match ready {
                            Ok(()) => {
                                info!("embedded iggy-server is back");
                                backoff.reset();
                            }
                            Err(error) => warn!(%error, "restarted iggy-server is not ready"),
                        }
                    }
                    break;
                }
                Err(error) => error!(%error, "cannot restart iggy-server"),
            }
        }
    }
}

/// Completes once a stop has been requested (or the requester is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn resolve_binary(explicit: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = env::var_os(SERVER_BIN_ENV).filter(|value| !value.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    find_on_path(SERVER_BIN_NAME).ok_or(EmbeddedError::BinaryNotFound)
}

/// The first `name` on `PATH` that is a file.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The root password stored in the data directory, created on first use, so
/// that a kept data directory logs in again after a gateway restart.
fn root_password(data_dir: &Path) -> Result<String, EmbeddedError> {
    let path = data_dir.join(CREDENTIALS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(stored) if !stored.trim().is_empty() => return Ok(stored.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(EmbeddedError::DataDir { path, source }),
    }
    let password = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(&path, &password).map_err(|source| EmbeddedError::DataDir { path, source })?;
    Ok(password)
}

fn free_loopback_port(data_dir: &Path) -> Result<SocketAddr, EmbeddedError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map_err(|source| EmbeddedError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })
}

/// True when every thread of `pid` is in the stopped state (`T`), per Linux
/// `/proc/<pid>/task/<tid>/stat`.
fn all_threads_stopped(pid: u32) -> io::Result<bool> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("stat"))?;
        // The state follows the parenthesised command name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if !matches!(state, Some('T' | 't')) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn signal(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(pid).map_err(io::Error::other)?;
    kill(Pid::from_raw(pid), signal).map_err(io::Error::from)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
