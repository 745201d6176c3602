//! Server-side sessions: the browser holds only an opaque random id; everything else (tokens,
//! claims) is sealed by the [`KeyRing`] and kept in a [`SessionStore`].
//!
//! A login in progress is not kept in the store: it is sealed into a short-lived cookie on the
//! browser that started it ([`Sessions::seal_login`]), so an anonymous `GET /account/login`
//! costs one seal and no store write, however many an attacker sends. The cookie is sealed with
//! the login's `state` in its associated data: it opens on any node, only for that `state`, and
//! only in the browser that holds it (which is the login-CSRF binding). One-time use is a marker
//! under the state's hash, written with `SET NX` on every node's shared store once the issuer
//! accepted the code ([`Sessions::use_login`]), and looked at before the code is sent
//! ([`Sessions::login_used`]): store writes are bounded by logins the issuer accepted.
//!
//! Store keys are SHA-256 hashes of the id (or of the login `state`), and the hash is also the
//! sealed blob's associated data: whoever reads the store learns neither a usable cookie nor a
//! token, and cannot move a blob from one session to another. The back-channel logout indexes
//! (`iss` + `sid`/`sub` → sessions) are keyed hashes (HMAC-SHA256 under a secret every node shares,
//! see [`Sessions::new`]): a plain hash would let whoever reads the store test who is logged in.

mod cache;
#[cfg(test)]
mod cached_expiry_tests;
mod id;
mod memory;
mod open_sockets;
mod operator;
mod record;
mod redis;
mod refresh;
mod store;
mod touches;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use cache::{LEASE, NodeCache};
pub use id::{SessionId, random_token};
pub use memory::MemoryStore;
pub use open_sockets::{OpenSocket, OpenSockets, SocketPlace, SocketSignal};
pub use operator::{Ended, Scope, SessionSummary};
pub use record::{PendingLogin, Session};
pub use redis::RedisStore;
pub use refresh::{RefreshError, Refresher};
pub use store::{Read, SessionStore, StoreError};

use crate::keyring::{KeyRing, KeyRingError};
use crate::metrics::session_events::{self, EndReason};

/// A session operation failed for a reason that is not "there is no session": the store or
/// the key ring is not available. Requests get a 503.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    KeyRing(#[from] KeyRingError),
}

/// The touch interval when none is configured: a tenth of the idle timeout, at most a minute.
/// An active session then keeps at least 90 % of its idle timeout (19 of 20 minutes by default)
/// and is written at most once a minute, whatever its request rate.
pub fn default_touch_interval(idle_timeout: Duration) -> Duration {
    (idle_timeout / 10).min(Duration::from_secs(60))
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Sessions and pending logins, sealed and stored.
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    ring: Arc<KeyRing>,
    idle_timeout: Duration,
    /// A read pushes a session's expiry back only when less than `idle_timeout - touch_interval`
    /// remains (see [`SessionStore::get_and_touch`]).
    touch_interval: Duration,
    absolute_lifetime: Duration,
    login_timeout: Duration,
    /// Sessions this node read recently, when enabled (Redis store only).
    cache: Option<Arc<NodeCache>>,
    /// Keys the back-channel logout indexes.
    index_key: hmac::Key,
    /// The touches of sessions served from memory past their touch (see [`NodeCache`]).
    touches: touches::Touches,
}

fn store_key(kind: &str, secret: &[u8]) -> String {
    // One allocation: every session read makes one of these.
    let mut hex = [0u8; 64];
    hex::encode_to_slice(digest(&SHA256, secret), &mut hex).expect("64 hex digits hold a SHA-256");
    let mut key = String::with_capacity(kind.len() + 1 + hex.len());
    key.push_str(kind);
    key.push(':');
    key.push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
    key
}

fn logout_token_key(iss: &str, jti: &str) -> String {
    store_key("j", format!("{iss}\0{jti}").as_bytes())
}

