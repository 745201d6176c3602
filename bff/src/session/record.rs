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

#[cfg(test)]
mod tests {
    use super::*;

    /// The session as bff 0.1.0 reads it (its `record.rs`, without `deny_unknown_fields`).
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct SessionOf010 {
        created_at: u64,
        claims: Box<serde_json::value::RawValue>,
        id_token: String,
        access_token: String,
        refresh_token: Option<String>,
        access_token_expires_at: Option<u64>,
    }

    #[test]
    fn the_node_that_created_a_session_is_a_field_both_builds_of_a_rolling_upgrade_read() {
        let session = Session {
            format: RecordFormat::current(),
            created_at: 1,
            claims: serde_json::value::RawValue::from_string(r#"{"sub":"a"}"#.into()).unwrap(),
            id_token: "id".into(),
            access_token: "at".into(),
            refresh_token: None,
            access_token_expires_at: None,
            created_on: Some("node-2".into()),
            bearer: Default::default(),
        };
        let written = serde_json::to_string(&session).unwrap();
        assert!(written.contains(r#""created_on":"node-2""#), "{written}");
        let old: SessionOf010 = serde_json::from_str(&written).expect("bff 0.1.0 reads it");
        assert_eq!(old.created_at, 1);
        let from_old = r#"{"created_at":1,"claims":{},"id_token":"i","access_token":"a","refresh_token":null,"access_token_expires_at":null}"#;
        let read: Session = serde_json::from_str(from_old).expect("this build reads bff 0.1.0's");
        assert_eq!((read.created_on, read.format), (None, RecordFormat::legacy()));
        let unnamed = Session { created_on: None, ..read };
        assert!(!serde_json::to_string(&unnamed).unwrap().contains("created_on"), "absent when unnamed");
    }
}
