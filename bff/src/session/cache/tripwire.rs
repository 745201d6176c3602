//! [`Tripwire`]: a connection to the Redis server a node cache is confirmed against, which
//! carries nothing, so that a request can tell with one system call, without a round trip to
//! Redis and without waiting for any task, that the server's process has ended.
//!
//! Why it exists: the cache's listener learns that its subscription ended only when it is
//! scheduled (and only after the redis crate's own task read the end of the connection), and
//! until then the lease lets the cache answer; a Redis restarted without persistence answers
//! again, empty, within milliseconds, well inside a lease and well inside a late task's delay
//! on a loaded machine. But a Redis process that ends closes all its connections as it exits,
//! before any other process can listen at its address, so by the time a restarted Redis
//! answers anyone, this connection's end (end of stream or reset) is already in this host's
//! kernel. [`Tripwire::intact`] asks the kernel directly (a non-blocking `MSG_PEEK` of one byte),
//! on the request's own thread.
//!
//! Nothing is ever written on it (on a TLS port, not even a handshake: the server waits for one
//! and sends nothing), so the server never has anything to say on it: whatever is readable
//! (the end of the stream, a reset, bytes such as an error written before Redis closes it) means
//! the cache may no longer answer for that server. A Redis configured to close idle clients
//! (`timeout`) closes it too: the cache then goes off and is confirmed again, emptied.

use std::io;
use std::mem::MaybeUninit;

use socket2::SockRef;

/// One idle connection to the server a subscription was confirmed against.
pub(super) enum Tripwire {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Tripwire {
    /// Connects to the address the subscription went to (the TLS port of a `rediss://` server
    /// too: the connection is never used to talk).
    pub(super) async fn connect(address: &redis::ConnectionAddr) -> io::Result<Self> {
        match address {
            redis::ConnectionAddr::Tcp(host, port) | redis::ConnectionAddr::TcpTls { host, port, .. } => {
                Ok(Tripwire::Tcp(tokio::net::TcpStream::connect((host.as_str(), *port)).await?))
            }
            #[cfg(unix)]
            redis::ConnectionAddr::Unix(path) => Ok(Tripwire::Unix(tokio::net::UnixStream::connect(path).await?)),
            other => Err(io::Error::new(io::ErrorKind::Unsupported, format!("no tripwire for {other}"))),
        }
    }

    /// Whether the server still holds the connection open and said nothing on it: one
    /// non-blocking system call, answered by this host's kernel.
    pub(super) fn intact(&self) -> bool {
        matches!(self.peek(), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }

    /// Returns once the connection is no longer [`Tripwire::intact`].
    pub(super) async fn tripped(&self) {
        loop {
            let readable = match self {
                Tripwire::Tcp(stream) => stream.readable().await,
                #[cfg(unix)]
                Tripwire::Unix(stream) => stream.readable().await,
            };
            if readable.is_err() {
                return;
            }
            // A wake-up without anything to read (spurious) clears the readiness and waits again.
            let peeked = match self {
                Tripwire::Tcp(stream) => stream.try_io(tokio::io::Interest::READABLE, || self.peek()),
                #[cfg(unix)]
                Tripwire::Unix(stream) => stream.try_io(tokio::io::Interest::READABLE, || self.peek()),
            };
            if !matches!(peeked, Err(error) if error.kind() == io::ErrorKind::WouldBlock) {
                return;
            }
        }
    }

    /// `MSG_PEEK` of one byte on the socket itself, never tokio's idea of its readiness (which
    /// only the runtime's I/O driver updates, when it runs). The socket is non-blocking.
    fn peek(&self) -> io::Result<usize> {
        let socket = match self {
            Tripwire::Tcp(stream) => SockRef::from(stream),
            #[cfg(unix)]
            Tripwire::Unix(stream) => SockRef::from(stream),
        };
        socket.peek(&mut [MaybeUninit::uninit(); 1])
    }

    /// An intact tripwire to a listener that accepts nothing (the kernel holds the connection in
    /// its backlog), for tests of the cache without a Redis.
    #[cfg(test)]
    pub(super) fn to_nowhere() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = std::net::TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        stream.set_nonblocking(true).expect("non-blocking");
        // Kept for the process's life: dropping it would reset the connection.
        std::mem::forget(listener);
        Tripwire::Tcp(tokio::net::TcpStream::from_std(stream).expect("in a runtime"))
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    /// Polls [`Tripwire::intact`] on this thread, with no `.await`: no task runs meanwhile.
    fn until_not_intact(tripwire: &Tripwire) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if !tripwire.intact() {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }

    #[tokio::test]
    async fn trips_when_the_server_side_ends_and_not_before() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = redis::ConnectionAddr::Tcp("127.0.0.1".into(), listener.local_addr().unwrap().port());
        let tripwire = Tripwire::connect(&address).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(tripwire.intact());
        assert!(tripwire.tripped().now_or_never().is_none(), "nothing to read yet");
        drop(accepted);
        // The kernel tells, without any task of this runtime running in between.
        assert!(until_not_intact(&tripwire));
        tripwire.tripped().await;
    }

    #[tokio::test]
    async fn anything_the_server_says_trips_it() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = redis::ConnectionAddr::Tcp("127.0.0.1".into(), listener.local_addr().unwrap().port());
        let tripwire = Tripwire::connect(&address).await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        accepted.write_all(b"-ERR max number of clients reached\r\n").await.unwrap();
        accepted.flush().await.unwrap();
        tripwire.tripped().await;
        assert!(!tripwire.intact());
    }
}
