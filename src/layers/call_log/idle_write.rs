//! The `call finished` lines of a worker thread are written when that thread
//! is about to go idle, so that writing them is on no call's latency path.
//!
//! A call's line is due when its response's trailers are polled, which is
//! before the connection task has written them to the socket: a system-call
//! trace of the gateway showed each line's `write` before the answer's
//! `sendto`, and in a profile of health checks formatting and writing the
//! line took 7% of the gateway's CPU samples.
//!
//! So on a thread set up for it (the gateway binary's worker threads, from
//! their first park on), a finished call's line is kept in a list of that
//! thread's and written when the thread parks (it has nothing left to run, so
//! the answer has gone out), when it stops, or, on a thread that stays busy,
//! when a new line finds [`MAX_PENDING`] kept or the oldest [`MAX_DELAY`]
//! old. Every other thread (tests, other runtimes, blocking
//! threads) writes each line at once. A line's duration is measured when the
//! call finishes; only the line's own timestamp is taken when it is written.

use super::CallLine;
use std::{cell::RefCell, time::Duration};

/// Most lines a thread keeps before writing them all.
const MAX_PENDING: usize = 64;

/// Longest a kept line waits on a thread that stays busy.
const MAX_DELAY: Duration = Duration::from_millis(100);

thread_local! {
    /// This thread's kept lines; `None` on a thread that writes at once.
    static PENDING: RefCell<Option<Vec<CallLine>>> = const { RefCell::new(None) };
}

/// For the runtime's `on_thread_park` hook: writes the lines this thread
/// kept, and keeps its lines from now on (only worker threads park, so only
/// they keep lines).
pub(super) fn on_worker_park() {
    let kept = with_pending(|pending| match pending {
        Some(lines) if !lines.is_empty() => std::mem::take(lines),
        Some(_) => Vec::new(),
        None => {
            *pending = Some(Vec::with_capacity(MAX_PENDING));
            Vec::new()
        }
    });
    write_all(kept.into_iter().flatten());
}

/// For the runtime's `on_thread_stop` hook: writes the lines this thread
/// kept, so none is lost when the runtime shuts down.
pub(super) fn on_thread_stop() {
    let kept = with_pending(Option::take).flatten();
    write_all(kept.into_iter().flatten());
}

/// Writes `line` now, or keeps it until this thread parks.
pub(super) fn write_or_keep(line: CallLine) {
    let mut unkept = Some(line);
    let due = with_pending(|pending| {
        let lines = pending.as_mut()?;
        let line = unkept.take()?;
        let overdue = lines
            .first()
            .is_some_and(|first| line.finished.duration_since(first.finished) >= MAX_DELAY);
        lines.push(line);
        (overdue || lines.len() >= MAX_PENDING).then(|| std::mem::take(lines))
    })
    .flatten();
    // A line this thread does not keep is written now, after those it kept.
    write_all(due.into_iter().flatten().chain(unkept));
}

/// `use_list` applied to this thread's list, or `None` when the list cannot
/// be reached (the thread is ending and has dropped it); then lines are
/// written at once.
fn with_pending<T>(use_list: impl FnOnce(&mut Option<Vec<CallLine>>) -> T) -> Option<T> {
    PENDING
        .try_with(|pending| {
            let mut pending = pending.try_borrow_mut().ok()?;
            Some(use_list(&mut pending))
        })
        .ok()
        .flatten()
}

fn write_all(lines: impl Iterator<Item = CallLine>) {
    for line in lines {
        line.write();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{edge::RequestId, layers::call_log::CallRecord, metrics::MethodCalls};
    use std::{
        io,
        sync::{Arc, Mutex},
        time::Instant,
    };
    use tonic::{Code, codegen::http::HeaderValue};

    /// What the lines written on this thread said, one string per line.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl Written {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().expect("not poisoned").clone();
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    impl io::Write for Written {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Runs `test` on a thread of its own whose log goes to the returned
    /// lines.
    fn on_a_fresh_thread(test: impl FnOnce(&Written) + Send + 'static) {
        std::thread::spawn(move || {
            let written = Written::default();
            let sink = written.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::with_default(subscriber, || test(&written));
        })
        .join()
        .expect("the test thread");
    }

    fn line(request_id: &str, finished: Instant) -> CallLine {
        let record = CallRecord {
            method: Arc::new(MethodCalls::new("test.IdleWrite/Call")),
            request_id: Some(
                RequestId::from_header(Some(&HeaderValue::from_str(request_id).expect("ascii")))
                    .expect("a valid request id"),
            ),
            traceparent: None,
            principal: None,
            started: finished,
        };
        CallLine {
            record,
            code: Code::Ok,
            finished,
        }
    }

    fn request_ids(written: &Written) -> Vec<String> {
        written
            .lines()
            .iter()
            .map(|line| {
                assert!(line.contains("call finished"), "{line}");
                let (_, rest) = line.split_once("request_id=").expect("a request id");
                let quoted = rest.split_whitespace().next().unwrap_or_default();
                quoted.trim_matches('"').to_owned()
            })
            .collect()
    }

    #[test]
    fn a_thread_that_never_parked_writes_each_line_at_once() {
        on_a_fresh_thread(|written| {
            write_or_keep(line("first", Instant::now()));
            assert_eq!(request_ids(written), ["first"]);
        });
    }

    #[test]
    fn a_worker_writes_its_lines_in_order_when_it_parks_again_or_stops() {
        on_a_fresh_thread(|written| {
            on_worker_park();
            let now = Instant::now();
            write_or_keep(line("a", now));
            write_or_keep(line("b", now));
            assert!(written.lines().is_empty(), "kept while the worker is busy");
            on_worker_park();
            assert_eq!(request_ids(written), ["a", "b"]);

            write_or_keep(line("c", now));
            assert_eq!(request_ids(written).len(), 2);
            on_thread_stop();
            assert_eq!(request_ids(written), ["a", "b", "c"]);
        });
    }

    #[test]
    fn a_busy_worker_writes_once_too_many_lines_or_too_old_a_line_are_kept() {
        on_a_fresh_thread(|written| {
            on_worker_park();
            let now = Instant::now();
            for index in 0..MAX_PENDING - 1 {
                write_or_keep(line(&format!("n{index}"), now));
            }
            assert!(written.lines().is_empty());
            write_or_keep(line("last", now));
            assert_eq!(request_ids(written).len(), MAX_PENDING);

            write_or_keep(line("old", now));
            assert_eq!(request_ids(written).len(), MAX_PENDING);
            write_or_keep(line("late", now + MAX_DELAY));
            let ids = request_ids(written);
            assert_eq!(ids[MAX_PENDING..], ["old", "late"]);
        });
    }
}
