//! What a session and a login in progress hold. Both are only ever stored sealed.

use std::sync::OnceLock;

use axum::http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::compat::RecordFormat;

/// A logged-in user's session.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// The record format it was written in (absent, so format 1, from bff 0.1.0): see `compat`.
    #[serde(default = "RecordFormat::legacy")]
    pub format: RecordFormat,
    /// Unix seconds; the absolute lifetime counts from here.
    pub created_at: u64,
    /// The validated id_token's claims, as `/account/me` returns them: kept as raw JSON, so the
    /// hot path (every proxied call reads the session) does not build a map it does not use.
    pub claims: Box<serde_json::value::RawValue>,
    /// Kept for `id_token_hint` at logout.
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds when the access token expires, when the issuer said.
    pub access_token_expires_at: Option<u64>,
    /// The name of the node that created it (`node_name`), for operators listing sessions.
    /// Absent in sessions of bff 0.1.0 and of nodes without a name; an older build ignores it
    /// (an added field with a default: the same record format, see `compat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    /// `Bearer <access_token>` as a header value, made on first use and never stored: the node
    /// cache hands one loaded session to many requests, which then share it. A session with a
    /// new access token must start with an empty one.
    #[serde(skip)]
    pub(crate) bearer: OnceLock<Option<HeaderValue>>,
}

impl Session {
    /// The `Authorization` value for the upstream, marked sensitive (never logged by `http`);
    /// `None` when the access token is not a valid header value.
    pub fn bearer(&self) -> Option<&HeaderValue> {
        self.bearer
            .get_or_init(|| {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", self.access_token)).ok()?;
                value.set_sensitive(true);
                Some(value)
            })
            .as_ref()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("created_at", &self.created_at).finish_non_exhaustive()
    }
}

/// A login between `/login` and `/login/callback`, sealed into the browser's login cookie (see
/// [`Sessions::seal_login`](super::Sessions::seal_login)).
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The record format it was sealed in (absent, so format 1, from bff 0.1.0): see `compat`.
    #[serde(default = "RecordFormat::legacy")]
    pub format: RecordFormat,
    /// PKCE code verifier.
    pub verifier: String,
    pub nonce: String,
    /// Where to send the browser after the callback (a same-site relative path).
    pub landing_page: String,
    /// Unix seconds after which the callback is refused (`session.login_timeout` from the
    /// start): the cookie's own expiry is the browser's to keep.
    pub expires_at: u64,
}
