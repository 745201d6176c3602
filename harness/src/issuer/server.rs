//! The issuer's HTTP server: axum on a runtime of its own (two worker threads owned by the
//! issuer, so a test that blocks its own runtime cannot stall the issuer, and logins are served
//! in parallel rather than one at a time), each request routed to its endpoint in
//! [`super::endpoints`], and each request's load recorded in [`super::load`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::serve::ListenerExt;
use serde::Serialize;

use super::endpoints::{Endpoint, Issuer};

/// The largest request body read (forms of a few hundred bytes are what the endpoints take).
const MAX_BODY: usize = 1 << 20;

/// What an endpoint sees of a request.
pub(super) struct IssuerRequest {
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What an endpoint answers: status, headers, body, and a delay before the answer leaves.
pub(super) struct Reply {
    pub status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    content_type: Option<&'static str>,
    body: Bytes,
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Reply { status, headers: Vec::new(), content_type: None, body: Bytes::new(), delay: None }
    }

    pub fn set_body_string(mut self, body: impl Into<String>) -> Self {
        self.body = Bytes::from(body.into());
        self.content_type = Some("text/plain; charset=utf-8");
        self
    }

    pub fn set_body_json(self, body: impl Serialize) -> Self {
        let bytes = serde_json::to_vec(&body).expect("a JSON answer serializes");
        self.set_body_json_bytes(Bytes::from(bytes))
    }

    /// A JSON body serialized beforehand (discovery, JWKS).
    pub fn set_body_json_bytes(mut self, body: Bytes) -> Self {
        self.body = body;
        self.content_type = Some("application/json");
        self
    }

    /// Adds a header; a `content-type` given here wins over the body's.
    pub fn insert_header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), value));
        }
        self
    }

    pub fn set_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        if let Some(content_type) = self.content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

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
