//! What the mock issuer remembers between calls: users, issued codes and refresh tokens, the
//! faults a test switched on, and how often each endpoint was called.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::keys::KeySet;
use super::pkce::Challenge;

/// A user the issuer logs in without a form.
#[derive(Debug, Clone)]
pub struct User {
    pub sub: String,
    pub claims: Map<String, Value>,
}

impl User {
    /// A user with a `name` and `email` derived from `sub`.
    pub fn new(sub: &str) -> Self {
        let mut claims = Map::new();
        claims.insert("name".into(), Value::String(format!("User {sub}")));
        claims.insert("email".into(), Value::String(format!("{sub}@example.test")));
        User { sub: sub.to_owned(), claims }
    }

    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_owned(), value.into());
        self
    }
}

/// Ways the issuer can get an id_token wrong, for tests of the gateway's validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenFault {
    WrongAudience,
    WrongIssuer,
    WrongNonce,
    Expired,
    IssuedInTheFuture,
    /// Signed by a key that is not the published one (same `kid`).
    WrongSignature,
    /// Signed with a `kid` the JWKS never shows.
    UnknownKid,
    MissingSub,
}

/// The whole issuer slow or down, as a node sees it (every endpoint).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IssuerOutage {
    #[default]
    None,
    /// Every answer comes this much later.
    Latency(Duration),
    /// Every endpoint answers 503.
    Down,
}

/// Faults of the token endpoint.
#[derive(Debug, Clone, Default)]
pub struct TokenFaults {
    pub delay: Option<Duration>,
    /// Answer this status (with an OAuth error body) instead of tokens.
    pub status: Option<u16>,
}

pub(super) struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    pub challenge: Option<Challenge>,
    pub sub: String,
    pub sid: String,
    /// When the user logged in (seconds since the epoch), the id_token's `auth_time`.
    pub auth_time: u64,
}

pub(super) struct RefreshGrant {
    pub sub: String,
    pub sid: String,
    pub auth_time: u64,
}

pub(super) struct IssuerState {
    pub keys: KeySet,
    pub users: HashMap<String, User>,
    pub default_user: String,
    pub codes: HashMap<String, CodeGrant>,
    pub refresh_tokens: HashMap<String, RefreshGrant>,
    pub access_tokens: HashMap<String, String>,
    pub id_token_fault: Option<IdTokenFault>,
    pub token_faults: TokenFaults,
    pub outage: IssuerOutage,
    /// How many times each refresh token was presented at the token endpoint.
    pub refresh_presentations: HashMap<String, u32>,
    pub calls: HashMap<&'static str, u64>,
    pub access_token_lifetime: std::time::Duration,
    pub revoked: Vec<String>,
    /// `sub` → the `sid` of its last login.
    pub last_sid: HashMap<String, String>,
    /// Form-login mode: `sub` → password.
    pub passwords: HashMap<String, String>,
    /// Form-login mode: authorize requests waiting for the login (and consent) form, by id, with
    /// the user once the login form was passed.
    pub pending: HashMap<String, (HashMap<String, String>, Option<String>)>,
}

impl IssuerState {
    pub fn user(&mut self, hint: Option<&str>) -> User {
        let sub = hint.unwrap_or(&self.default_user).to_owned();
        self.users.entry(sub.clone()).or_insert_with(|| User::new(&sub)).clone()
    }
}

pub(super) fn random_token(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}
