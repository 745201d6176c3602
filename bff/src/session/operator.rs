//! What an operator sees of a user's sessions, and how an operator ends them: the store side of
//! the session API (`routes::ops_sessions`).
//!
//! A user is named by the issuer's `sub`, or one login at the issuer by its `sid`: the same
//! keyed indexes the back-channel logout keeps (`i:sub:…`, `i:sid:…`, see the parent module),
//! which live as long as the sessions in them and no longer. Nothing else is added to the store.
//!
//! A session is shown under a *handle*: HMAC-SHA256 of its store key under the index secret,
//! cut to 128 bits. The store key is itself a hash of the session id, so a handle cannot be used
//! as a cookie, and without the secret it cannot be matched to a store key either. A handle is
//! resolved only within a user's index, so ending one session names its user too.
//!
//! Listing reads the store with [`SessionStore::peek`](super::SessionStore::peek): it never
//! pushes an idle expiry back (looking at a session does not keep it alive) and never reads a
//! node cache. Ending deletes the sessions, tells every node's cache through the change notices
//! (it returns once no node serves them from memory), and takes them out of their indexes; ending
//! what is already gone ends nothing, so a repeated end answers 0.

use std::time::Duration;

use aws_lc_rs::hmac;
use serde::Serialize;

use super::{Session, SessionError, Sessions, now_secs};

/// Whose sessions: a user (`sub`) or one login at the issuer (`sid`).
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Sub(&'a str),
    Sid(&'a str),
}

impl Scope<'_> {
    /// The claim that names it: `sub` or `sid`.
    pub fn claim(&self) -> &'static str {
        match self {
            Scope::Sub(_) => "sub",
            Scope::Sid(_) => "sid",
        }
    }

    fn value(&self) -> &str {
        match self {
            Scope::Sub(value) | Scope::Sid(value) => value,
        }
    }
}

/// One session as an operator sees it: who, when, where; never a token or another claim.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionSummary {
    /// The handle (see the module header): what `DELETE /ops/sessions/{id}` takes.
    pub id: String,
    pub sub: Option<String>,
    pub sid: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last read that pushed the idle expiry back: the last use, up to one
    /// `session.touch_interval` (plus `session.cache_max_age` with node caches) earlier.
    pub last_seen_at: u64,
    /// Unix seconds when it ends unless it is used before.
    pub idle_expires_at: u64,
    /// Unix seconds when it ends however much it is used.
    pub absolute_expires_at: u64,
    /// The `node_name` of the node that created it (absent: an unnamed node, or bff 0.1.0).
    pub created_on: Option<String>,
}

/// What an end did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ended {
    /// The handles of the sessions that ended (empty when there were none left).
    pub ids: Vec<String>,
}

impl Sessions {
    /// The handle of the session stored under `key` (see the module header).
    fn handle_of(&self, key: &str) -> String {
        let tag = hmac::sign(&self.index_key, format!("session handle\0{key}").as_bytes());
        hex::encode(&tag.as_ref()[..16])
    }

    /// A keyed digest that names the scope's user (or login) in logs and answers without the
    /// claim itself: the index's own digest, cut to 128 bits.
    pub fn subject_of(&self, iss: &str, scope: Scope<'_>) -> String {
        let index = self.index_key(scope.claim(), iss, scope.value());
        index.rsplit(':').next().unwrap_or_default()[..32].to_owned()
    }

    /// The live sessions of `scope` at the issuer `iss`, oldest first. Index members whose
    /// session is gone (idled out) are taken out of the index on the way.
    pub async fn list_of(&self, iss: &str, scope: Scope<'_>) -> Result<Vec<SessionSummary>, SessionError> {
        let index = self.index_key(scope.claim(), iss, scope.value());
        let mut listed = Vec::new();
        for key in self.store.index_members(&index).await? {
            let Some((blob, left)) = self.store.peek(&key).await? else {
                self.store.index_remove(&index, &key).await?;
                continue;
            };
            let session = match self.ring.open(key.as_bytes(), &blob).await {
                Ok(plain) => serde_json::from_slice::<Session>(&plain).ok(),
                Err(_) => None,
            };
            let Some(session) = session else {
                tracing::warn!("a session in an operator's listing does not open; left out");
                continue;
            };
            listed.push(self.summary(&key, &session, left));
        }
        listed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(listed)
    }

    fn summary(&self, key: &str, session: &Session, left: Option<Duration>) -> SessionSummary {
        let now = now_secs();
        let absolute_expires_at = session.created_at.saturating_add(self.absolute_lifetime.as_secs());
        // In milliseconds, rounded once: now and the time left move together, so two listings
        // give the same second (whole seconds of each would each be cut at another point).
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let idle_expires_at = left
            .map_or(absolute_expires_at, |left| (now_ms + left.as_millis() as u64 + 500) / 1000)
            .min(absolute_expires_at);
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(session.claims.get()).unwrap_or_default();
        let claim = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        SessionSummary {
            id: self.handle_of(key),
            sub: claim("sub"),
            sid: claim("sid"),
            created_at: session.created_at,
            last_seen_at: left
                .map_or(session.created_at, |_| idle_expires_at.saturating_sub(self.idle_timeout.as_secs()))
                .clamp(session.created_at, now.max(session.created_at)),
            idle_expires_at,
            absolute_expires_at,
            created_on: session.created_on.clone(),
        }
    }

    /// Ends the sessions of `scope` at the issuer `iss` (only the one with handle `only`, when
    /// given) on every node: deleted, dropped from every node's cache, taken out of their
    /// indexes. Idempotent: what already ended is not counted again.
    pub async fn end_of(&self, iss: &str, scope: Scope<'_>, only: Option<&str>) -> Result<Ended, SessionError> {
        let index = self.index_key(scope.claim(), iss, scope.value());
        let mut ended = Vec::new();
        let mut ids = Vec::new();
        let mut memberships = Vec::new();
        for key in self.store.index_members(&index).await? {
            let id = self.handle_of(&key);
            if only.is_some_and(|only| only != id) {
                continue;
            }
            let indexes = self.indexes_of_stored(&key).await?;
            if let Some(indexes) = &indexes {
                ended.push(key.clone());
                ids.push(id);
                memberships.extend(indexes.iter().map(|other| (other.clone(), key.clone())));
            }
            if !indexes.is_some_and(|indexes| indexes.contains(&index)) {
                memberships.push((index.clone(), key));
            }
        }
        self.store.delete_many(&ended).await?;
        self.changed(&ended).await?;
        self.leave_indexes(&memberships).await?;
        Ok(Ended { ids })
    }
}
