//! What the public listener serves to operators only: `GET /ops/fingerprint`, the settings this
//! node must share with every other node ([`crate::config::fingerprint`]), for a verifier that
//! compares the nodes of a deployment; and `GET /metrics` when it has no listener of its own. The
//! session API (`/ops/sessions`, in `ops_sessions`) shares the token check, [`operator`].
//!
//! Both exist when `ops_token` is set (else 404, as any unknown path) and answer only
//! `Authorization: Bearer <ops_token>` (401 otherwise, compared in constant time). For the
//! fingerprint, the caller sends a fresh `nonce` (16 to 128 hex digits) that keys the secrets'
//! digests. Metrics tell an outsider the traffic, the error rates and the routes of the
//! deployment, so they are not public by default: an operator scrapes them with the token, or
//! on `metrics_listen`, a listener of their own (then the public listener answers 404).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::config::fingerprint;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct FingerprintQuery {
    nonce: Option<String>,
}

/// The ops token, when the request carries it; else the answer to give (404 when there is no
/// token to carry, 401 when it is missing or wrong).
pub(super) fn operator<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<&'a str, (StatusCode, Json<serde_json::Value>)> {
    let Some(token) = state.config.ops_token.as_deref() else {
        return Err((StatusCode::NOT_FOUND, Json(json!({ "error": "not found" }))));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), token.as_bytes()).is_err() {
        return Err((StatusCode::UNAUTHORIZED, Json(json!({ "error": "the ops token is missing or wrong" }))));
    }
    Ok(token)
}

/// `GET /metrics` on the public listener: operators only (see the module header).
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.config.metrics_listen.is_some() {
        return StatusCode::NOT_FOUND.into_response();
    }
    match operator(&state, &headers) {
        Ok(_) => crate::metrics::render().await.into_response(),
        Err(refused) => refused.into_response(),
    }
}

pub async fn fingerprint(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FingerprintQuery>,
) -> (StatusCode, Json<serde_json::Value>) {
    let token = match operator(&state, &headers) {
        Ok(token) => token,
        Err(refused) => return refused,
    };
    let nonce = match query.nonce {
        Some(n) if (16..=128).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_hexdigit()) => n,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "nonce: 16 to 128 hex digits, fresh per request" })),
            );
        }
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let settings = fingerprint::settings(&state.config, token, &nonce);
    (StatusCode::OK, Json(json!({ "time_ms": now_ms, "settings": settings })))
}
