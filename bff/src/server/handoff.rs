//! Hands accepted connections to the serving threads in turn, so that every thread gets an equal
//! share of the connections. When every thread accepts from the shared socket, whichever thread
//! is awake when a burst of connections arrives takes them, and the shares depend on timing.
//!
//! It also caps the open connections (`server.max_connections`): each carries a permit from one
//! semaphore, given back when the connection closes; at the cap nothing is accepted, and further
//! clients wait in the kernel's listen backlog instead of costing the node memory.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::client_addr::ClientAddr;

/// The most bytes a client socket queues that it has not sent yet (`TCP_NOTSENT_LOWAT`): past
/// them a write waits. Without it the kernel grows a socket's send buffer up to
/// `net.ipv4.tcp_wmem` (4 MiB) and keeps taking a response that a client does not read: a few
/// thousand such clients held the machine's whole TCP memory (`net.ipv4.tcp_mem`), which made
/// every other client's sends wait, and `server.write_timeout` started only once those megabytes
/// were queued. Bytes in flight to a client that reads are not counted, so a fast client on a long
/// path still gets a window as large as the kernel's tuning gives it.
pub const UNSENT_BYTES: u32 = 64 << 10;

/// Sets [`UNSENT_BYTES`] on a client socket (Linux only; where it cannot be set, the client is
/// served without it).
fn bound_unsent(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(UNSENT_BYTES) {
        tracing::debug!(%error, "TCP_NOTSENT_LOWAT not set");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

/// An accepted connection, with the permit that counts it while it is open.
pub type Accepted = (std::net::TcpStream, SocketAddr, OwnedSemaphorePermit);

/// One serving thread's end: the connections [`hand_out`] accepted for it.
pub struct Handoff {
    queue: mpsc::UnboundedReceiver<Accepted>,
}

/// A queue per serving thread, fed by [`hand_out`].
pub fn queues(
    listener: &TcpListener,
    threads: usize,
) -> std::io::Result<(Vec<mpsc::UnboundedSender<Accepted>>, Vec<Handoff>)> {
    let _ = listener;
    Ok((0..threads)
        .map(|_| {
            let (sender, queue) = mpsc::unbounded_channel();
            (sender, Handoff { queue })
        })
        .unzip())
}

/// Accepts connections, at most `max_connections` open at once, and gives them to the queues in
/// turn until `stopped` turns true.
pub async fn hand_out(
    listener: TcpListener,
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    max_connections: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let open = std::sync::Arc::new(Semaphore::new(max_connections));
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            accepted = async {
                let permit = open.clone().acquire_owned().await.expect("the semaphore is never closed");
                listener.accept().await.map(|(stream, peer)| (stream, peer, permit))
            } => accepted,
        };
        match accepted.and_then(|(stream, peer, permit)| {
            stream.set_nodelay(true)?;
            bound_unsent(&stream);
            Ok((stream.into_std()?, peer, permit))
        }) {
            Ok(connection) => {
                let _ = queues[next].send(connection);
                next = (next + 1) % queues.len();
            }
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

impl Handoff {
    /// The next connection handed to this thread, registered with its runtime; `None` when the
    /// node is stopping.
    pub async fn next(&mut self) -> Option<(TcpStream, ClientAddr, OwnedSemaphorePermit)> {
        loop {
            let (stream, peer, permit) = self.queue.recv().await?;
            match TcpStream::from_std(stream) {
                Ok(stream) => return Some((stream, ClientAddr(peer), permit)),
                Err(error) => tracing::warn!(%error, "connection could not be registered"),
            }
        }
    }
}
