//! [`Refresher`]: at most one access-token refresh per session at a time, across all nodes.
//!
//! With rotating refresh tokens, parallel calls that each refresh make all but one fail. Here a
//! single-flight inside the node lets one request per session go on, and a lock in the store
//! (its lease renewed while the token endpoint works and until the new tokens are stored, so
//! neither a slow issuer nor a slow save can outlive it) lets one
//! node refresh. Everyone else polls the session until its tokens changed and uses the new ones,
//! never calling the token endpoint. Only `invalid_grant` ends the session; any other failure
//! (an issuer that is down, rate-limits, or refuses this client while its secret rotates) keeps
//! it. A lease that is lost or runs out unrenewed stops the refresh; a renewal that Redis does not
//! answer is tried again while the lease lasts, and so is storing the new tokens: the issuer may
//! already have rotated the refresh token, so a Redis blip must not throw away its only copy
//! (which would end the session later with `invalid_grant`). The refresh that holds the lock runs
//! as a task of its own, so a caller that disconnects neither cancels it nor leaves the lock
//! renewed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{Session, SessionError, SessionId, Sessions, now_secs, random_token};
use crate::metrics::session_events::{self, EndReason, RefreshOutcome};
use crate::oidc::{Oidc, OidcError};

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The issuer refused the refresh token: the session is over.
    #[error("the session ended: the identity provider refused its refresh token")]
    Ended,
    /// The issuer could not be reached, or the refresh did not finish in time; the session is kept.
    #[error("token refresh unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Session(#[from] SessionError),
}

pub struct Refresher {
    sessions: Arc<Sessions>,
    oidc: Arc<Oidc>,
    skew: Duration,
    lease: Duration,
    /// One async mutex per session being refreshed in this node.
    in_flight: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

const POLL: Duration = Duration::from_millis(20);

/// How often refreshed tokens that could not be stored are tried again (within the lease).
const SAVE_RETRY_EVERY: Duration = Duration::from_millis(200);

impl Refresher {
    pub fn new(sessions: Arc<Sessions>, oidc: Arc<Oidc>, skew: Duration, lease: Duration) -> Self {
        Refresher { sessions, oidc, skew, lease, in_flight: Mutex::new(HashMap::new()) }
    }

    pub fn needs_refresh(&self, session: &Session) -> bool {
        due(session, self.skew)
    }

    fn flight(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.in_flight.lock().expect("in-flight lock");
        map.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = map.get(key).and_then(Weak::upgrade) {
            return existing;
        }
        let fresh = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_owned(), Arc::downgrade(&fresh));
        fresh
    }

