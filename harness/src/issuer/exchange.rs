//! What an endpoint of the mock issuer sees of a request and what it answers, apart from the
//! server that carries them, so the endpoints and the server each import it from below.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;

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

    pub(super) fn into_response(self) -> Response {
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
