//! `POST /account/backchannel-logout` (OpenID Connect Back-Channel Logout 1.0): the issuer says a
//! user's session ended; every session of that `sid` (or, without one, of that `sub`) is deleted
//! from the shared store, so every node answers 404 on `me` at once.
//!
//! The body is read as a form whatever its content type: a request without a `logout_token` is a
//! 400 (the specification's answer), not the 415 a strict form extractor gives; one whose body
//! does not arrive within `server.body_timeout` is a 408. A token's `jti`
//! is kept in the store until the token expires (shared by all nodes): a replay is a 400 and
//! ends nothing. It is written once the sessions ended, not before: a Redis blip in between
//! (a 503) must leave the token usable for the issuer's retry, not the sessions alive and the
//! retry refused.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::metrics::session_events::EndReason;
use crate::session::now_secs;
use crate::state::AppState;

pub async fn backchannel_logout(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(AppError::unreadable_body)?;
    let token = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "logout_token")
        .map(|(_, value)| value.into_owned())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| AppError::bad_request("missing logout_token"))?;
    let request = state.oidc.validate_logout_token(&token).await?;
    let remember_for =
        std::time::Duration::from_secs(request.exp.saturating_sub(now_secs()) + state.config.oidc.clock_skew.as_secs());
    if state.sessions.logout_token_used(&request.iss, &request.jti).await? {
        return Err(AppError::bad_request("invalid logout_token: already used"));
    }
    let ended = state.sessions.end_all(&request.iss, request.sid.as_deref(), request.sub.as_deref()).await?;
    // Marked only now: a store that failed above left the token unmarked, and the issuer's
    // retry of it ends the sessions. Two deliveries at once both end them (ending is
    // idempotent) and one of them marks it.
    state.sessions.remember_logout_token(&request.iss, &request.jti, remember_for).await?;
    crate::metrics::session_events::sessions_ended(EndReason::Backchannel, ended);
    tracing::info!(sessions = ended, "back-channel logout");
    Ok((StatusCode::OK, [(CACHE_CONTROL, "no-store")]).into_response())
}
