//! The gateway's listening socket. `TcpListener::bind` leaves the accept backlog at 128 here,
//! so a burst of new connections (a thousand browsers, or a load balancer opening its pool after
//! a restart) overflows it and the kernel drops SYNs: each dropped client waits a full second
//! before it retries. The backlog asked for here is capped by the kernel at `net.core.somaxconn`.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept backlog asked for (Linux caps it at `net.core.somaxconn`, 4096 by default).
pub const BACKLOG: u32 = 4096;

/// Listens on `addr` as `TcpListener::bind` does (address reuse on Unix), with [`BACKLOG`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    /// More clients than the default backlog of 128 complete their handshake before the first
    /// is accepted; with 128, the 130th waits a second for its SYN to be retried.
    #[tokio::test]
    async fn holds_more_than_128_pending_connections() {
        let listener = super::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut streams = Vec::new();
        for _ in 0..300 {
            let connect = tokio::net::TcpStream::connect(addr);
            let stream = tokio::time::timeout(std::time::Duration::from_millis(500), connect)
                .await
                .expect("connected without a SYN retry")
                .expect("connect");
            streams.push(stream);
        }
        listener.accept().await.expect("accept");
    }
}
