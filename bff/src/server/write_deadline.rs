//! A bound on the time a client may take to accept what the node has to send it
//! (`server.write_timeout`).
//!
//! A client that asks for a large response and never reads it fills its socket's buffers; hyper's
//! write then waits for ever, and the connection keeps its `max_connections` permit and its
//! upstream response. [`WriteDeadline`] wraps the accepted socket: when a write has to wait, the
//! bytes it offered then are owed, and the client has `timeout` to take all of them (the socket
//! accepting them); once it has, the bound is off until a write waits again. So a client that
//! reads, however slowly, is served as long as it takes each wait's bytes (at most hyper's write
//! buffer and one upstream chunk, see [`super::http1`]) within the bound, and one that stalls is
//! closed `timeout` after its first write waited, whatever few bytes the kernel still takes
//! meanwhile (a bound that restarted at every byte accepted let stalled readers stay up to
//! twice the bound in the slow-client flood).
//!
//! A connection cut off this way is reset (`SO_LINGER` 0) rather than closed: the bytes its
//! client never took are dropped at once instead of the kernel keeping them, in an orphaned
//! socket, for minutes of retries (nginx's `reset_timedout_connection`). A flood of stalled
//! readers would otherwise hold the machine's TCP memory after the node let go of them, and
//! every other client's sends wait for that memory.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::cutoff::{Bound, Cutoff};

/// A client socket whose writes fail once the bytes owed since a write had to wait are not all
/// taken within `timeout`.
pub struct WriteDeadline {
    inner: TcpStream,
    timeout: Duration,
    /// Created at the first write that has to wait, then reset; boxed because `Sleep` is
    /// `!Unpin`.
    sleep: Option<Pin<Box<Sleep>>>,
    /// While the bound runs: the bytes offered when a write began to wait that the socket has not
    /// accepted yet.
    owed: Option<usize>,
    /// The connection's mark, set when the bound runs out and recorded when the socket closes.
    cutoff: Cutoff,
}

impl WriteDeadline {
    pub fn new(inner: TcpStream, timeout: Duration, cutoff: Cutoff) -> Self {
        WriteDeadline { inner, timeout, sleep: None, owed: None, cutoff }
    }

    /// `taken` bytes were accepted: they pay off what is owed first (the socket takes bytes in
    /// order); the bound is off once all is paid.
    fn took(&mut self, taken: usize) {
        if let Some(owed) = self.owed {
            self.owed = owed.checked_sub(taken).filter(|left| *left > 0);
        }
    }

    /// A write of `offered` bytes has to wait: starts the bound if it is not running and fails
    /// once it has run out.
    fn wait(&mut self, cx: &mut Context<'_>, offered: usize) -> Poll<io::Error> {
        let starting = self.owed.is_none();
        if starting {
            self.owed = Some(offered.max(1));
        }
        let deadline = Instant::now() + self.timeout;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if starting {
            sleep.as_mut().reset(deadline);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.cutoff.ran_out(Bound::Write, sleep.deadline());
                // Reset, not close: the kernel drops what the client never took.
                let _ = self.inner.set_zero_linger();
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("client did not take the response within {:?}", self.timeout),
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn bound_write(
        &mut self,
        cx: &mut Context<'_>,
        offered: usize,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(Ok(taken)) => {
                self.took(taken);
                Poll::Ready(Ok(taken))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.wait(cx, offered).map(Err),
        }
    }

    fn bound_flush(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<()>>) -> Poll<io::Result<()>> {
        match poll {
            Poll::Ready(result) => {
                if result.is_ok() {
                    self.owed = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.wait(cx, 1).map(Err),
        }
    }
}

impl Drop for WriteDeadline {
    /// The socket closes right after: a connection cut off by a bound is counted now.
    fn drop(&mut self) {
        self.cutoff.record_closed();
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.bound_write(cx, buf.len(), poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        let offered = bufs.iter().map(|b| b.len()).sum();
        this.bound_write(cx, offered, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.bound_flush(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.bound_flush(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    use super::WriteDeadline;
    use crate::cutoff::{Bound, Cutoff};

    /// A connected pair whose client end has a small receive buffer; the server end wrapped.
    async fn pair(timeout: Duration) -> (WriteDeadline, TcpStream, Cutoff) {
        // An accepted socket inherits the listener's buffer sizes.
        let listening = TcpSocket::new_v4().unwrap();
        listening.set_send_buffer_size(4096).unwrap();
        listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listening.listen(16).unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let client = socket.connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let cutoff = Cutoff::default();
        (WriteDeadline::new(server, timeout, cutoff.clone()), client, cutoff)
    }

    /// A client that takes a few bytes now and then, but never all that was waiting, is cut off
    /// one bound after the first write waited; a bound that restarted at every byte taken let it
    /// stay as long as it kept nibbling.
    #[tokio::test]
    async fn a_client_nibbling_at_a_stalled_write_is_cut_off_one_bound_after_it_began() {
        let bound = Duration::from_secs(1);
        let (mut server, mut client, cutoff) = pair(bound).await;
        let started = tokio::time::Instant::now();
        let nibbler = tokio::spawn(async move {
            // 20 KB/s: the 256 KiB write would take more than ten bounds.
            let mut byte = [0u8; 2048];
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                if matches!(client.read(&mut byte).await, Ok(0) | Err(_)) {
                    return;
                }
            }
        });
        let chunk = vec![b'z'; 256 << 10];
        let written = tokio::time::timeout(Duration::from_secs(5), server.write_all(&chunk)).await;
        let elapsed = started.elapsed();
        let error = written.expect("cut off within 5 s").expect_err("a write the client did not take");
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(elapsed < bound * 2, "cut off {elapsed:?} after the first write, bound {bound:?}");
        assert_eq!(cutoff.get().map(|(bound, _)| bound), Some(Bound::Write));
        drop(server);
        nibbler.await.unwrap();
    }

    /// A client that reads everything as it comes takes a response many bounds long: each wait's
    /// bytes are paid off in time.
    #[tokio::test]
    async fn a_client_that_reads_along_is_served_past_the_bound() {
        let bound = Duration::from_millis(300);
        let (mut server, mut client, cutoff) = pair(bound).await;
        let total = 64 << 10;
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 2048];
            while got < total {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        });
        let started = tokio::time::Instant::now();
        for _ in 0..16 {
            server.write_all(&[b'z'; 4096]).await.expect("a reading client is served");
        }
        server.flush().await.unwrap();
        assert_eq!(reader.await.unwrap(), total);
        assert!(started.elapsed() > bound, "the response took longer than one bound: {:?}", started.elapsed());
        assert_eq!(cutoff.get(), None);
    }
}
