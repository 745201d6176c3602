//! [`FaultProxy`]: a TCP relay on an ephemeral port whose [`Fault`] can be changed while
//! connections are open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the relay does to the bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Bytes pass at once.
    None,
    /// Every chunk waits this long before it is passed on, in both directions.
    Latency(Duration),
    /// Connections stay open and new ones are accepted, but nothing passes: what is sent waits,
    /// as it would behind a silent network, and passes once the fault ends.
    Blackhole,
    /// Open connections are reset (RST) and new ones are reset as soon as they are accepted.
    Reset,
}

/// A relay from its own address to `upstream`, running until dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream).await
    }

    /// Listens on `bind` (e.g. `0.0.0.0:0`, so that containers reach it through the host
    /// gateway) and relays every connection to `upstream`.
    pub async fn start_on(bind: SocketAddr, upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let fault = Arc::new(watch::Sender::new(Fault::None));
        let shared = fault.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, shared.subscribe()));
            }
        });
        Ok(FaultProxy { addr, fault, accept })
    }

    /// The address to give the client instead of `upstream`'s.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Open connections see the sender gone and close.
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, mut fault: watch::Receiver<Fault>) {
    if *fault.borrow_and_update() == Fault::Reset {
        return reset(client);
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return reset(client);
    };
    let mut client = client;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let was_reset = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let mut watch_reset = fault.clone();
        let reset_now = async move {
            while watch_reset.changed().await.is_ok() {
                if *watch_reset.borrow_and_update() == Fault::Reset {
                    return true;
                }
            }
            false
        };
        tokio::select! {
            () = pipe(client_read, server_write, fault.clone()) => false,
            () = pipe(server_read, client_write, fault) => false,
            reset = reset_now => reset,
        }
    };
    if was_reset {
        reset(client);
        reset(server);
    }
}

fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Copies `from` to `to`, chunk by chunk, applying the current fault to each chunk.
async fn pipe(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, mut fault: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        loop {
            let now = *fault.borrow_and_update();
            match now {
                Fault::None => break,
                Fault::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Fault::Blackhole => {
                    if fault.changed().await.is_err() {
                        return;
                    }
                }
                Fault::Reset => return,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
