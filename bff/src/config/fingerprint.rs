//! The settings every node of a deployment must share, as one list a verifier can compare
//! across nodes: one replica with another secret, key prefix, idle timeout or version is the
//! scale-out bug that a test of identical nodes never sees.
//!
//! Plain settings are shown as they are (a Redis password is never part of them). Secrets (the
//! client secret, the key-encryption key, the Redis password) are shown only as
//! HMAC-SHA256(key = the operator's `ops_token`, nonce ‖ name ‖ value), cut to 128 bits: equal on
//! nodes that share the secret, and useless for guessing the secret offline without the token.
//! The caller's fresh nonce keeps one answer from matching another.

use aws_lc_rs::hmac;
use serde::Serialize;

use super::{Config, KeyRingMode, SameSite, StoreConfig};

/// The version every node reports, a canary on another release shows here; behind a marker
/// that finds it in a binary.
const BUILD: &str = concat!("bff-version:", env!("CARGO_PKG_VERSION"));

/// This build's version.
pub fn version() -> &'static str {
    // Read at run time from the marker's bytes, so that a copy of the binary with another
    // version behind the marker (a test's canary) reports that version.
    std::hint::black_box(BUILD).trim_start_matches("bff-version:")
}

/// One must-agree setting.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    /// The value, or for a secret its keyed digest (`none` when unset).
    pub value: String,
    pub secret: bool,
}

/// Every setting that must agree across nodes, secrets digested under `token` and `nonce`.
pub fn settings(config: &Config, token: &str, nonce: &str) -> Vec<Setting> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
    let digest = |name: &'static str, value: Option<&[u8]>| -> Setting {
        let value = match value {
            None => "none".to_owned(),
            Some(bytes) => {
                let mut ctx = hmac::Context::with_key(&key);
                for part in [nonce.as_bytes(), b"\0", name.as_bytes(), b"\0", bytes] {
                    ctx.update(part);
                }
                hex::encode(&ctx.sign().as_ref()[..16])
            }
        };
        Setting { name, value, secret: true }
    };
    let plain = |name: &'static str, value: String| Setting { name, value, secret: false };
    let duration = |d: std::time::Duration| humantime::format_duration(d).to_string();

    let mut out = vec![plain("version", version().to_owned())];
    match &config.store {
        StoreConfig::Memory => out.push(plain("store", "memory".into())),
        StoreConfig::Redis { url, key_prefix, .. } => {
            let target = crate::redis_link::RedisTarget::parse(url).ok();
            let address = target.as_ref().map(|t| t.address()).unwrap_or_default();
            let db = target.as_ref().map(|t| t.db()).unwrap_or(0);
            let password = target.as_ref().and_then(|t| t.password().map(String::into_bytes));
            out.push(plain("store", "redis".into()));
            out.push(plain("redis.address", address));
            out.push(plain("redis.db", db.to_string()));
            out.push(plain("redis.key_prefix", key_prefix.clone()));
            out.push(digest("redis.password", password.as_deref()));
        }
    }
    out.push(plain(
        "key_ring",
        match config.key_ring.mode {
            KeyRingMode::Redis => "redis",
            KeyRingMode::Local => "local",
        }
        .into(),
    ));
    out.push(digest("key_encryption_key", config.key_ring.key_encryption_key.as_ref().map(|k| &k[..])));
    out.push(plain("oidc.authority", config.oidc.authority.to_string()));
    out.push(plain("oidc.client_id", config.oidc.client_id.clone()));
    out.push(digest("oidc.client_secret", Some(config.oidc.client_secret.as_bytes())));
    out.push(plain("oidc.scopes", config.oidc.scopes.join(" ")));
    out.push(plain("session.cookie_name", config.cookie_name().to_owned()));
    out.push(plain(
        "session.same_site",
        match config.session.same_site {
            SameSite::Lax => "lax",
            SameSite::Strict => "strict",
        }
        .into(),
    ));
    out.push(plain("session.idle_timeout", duration(config.session.idle_timeout)));
    out.push(plain("session.absolute_lifetime", duration(config.session.absolute_lifetime)));
    out.push(plain("account_prefix", config.account_prefix.clone()));
    out.push(plain("public_url", config.public_url.to_string()));
    let routes: Vec<String> = config
        .routes
        .iter()
        .map(|r| {
            let upstreams: Vec<String> = r.upstreams.iter().map(|u| u.to_string()).collect();
            format!("{} {:?} → {} as {}", r.path, r.auth, upstreams.join(","), r.rewrite)
        })
        .collect();
    out.push(plain("routes", if routes.is_empty() { "none".into() } else { routes.join("; ") }));
    out.push(plain(
        "csrf",
        if config.csrf.enabled { format!("{}: {}", config.csrf.header, config.csrf.value) } else { "off".into() },
    ));
    out
}
