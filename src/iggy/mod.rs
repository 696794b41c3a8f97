//! Everything that talks to Iggy: how to reach it, the pool of connections
//! publish and admin calls share, and the supervisor of an embedded server.

mod backoff;
mod connection;
pub mod embedded;
pub mod missing;
mod pool;
mod run_to_completion;

pub use backoff::Backoff;
pub use connection::{IggyTarget, TargetError};
pub use pool::{IggyPool, PoolOptions, PoolStatus};
use run_to_completion::RunToCompletion;
