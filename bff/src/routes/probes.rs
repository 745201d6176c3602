//! `/health` (the process answers; no dependency checked) and `/ready` (the store answers, the key
//! ring is loaded, the issuer's metadata is known: this node can serve logins and sessions).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::state::AppState;

pub async fn health() -> &'static str {
    "ok"
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let store = state.sessions.store().kind();
    let key_ring = if state.sessions.key_ring().is_shared() { "redis" } else { "local" };
    let problem = match state.sessions.check_ready().await {
        Err(error) => Some(error.to_string()),
        Ok(()) if !state.oidc.is_discovered() => Some("identity provider metadata not loaded yet".to_owned()),
        Ok(()) => None,
    };
    match problem {
        None => (StatusCode::OK, Json(json!({ "status": "ready", "store": store, "key_ring": key_ring }))),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": reason, "store": store, "key_ring": key_ring })),
        ),
    }
}