    /// The session with an access token that is not about to expire.
    pub async fn fresh(&self, id: &SessionId, session: Arc<Session>) -> Result<Arc<Session>, RefreshError> {
        if !self.needs_refresh(&session) {
            return Ok(session);
        }
        let lock_key = Sessions::refresh_lock_key(id);
        let flight = self.flight(&lock_key);
        let _one_per_node = flight.lock().await;
        let stale_token = session.access_token.clone();
        let deadline = Instant::now() + self.lease * 2 + self.oidc.config().http_timeout;
        let mut waited = false;
        loop {
            let current = self.sessions.load_latest(id).await?.ok_or(RefreshError::Ended)?;
            if !self.needs_refresh(&current) || current.access_token != stale_token {
                if waited {
                    session_events::refresh(RefreshOutcome::LockWait);
                }
                return Ok(Arc::new(current));
            }
            let holder = random_token();
            if self.sessions.store().try_lock(&lock_key, &holder, self.lease).await.map_err(SessionError::from)? {
                // The refresh runs as a task of its own: a caller that goes away (the browser
                // closed the connection) does not cancel it, so the new tokens are stored and the
                // lock released; this caller (and the node's other waiters) just join it.
                let job = LockedRefresh {
                    sessions: self.sessions.clone(),
                    oidc: self.oidc.clone(),
                    id: id.clone(),
                    stale_token,
                    lock_key,
                    holder,
                    lease: self.lease,
                    skew: self.skew,
                };
                return tokio::spawn(job.run())
                    .await
                    .map(|result| result.map(Arc::new))
                    .unwrap_or_else(|error| Err(RefreshError::Unavailable(format!("refresh task failed: {error}"))));
            }
            waited = true;
            if Instant::now() > deadline {
                session_events::refresh(RefreshOutcome::LockTimeout);
                return Err(RefreshError::Unavailable("timed out waiting for another node's refresh".into()));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Whether the session has a refresh token and its access token expires within `skew`.
fn due(session: &Session, skew: Duration) -> bool {
    session.refresh_token.is_some()
        && session.access_token_expires_at.is_some_and(|at| at <= now_secs() + skew.as_secs())
}

/// A refresh that holds the store lock: everything it needs is owned, so it can run as a task
/// of its own.
struct LockedRefresh {
    sessions: Arc<Sessions>,
    oidc: Arc<Oidc>,
    id: SessionId,
    stale_token: String,
    lock_key: String,
    holder: String,
    lease: Duration,
    skew: Duration,
}

impl LockedRefresh {
    async fn run(self) -> Result<Session, RefreshError> {
        let result = self.refresh().await;
        let _ = self.sessions.store().unlock(&self.lock_key, &self.holder).await;
        result
    }

    async fn refresh(&self) -> Result<Session, RefreshError> {
        // Another node may have refreshed between our read and our lock: read again.
        let current = self.sessions.load_latest(&self.id).await?.ok_or(RefreshError::Ended)?;
        if !due(&current, self.skew) || current.access_token != self.stale_token {
            return Ok(current);
        }
        let refresh_token = current.refresh_token.clone().unwrap_or_default();
        // The lease is renewed while the token endpoint works, however slow it is; when it
        // cannot be renewed, the refresh stops: without the lock another node may be replaying
        // the same (rotating) refresh token. Both futures live in this one `select!`, so the
        // renewal never outlives the refresh.
        let result = tokio::select! {
            result = self.oidc.refresh(&refresh_token) => result,
            lost = self.keep_lease() => {
                session_events::refresh(RefreshOutcome::LockLost);
                return Err(lost);
            }
        };
        match result {
            Ok(tokens) => {
                let now = now_secs();
                let updated = Session {
                    // Written by this build, so in its format.
                    format: crate::compat::RecordFormat::current(),
                    access_token: tokens.access_token,
                    refresh_token: tokens.refresh_token.or(current.refresh_token.clone()),
                    access_token_expires_at: tokens.expires_in.map(|s| now + s),
                    bearer: Default::default(),
                    ..current
                };
                if !self.save_holding_the_lock(&updated).await? {
                    return Err(RefreshError::Ended);
                }
                session_events::refresh(RefreshOutcome::Ok);
                tracing::info!("access token refreshed");
                Ok(updated)
            }
            Err(OidcError::CodeRefused(reason)) => {
                session_events::refresh(RefreshOutcome::InvalidGrant);
                tracing::info!(%reason, "refresh token refused; ending the session");
                self.sessions.end(&self.id).await?;
                session_events::sessions_ended(EndReason::RefreshFailure, 1);
                Err(RefreshError::Ended)
            }
            Err(error) => {
                session_events::refresh(RefreshOutcome::IssuerError);
                Err(RefreshError::Unavailable(error.to_string()))
            }
        }
    }

    /// Stores the new tokens while the lease is still renewed: a save that takes long (a
    /// `WAIT` for a replica that is away, a Redis that answers slowly) must not let the lock
    /// lapse, or another node would refresh with the refresh token the issuer just rotated and
    /// end the session. A lock lost anyway does not stop the save: these tokens are the only
    /// copy.
    async fn save_holding_the_lock(&self, updated: &Session) -> Result<bool, SessionError> {
        let save = self.save_within_lease(updated);
        tokio::pin!(save);
        tokio::select! {
            saved = &mut save => saved,
            lost = self.keep_lease() => {
                tracing::warn!(reason = %lost, "refresh lock lapsed while the refreshed tokens were stored");
                save.await
            }
        }
    }

    /// Stores the new tokens. The issuer may already have rotated the refresh token, so they
    /// are the only copy: while the lock's lease lasts (nobody else may refresh meanwhile), a
    /// store that does not answer is tried again rather than losing them.
    async fn save_within_lease(&self, updated: &Session) -> Result<bool, SessionError> {
        let until = Instant::now() + self.lease;
        loop {
            match self.sessions.save(&self.id, updated).await {
                Err(error) if Instant::now() + SAVE_RETRY_EVERY < until => {
                    tracing::warn!(%error, "refreshed tokens not stored yet; trying again");
                    tokio::time::sleep(SAVE_RETRY_EVERY).await;
                }
                result => return result,
            }
        }
    }

    /// Renews the lease every third of it; returns (as the reason to stop) once the lock was
    /// taken by another or its lease ran out unrenewed. A renewal that fails (Redis does not
    /// answer) is tried again: the lock stays this refresh's until its lease has passed, and the
    /// token request in flight may already have rotated the refresh token.
    async fn keep_lease(&self) -> RefreshError {
        let mut held_until = Instant::now() + self.lease;
        loop {
            tokio::time::sleep(self.lease / 3).await;
            match self.sessions.store().extend_lock(&self.lock_key, &self.holder, self.lease).await {
                Ok(true) => held_until = Instant::now() + self.lease,
                Ok(false) => return RefreshError::Unavailable("the refresh lock was lost; refresh abandoned".into()),
                Err(error) if Instant::now() + self.lease / 3 >= held_until => {
                    return RefreshError::Unavailable(format!(
                        "cannot renew the refresh lock ({error}); refresh abandoned"
                    ));
                }
                Err(error) => tracing::warn!(%error, "refresh lock not renewed; trying again within its lease"),
            }
        }
    }
}
