//! [`AppError`]: every way a request can fail, and the one place that turns it into a response.
//!
//! Client errors say what was wrong; unavailability says to try again; the details of internal
//! trouble go to the log (with the request id), never into the body.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::oidc::OidcError;
use crate::session::SessionError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No session: `/account/me` answers 404, as the restart-survival test expects.
    #[error("no session")]
    NoSession,
    #[error("{0}")]
    BadRequest(String),
    /// A request that might have been forged by another site.
    #[error("{0}")]
    Forbidden(String),
    /// The client did not send its request body within `server.body_timeout`: a 408, and the
    /// connection is closed.
    #[error("request body not received in time")]
    BodyTimedOut,
    /// A request body over `server.max_body_size`, found while it was read (a chunked body has
    /// no length to refuse it by up front): a 413, as for one refused by its length.
    #[error("{0}")]
    BodyTooLarge(String),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Oidc(#[from] OidcError),
}

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        AppError::BadRequest(message.into())
    }

    /// A request body that could not be read: 408 when the client was too slow
    /// (`server.body_timeout`), 413 when it was too large, else a 400 naming what was wrong
    /// (cut short, not readable).
    pub fn unreadable_body(rejection: axum::extract::rejection::BytesRejection) -> Self {
        if crate::body_deadline::BodyError::timed_out_in(&rejection) {
            AppError::BodyTimedOut
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::BodyTooLarge(rejection.body_text())
        } else {
            AppError::BadRequest(rejection.body_text())
        }
    }

    fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            AppError::NoSession => (StatusCode::NOT_FOUND, "no session".into()),
            AppError::BadRequest(message) => (StatusCode::BAD_REQUEST, message.clone()),
            AppError::Forbidden(message) => (StatusCode::FORBIDDEN, message.clone()),
            AppError::BodyTimedOut => (StatusCode::REQUEST_TIMEOUT, self.to_string()),
            AppError::BodyTooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, message.clone()),
            AppError::Session(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable, try again shortly".into())
            }
            AppError::Oidc(error) => match error {
                OidcError::CodeRefused(_) | OidcError::InvalidIdToken(_) | OidcError::InvalidLogoutToken(_) => {
                    (StatusCode::BAD_REQUEST, error.to_string())
                }
                OidcError::NotDiscovered => {
                    (StatusCode::SERVICE_UNAVAILABLE, "identity provider not reachable yet, try again shortly".into())
                }
                OidcError::Unreachable(_) | OidcError::BadIssuerResponse(_) => {
                    (StatusCode::BAD_GATEWAY, "identity provider unavailable".into())
                }
            },
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = self.status_and_message();
        if matches!(self, AppError::Session(_)) {
            metrics::counter!("bff_store_errors_total").increment(1);
        }
        if status.is_server_error() {
            tracing::error!(error = %self, %status, "request failed");
        } else if status != StatusCode::NOT_FOUND {
            tracing::info!(error = %self, %status, "request refused");
        }
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        response.headers_mut().insert(header::CACHE_CONTROL, "no-store".parse().expect("static header"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, "1".parse().expect("static header"));
        }
        response
    }
}
