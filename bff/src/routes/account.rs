//! The account endpoints of the seed: `login`, `login/callback`, `me`, `end-session`.

use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::cookies;
use super::current_session::CurrentSession;
use crate::error::AppError;
use crate::landing_page;
use crate::session::{PendingLogin, Session, SessionId, now_secs};
use crate::state::AppState;

/// Claims that belong to the protocol, not to the user: `/me` leaves them out.
const PROTOCOL_CLAIMS: &[&str] = &["nonce", "at_hash", "c_hash", "s_hash"];

fn redirect(location: &str, set_cookies: Vec<String>) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_str(location).expect("redirect target is a valid header"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in set_cookies {
        headers.append(SET_COOKIE, HeaderValue::from_str(&cookie).expect("cookie is a valid header"));
    }
    response
}

#[derive(Deserialize)]
pub struct LoginParams {
    landingpage: Option<String>,
}

/// Starts a login: seals it under a fresh `state` into the browser's login cookie (nothing is
/// stored: see `session`'s header) and sends the browser to the issuer.
pub async fn login(State(state): State<AppState>, Query(params): Query<LoginParams>) -> Result<Response, AppError> {
    let landing_page = match params.landingpage.as_deref() {
        None => "/".to_owned(),
        Some(raw) => landing_page::validate(raw).map_err(AppError::bad_request)?,
    };
    // Fresh for every login: a cookie planted in the browser beforehand (by a sibling domain,
    // say) is replaced, and opens only for its own state.
    let login_state = crate::session::random_token();
    let pending = PendingLogin {
        format: crate::compat::RecordFormat::current(),
        verifier: crate::session::random_token(),
        nonce: crate::session::random_token(),
        landing_page,
        expires_at: now_secs() + state.sessions.login_timeout().as_secs(),
    };
    let url = state.oidc.authorization_url(&login_state, &pending.nonce, &pending.verifier)?;
    let sealed = state.sessions.seal_login(&login_state, &pending)?;
    Ok(redirect(url.as_str(), vec![cookies::pending_login(&state.config, sealed)]))
}

#[derive(Deserialize)]
pub struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// Finishes a login on whichever node the issuer's redirect reaches.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    previous: Option<CurrentSession>,
    Query(params): Query<CallbackParams>,
) -> Result<Response, AppError> {
    let login_state = params.state.ok_or_else(|| AppError::bad_request("missing state"))?;
    let cookie = cookies::read(&headers, state.config.login_cookie_name());
    let pending = state.sessions.open_login(&login_state, cookie.as_deref()).await.ok_or_else(|| {
        AppError::bad_request("unknown, expired or already used login state, or a login started in another browser")
    })?;
    // Looked at before the code goes to the issuer; marked used (atomically, on every node)
    // once the issuer accepted it, below.
    if state.sessions.login_used(&login_state).await? {
        return Err(AppError::bad_request("this login state was already used"));
    }
    if let Some(error) = params.error {
        let code: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        return Err(AppError::bad_request(format!("the identity provider returned an error: {code}")));
    }
    let code = params.code.ok_or_else(|| AppError::bad_request("missing code"))?;

    let tokens = state.oidc.exchange_code(&code, &pending.verifier).await?;
    let id_token = tokens
        .id_token
        .ok_or_else(|| crate::oidc::OidcError::InvalidIdToken("the token response has no id_token".into()))?;
    let mut claims = state.oidc.validate_id_token(&id_token, &pending.nonce).await?;
    for claim in PROTOCOL_CLAIMS {
        claims.remove(*claim);
    }
    if !state.sessions.use_login(&login_state, &pending).await? {
        return Err(AppError::bad_request("this login state was already used"));
    }

    let now = now_secs();
    let session = Session {
        format: crate::compat::RecordFormat::current(),
        created_at: now,
        claims: serde_json::value::to_raw_value(&claims).expect("claims serialise"),
        id_token,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        access_token_expires_at: tokens.expires_in.map(|s| now + s),
        created_on: state.config.node_name.clone(),
        bearer: Default::default(),
    };
    // A login always gets a new id: a session id planted before login is worth nothing after.
    if let Some(previous) = previous {
        state.sessions.end(&previous.id).await?;
    }
    let id = state.sessions.create(&session).await?;
    crate::metrics::session_events::session_created();
    tracing::info!("session created");
    Ok(redirect(
        &pending.landing_page,
        vec![cookies::session(&state.config, id.to_cookie_value()), cookies::clear_pending_login(&state.config)],
    ))
}

/// The user's id_token claims, or 404 without a session.
pub async fn me(current: CurrentSession) -> Response {
    let headers = [(CONTENT_TYPE, "application/json"), (CACHE_CONTROL, "no-store")];
    (headers, current.session.claims.get().to_owned()).into_response()
}

/// Whether a logout request comes from the gateway's own site, not a cross-site link or form:
/// it carries the CSRF header (which another site cannot send without CORS), or the browser says
/// the request is same-origin (`Sec-Fetch-Site`), or its `Origin` is the public URL's.
fn is_same_site_logout(state: &AppState, headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let csrf = &state.config.csrf;
    header(csrf.header.as_str()) == Some(csrf.value.as_str())
        || header("sec-fetch-site") == Some("same-origin")
        || header("origin").is_some_and(|origin| origin == state.config.public_url.origin().ascii_serialization())
}

/// `POST` only: deletes the session in the store (every node sees it gone), clears the cookie and
/// sends the browser to the issuer's logout when it has one. A request that may come from another
/// site (no CSRF header, not same-origin) is refused with 403 and ends nothing: a cross-site link
/// or form must not log the user out (and, through the issuer, out of single sign-on). When the
/// store is down the answer is a 503, and it still clears the cookie: the browser forgets the
/// session whatever the store does.
pub async fn end_session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !is_same_site_logout(&state, &headers) {
        let message = format!("logout needs the {} header or a same-origin request", state.config.csrf.header.as_str());
        return AppError::Forbidden(message).into_response();
    }
    match end_session_in_store(&state, &headers).await {
        Ok(response) => response,
        Err(error) => {
            let mut response = error.into_response();
            let clear =
                HeaderValue::from_str(&cookies::clear_session(&state.config)).expect("cookie is a valid header");
            response.headers_mut().append(SET_COOKIE, clear);
            response
        }
    }
}

async fn end_session_in_store(state: &AppState, headers: &HeaderMap) -> Result<Response, AppError> {
    let id = cookies::read(headers, state.config.cookie_name()).and_then(|v| SessionId::parse(&v));
    let mut id_token = None;
    if let Some(id) = id {
        if let Some(session) = state.sessions.load(&id).await? {
            if let Some(refresh_token) = session.refresh_token.clone() {
                // Logout everywhere: the refresh token dies at the issuer too (not waited for).
                let oidc = state.oidc.clone();
                tokio::spawn(async move { oidc.revoke(&refresh_token).await });
            }
            id_token = Some(session.id_token.clone());
        }
        state.sessions.end(&id).await?;
        crate::metrics::session_events::sessions_ended(crate::metrics::session_events::EndReason::Logout, 1);
        tracing::info!("session ended");
    }
    let target = id_token
        .as_deref()
        .and_then(|hint| state.oidc.logout_url(Some(hint)))
        .map(|u| u.to_string())
        .unwrap_or_else(|| state.config.public_url_for("/").to_string());
    Ok(redirect(&target, vec![cookies::clear_session(&state.config)]))
}
