//! A fixed-size pool of logged-in Iggy TCP connections for publish and admin
//! calls.
//!
//! One Iggy connection serves one request at a time, so the pool size bounds
//! how many Iggy calls run at once. Each connection that breaks is replaced by
//! a fresh client, reconnected with backoff and jitter; fresh clients also keep
//! the SDK's per-client event channel from filling up over many reconnects.
//! When one connection is found broken, every idle one is replaced too: they
//! all went to the same server, and a dead connection must not be handed to
//! the next request. A probe pings one idle connection at a regular interval,
//! so an Iggy that disappears while the gateway is idle is noticed.

use super::{Backoff, IggyTarget, RunToCompletion};
use crate::error::{GatewayError, is_connection_lost};
use iggy::prelude::{
    Client, Consumer, Identifier, IggyClient, IggyError, MessageClient, PolledMessages,
    PollingStrategy, SystemClient,
};
use std::{
    future::Future,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};

/// How the pool is sized and paced.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Number of connections, and so of concurrent Iggy calls.
    pub size: usize,
    /// How long a call waits for a free connection before RESOURCE_EXHAUSTED.
    pub acquire_timeout: Duration,
    /// How long one connect-and-login attempt may take.
    pub connect_timeout: Duration,
    /// How often an idle connection is pinged to notice a lost Iggy.
    pub probe_interval: Duration,
    /// First reconnect delay; doubles up to `reconnect_max`.
    pub reconnect_initial: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            size: 8,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            probe_interval: Duration::from_millis(250),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

/// How many pooled connections are logged in and usable, out of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections currently logged in (idle or serving a call).
    pub live: usize,
    /// The configured pool size.
    pub total: usize,
}

impl PoolStatus {
    /// True while at least one connection reaches Iggy.
    pub fn is_serving(&self) -> bool {
        self.live > 0
    }
}

/// A cheap-to-clone handle to the shared pool.
#[derive(Clone)]
pub struct IggyPool {
    shared: Arc<Shared>,
}

struct Shared {
    target: IggyTarget,
    options: PoolOptions,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection in `idle`.
    available: Semaphore,
    live: AtomicUsize,
    /// Bumped whenever a connection is found broken: idle connections made
    /// before are suspect and replaced.
    generation: AtomicU64,
    closed: AtomicBool,
    status: watch::Sender<PoolStatus>,
}

struct Connection {
    client: Arc<IggyClient>,
    generation: u64,
}

impl IggyPool {
    /// Creates the pool and starts connecting in the background. Returns at
    /// once: the gateway serves (answering UNAVAILABLE) while Iggy is away.
    pub fn start(target: IggyTarget, options: PoolOptions) -> Self {
        let total = options.size.max(1);
        let (status, _) = watch::channel(PoolStatus { live: 0, total });
        let shared = Arc::new(Shared {
            target,
            options: PoolOptions {
                size: total,
                ..options
            },
            idle: Mutex::new(Vec::with_capacity(total)),
            available: Semaphore::new(0),
            live: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            status,
        });
        for _ in 0..total {
            tokio::spawn(reconnect(Arc::downgrade(&shared), Slot::New));
        }
        tokio::spawn(probe(Arc::downgrade(&shared)));
        Self { shared }
    }

    /// Where the pool connects, for subscriptions that need their own
    /// connection.
    pub fn target(&self) -> &IggyTarget {
        &self.shared.target
    }

    /// The current status; changes are published to [`IggyPool::watch_status`].
    pub fn status(&self) -> PoolStatus {
        *self.shared.status.borrow()
    }

    /// A receiver that sees every change of the pool status.
    pub fn watch_status(&self) -> watch::Receiver<PoolStatus> {
        self.shared.status.subscribe()
    }

