//! [`OtlpSink`]: where the traced gateway of the benchmark exports its spans: an OTLP/HTTP
//! endpoint that takes every export, counts it and drops it, so the gateway pays for making and
//! sending spans and nothing else is measured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct OtlpSink {
    pub addr: SocketAddr,
    exports: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpSink {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let exports = Arc::new(AtomicU64::new(0));
        let counted = exports.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |_body: axum::body::Bytes| {
                counted.fetch_add(1, Ordering::Relaxed);
                async { [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")] }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(OtlpSink { addr, exports, task })
    }

    /// The exports received so far.
    pub fn exports(&self) -> u64 {
        self.exports.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
