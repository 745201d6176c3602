//! Prometheus metrics at `/metrics`: requests by route and status, latency, sessions created and
//! ended by reason, token refresh outcomes, Redis command latency and errors, the node cache, the
//! drift fingerprint, store and upstream errors. Every metric is listed in
//! `docs/src/operations.md`.

pub mod config_fingerprint;
pub mod redis_commands;
pub mod session_events;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
            .expect("static buckets")
            .build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The route a response was served by, for metrics: shared, so that labelling a proxied
/// response copies no string.
#[derive(Clone)]
pub struct RouteLabel(pub std::sync::Arc<str>);

pub async fn render() -> String {
    handle().render()
}

/// Counts and times every request, labelled by route (the matched endpoint, or the proxied
/// route's prefix) and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    record_response(matched.as_ref().map(MatchedPath::as_str), &response, started);
    response
}

/// Counts and times one response: labelled by `matched` (an endpoint's path), else by the
/// proxied route's label on the response, else `unmatched`.
pub fn record_response<B>(matched: Option<&str>, response: &axum::http::Response<B>, started: Instant) {
    let route = match (matched, response.extensions().get::<RouteLabel>()) {
        (Some(path), _) => path,
        (None, Some(label)) => label.0.as_ref(),
        (None, None) => "unmatched",
    };
    record(route, response.status().as_u16(), started.elapsed().as_secs_f64());
}

/// A route's metric handles: looking a labelled metric up in the registry hashes its labels,
/// so each serving thread keeps the handles it has used.
struct RouteHandles {
    duration: Histogram,
    requests_by_status: HashMap<u16, Counter>,
}

thread_local! {
    static HANDLES: RefCell<HashMap<String, RouteHandles>> = RefCell::new(HashMap::new());
}

fn record(route: &str, status: u16, seconds: f64) {
    HANDLES.with_borrow_mut(|routes| {
        // Looked up once when the route has handles (every request but its first on this thread).
        if let Some(handles) = routes.get_mut(route) {
            handles.record(route, status, seconds);
            return;
        }
        let duration = metrics::histogram!("bff_request_duration_seconds", "route" => route.to_owned());
        let mut handles = RouteHandles { duration, requests_by_status: HashMap::new() };
        handles.record(route, status, seconds);
        routes.insert(route.to_owned(), handles);
    });
}

impl RouteHandles {
    fn record(&mut self, route: &str, status: u16, seconds: f64) {
        self.requests_by_status
            .entry(status)
            .or_insert_with(
                || metrics::counter!("bff_requests_total", "route" => route.to_owned(), "status" => status.to_string()),
            )
            .increment(1);
        self.duration.record(seconds);
    }
}
