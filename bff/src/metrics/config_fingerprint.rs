//! The drift fingerprint as a gauge: `bff_config_fingerprint{setting, digest} 1`, one series per
//! setting every node must share ([`crate::config::fingerprint`]), set once at start. Nodes that
//! agree have the same digests; a replica with another client secret, key prefix or idle timeout
//! shows another `digest` for that setting, so a Prometheus rule finds drift without bffctl
//! (`count by (setting) (count by (setting, digest) (bff_config_fingerprint)) > 1`).
//!
//! Plain settings are shown as SHA-256 of the value, cut to 128 bits (short labels; the values
//! are in `/ops/fingerprint`). Secrets are shown as the fingerprint's keyed digest under the ops
//! token, with a nonce of their own (`metrics`, which the endpoint never accepts: its answers
//! never match these): equal across nodes that share the token and the secret, useless for
//! guessing the secret without the token. Without an `ops_token` the secrets are left out: a
//! digest under a key whoever scrapes can know would let them test guesses of the secret.

use aws_lc_rs::digest::{SHA256, digest};

use crate::config::{Config, fingerprint};

/// The nonce of the gauge's secret digests: not hex, so `GET /ops/fingerprint` refuses it.
const NONCE: &str = "metrics";

/// The gauge's `(setting, digest)` pairs for `config`.
pub fn series(config: &Config) -> Vec<(&'static str, String)> {
    let token = config.ops_token.as_deref();
    fingerprint::settings(config, token.unwrap_or_default(), NONCE)
        .into_iter()
        .filter(|setting| !setting.secret || token.is_some())
        .map(|setting| {
            let shown = match setting.secret {
                true => setting.value,
                false => {
                    let plain = digest(&SHA256, format!("{}\0{}", setting.name, setting.value).as_bytes());
                    hex::encode(&plain.as_ref()[..16])
                }
            };
            (setting.name, shown)
        })
        .collect()
}

/// Sets the gauge for this node's configuration.
pub fn publish(config: &Config) {
    let _ = super::handle();
    for (setting, shown) in series(config) {
        metrics::gauge!("bff_config_fingerprint", "setting" => setting, "digest" => shown).set(1.0);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(secret: &str, token: Option<&str>) -> Config {
        let mut vars: HashMap<String, String> = [
            ("BFF_PUBLIC_URL", "http://localhost:8080"),
            ("BFF_OIDC_AUTHORITY", "http://issuer.test"),
            ("BFF_OIDC_CLIENT_ID", "client"),
            ("BFF_OIDC_CLIENT_SECRET", secret),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(token) = token {
            vars.insert("BFF_OPS_TOKEN".into(), token.into());
        }
        Config::from_env_map(&vars).unwrap()
    }

    fn shown(series: &[(&str, String)], name: &str) -> Option<String> {
        series.iter().find(|(setting, _)| *setting == name).map(|(_, shown)| shown.clone())
    }

    #[test]
    fn nodes_that_share_a_setting_show_one_digest_and_a_drifted_secret_shows_another() {
        let token = Some("0123456789abcdef0123");
        let (a, b, drifted) = (
            series(&config("secret-1", token)),
            series(&config("secret-1", token)),
            series(&config("secret-2", token)),
        );
        assert_eq!(a, b);
        assert_ne!(shown(&a, "oidc.client_secret"), shown(&drifted, "oidc.client_secret"));
        assert_eq!(shown(&a, "oidc.client_id"), shown(&drifted, "oidc.client_id"));
        let secret = shown(&a, "oidc.client_secret").unwrap();
        assert_eq!(secret.len(), 32);
        assert!(!secret.contains("secret-1"));
    }

    #[test]
    fn without_an_ops_token_secrets_are_left_out() {
        let series = series(&config("secret-1", None));
        assert_eq!(shown(&series, "oidc.client_secret"), None);
        assert!(shown(&series, "oidc.client_id").is_some());
    }
}
