//! The settings every node of a deployment must share, as one list a verifier can compare
//! across nodes: one replica with another secret, key prefix, idle timeout or version is the
//! scale-out bug that a test of identical nodes never sees.
//!
//! Plain settings are shown as they are (a Redis password is never part of them). Secrets (the
//! client secret, the key-encryption key, the Redis password, the sentinels' password) are shown
//! only as HMAC-SHA256(key = [`digest_key`] of the operator's `ops_token`, nonce ‖ name ‖
//! value), cut to 128 bits: equal on nodes that share the secret, and useless for guessing the
//! secret offline without the token. The caller's fresh nonce keeps one answer from matching
//! another. The HMAC key is derived from the token (HKDF-SHA256 with a label of its own), not
//! the token itself: a token that is the credential of the endpoint is not also a key whose
//! outputs the endpoint's callers collect, and a future use of the token as a key gets another
//! label.

use aws_lc_rs::{hkdf, hmac};
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

/// The key of the secrets' digests: HKDF-SHA256 of the ops token, for this use only.
fn digest_key(token: &str) -> hmac::Key {
    hkdf::Salt::new(hkdf::HKDF_SHA256, b"bff ops token")
        .extract(token.as_bytes())
        .expand(&[b"fingerprint digests v1"], hmac::HMAC_SHA256)
        .expect("an HMAC-SHA256 key is a valid HKDF-SHA256 output length")
        .into()
}

/// Every setting that must agree across nodes, secrets digested under `token` and `nonce`.
pub fn settings(config: &Config, token: &str, nonce: &str) -> Vec<Setting> {
    let key = digest_key(token);
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
        StoreConfig::Redis { url, key_prefix, sentinel, .. } => {
            let target = crate::redis_link::RedisTarget::parse(url).ok();
            let address = target.as_ref().map(|t| t.address()).unwrap_or_default();
            let db = target.as_ref().map(|t| t.db()).unwrap_or(0);
            let password = target.as_ref().and_then(|t| t.password().map(String::into_bytes));
            out.push(plain("store", "redis".into()));
            out.push(plain("redis.address", address));
            out.push(plain("redis.db", db.to_string()));
            out.push(plain("redis.key_prefix", key_prefix.clone()));
            out.push(digest("redis.password", password.as_deref()));
            if matches!(target, Some(crate::redis_link::RedisTarget::Sentinel { .. })) {
                let masters: Vec<String> = sentinel.masters.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                out.push(plain(
                    "redis.sentinel_masters",
                    if masters.is_empty() { "any".into() } else { masters.join(",") },
                ));
                out.push(plain("redis.sentinel_username", sentinel.username.clone().unwrap_or_else(|| "none".into())));
                out.push(digest("redis.sentinel_password", sentinel.password.as_deref().map(str::as_bytes)));
            }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config() -> Config {
        config_with(&[])
    }

    fn config_with(extra: &[(&str, &str)]) -> Config {
        let vars: HashMap<String, String> = [
            ("BFF_PUBLIC_URL", "http://localhost:8080"),
            ("BFF_OIDC_AUTHORITY", "http://issuer.test"),
            ("BFF_OIDC_CLIENT_ID", "client"),
            ("BFF_OIDC_CLIENT_SECRET", "the-client-secret"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::from_env_map(&vars).unwrap()
    }

    fn redis_settings(url: &str) -> Vec<(&'static str, String)> {
        let config = config_with(&[("BFF_REDIS_URL", url), ("BFF_KEY_RING", "local")]);
        settings(&config, "0123456789abcdef0123", "00112233445566778899")
            .into_iter()
            .filter(|s| s.name.starts_with("redis."))
            .map(|s| (s.name, s.value))
            .collect()
    }

    #[test]
    fn a_clusters_seed_nodes_are_covered_in_any_order_and_differ_from_one_shard() {
        let a = redis_settings("redis+cluster://:pw@10.0.0.2:7001,10.0.0.1:7000");
        assert!(a.contains(&("redis.address", "redis+cluster://10.0.0.1:7000,10.0.0.2:7001".into())), "{a:?}");
        assert_eq!(a, redis_settings("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001"), "order does not matter");
        assert_ne!(a, redis_settings("redis+cluster://:pw@10.0.0.1:7000,10.0.0.3:7001"), "another seed differs");
        assert_ne!(a, redis_settings("redis+cluster://:other@10.0.0.1:7000,10.0.0.2:7001"), "another password differs");
        assert_ne!(a, redis_settings("redis://:pw@10.0.0.1:7000"), "a single-server URL into one shard differs");
    }

    fn client_secret_digest(token: &str, nonce: &str) -> String {
        settings(&config(), token, nonce).into_iter().find(|s| s.name == "oidc.client_secret").unwrap().value
    }

    #[test]
    fn secrets_are_digested_under_a_key_derived_from_the_token_not_the_token() {
        let (token, nonce) = ("0123456789abcdef0123", "00112233445566778899");
        let digest = client_secret_digest(token, nonce);
        let mut keyed_by_token = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes()));
        for part in [nonce.as_bytes(), b"\0", b"oidc.client_secret", b"\0", b"the-client-secret"] {
            keyed_by_token.update(part);
        }
        assert_ne!(digest, hex::encode(&keyed_by_token.sign().as_ref()[..16]), "the ops token is the HMAC key");
        assert_eq!(digest, client_secret_digest(token, nonce), "the same on every node");
        assert_ne!(digest, client_secret_digest("another-token-of-16+", nonce));
        assert_ne!(digest, client_secret_digest(token, "99887766554433221100"));
    }
}
