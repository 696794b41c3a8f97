//! A connection wrapper that lets the HTTP/2 frames of one burst leave in one
//! `write` call.
//!
//! h2 writes every DATA frame on its own and flushes after each one. A client
//! that keeps tonic's default 16 KiB frame size therefore costs the gateway
//! 64 system calls (and the client 64 wake-ups) per MiB streamed. This wrapper
//! copies small writes into a buffer and sends it when it is full, or on a
//! flush with no write since the previous flush. A flush that follows a write,
//! with at least [`DEFER_FROM`] buffered, answers `Pending` and wakes its task
//! at once: a writer that wants its data out polls the flush again, and h2,
//! which flushes after each frame it queues, queues the rest of the burst
//! first. Nothing waits for a timer.
//!
//! A small answer (a unary reply, a lone small delivery) leaves on its first
//! flush: deferring it gathers nothing, and tokio runs a task that wakes
//! itself as a yield, handing the connection to another worker thread, which
//! costs a thread wake-up on every answer.
//!
//! Only for plaintext connections: rustls, which sits on top of the
//! connection under TLS, does not poll a pending flush again during its
//! handshake.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Buffered bytes at which a flush is no longer deferred.
const SEND_AT: usize = 256 * 1024;

/// Buffered bytes from which a flush right after a write is deferred: half
/// of a default-sized (16 KiB) DATA frame, so bursts of frames are gathered
/// while a smaller answer is sent at once.
const DEFER_FROM: usize = 8 * 1024;

/// A connection whose small writes are gathered into larger ones.
#[derive(Debug)]
pub struct WriteCoalescing<T> {
    inner: T,
    buffer: Vec<u8>,
    /// Where the unsent part of `buffer` starts.
    sent: usize,
    /// A write came since the last flush: more may follow in this burst.
    wrote_since_flush: bool,
    /// Off: every call goes straight to `inner`.
    enabled: bool,
}

impl<T> WriteCoalescing<T> {
    /// Wraps `inner`, gathering its writes.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            buffer: Vec::new(),
            sent: 0,
            wrote_since_flush: false,
            enabled: true,
        }
    }

    /// Wraps `inner` without gathering writes (for TLS connections).
    pub fn pass_through(inner: T) -> Self {
        Self {
            enabled: false,
            ..Self::new(inner)
        }
    }

    fn unsent(&self) -> usize {
        self.buffer.len() - self.sent
    }
}

impl<T: AsyncWrite + Unpin> WriteCoalescing<T> {
    /// Writes out everything buffered.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buffer.len() {
            let written =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buffer[self.sent..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += written;
        }
        self.buffer.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `incoming` more bytes: sends the buffer first when they
    /// would not fit under `SEND_AT`.
    fn poll_room(&mut self, cx: &mut Context<'_>, incoming: usize) -> Poll<io::Result<()>> {
        if self.unsent() > 0 && self.unsent() + incoming > SEND_AT {
            ready!(self.poll_send(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteCoalescing<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.enabled {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, slices);
        }
        let total: usize = slices.iter().map(|slice| slice.len()).sum();
        ready!(this.poll_room(cx, total))?;
        if this.unsent() == 0 && total >= SEND_AT {
            // Large enough on its own: no copy.
            return Pin::new(&mut this.inner).poll_write_vectored(cx, slices);
        }
        for slice in slices {
            this.buffer.extend_from_slice(slice);
        }
        this.wrote_since_flush = true;
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        self.enabled || self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let defer = this.wrote_since_flush && this.unsent() >= DEFER_FROM;
        this.wrote_since_flush = false;
        if defer {
            // More frames may follow in this burst. The writer is polled again
            // at once; its next flush with no write before it sends.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteCoalescing<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: Connected> Connected for WriteCoalescing<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Wake, Waker},
    };

    /// A connection that records each write it is given.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        shut_down: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().shut_down = true;
            Poll::Ready(Ok(()))
        }
    }

    /// Counts how often the task was asked to run again.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Harness {
        io: WriteCoalescing<Recorder>,
        wakes: Arc<Wakes>,
        waker: Waker,
    }

    impl Harness {
        fn new() -> Self {
            let wakes = Arc::new(Wakes::default());
            Self {
                io: WriteCoalescing::new(Recorder::default()),
                waker: Waker::from(Arc::clone(&wakes)),
                wakes,
            }
        }

        fn write(&mut self, data: &[u8]) -> usize {
            let mut cx = Context::from_waker(&self.waker);
            match Pin::new(&mut self.io).poll_write(&mut cx, data) {
                Poll::Ready(Ok(written)) => written,
                other => panic!("write did not complete: {other:?}"),
            }
        }

