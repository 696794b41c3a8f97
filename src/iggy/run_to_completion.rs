//! A future that finishes even when its caller stops waiting for it.
//!
//! A pooled Iggy call must not be cut off mid-frame when the gRPC client goes
//! away (cancelled, deadline passed): the connection would be left with half
//! a request on the wire. Spawning every call as a task of its own ensures
//! that, but costs a task and a wake-up per call: about 16 us of a 0.3 ms
//! single publish on the 2-core benchmark host. [`RunToCompletion`] runs the
//! call in the caller's task instead, and spawns what is left of it only if
//! the caller drops it before it is done.

use futures_util::FutureExt;
use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll, ready},
};

/// What a call that panicked left: the panic's payload.
pub type Panicked = Box<dyn Any + Send>;

/// Runs a future in the task that awaits it; dropped before the future is
/// done, it hands the rest to the runtime as a task of its own. A panic in
/// the future is caught and returned as [`Panicked`], as a task's would be.
pub struct RunToCompletion<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// The call, until it has finished.
    call: Option<Pin<Box<CatchUnwind<F>>>>,
}

type CatchUnwind<F> = futures_util::future::CatchUnwind<AssertUnwindSafe<F>>;

impl<F> RunToCompletion<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Wraps `call`; nothing runs until the result is polled.
    pub fn new(call: F) -> Self {
        Self {
            call: Some(Box::pin(AssertUnwindSafe(call).catch_unwind())),
        }
    }
}

impl<F> Future for RunToCompletion<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Polled again after it finished: it stays pending, as a finished
        // future owes its caller nothing more.
        let Some(call) = self.call.as_mut() else {
            return Poll::Pending;
        };
        let output = ready!(call.as_mut().poll(cx));
        self.call = None;
        Poll::Ready(output)
    }
}

impl<F> Drop for RunToCompletion<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        // Outside a runtime (it is shutting down) there is nothing left to
        // finish the call on; it is dropped with the connection it holds.
        if let Some(rest) = self.call.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn a_finished_call_returns_its_output() {
        let output = RunToCompletion::new(async { 7 }).await;
        assert_eq!(output.ok(), Some(7));
    }

    #[tokio::test]
    async fn a_dropped_call_still_runs_to_the_end() {
        let (release, released) = oneshot::channel::<()>();
        let (started_tx, started) = oneshot::channel::<()>();
        let (finished_tx, finished) = oneshot::channel::<&str>();
        let call = RunToCompletion::new(async move {
            let _ = started_tx.send(());
            let _ = released.await;
            let _ = finished_tx.send("done");
        });
        // The caller gives up while the call waits midway.
        let caller = tokio::spawn(call);
        started.await.expect("the call started");
        caller.abort();
        assert!(caller.await.is_err_and(|error| error.is_cancelled()));

        release
            .send(())
            .expect("the call is still alive to be released");
        assert_eq!(finished.await.ok(), Some("done"));
    }

    #[tokio::test]
    async fn a_panic_is_returned_not_raised() {
        let output = RunToCompletion::new(async {
            // Panics on a later poll, not the first.
            tokio::task::yield_now().await;
            panic!("broken call");
        })
        .await;
        assert!(output.is_err());
    }
}
