//! Which requests go through the router, and the proxied path that does not.
//!
//! The account endpoints, the probes and `/metrics` are served by [`crate::app`] (the axum router
//! and its layers). Every other path is, in the router too, the proxy fallback: here those
//! requests skip the router's matching and its per-route boxing and meet the same layers in the
//! same order (node header, request id, span and its log lines, body limit, metrics) around
//! [`crate::routes::proxy`]. The answers are the same either way; the proxied path, the one
//! every API call takes, costs less CPU (see the benchmark in the README).

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, Response};
use futures::future::BoxFuture;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::body_deadline::DeadlineBody;
use crate::state::AppState;

/// A request body as the server hands it over: bounded by `server.body_timeout`.
type Incoming = DeadlineBody<hyper::body::Incoming>;

/// Whether the router serves `path`: the paths it has endpoints for. Anything else there would
/// reach the proxy fallback (a method it does not allow on one of these paths still gets the
/// router's 405).
pub fn routed(state: &AppState, path: &str) -> bool {
    let prefix = state.config.account_prefix.as_str();
    matches!(path, "/health" | "/ready" | "/metrics" | "/ops/fingerprint" | "/ops/sessions")
        || path.starts_with("/ops/sessions/")
        || path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The proxy with the router's layers. Cloned for every request (hyper serves through a shared
/// reference): the clone copies a few small values and one reference count, allocates nothing.
pub fn proxied(
    state: AppState,
) -> impl Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ 'static {
    let node = state.config.node_name.as_ref().map(|name| {
        tower_http::set_header::SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-bff-node"),
            HeaderValue::from_str(name).expect("node_name is checked to be a header value"),
        )
    });
    let max_body = state.config.server.max_body_size;
    let service = ServiceBuilder::new()
        .option_layer(node)
        .layer(crate::telemetry::checked_request_id::<Incoming>())
        .layer(crate::telemetry::set_request_id())
        .layer(crate::telemetry::trace())
        .layer(crate::telemetry::propagate_request_id())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
        .service(Tracked { state });
    ServiceExt::<Request<Incoming>>::map_response(service, |response| response.map(Body::new))
}

/// The proxy, counted and timed like every routed request (`metrics::track`).
#[derive(Clone)]
struct Tracked {
    state: AppState,
}

impl<B> Service<Request<B>> for Tracked
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let started = Instant::now();
            let response = crate::routes::proxy_request(state, request.map(Body::new)).await;
            crate::metrics::record_response(None, &response, started);
            Ok(response)
        })
    }
}
