//! [`SpaServer`]: the static files of `examples/spa/`, built into the harness so that `bffctl`
//! serves them wherever it runs. The page is `no-store`, so a browser asks for it again rather
//! than showing a copy from before a logout.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../../../examples/spa/index.html");
const SCRIPT: &str = include_str!("../../../examples/spa/app.js");
const STYLE: &str = include_str!("../../../examples/spa/style.css");

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-store")], body)
}

/// The example app's static server; it stops when dropped.
pub struct SpaServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SpaServer {
    /// Serves the app on `bind` (e.g. `127.0.0.1:0`).
    pub async fn start(bind: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let page = || async { file("text/html; charset=utf-8", INDEX) };
        let app = Router::new()
            .route("/", get(page))
            .route("/index.html", get(page))
            .route("/app.js", get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }))
            .route("/style.css", get(|| async { file("text/css; charset=utf-8", STYLE) }));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(SpaServer { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SpaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
