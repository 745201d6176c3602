//! Sessions for a benchmark, made without a login each: `bff seed-sessions` seals and stores
//! them with this gateway's own code ([`Sessions::create`]: the record, its seal under the
//! shared key ring, its store key and its back-channel logout indexes are what a login writes),
//! so that the curve of cost against sessions reaches a million, where a full login per session
//! would take longer than the measurement. The users are made up (`bench-seeded-N` at the
//! configured issuer) and so are their tokens (random, of the mock issuer's sizes): an upstream
//! that checks tokens refuses them, and nothing here is for a production deployment, which never
//! needs it. Redis store only: an in-memory store would end with this process.

use std::io::Write;
use std::sync::Arc;

use futures::StreamExt;

use crate::config::{Config, StoreConfig};
use crate::session::{Session, SessionError, Sessions, now_secs, random_token};
use crate::state::{AppState, StateError};

/// Sessions stored at a time.
const AT_ONCE: usize = 128;

/// Why no sessions could be seeded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("seed-sessions needs the Redis store (redis_url): the in-memory store ends with this process")]
    NotRedis,
    #[error(transparent)]
    State(#[from] StateError),
    #[error("key ring: {0}")]
    KeyRing(#[from] crate::keyring::KeyRingError),
    #[error("storing a session: {0}")]
    Session(#[from] SessionError),
    #[error("writing the cookies: {0}")]
    Output(#[from] std::io::Error),
}

/// Random base64url text of about `len` characters.
fn token_of(len: usize) -> String {
    let mut token = String::with_capacity(len + 43);
    while token.len() < len {
        token.push_str(&random_token());
    }
    token.truncate(len);
    token
}

/// A session as a login at `issuer` makes it, for made-up user `n`, with tokens of the mock
/// issuer's sizes (an id token and an access token of about 450 bytes each, a refresh token).
fn made_up(issuer: &str, client_id: &str, n: usize) -> Session {
    let now = now_secs();
    let claims = serde_json::json!({
        "iss": issuer, "sub": format!("bench-seeded-{n}"), "aud": client_id, "sid": format!("seeded-{n}"),
        "name": format!("Bench Seeded {n}"), "iat": now, "exp": now + 3600,
    });
    Session {
        format: crate::compat::RecordFormat::current(),
        created_at: now,
        claims: serde_json::value::to_raw_value(&claims).expect("claims serialise"),
        id_token: token_of(450),
        access_token: token_of(450),
        refresh_token: Some(token_of(43)),
        // Far beyond a benchmark: no refresh is attempted with the made-up refresh token.
        access_token_expires_at: Some(now + 365 * 24 * 3600),
        created_on: None,
        bearer: Default::default(),
    }
}

/// Seals and stores `count` sessions as the nodes configured by `config` would, and writes the
/// `Cookie` pair of each (`name=value`), one a line, to `out`; `progress` hears how many are done.
/// The shared key ring must already be in Redis (a node of the deployment started).
pub async fn seed(
    config: Config,
    count: usize,
    out: &mut (dyn Write + Send),
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), SeedError> {
    if !matches!(config.store, StoreConfig::Redis { .. }) {
        return Err(SeedError::NotRedis);
    }
    let cookie_name = config.cookie_name().to_owned();
    let (issuer, client_id) = (config.oidc.authority.to_string(), config.oidc.client_id.clone());
    let state = AppState::new(config)?;
    if let Some(link) = &state.redis {
        link.connect().await;
    }
    let sessions: Arc<Sessions> = state.sessions.clone();
    sessions.key_ring().reload().await?;
    let mut made = futures::stream::iter(0..count)
        .map(|n| {
            let (sessions, session) = (sessions.clone(), made_up(&issuer, &client_id, n));
            async move { sessions.create(&session).await }
        })
        .buffer_unordered(AT_ONCE);
    let mut done = 0;
    while let Some(id) = made.next().await {
        writeln!(out, "{cookie_name}={}", id?.to_cookie_value())?;
        done += 1;
        if done % 10_000 == 0 {
            progress(done);
        }
    }
    out.flush()?;
    progress(done);
    Ok(())
}