impl Sessions {
    /// `index_secret` keys the back-channel logout indexes: every node must be given the same
    /// one, and it must not be readable from the store.
    pub fn new(
        store: Arc<dyn SessionStore>,
        ring: Arc<KeyRing>,
        idle_timeout: Duration,
        absolute_lifetime: Duration,
        login_timeout: Duration,
        index_secret: &[u8],
    ) -> Self {
        let index_key = hmac::Key::new(hmac::HMAC_SHA256, index_secret);
        let touch_interval = default_touch_interval(idle_timeout);
        Sessions {
            store,
            ring,
            idle_timeout,
            touch_interval,
            absolute_lifetime,
            login_timeout,
            cache: None,
            index_key,
            touches: Default::default(),
        }
    }

    /// Reads push a session's expiry back at most once per `interval` (below the idle timeout).
    pub fn touching_every(mut self, interval: Duration) -> Self {
        self.touch_interval = interval.min(self.idle_timeout);
        self
    }

    /// Serves sessions from `cache` while it is live (see [`NodeCache`]).
    pub fn with_cache(mut self, cache: Arc<NodeCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn cache(&self) -> Option<&Arc<NodeCache>> {
        self.cache.as_ref()
    }

    /// Tells every node's cache that these sessions changed or ended.
    async fn changed(&self, keys: &[String]) -> Result<(), SessionError> {
        match &self.cache {
            Some(cache) => Ok(cache.changed(keys).await?),
            None => Ok(()),
        }
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    pub fn key_ring(&self) -> &Arc<KeyRing> {
        &self.ring
    }

    /// Ready when the store answers and the key ring is loaded.
    pub async fn check_ready(&self) -> Result<(), SessionError> {
        self.store.ping().await?;
        self.ring.check_published().await?;
        if !self.ring.is_ready() {
            return Err(KeyRingError::NotLoaded.into());
        }
        Ok(())
    }

    /// Seals and stores a new session under a fresh id, which is returned.
    pub async fn create(&self, session: &Session) -> Result<SessionId, SessionError> {
        let id = SessionId::generate();
        let key = store_key("s", id.as_bytes());
        let sealed = self.ring.seal(key.as_bytes(), &serde_json::to_vec(session).expect("session serialises"))?;
        // Indexes for back-channel logout: hashed, so Redis holds no `sid` or `sub`. Written
        // with the session, at once: each write may wait for replicas (`redis_wait_replicas`),
        // and one after the other a login with a replica away would wait that bound per write.
        // A membership whose session write failed names a session that does not exist: a
        // back-channel logout then ends nothing more.
        let lifetime = self.index_lifetime(session);
        let indexes = self.indexes_of(&session.claims);
        let memberships = indexes.iter().map(|index| self.store.index_add(index, &key, lifetime));
        let (stored, indexed) =
            futures::join!(self.store.put(&key, sealed, self.idle_timeout), futures::future::try_join_all(memberships));
        stored?;
        indexed?;
        Ok(id)
    }

    /// How long a session's back-channel logout indexes must live from now: as long as the
    /// session can, with one idle timeout to spare, so that an index outlives its session by
    /// little (the index of a session that idled out goes with it, not at the absolute lifetime).
    /// Reads slide the session's idle timeout, so reads of a session older than one idle timeout
    /// lengthen its indexes again ([`Self::keep_indexes`]), only when less than this minus the
    /// touch interval remains: hence the touch interval added to the absolute lifetime's bound.
    fn index_lifetime(&self, session: &Session) -> Duration {
        let left =
            self.absolute_lifetime.saturating_sub(Duration::from_secs(now_secs().saturating_sub(session.created_at)));
        (self.idle_timeout * 2).min(left + Duration::from_secs(1) + self.touch_interval)
    }

    /// After a read from the store slid a session's idle timeout: when the session is old enough
    /// that its indexes could end before it, lengthens them, in the background (the request does
    /// not wait; a failure is made good by the next read, which comes before the session idles
    /// out, or the session ends with its indexes).
    fn keep_indexes(&self, session: &Session) {
        if now_secs().saturating_sub(session.created_at) < self.idle_timeout.as_secs() {
            return;
        }
        let (store, ttl, touch_interval, indexes) =
            (self.store.clone(), self.index_lifetime(session), self.touch_interval, self.indexes_of(&session.claims));
        tokio::spawn(async move {
            for index in indexes {
                if let Err(error) = store.index_keep(&index, ttl, touch_interval).await {
                    tracing::debug!(%error, "back-channel logout index not lengthened; the next read tries again");
                }
            }
        });
    }

    fn indexes_of(&self, claims: &serde_json::value::RawValue) -> Vec<String> {
        let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_str(claims.get()).unwrap_or_default();
        let iss = claims.get("iss").and_then(|v| v.as_str()).unwrap_or_default();
        ["sid", "sub"]
            .into_iter()
            .filter_map(|claim| {
                let value = claims.get(claim)?.as_str()?;
                Some(self.index_key(claim, iss, value))
            })
            .collect()
    }

    fn index_key(&self, claim: &str, iss: &str, value: &str) -> String {
        let tag = hmac::sign(&self.index_key, format!("{claim}\0{iss}\0{value}").as_bytes());
        format!("i:{claim}:{}", hex::encode(tag.as_ref()))
    }

    /// Ends every session of the issuer's session id `sid`, or of the user `sub` (back-channel
    /// logout); returns how many there were.
    pub async fn end_all(&self, iss: &str, sid: Option<&str>, sub: Option<&str>) -> Result<usize, SessionError> {
        let index = match (sid, sub) {
            (Some(sid), _) => self.index_key("sid", iss, sid),
            (None, Some(sub)) => self.index_key("sub", iss, sub),
            (None, None) => return Ok(0),
        };
        // Read, not taken: the index keeps its sessions until they are deleted, so that a logout
        // that fails half-way (a shard out of reach, Redis away) ends them when it is sent again.
        // Taken at once, the index was gone after the failure: the second logout found nothing
        // to end, and the sessions lived on. Reading, deleting and leaving again are all safe to
        // repeat.
        let keys = self.store.index_members(&index).await?;
        let mut memberships: Vec<(String, String)> = keys.iter().map(|key| (index.clone(), key.clone())).collect();
        for key in &keys {
            let indexes = self.indexes_of_stored(key).await?.unwrap_or_default();
            memberships.extend(indexes.into_iter().map(|index| (index, key.clone())));
        }
        memberships.sort_unstable();
        memberships.dedup();
        let deleted = self.store.delete_many(&keys).await;
        // Told even when the delete failed, as for a logout (see `end`).
        self.changed(&keys).await?;
        deleted?;
        self.leave_indexes(&memberships).await?;
        Ok(keys.len())
    }

    /// The back-channel logout indexes the session stored under `key` is a member of (none when
    /// it does not open); `None` when the store holds no session under `key`.
    async fn indexes_of_stored(&self, key: &str) -> Result<Option<Vec<String>>, SessionError> {
        let Some(blob) = self.store.get_and_touch(key, self.idle_timeout, self.touch_interval).await? else {
            return Ok(None);
        };
        let Ok(plain) = self.ring.open(key.as_bytes(), &blob).await else {
            return Ok(Some(Vec::new()));
        };
        Ok(Some(serde_json::from_slice::<Session>(&plain).map(|s| self.indexes_of(&s.claims)).unwrap_or_default()))
    }

    /// Takes ended sessions out of their indexes, so that no index outlives its sessions.
    async fn leave_indexes(&self, memberships: &[(String, String)]) -> Result<(), SessionError> {
        for (index, key) in memberships {
            self.store.index_remove(index, key).await?;
        }
        Ok(())
    }

    /// Whether the issuer `iss`'s logout token id `jti` was used before, on any node (a replay).
    pub async fn logout_token_used(&self, iss: &str, jti: &str) -> Result<bool, SessionError> {
        Ok(self.store.exists(&logout_token_key(iss, jti)).await?)
    }

    /// Records that the issuer `iss` used the logout token id `jti`, until `ttl` from now (the
    /// token's expiry). Called once its sessions ended: a store that fails in between leaves
    /// the token unmarked, so the issuer's retry ends them. Returns false when another delivery
    /// of the same token marked it first.
    pub async fn remember_logout_token(&self, iss: &str, jti: &str, ttl: Duration) -> Result<bool, SessionError> {
        Ok(self.store.insert_new(&logout_token_key(iss, jti), ttl).await?)
    }

    /// Stores an updated session (new tokens) unless it ended meanwhile; returns whether it
    /// was stored.
    pub async fn save(&self, id: &SessionId, session: &Session) -> Result<bool, SessionError> {
        let key = store_key("s", id.as_bytes());
        let sealed = self.ring.seal(key.as_bytes(), &serde_json::to_vec(session).expect("session serialises"))?;
        let stored = self.store.replace(&key, sealed, self.idle_timeout).await?;
        self.changed(&[key]).await?;
        Ok(stored)
    }

    /// The store key of a session's refresh lock.
    pub fn refresh_lock_key(id: &SessionId) -> String {
        store_key("r", id.as_bytes())
    }

    /// The session, from this node's cache when it holds it (see [`NodeCache`]), else from the
    /// store, which slides its idle timeout. A session that does not open (tampered, unknown
    /// key) or is past its absolute lifetime counts as absent.
    /// Shared, not copied: with the node cache, many requests hold the same session.
    pub async fn load(&self, id: &SessionId) -> Result<Option<Arc<Session>>, SessionError> {
        let key = store_key("s", id.as_bytes());
        let Some(cache) = &self.cache else {
            return Ok(self.load_from_store(&key).await?.map(Arc::new));
        };
        if let Some(hit) = cache.get(&key)
            && !self.past_lifetime(&hit.session)
        {
            if hit.touch {
                self.touches.send(key, &self.store, cache, self.idle_timeout, self.touch_interval);
                self.keep_indexes(&hit.session);
            }
            return Ok(Some(hit.session));
        }
        let seen = cache.generation();
        // Before the read: the store's expiry is at least this plus the time it says is left.
        let read_at = tokio::time::Instant::now();
        let Some((session, left)) = self.read_from_store(&key).await? else {
            return Ok(None);
        };
        let session = Arc::new(session);
        let due = self.touch_due(read_at, tokio::time::Instant::now(), left);
        cache.keep(&key, &session, seen, due, touches::lasts(self.touch_interval, read_at, left));
        Ok(Some(session))
    }

    /// When a read of a session that the store said had `left` to live (the read was sent at
    /// `sent` and answered at `answered`) is due to push its expiry back: from then on, less than
    /// `idle_timeout - touch_interval` remains in the store. The node cache serves the session
    /// as it is until then; past it, it serves it only while its touch goes to the store in the
    /// background (see `touches`), which slides the idle timeout however many requests the
    /// cache answered; and it never serves a session past the expiry the store last gave it,
    /// which is at least `sent + left` (the store counted `left` after the read was sent).
    fn touch_due(
        &self,
        sent: tokio::time::Instant,
        answered: tokio::time::Instant,
        left: Option<Duration>,
    ) -> tokio::time::Instant {
        touches::touch_due(self.idle_timeout, self.touch_interval, sent, answered, left)
    }

    /// The session as the store holds it now, never from a cache (the token refresh compares
    /// tokens across nodes with it).
    pub async fn load_latest(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        self.load_from_store(&store_key("s", id.as_bytes())).await
    }

    fn past_lifetime(&self, session: &Session) -> bool {
        now_secs().saturating_sub(session.created_at) > self.absolute_lifetime.as_secs()
    }

    /// Reads a session and slides its idle timeout, in one store operation.
    async fn load_from_store(&self, key: &str) -> Result<Option<Session>, SessionError> {
        Ok(self.read_from_store(key).await?.map(|(session, _)| session))
    }

    /// [`Self::load_from_store`], with the time the store says the session has left.
    async fn read_from_store(&self, key: &str) -> Result<Option<(Session, Option<Duration>)>, SessionError> {
        let Some(Read { value: blob, left }) =
            self.store.read_and_touch(key, self.idle_timeout, self.touch_interval).await?
        else {
            // Asked for by a cookie, gone from the store: what a node sees of idle expiry.
            session_events::sessions_ended(EndReason::Idle, 1);
            return Ok(None);
        };
        let plain = match self.ring.open(key.as_bytes(), &blob).await {
            Ok(plain) => plain,
            Err(reason) => {
                tracing::warn!(%reason, "session found but cannot be opened; treated as no session");
                return Ok(None);
            }
        };
        let session: Session = match serde_json::from_slice(&plain) {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(%error, "session opened but does not parse; treated as no session");
                return Ok(None);
            }
        };
        if !session.format.is_readable() {
            // A build outside this one's window wrote it: the start-up check should have kept
            // the two apart (see `compat`).
            tracing::error!(format = %session.format, readable = ?crate::compat::readable(), "session of a record format this build does not read; treated as no session");
            return Ok(None);
        }
        if self.past_lifetime(&session) {
            self.store.delete(key).await?;
            self.changed(&[key.to_owned()]).await?;
            session_events::sessions_ended(EndReason::Absolute, 1);
            return Ok(None);
        }
        self.keep_indexes(&session);
        Ok(Some((session, left)))
    }

    /// Deletes a session everywhere: every node sees it gone at once. It also leaves the
    /// back-channel logout indexes, so that the index of a `sid` that ended does not stay in the
    /// store until the absolute lifetime.
    /// An id the store does not hold (a random one, one already ended) costs one read: no
    /// change notice goes to the other nodes, so a flood of logouts with made-up ids neither
    /// fans out nor keeps node caches from caching.
    pub async fn end(&self, id: &SessionId) -> Result<(), SessionError> {
        let key = store_key("s", id.as_bytes());
        let Some(indexes) = self.indexes_of_stored(&key).await? else {
            return Ok(());
        };
        let memberships: Vec<(String, String)> = indexes.into_iter().map(|index| (index, key.clone())).collect();
        let deleted = self.store.delete(&key).await;
        // Told even when the delete failed: it may have run all the same (its answer lost or
        // late), and a second logout would then find no session and tell nobody, while a node
        // that holds it in memory went on serving it.
        self.changed(std::slice::from_ref(&key)).await?;
        deleted?;
        self.leave_indexes(&memberships).await
    }

    /// How long a started login may take.
    pub fn login_timeout(&self) -> Duration {
        self.login_timeout
    }

    /// Seals a login in progress for the browser's login cookie (URL-safe base64), bound to
    /// its `state`: it opens on any node, for that state only.
    pub fn seal_login(&self, state: &str, login: &PendingLogin) -> Result<String, SessionError> {
        let key = store_key("l", state.as_bytes());
        let sealed = self.ring.seal(key.as_bytes(), &serde_json::to_vec(login).expect("login serialises"))?;
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens the login cookie for `state`; `None` when it is missing, altered, sealed for
    /// another state (another browser's login) or past its time.
    pub async fn open_login(&self, state: &str, cookie: Option<&str>) -> Option<PendingLogin> {
        let blob = URL_SAFE_NO_PAD.decode(cookie?).ok()?;
        let key = store_key("l", state.as_bytes());
        let login: PendingLogin = match self.ring.open(key.as_bytes(), &blob).await {
            Ok(plain) => serde_json::from_slice(&plain).ok()?,
            Err(reason) => {
                tracing::debug!(%reason, "login cookie does not open for this state");
                return None;
            }
        };
        if !login.format.is_readable() {
            tracing::error!(format = %login.format, readable = ?crate::compat::readable(), "login cookie of a record format this build does not read");
            return None;
        }
        (now_secs() <= login.expires_at).then_some(login)
    }

    /// Whether the login of `state` was already finished, on any node (read only: a refused
    /// callback writes nothing).
    pub async fn login_used(&self, state: &str) -> Result<bool, SessionError> {
        Ok(self.store.exists(&store_key("l", state.as_bytes())).await?)
    }

    /// Marks the login of `state` finished until it would have expired anyway; false when it
    /// already was, on any node (of concurrent callbacks exactly one gets true).
    pub async fn use_login(&self, state: &str, login: &PendingLogin) -> Result<bool, SessionError> {
        let ttl = Duration::from_secs(login.expires_at.saturating_sub(now_secs()).saturating_add(1));
        Ok(self.store.insert_new(&store_key("l", state.as_bytes()), ttl).await?)
    }
}
