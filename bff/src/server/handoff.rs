//! Hands accepted connections to the serving threads in turn, so that every thread gets an equal
//! share of the connections. When every thread accepts from the shared socket, whichever thread
//! is awake when a burst of connections arrives takes them, and the shares depend on timing.

use std::net::SocketAddr;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// The peer address of a connection, for `ConnectInfo`.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

type Accepted = (std::net::TcpStream, SocketAddr);

/// One serving thread's end: a [`Listener`] whose connections were accepted by [`hand_out`].
pub struct Handoff {
    queue: mpsc::UnboundedReceiver<Accepted>,
    local: SocketAddr,
}

/// A queue per serving thread, fed by [`hand_out`].
pub fn queues(
    listener: &TcpListener,
    threads: usize,
) -> std::io::Result<(Vec<mpsc::UnboundedSender<Accepted>>, Vec<Handoff>)> {
    let local = listener.local_addr()?;
    Ok((0..threads)
        .map(|_| {
            let (sender, queue) = mpsc::unbounded_channel();
            (sender, Handoff { queue, local })
        })
        .unzip())
}

/// Accepts connections and gives them to the queues in turn until `stopped` turns true.
pub async fn hand_out(
    listener: TcpListener,
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted.and_then(|(stream, peer)| {
            stream.set_nodelay(true)?;
            Ok((stream.into_std()?, peer))
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

impl Listener for Handoff {
    type Io = TcpStream;
    type Addr = ClientAddr;

    async fn accept(&mut self) -> (TcpStream, ClientAddr) {
        loop {
            let Some((stream, peer)) = self.queue.recv().await else {
                // No more connections: the node is stopping, and graceful shutdown ends the loop.
                return std::future::pending().await;
            };
            match TcpStream::from_std(stream) {
                Ok(stream) => return (stream, ClientAddr(peer)),
                Err(error) => tracing::warn!(%error, "connection could not be registered"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<ClientAddr> {
        Ok(ClientAddr(self.local))
    }
}

impl Connected<IncomingStream<'_, Handoff>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, Handoff>) -> Self {
        *stream.remote_addr()
    }
}
