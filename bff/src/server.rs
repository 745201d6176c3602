//! [`run`]: serve one node on a bound listener until the shutdown future resolves, then stop
//! accepting and give in-flight requests up to `shutdown_timeout` to finish.

use std::future::Future;

use tokio::net::TcpListener;

use crate::config::{Config, StoreConfig};
use crate::state::{AppState, StateError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let grace = config.shutdown_timeout;
    if config.store == StoreConfig::Memory {
        tracing::warn!(
            "no redis_url: sessions live in this process only; they are lost on restart and other nodes cannot see them. Do not run more than one node like this."
        );
    }
    let state = AppState::new(config)?;
    state.start_background_tasks();
    tracing::info!(
        listen = %listener.local_addr()?,
        public_url = %state.config.public_url,
        store = state.sessions.store().kind(),
        key_ring = if state.sessions.key_ring().is_shared() { "redis" } else { "local" },
        "bff listening"
    );

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!(grace = ?grace, "shutting down: no new connections, finishing in-flight requests");
        let _ = stopping_tx.send(());
    };
    let app = crate::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    let bounded = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result?,
        () = bounded => tracing::warn!("in-flight requests did not finish within the shutdown timeout"),
    }
    tracing::info!("stopped");
    Ok(())
}