    /// Runs one Iggy call on a pooled connection.
    ///
    /// The call owns the connection and runs to its end even if the caller
    /// goes away (client cancelled, deadline passed): the request already on
    /// the wire completes and the connection returns to the pool intact,
    /// instead of being cut mid-frame.
    pub async fn call<T, F, Fut>(&self, operation: F) -> Result<T, GatewayError>
    where
        F: FnOnce(Arc<IggyClient>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, IggyError>> + Send + 'static,
        T: Send + 'static,
    {
        let result = self
            .run(operation, |result: &Result<T, IggyError>| {
                result.as_ref().is_err_and(is_connection_lost)
            })
            .await?;
        result.map_err(GatewayError::from)
    }

    /// Reads `count` messages of `partition` from `strategy` on, storing
    /// no offset (the consumer named is only a name Iggy asks for).
    pub async fn peek(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        partition: u32,
        strategy: PollingStrategy,
        count: u32,
    ) -> Result<PolledMessages, GatewayError> {
        let (stream, topic) = (stream.clone(), topic.clone());
        self.call(move |client| async move {
            let consumer = Consumer::new(Identifier::named("iggy-grpc.peek")?);
            client
                .poll_messages(
                    &stream,
                    &topic,
                    Some(partition),
                    &consumer,
                    &strategy,
                    count,
                    false,
                )
                .await
        })
        .await
    }

    /// Like [`IggyPool::call`], for operations whose output is not a plain
    /// `Result` (e.g. a send that hands its messages back on failure);
    /// `connection_lost` tells from the output whether the connection broke.
    pub async fn run<R, F, Fut>(
        &self,
        operation: F,
        connection_lost: fn(&R) -> bool,
    ) -> Result<R, GatewayError>
    where
        F: FnOnce(Arc<IggyClient>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        let mut lease = self.checkout().await?;
        let client = lease
            .client()
            .ok_or_else(|| GatewayError::Internal("checked-out lease has no connection".into()))?;
        RunToCompletion::new(async move {
            let output = operation(client).await;
            if connection_lost(&output) {
                lease.mark_broken();
            }
            drop(lease);
            output
        })
        .await
        .map_err(|_panicked| GatewayError::Internal("the Iggy call panicked".into()))
    }

    /// Someone else (e.g. a subscription's own connection) saw Iggy go away:
    /// replace every idle connection now rather than at the next probe, so
    /// no call is handed a connection from before the outage.
    pub fn suspect_lost(&self) {
        self.shared.retire_idle(0);
    }

    /// Stops reconnecting and drops every idle connection.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.available.close();
        let drained = std::mem::take(&mut *self.shared.lock_idle());
        self.shared.live.fetch_sub(drained.len(), Ordering::SeqCst);
        self.shared.publish_status();
    }

    async fn checkout(&self) -> Result<Lease, GatewayError> {
        let shared = &self.shared;
        loop {
            if shared.live.load(Ordering::SeqCst) == 0 || shared.closed.load(Ordering::SeqCst) {
                return Err(GatewayError::IggyUnavailable);
            }
            let permit =
                tokio::time::timeout(shared.options.acquire_timeout, shared.available.acquire())
                    .await;
            match permit {
                Ok(Ok(permit)) => permit.forget(),
                Ok(Err(_closed)) => return Err(GatewayError::IggyUnavailable),
                Err(_elapsed) if shared.live.load(Ordering::SeqCst) == 0 => {
                    return Err(GatewayError::IggyUnavailable);
                }
                Err(_elapsed) => {
                    return Err(GatewayError::PoolExhausted {
                        pool_size: shared.options.size,
                        retry_after: shared.options.acquire_timeout,
                    });
                }
            }
            let Some(connection) = shared.lock_idle().pop() else {
                // The permit's connection was retired by a reset in between;
                // its permit is gone with it, so wait for another.
                continue;
            };
            let lease = Lease {
                connection: Some(connection),
                shared: Arc::clone(shared),
                broken: false,
            };
            if lease.is_stale() {
                drop(lease.into_broken());
                continue;
            }
            return Ok(lease);
        }
    }
}

impl Shared {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish_status(&self) {
        let status = PoolStatus {
            live: self.live.load(Ordering::SeqCst),
            total: self.options.size,
        };
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    fn add_idle(&self, connection: Connection) {
        self.lock_idle().push(connection);
        self.available.add_permits(1);
    }

    /// A connection was lost: retire it and every idle connection made before
    /// it, and reconnect them all in the background.
    fn retire(self: &Arc<Self>, lost: Connection) {
        if lost.generation == self.generation.load(Ordering::SeqCst) {
            self.retire_idle(1);
        } else {
            // Its generation was already retired with the others.
            self.reconnect_retired(1, 1);
        }
    }

    /// Starts a new generation: every idle connection of an older one is
    /// retired; `already` more (leased ones found broken) are counted too.
    fn retire_idle(self: &Arc<Self>, already: usize) {
        let current = self.generation.fetch_add(1, Ordering::SeqCst);
        let mut retired = already;
        {
            let mut idle = self.lock_idle();
            let mut index = 0;
            while index < idle.len() {
                // Take the permit with the connection; one a waiting checkout
                // already holds is left, and that checkout finds it stale.
                if idle[index].generation <= current
                    && self.available.try_acquire().is_ok_and(|permit| {
                        permit.forget();
                        true
                    })
                {
                    idle.swap_remove(index);
                    retired += 1;
                } else {
                    index += 1;
                }
            }
        }
        self.reconnect_retired(retired, already);
    }

