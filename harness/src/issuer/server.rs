//! The issuer's HTTP server: axum on a runtime of its own (two worker threads owned by the
//! issuer, so a test that blocks its own runtime cannot stall the issuer, and logins are served
//! in parallel rather than one at a time), each request routed to its endpoint in
//! [`super::endpoints`], and each request's load recorded in [`super::load`].

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::serve::ListenerExt;

use super::endpoints::{Endpoint, Issuer};
use super::exchange::{IssuerRequest, Reply};

/// The largest request body read (forms of a few hundred bytes are what the endpoints take).
const MAX_BODY: usize = 1 << 20;

async fn serve(State(issuer): State<Arc<Issuer>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(endpoint) = Endpoint::route(&parts.method, parts.uri.path()) else {
        return Reply::new(404).set_body_string("not found").into_response();
    };
    let in_flight = issuer.load.enter(endpoint.name());
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        in_flight.done(400);
        return Reply::new(400).set_body_string("request body too large or cut short").into_response();
    };
    let request = IssuerRequest { query: parts.uri.query().map(str::to_owned), headers: parts.headers, body };
    let mut reply = issuer.answer(endpoint, &request);
    in_flight.done(reply.status);
    if endpoint.is_front_channel() {
        // A browser comes back to these pages once per login: its kept-alive connection would
        // hold two descriptors (its end and ours) in a harness process that runs thousands of
        // virtual users, for nothing.
        reply = reply.insert_header("connection", "close");
    }
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    reply.into_response()
}

/// Stops the server when dropped: its runtime, and every connection with it, ends.
pub(super) struct Running {
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves `issuer` on `listener` until the returned [`Running`] is dropped.
pub(super) fn start(listener: std::net::TcpListener, issuer: Arc<Issuer>) -> std::io::Result<Running> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mock-issuer")
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new().name("mock-issuer".into()).spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let app = Router::new().fallback(serve).with_state(issuer);
            tokio::select! {
                _ = axum::serve(listener, app) => {}
                _ = stopped => {}
            }
        });
    })?;
    Ok(Running { _stop: stop })
}
