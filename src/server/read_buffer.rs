//! A read buffer in front of each client connection, used only while the
//! client is sending faster than it is read.
//!
//! hyper's HTTP/2 reads one frame at a time: a client that sends a 1 MiB
//! batch in 16 KiB frames (the HTTP/2 default) costs the gateway 64 socket
//! reads where 1 MiB frames cost a few, and TLS reads in even smaller
//! pieces. When a read fills all the room it was given (so more is
//! waiting), the next small reads are served from one large read instead;
//! the buffer is freed as soon as a read finds less waiting than was asked
//! for, so an idle connection (a subscriber's, say) holds none.

use bytes::{Buf, BytesMut};
use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// How much one buffered read takes from the socket at most.
const CAPACITY: usize = 256 * 1024;

/// A connection whose small reads come from one large read while data
/// keeps arriving; writes go straight through.
pub struct ReadBuffered<S> {
    inner: S,
    /// Read but not yet handed on; empty and unallocated when not buffering.
    buffer: BytesMut,
    /// The last read filled the room it had: read ahead next time.
    buffering: bool,
}

impl<S> ReadBuffered<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buffer: BytesMut::new(),
            buffering: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadBuffered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let asked = out.remaining();
        if this.buffer.is_empty() {
            if !this.buffering || asked >= CAPACITY {
                let before = out.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
                this.buffering = out.filled().len() > before && out.remaining() == 0;
                return Poll::Ready(Ok(()));
            }
            this.buffer.reserve(CAPACITY);
            let filled =
                tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buffer);
            if filled.is_pending() {
                // Nothing waiting: the connection may stay idle, so it
                // holds no buffer meanwhile.
                this.buffering = false;
                this.buffer = BytesMut::new();
            }
            ready!(filled)?;
            if this.buffer.len() < asked {
                // The socket had less waiting than the caller wanted: read
                // straight into the caller's room again.
                this.buffering = false;
            }
        }
        let taken = asked.min(this.buffer.len());
        out.put_slice(&this.buffer[..taken]);
        this.buffer.advance(taken);
        if this.buffer.is_empty() && !this.buffering {
            this.buffer = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadBuffered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for ReadBuffered<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A socket that has `waiting` bytes ready at each read, then whatever
    /// comes next; counts the reads it was asked for. Once `data` is read,
    /// it ends, or with `open` it waits for more.
    struct Socket {
        data: Vec<u8>,
        at: usize,
        waiting: usize,
        reads: usize,
        open: bool,
    }

    impl Socket {
        fn new(len: usize, waiting: usize) -> Self {
            Self {
                data: (0..len).map(|i| (i % 251) as u8).collect(),
                at: 0,
                waiting,
                reads: 0,
                open: false,
            }
        }
    }

    impl AsyncRead for Socket {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            if this.open && this.at == this.data.len() {
                return Poll::Pending;
            }
            let end = (this.at + this.waiting.min(out.remaining())).min(this.data.len());
            out.put_slice(&this.data[this.at..end]);
            this.at = end;
            Poll::Ready(Ok(()))
        }
    }

    /// Reads everything in pieces of `piece` bytes, as h2 reads frames.
    async fn read_all(connection: &mut ReadBuffered<Socket>, piece: usize) -> Vec<u8> {
        let mut all = Vec::new();
        let mut chunk = vec![0; piece];
        loop {
            let read = connection.read(&mut chunk).await.expect("read");
            if read == 0 {
                return all;
            }
            all.extend_from_slice(&chunk[..read]);
        }
    }

    #[tokio::test]
    async fn a_busy_connection_is_read_in_large_reads_and_loses_nothing() {
        let mut connection = ReadBuffered::new(Socket::new(4 << 20, usize::MAX));
        let all = read_all(&mut connection, 16 * 1024 + 9).await;
        assert_eq!(all, connection.inner.data);
        // One read straight through, then one per buffer, then the end.
        assert!(
            connection.inner.reads <= 2 + (4 << 20) / CAPACITY + 1,
            "{} socket reads",
            connection.inner.reads
        );
    }

    #[tokio::test]
    async fn a_connection_with_little_waiting_holds_no_buffer() {
        let mut connection = ReadBuffered::new(Socket::new(64 * 1024, 100));
        let mut chunk = vec![0; 16 * 1024];
        for _ in 0..3 {
            assert_eq!(connection.read(&mut chunk).await.expect("read"), 100);
            assert_eq!(connection.buffer.capacity(), 0);
        }
    }

    #[tokio::test]
    async fn a_burst_ends_with_the_buffer_freed() {
        let mut connection = ReadBuffered::new(Socket::new(1 << 20, usize::MAX));
        let mut chunk = vec![0; 16 * 1024];
        for _ in 0..2 {
            assert_eq!(
                connection.read(&mut chunk).await.expect("read"),
                chunk.len()
            );
        }
        assert!(!connection.buffer.is_empty(), "read ahead");
        connection.inner.waiting = 10;
        let all = read_all(&mut connection, 16 * 1024).await;
        assert_eq!(all.len(), (1 << 20) - 2 * 16 * 1024);
        assert_eq!(connection.buffer.capacity(), 0);
    }

    #[test]
    fn a_connection_that_falls_idle_while_reading_ahead_holds_no_buffer() {
        let mut socket = Socket::new(3 * 16 * 1024, usize::MAX);
        socket.open = true;
        let mut connection = ReadBuffered::new(socket);
        let mut chunk = vec![0; 16 * 1024];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..3 {
            let mut out = ReadBuf::new(&mut chunk);
            let read = Pin::new(&mut connection).poll_read(&mut cx, &mut out);
            assert!(read.is_ready() && out.filled().len() == 16 * 1024);
        }
        let mut out = ReadBuf::new(&mut chunk);
        assert!(
            Pin::new(&mut connection)
                .poll_read(&mut cx, &mut out)
                .is_pending()
        );
        assert_eq!(connection.buffer.capacity(), 0);
    }
}