    fn reconnect_retired(self: &Arc<Self>, retired: usize, broken: usize) {
        if retired == 0 {
            return;
        }
        self.live.fetch_sub(retired, Ordering::SeqCst);
        self.publish_status();
        warn!(
            retired,
            broken,
            server = self.target.server_address(),
            "lost Iggy connections; reconnecting"
        );
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            for _ in 0..retired {
                runtime.spawn(reconnect(Arc::downgrade(self), Slot::Lost));
            }
        }
    }
}

/// A connection checked out of the pool; returns itself when dropped.
struct Lease {
    connection: Option<Connection>,
    shared: Arc<Shared>,
    broken: bool,
}

impl Lease {
    fn client(&self) -> Option<Arc<IggyClient>> {
        self.connection
            .as_ref()
            .map(|connection| Arc::clone(&connection.client))
    }

    fn is_stale(&self) -> bool {
        self.connection.as_ref().is_some_and(|connection| {
            connection.generation < self.shared.generation.load(Ordering::SeqCst)
        })
    }

    fn mark_broken(&mut self) {
        self.broken = true;
    }

    fn into_broken(mut self) -> Self {
        self.broken = true;
        self
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        if self.broken {
            self.shared.retire(connection);
        } else if self.shared.closed.load(Ordering::SeqCst) {
            self.shared.live.fetch_sub(1, Ordering::SeqCst);
            self.shared.publish_status();
        } else {
            self.shared.add_idle(connection);
        }
    }
}

/// Whether a slot is connected for the first time or after a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    New,
    Lost,
}

/// Connects one pool slot, retrying with backoff until it is logged in or the
/// pool is gone.
async fn reconnect(pool: Weak<Shared>, slot: Slot) {
    let mut backoff = {
        let Some(shared) = pool.upgrade() else { return };
        Backoff::new(
            shared.options.reconnect_initial,
            shared.options.reconnect_max,
        )
    };
    let mut attempts: u64 = 0;
    loop {
        let (target, connect_timeout, generation) = {
            let Some(shared) = pool.upgrade() else { return };
            if shared.closed.load(Ordering::SeqCst) {
                return;
            }
            (
                shared.target.clone(),
                shared.options.connect_timeout,
                shared.generation.load(Ordering::SeqCst),
            )
        };
        attempts += 1;
        match target.connect(connect_timeout).await {
            Ok(client) => {
                let Some(shared) = pool.upgrade() else { return };
                if shared.closed.load(Ordering::SeqCst) {
                    return;
                }
                drain_events(&client).await;
                shared.live.fetch_add(1, Ordering::SeqCst);
                shared.add_idle(Connection {
                    client: Arc::new(client),
                    generation,
                });
                shared.publish_status();
                if slot == Slot::Lost {
                    crate::metrics::count_iggy_reconnect();
                }
                info!(
                    server = target.server_address(),
                    attempts, "Iggy connection ready"
                );
                return;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                if attempts == 1 {
                    warn!(server = target.server_address(), %error, "cannot reach Iggy; retrying with backoff");
                } else {
                    debug!(server = target.server_address(), %error, ?delay, "Iggy connect failed");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Reads the client's diagnostic events so its bounded channel never fills
/// and blocks the client; the task ends with the client.
async fn drain_events(client: &IggyClient) {
    let mut events = client.subscribe_events().await;
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            debug!(?event, "Iggy client event");
        }
    });
}

/// Pings an idle connection every probe interval so a lost Iggy is noticed
/// (and health turns NOT_SERVING) even when no request is in flight.
async fn probe(pool: Weak<Shared>) {
    loop {
        let interval = match pool.upgrade() {
            Some(shared) if !shared.closed.load(Ordering::SeqCst) => shared.options.probe_interval,
            _ => return,
        };
        tokio::time::sleep(interval).await;
        let Some(shared) = pool.upgrade() else { return };
        // Same order as a checkout: the permit first, then its connection.
        let Ok(permit) = shared.available.try_acquire() else {
            continue; // all busy (so in use) or none live (so reconnecting)
        };
        permit.forget();
        let Some(connection) = shared.lock_idle().pop() else {
            continue;
        };
        let mut lease = Lease {
            connection: Some(connection),
            shared: Arc::clone(&shared),
            broken: false,
        };
        drop(shared);
        let Some(client) = lease.client() else {
            continue;
        };
        let pinged =
            tokio::time::timeout(interval.max(Duration::from_secs(1)), client.ping()).await;
        match pinged {
            Ok(Ok(())) => {}
            Ok(Err(error)) if !is_connection_lost(&error) => {}
            _ => lease.mark_broken(),
        }
    }
}