        fn write_vectored(&mut self, slices: &[&[u8]]) -> usize {
            let mut cx = Context::from_waker(&self.waker);
            let slices: Vec<io::IoSlice<'_>> = slices.iter().map(|s| io::IoSlice::new(s)).collect();
            match Pin::new(&mut self.io).poll_write_vectored(&mut cx, &slices) {
                Poll::Ready(Ok(written)) => written,
                other => panic!("write did not complete: {other:?}"),
            }
        }

        /// Whether the flush completed (`false`: deferred, `Pending`).
        fn flush(&mut self) -> bool {
            let mut cx = Context::from_waker(&self.waker);
            match Pin::new(&mut self.io).poll_flush(&mut cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Pending => false,
                Poll::Ready(Err(error)) => panic!("flush failed: {error}"),
            }
        }

        fn shutdown(&mut self) {
            let mut cx = Context::from_waker(&self.waker);
            assert!(matches!(
                Pin::new(&mut self.io).poll_shutdown(&mut cx),
                Poll::Ready(Ok(()))
            ));
        }

        fn sent(&self) -> &[Vec<u8>] {
            &self.io.inner.writes
        }

        fn wakes(&self) -> usize {
            self.wakes.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn frames_flushed_one_by_one_leave_in_one_write() {
        let mut h = Harness::new();
        let frames: Vec<Vec<u8>> = (1..=3u8).map(|n| vec![n; DEFER_FROM]).collect();
        // h2's pattern: write a frame, flush, write the next, flush...
        for frame in &frames {
            assert_eq!(h.write_vectored(&[frame, b"|"]), frame.len() + 1);
            assert!(!h.flush(), "a flush right after a frame is deferred");
        }
        assert!(h.sent().is_empty(), "nothing sent while the burst goes on");
        assert_eq!(h.wakes(), 3, "each deferred flush asks to run again");
        // The turn it asked for: a flush with no write before it sends.
        assert!(h.flush());
        let burst: Vec<u8> = frames
            .iter()
            .flat_map(|f| [&f[..], b"|"].concat())
            .collect();
        assert_eq!(h.sent(), [burst]);
        assert_eq!(h.io.inner.flushes, 1);
        // Nothing left: a further flush only flushes the connection.
        assert!(h.flush());
        assert_eq!(h.sent().len(), 1);
        assert_eq!(h.io.inner.flushes, 2);
    }

    #[test]
    fn a_small_answer_leaves_on_its_first_flush() {
        let mut h = Harness::new();
        // A unary reply: HEADERS, DATA and trailers in one write.
        h.write_vectored(&[b"headers|", b"data|", b"trailers"]);
        assert!(h.flush(), "nothing to gather: sent at once");
        assert_eq!(h.sent(), [b"headers|data|trailers".to_vec()]);
        assert_eq!(
            h.wakes(),
            0,
            "no extra turn, so no hand-off to another thread"
        );
    }

    #[test]
    fn a_full_buffer_is_sent_before_more_is_taken() {
        let mut h = Harness::new();
        let chunk = vec![7u8; SEND_AT / 2];
        h.write(&chunk);
        h.write(&chunk);
        assert!(h.sent().is_empty());
        h.write(b"next");
        assert_eq!(h.sent().len(), 1, "the full buffer went out");
        assert_eq!(h.sent()[0].len(), SEND_AT);
        assert!(h.flush(), "what is left is small: sent at once");
        assert_eq!(h.sent()[1], b"next");
    }

    #[test]
    fn a_large_write_on_an_empty_buffer_is_not_copied() {
        let mut h = Harness::new();
        let large = vec![1u8; SEND_AT];
        assert_eq!(h.write(&large), SEND_AT);
        assert_eq!(h.sent(), [large]);
        assert!(h.flush(), "nothing buffered, nothing deferred");
        assert_eq!(h.wakes(), 0);
    }

    #[test]
    fn passing_through_sends_each_write_at_once() {
        let mut h = Harness::new();
        h.io = WriteCoalescing::pass_through(Recorder::default());
        h.write(b"one");
        assert!(h.flush());
        h.write(b"two");
        assert_eq!(h.sent(), [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(h.wakes(), 0);
    }

    #[test]
    fn shutdown_sends_what_is_buffered_first() {
        let mut h = Harness::new();
        h.write(b"last words");
        h.shutdown();
        assert_eq!(h.sent(), [b"last words".to_vec()]);
        assert!(h.io.inner.shut_down);
    }
}
