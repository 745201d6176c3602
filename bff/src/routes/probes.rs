//! `/health` (the process answers; no dependency checked) and `/ready` (the store answers, the key
//! ring is loaded, the issuer's metadata is known, no build whose records this one cannot read
//! has announced itself in Redis: this node can serve logins and sessions).
//!
//! `/ready` also says where the node cache stands (`session_cache`): `enabled` (there is one),
//! `live` (entries may be served now) and `confirmations` (how many times the node subscribed to
//! the change notices of a server and emptied its cache for it; see
//! [`crate::session::NodeCache`]). A verifier that read `n` before restarting Redis judges the
//! node's answers only once it shows more than `n` and `live`. A cache that is not live does not
//! make the node unready: it reads Redis instead.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::state::AppState;

pub async fn health() -> &'static str {
    "ok"
}

/// The `session_cache` object of `/ready`.
fn session_cache(state: &AppState) -> serde_json::Value {
    match state.sessions.cache() {
        Some(cache) => json!({
            "enabled": true,
            "live": cache.is_live(),
            "confirmations": cache.confirmations(),
        }),
        None => json!({ "enabled": false, "live": false, "confirmations": 0 }),
    }
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let store = state.sessions.store().kind();
    let key_ring = if state.sessions.key_ring().is_shared() { "redis" } else { "local" };
    let problem = match state.sessions.check_ready().await {
        Err(error) => Some(error.to_string()),
        Ok(()) if !state.oidc.is_discovered() => Some("identity provider metadata not loaded yet".to_owned()),
        Ok(()) => state.formats.as_ref().and_then(|formats| formats.refusal()),
    };
    // Read after the checks: a check that found the link reconnected has switched the cache off.
    let session_cache = session_cache(&state);
    match problem {
        None => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "store": store, "key_ring": key_ring, "session_cache": session_cache })),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not ready",
                "reason": reason,
                "store": store,
                "key_ring": key_ring,
                "session_cache": session_cache,
            })),
        ),
    }
}
