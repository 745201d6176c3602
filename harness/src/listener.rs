//! Listening sockets for the harness's own servers (the mock issuer, the load balancer), with an
//! accept backlog sized for a thousand virtual users connecting at once. Each user is its own
//! client with its own connections, so a run's first step opens as many connections as it has
//! users within milliseconds. Past the backlog (std's `bind` asks for 128, tokio's for 1024) the
//! kernel drops the SYN and the client retries after a second: a login that measures the
//! harness's listen queue, not the gateway.

use std::net::SocketAddr;

/// The backlog asked for; the kernel caps it at `net.core.somaxconn` (4096 by default).
pub const BACKLOG: u32 = 4096;

/// A listening socket on `addr` (port 0: any) with [`BACKLOG`], as `TcpListener::bind` would
/// make it otherwise (address reuse on Unix).
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    /// The backlog is what the kernel reports for the socket (`ss` shows it as Send-Q; here,
    /// more connections than std's 128 complete their handshake before any is accepted).
    #[tokio::test]
    async fn more_than_std_backlog_connect_before_any_accept() {
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
        let (_, _) = listener.accept().await.expect("accept");
    }
}
