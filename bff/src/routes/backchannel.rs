//! `POST /account/backchannel-logout` (OpenID Connect Back-Channel Logout 1.0): the issuer says a
//! user's session ended; every session of that `sid` (or, without one, of that `sub`) is deleted
//! from the shared store, so every node answers 404 on `me` at once.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::AppError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct LogoutForm {
    logout_token: Option<String>,
}

pub async fn backchannel_logout(
    State(state): State<AppState>,
    Form(form): Form<LogoutForm>,
) -> Result<Response, AppError> {
    let token = form.logout_token.ok_or_else(|| AppError::bad_request("missing logout_token"))?;
    let request = state.oidc.validate_logout_token(&token).await?;
    let ended = state.sessions.end_all(&request.iss, request.sid.as_deref(), request.sub.as_deref()).await?;
    metrics::counter!("bff_sessions_ended_total", "how" => "backchannel").increment(ended as u64);
    tracing::info!(sessions = ended, "back-channel logout");
    Ok((StatusCode::OK, [(CACHE_CONTROL, "no-store")]).into_response())
}
