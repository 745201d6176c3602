//! The issuer's signing keys, cached. A `kid` not in the cache makes one refetch (rate-limited),
//! which is how a node survives the issuer rotating its keys.

use std::sync::RwLock;
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::OidcError;

const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(super) struct JwksCache {
    keys: RwLock<Vec<Jwk>>,
    /// When an unknown `kid` last made a refetch: a stream of forged `kid`s costs the issuer
    /// at most one fetch per second.
    last_refetch: Mutex<Option<Instant>>,
}

impl JwksCache {
    pub async fn refresh(&self, http: &reqwest::Client, uri: &Url) -> Result<(), OidcError> {
        let response = http.get(uri.clone()).send().await.map_err(|e| OidcError::Unreachable(format!("jwks: {e}")))?;
        if !response.status().is_success() {
            return Err(OidcError::Unreachable(format!("jwks answered {}", response.status())));
        }
        let body: serde_json::Value =
            response.json().await.map_err(|e| OidcError::BadIssuerResponse(format!("jwks: {e}")))?;
        // Keys of a kind this client does not know are skipped, not fatal.
        let keys: Vec<Jwk> = body
            .get("keys")
            .and_then(|k| k.as_array())
            .map(|keys| keys.iter().filter_map(|k| serde_json::from_value(k.clone()).ok()).collect())
            .unwrap_or_default();
        *self.keys.write().expect("jwks lock") = keys;
        Ok(())
    }

    /// The key for `kid` (or the only key when the token names none).
    pub fn find(&self, kid: Option<&str>) -> Option<Jwk> {
        let keys = self.keys.read().expect("jwks lock");
        match kid {
            Some(kid) => keys.iter().find(|k| k.common.key_id.as_deref() == Some(kid)).cloned(),
            None if keys.len() == 1 => keys.first().cloned(),
            None => None,
        }
    }

    /// Refetches unless a fetch happened very recently; returns whether it fetched.
    pub async fn refetch_for_unknown_kid(&self, http: &reqwest::Client, uri: &Url) -> Result<bool, OidcError> {
        let mut last = self.last_refetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFETCH_AT_MOST_EVERY) {
            return Ok(false);
        }
        *last = Some(Instant::now());
        self.refresh(http, uri).await.map(|()| true)
    }
}
