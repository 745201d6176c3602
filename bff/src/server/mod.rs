//! [`run`]: serve one node on a bound listener until the shutdown future resolves, then stop
//! accepting and give in-flight requests up to `shutdown_timeout` to finish. Once they have, the
//! node's WebSockets are closed with 1001 (going away), so that their clients reconnect, through
//! the load balancer, to another node.
//!
//! A node serves on one thread per core (`worker_threads`), each with a single-threaded runtime
//! of its own, like nginx workers; connections are handed to them in turn ([`handoff`]). A
//! connection, its requests and their upstream connections then stay on one thread: no task
//! moves between threads and nothing on the proxied path wakes another thread, which on two
//! cores gave about 40 % more requests per second than one work-stealing runtime (see the
//! benchmark notes in the README). Redis commands, when the node cache misses, go through the
//! node's one shared connection (see `redis_link`). The calling runtime is one of the serving
//! threads and also runs the background tasks.

mod dispatch;
mod handoff;
pub mod listener;
mod write_deadline;

use std::future::Future;

use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tower::ServiceExt;

pub use crate::body_deadline::BodyError;
use crate::body_deadline::DeadlineBody;
use handoff::Handoff;
use write_deadline::WriteDeadline;

pub use crate::client_addr::ClientAddr;
use crate::config::{Config, ServerLimits, StoreConfig};
use crate::cutoff::Cutoff;
use crate::state::{AppState, StateError};

/// Why a node could not serve. [`RunError::is_config`] tells the binary which are configuration
/// errors (exit 64).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("metrics_listen (BFF_METRICS_LISTEN): {0}")]
    MetricsListen(String),
    /// `rediss://`: the server's certificate does not verify against the system's roots or
    /// `redis_ca_file` (or the server speaks no TLS). A configuration error.
    #[error("redis_url (BFF_REDIS_URL) / redis_ca_file (BFF_REDIS_CA_FILE): {0}")]
    RedisTls(String),
    /// The cluster's Redis holds records of a format this build neither reads nor writes for
    /// (see `compat`): another build, too old or too new, shares it.
    #[error(transparent)]
    RecordFormat(#[from] crate::compat::FormatError),
}

impl RunError {
    /// A setting is wrong (a Redis URL the client refuses, a TLS certificate that does not
    /// verify), not the machine or the network (an address in use is exit 1, as for `listen`).
    pub fn is_config(&self) -> bool {
        matches!(self, RunError::State(_) | RunError::RedisTls(_))
    }
}

/// Threads serving requests when `worker_threads` is not set: one per core.
pub fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let grace = config.shutdown_timeout;
    let threads = config.worker_threads.unwrap_or_else(default_worker_threads).max(1);
    if config.store == StoreConfig::Memory {
        tracing::warn!(
            "no redis_url: sessions live in this process only; they are lost on restart and other nodes cannot see them. Do not run more than one node like this."
        );
    }
    if config.key_ring.mode == crate::config::KeyRingMode::Redis && config.key_ring.key_encryption_key.is_none() {
        tracing::warn!(
            "key_ring_plaintext_insecure: the shared key ring is stored in Redis unwrapped; whoever reads Redis (a dump, a replica, the network) can open every session"
        );
    }
    let max_connections = config.server.max_connections;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| RunError::MetricsListen(format!("cannot listen on {addr}: {e}")))?,
        ),
        None => None,
    };
    crate::metrics::config_fingerprint::publish(&config);
    let state = AppState::new(config)?;
    if let Some(link) = &state.redis {
        link.check_tls().await.map_err(RunError::RedisTls)?;
    }
    if let (Some(link), Some(formats)) = (&state.redis, &state.formats) {
        formats.check_at_start(link.timeout()).await?;
        formats.announce_in_background(state.config.key_ring.refresh);
    }
    state.start_background_tasks();
    tracing::info!(
        listen = %listener.local_addr()?,
        public_url = %state.config.public_url,
        store = state.sessions.store().kind(),
        key_ring = if state.sessions.key_ring().is_shared() { "redis" } else { "local" },
        threads,
        "bff listening"
    );

    let (stop, stopped) = watch::channel(false);
    if let Some(listener) = metrics_listener {
        tracing::info!(metrics_listen = %listener.local_addr()?, "metrics served on their own listener only");
        let _ = crate::metrics::handle();
        tokio::spawn(serve_metrics(listener, state.config.server.clone(), stopped.clone()));
    }
    let (senders, mut queues) = handoff::queues(&listener, threads)?;
    let mine = queues.remove(0);
    let mut other_threads = Vec::with_capacity(threads - 1);
    for (n, queue) in queues.into_iter().enumerate() {
        other_threads.push(serve_on_own_thread(n + 1, queue, state.clone(), stopped.clone())?);
    }
    tokio::spawn(handoff::hand_out(listener, senders, max_connections, stopped.clone()));
    let signal = async move {
        shutdown.await;
        tracing::info!(grace = ?grace, "shutting down: no new connections, finishing in-flight requests");
        let _ = stop.send(true);
    };
    let servers = async {
        let (mine, theirs) = tokio::join!(serve(mine, state, stopped.clone()), async {
            let mut results = Vec::with_capacity(other_threads.len());
            for done in other_threads {
                results.push(done.await.unwrap_or(Ok(())));
            }
            results
        });
        theirs.into_iter().fold(mine, Result::and)
    };
    let mut stopping = stopped.clone();
    let bounded = async move {
        if stopping.wait_for(|stop| *stop).await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        (_, result) = async { tokio::join!(signal, servers) } => result?,
        () = bounded => tracing::warn!("in-flight requests did not finish within the shutdown timeout"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serves the connections handed to `queue` on a new thread with a runtime of its own; the
/// receiver answers when that thread stopped serving.
fn serve_on_own_thread(
    n: usize,
    queue: Handoff,
    state: AppState,
    stopped: watch::Receiver<bool>,
) -> std::io::Result<oneshot::Receiver<std::io::Result<()>>> {
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new().name(format!("bff-serve-{n}")).spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .and_then(|runtime| runtime.block_on(serve(queue, state, stopped)));
        let _ = done.send(result);
    })?;
    Ok(finished)
}

