//! Prometheus metrics at `/metrics`: requests by route and status, latency, sessions created and
//! ended, token refreshes (done, waited, failed), store and upstream errors.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::routes::RouteLabel;

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

pub async fn render() -> String {
    handle().render()
}

/// Counts and times every request, labelled by route (the matched endpoint, or the proxied
/// route's prefix) and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let matched = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let response = next.run(request).await;
    let route = matched
        .or_else(|| response.extensions().get::<RouteLabel>().map(|l| l.0.clone()))
        .unwrap_or_else(|| "unmatched".into());
    let status = response.status().as_u16().to_string();
    metrics::counter!("bff_requests_total", "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("bff_request_duration_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    response
}
