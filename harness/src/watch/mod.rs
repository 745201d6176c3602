//! `bffctl watch`: a live deployment verified again and again. Every interval a [`round`] runs
//! (a login through the load balancer, `me` on every node, the created-on × read-on check, the
//! drift check); the results are served as Prometheus metrics ([`WatchMetrics`],
//! [`serve_metrics`]) and each failure is handed to the caller with the request ids and
//! `traceparent`s involved. It never starts, stops or restarts anything: it only sends what a
//! browser (and, for the fingerprint, an operator) would.

mod exposition;
mod round;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use exposition::WatchMetrics;
pub use round::{Check, Round, TARGET_NODE, WatchFailure, round};

use crate::scenario::Deployment;

/// What to watch and how often.
pub struct Watch {
    pub target: Arc<Deployment>,
    /// Opens the nodes' `/ops/fingerprint` for the drift check; without it only what any client
    /// observes is compared.
    pub ops_token: Option<String>,
    /// From the start of one round to the start of the next (a longer round delays the next).
    pub every: Duration,
    /// Stop after this many rounds; `None`: until the future is dropped.
    pub rounds: Option<u64>,
}

impl Watch {
    /// Runs the rounds, records each in `metrics` and hands it to `on_round`. Returns the
    /// number of rounds that failed (when `rounds` bounds them).
    pub async fn run(&self, metrics: &WatchMetrics, mut on_round: impl FnMut(&Round)) -> u64 {
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failed = 0;
        let mut done = 0;
        while self.rounds.is_none_or(|n| done < n) {
            ticks.tick().await;
            let round = round(&self.target, self.ops_token.as_deref()).await;
            metrics.record(&round);
            failed += u64::from(!round.passed());
            done += 1;
            on_round(&round);
        }
        failed
    }
}

/// Serves `metrics` at `/metrics` (and a line saying so at `/`) on `listener` until the returned
/// task is aborted.
pub fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<WatchMetrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render()) }
            }),
        )
        .route("/", get(|| async { "bffctl watch: metrics at /metrics\n" }));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}