/// The HTTP/1.1 settings of every client connection: hyper's header-read timeout, which also
/// closes a keep-alive connection that stays idle that long, so a client that sends half a
/// request, or nothing, holds its socket (and its connection permit) no longer than that; and
/// [`CLIENT_BUFFER`].
fn http1(limits: &ServerLimits) -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_buf_size(CLIENT_BUFFER);
    http
}

/// The most a client connection buffers (hyper's `max_buf_size`, about 400 KiB by default): the
/// response bytes queued for a client that has not taken them, and a request's head (a larger
/// one is answered 431). A response is pulled from its upstream only as fast as the client
/// takes it, so a client that stops reading holds this much (plus one upstream chunk, see
/// `state::UPSTREAM_BUFFER`) of the node's memory, not 400 KiB and more.
pub const CLIENT_BUFFER: usize = 64 << 10;

/// A client socket as hyper sees it: writes bounded by `server.write_timeout`; `cutoff` is the
/// connection's, shared with its requests' bodies ([`bounded`]).
fn client_io(stream: TcpStream, limits: &ServerLimits, cutoff: Cutoff) -> TokioIo<WriteDeadline> {
    TokioIo::new(WriteDeadline::new(stream, limits.write_timeout, cutoff))
}

/// A request whose body must arrive within `server.body_timeout`.
fn bounded(request: Request<Incoming>, limits: &ServerLimits, cutoff: &Cutoff) -> Request<DeadlineBody<Incoming>> {
    let timeout = limits.body_timeout;
    request.map(|body| DeadlineBody::new(body, timeout, cutoff.clone()))
}

/// Serves the connections handed to `queue` until `stopped` turns true, then finishes in-flight
/// requests. Each connection is bounded by [`http1`], [`client_io`] and [`bounded`].
async fn serve(mut queue: Handoff, state: AppState, mut stopped: watch::Receiver<bool>) -> std::io::Result<()> {
    let limits = state.config.server.clone();
    let proxied = dispatch::proxied(state.clone());
    let app = crate::app(state.clone());
    let http = http1(&limits);
    // Every connection holds a clone until it ends: `recv` answers `None` once all have ended.
    // (hyper-util's `GracefulShutdown` does not take a connection that can be upgraded.)
    let (in_flight, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (stream, peer, permit) = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            next = queue.next() => match next {
                Some(connection) => connection,
                None => break,
            },
        };
        let (app, proxied, state, limits) = (app.clone(), proxied.clone(), state.clone(), limits.clone());
        let cutoff = Cutoff::default();
        let io = client_io(stream, &limits, cutoff.clone());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = bounded(request, &limits, &cutoff);
            request.extensions_mut().insert(ConnectInfo(peer));
            if dispatch::routed(&state, request.uri().path()) {
                futures::future::Either::Left(app.clone().oneshot(request.map(axum::body::Body::new)))
            } else {
                futures::future::Either::Right(proxied.clone().oneshot(request))
            }
        });
        let connection = http.serve_connection(io, service).with_upgrades();
        let (mut stop, in_flight) = (stopped.clone(), in_flight.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop((permit, in_flight));
        });
    }
    drop(in_flight);
    // The WebSockets (whose connections left hyper when they were upgraded) are closed with
    // 1001 and the event streams end, now: an in-flight event stream would otherwise keep its
    // connection, and the stop, waiting until `shutdown_timeout`. Then in-flight requests
    // finish, and this thread's runtime runs until every socket has closed.
    state.sockets.going_away();
    let _ = all_ended.recv().await;
    state.sockets.all_closed().await;
    Ok(())
}

/// Serves `/metrics` on the operator's listener until `stopped` turns true, with the same bounds
/// on headers, bodies and writes as the public listener.
async fn serve_metrics(listener: TcpListener, limits: ServerLimits, mut stopped: watch::Receiver<bool>) {
    let router = crate::routes::metrics_router();
    let http = http1(&limits);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            () = async { let _ = stopped.wait_for(|stop| *stop).await; } => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "metrics listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let (router, limits2) = (router.clone(), limits.clone());
        let cutoff = Cutoff::default();
        let io = client_io(stream, &limits, cutoff.clone());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            router.clone().oneshot(bounded(request, &limits2, &cutoff).map(axum::body::Body::new))
        });
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
