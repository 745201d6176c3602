//! The session API for operators, on the public listener behind the ops token (as
//! `/ops/fingerprint`; 404 without an `ops_token`, 401 without the right bearer):
//!
//! - `GET /ops/sessions?sub=S` (or `?sid=S`): the user's live sessions, from the shared store,
//!   with when they were created, last seen and end, and the node that created them; never a
//!   token or a claim beyond `sub` and `sid`;
//! - `DELETE /ops/sessions?sub=S` (or `?sid=S`): ends all of them;
//! - `DELETE /ops/sessions/{id}?sub=S` (or `?sid=S`): ends one, by the handle the listing gave.
//!
//! An end is effective on every node when it answers (node caches included: see
//! `session::operator`) and idempotent (a repeat answers `"ended": 0`). Each end writes one
//! audit line (target `bff::audit`): who asked (the ops token, the client address; the request
//! id is in the line's span), the scope, the user as a keyed digest (`subject`, also in the
//! answer: logs hold no claims), and how many sessions and which handles ended.

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::ops::operator;
use crate::client_addr::ClientAddr;
use crate::error::AppError;
use crate::metrics::session_events::{self, EndReason};
use crate::session::Scope;
use crate::state::AppState;

/// Longest `sub` or `sid` accepted (OpenID Connect caps `sub` at 255 ASCII characters).
const MAX_CLAIM_LEN: usize = 255;

#[derive(Deserialize)]
pub struct ScopeQuery {
    sub: Option<String>,
    sid: Option<String>,
}

impl ScopeQuery {
    fn scope(&self) -> Result<Scope<'_>, AppError> {
        let checked = |name: &str, value: &str| {
            if value.is_empty() || value.len() > MAX_CLAIM_LEN {
                return Err(AppError::bad_request(format!("{name}: 1 to {MAX_CLAIM_LEN} characters")));
            }
            Ok(())
        };
        match (self.sub.as_deref(), self.sid.as_deref()) {
            (Some(sub), None) => checked("sub", sub).map(|()| Scope::Sub(sub)),
            (None, Some(sid)) => checked("sid", sid).map(|()| Scope::Sid(sid)),
            _ => Err(AppError::bad_request("name the user with exactly one of sub=… or sid=…")),
        }
    }
}

fn issuer(state: &AppState) -> Result<String, AppError> {
    Ok(state.oidc.metadata()?.issuer.clone())
}

/// The client address for the audit line (`unknown` when the request came without one).
fn client(extensions: &Extensions) -> String {
    extensions.get::<ConnectInfo<ClientAddr>>().map_or_else(|| "unknown".to_owned(), |c| c.0.0.to_string())
}

/// `GET /ops/sessions?sub=S|sid=S`.
pub async fn list(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<ScopeQuery>) -> Response {
    if let Err(refused) = operator(&state, &headers) {
        return refused.into_response();
    }
    let listing = async {
        let scope = query.scope()?;
        let iss = issuer(&state)?;
        let sessions = state.sessions.list_of(&iss, scope).await?;
        Ok::<_, AppError>(json!({ "subject": state.sessions.subject_of(&iss, scope), "sessions": sessions }))
    };
    match listing.await {
        Ok(body) => no_store(StatusCode::OK, body),
        Err(error) => error.into_response(),
    }
}

/// `DELETE /ops/sessions?sub=S|sid=S`.
pub async fn end_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    Query(query): Query<ScopeQuery>,
) -> Response {
    end(&state, &headers, &extensions, &query, None).await
}

/// `DELETE /ops/sessions/{id}?sub=S|sid=S`.
pub async fn end_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    Path(id): Path<String>,
    Query(query): Query<ScopeQuery>,
) -> Response {
    end(&state, &headers, &extensions, &query, Some(&id)).await
}

async fn end(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &Extensions,
    query: &ScopeQuery,
    only: Option<&str>,
) -> Response {
    if let Err(refused) = operator(state, headers) {
        return refused.into_response();
    }
    let ending = async {
        if let Some(id) = only
            && !(id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err(AppError::bad_request("id: the 32 hex digits GET /ops/sessions gave"));
        }
        let scope = query.scope()?;
        let iss = issuer(state)?;
        let subject = state.sessions.subject_of(&iss, scope);
        let ended = state.sessions.end_of(&iss, scope, only).await?;
        session_events::sessions_ended(EndReason::Operator, ended.ids.len());
        tracing::info!(
            target: "bff::audit",
            actor = "ops_token",
            client = %client(extensions),
            scope = scope.claim(),
            subject = %subject,
            only = only.unwrap_or("all"),
            ended = ended.ids.len(),
            ids = ?ended.ids,
            "operator ended sessions"
        );
        Ok::<_, AppError>(json!({ "subject": subject, "ended": ended.ids.len(), "ids": ended.ids }))
    };
    match ending.await {
        Ok(body) => no_store(StatusCode::OK, body),
        Err(error) => error.into_response(),
    }
}

fn no_store(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(axum::http::header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}
