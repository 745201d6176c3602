//! The issuer's signing keys, cached, and kept current in two ways:
//!
//! - on a schedule: the JWKS is fetched again when its `Cache-Control: max-age` runs out (bounded
//!   to [`shortest_interval`]..[`LONGEST_INTERVAL`]; `oidc.jwks_refresh` without one), so a key
//!   the issuer withdrew stops being trusted without a restart;
//! - on demand: a `kid` not in the cache makes one refetch (at most one per
//!   [`REFETCH_AT_MOST_EVERY`]), which is how a node follows the issuer rotating its keys.
//!
//! Fetches are single-flight: one at a time, and a caller that waited for someone else's fetch
//! uses its result instead of fetching again. The keys themselves are swapped in whole once a
//! fetch has finished; no lock on them is held across the HTTP request, so a token whose `kid` is
//! known never waits behind a slow fetch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::OidcError;

const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// The longest a JWKS is trusted without fetching it again, whatever its `max-age` says.
pub const LONGEST_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The shortest scheduled interval: a `max-age` of 0 must not make every node hammer the issuer.
/// It is one minute, or the configured interval when that is shorter.
pub fn shortest_interval(configured: Duration) -> Duration {
    configured.min(Duration::from_secs(60))
}

/// When to fetch the JWKS next: after the response's `max-age` (bounded), or after `configured`
/// when it has none.
pub fn next_interval(cache_control: Option<&str>, configured: Duration) -> Duration {
    let max_age = cache_control.and_then(|value| {
        value.split(',').find_map(|directive| {
            let (name, seconds) = directive.trim().split_once('=')?;
            name.trim().eq_ignore_ascii_case("max-age").then(|| seconds.trim().trim_matches('"').parse::<u64>().ok())?
        })
    });
    match max_age {
        Some(seconds) => Duration::from_secs(seconds).clamp(shortest_interval(configured), LONGEST_INTERVAL),
        None => configured.min(LONGEST_INTERVAL),
    }
}

#[derive(Default)]
struct FetchState {
    /// When the last fetch finished, and how long its keys may be used before the scheduled one.
    last: Option<(Instant, Duration)>,
    /// When an unknown `kid` last made a fetch: a stream of forged `kid`s costs the issuer at
    /// most one fetch per [`REFETCH_AT_MOST_EVERY`] (scheduled fetches do not count).
    last_for_unknown_kid: Option<Instant>,
}

pub(super) struct JwksCache {
    keys: RwLock<Arc<Vec<Jwk>>>,
    /// Held by the one fetch in flight.
    fetch: Mutex<FetchState>,
    /// Fetches finished so far: a caller that saw this change while it waited for the lock had
    /// its fetch done for it.
    fetches: AtomicU64,
    /// `oidc.jwks_refresh`: the interval when the issuer gives no `max-age`.
    configured: Duration,
}

impl JwksCache {
    pub fn new(configured: Duration) -> Self {
        JwksCache { keys: RwLock::default(), fetch: Mutex::default(), fetches: AtomicU64::new(0), configured }
    }

    /// Fetches the JWKS now (after any fetch in flight).
    pub async fn refresh(&self, http: &reqwest::Client, uri: &Url) -> Result<(), OidcError> {
        let mut state = self.fetch.lock().await;
        let interval = self.fetch_now(http, uri).await?;
        state.last = Some((Instant::now(), interval));
        Ok(())
    }

    /// One HTTP fetch; swaps the keys in and returns when to fetch next. Only the single-flight
    /// lock is held meanwhile, never the keys.
    async fn fetch_now(&self, http: &reqwest::Client, uri: &Url) -> Result<Duration, OidcError> {
        let sent = tracing::Instrument::instrument(http.get(uri.clone()).send(), crate::traces::spans::issuer("jwks"));
        let response = sent.await.map_err(|e| OidcError::Unreachable(format!("jwks: {e}")))?;
        if !response.status().is_success() {
            return Err(OidcError::Unreachable(format!("jwks answered {}", response.status())));
        }
        let cache_control =
            response.headers().get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body: serde_json::Value =
            response.json().await.map_err(|e| OidcError::BadIssuerResponse(format!("jwks: {e}")))?;
        // Keys of a kind this client does not know are skipped, not fatal.
        let keys: Vec<Jwk> = body
            .get("keys")
            .and_then(|k| k.as_array())
            .map(|keys| keys.iter().filter_map(|k| serde_json::from_value(k.clone()).ok()).collect())
            .unwrap_or_default();
        *self.keys.write().expect("jwks lock") = Arc::new(keys);
        self.fetches.fetch_add(1, Ordering::Release);
        Ok(next_interval(cache_control.as_deref(), self.configured))
    }

    /// The key for `kid` (or the only key when the token names none).
    pub fn find(&self, kid: Option<&str>) -> Option<Jwk> {
        let keys = self.keys.read().expect("jwks lock").clone();
        match kid {
            Some(kid) => keys.iter().find(|k| k.common.key_id.as_deref() == Some(kid)).cloned(),
            None if keys.len() == 1 => keys.first().cloned(),
            None => None,
        }
    }

    /// Refetches unless a fetch finished very recently (including one this caller waited for);
    /// returns whether it fetched.
    pub async fn refetch_for_unknown_kid(&self, http: &reqwest::Client, uri: &Url) -> Result<bool, OidcError> {
        let seen = self.fetches.load(Ordering::Acquire);
        let mut state = self.fetch.lock().await;
        if self.fetches.load(Ordering::Acquire) != seen
            || state.last_for_unknown_kid.is_some_and(|at| at.elapsed() < REFETCH_AT_MOST_EVERY)
        {
            return Ok(false);
        }
        state.last_for_unknown_kid = Some(Instant::now());
        let interval = self.fetch_now(http, uri).await?;
        state.last = Some((Instant::now(), interval));
        Ok(true)
    }

    /// How long until the scheduled fetch is due (zero when it is, or nothing was fetched yet).
    pub async fn due_in(&self) -> Duration {
        match self.fetch.lock().await.last {
            Some((at, interval)) => interval.saturating_sub(at.elapsed()),
            None => Duration::ZERO,
        }
    }

    /// Keeps the keys current on the schedule; a failed fetch is retried sooner, and until one
    /// succeeds the keys held stay in use.
    pub async fn refresh_on_schedule(&self, http: &reqwest::Client, uri: &Url) {
        loop {
            tokio::time::sleep(self.due_in().await).await;
            if self.due_in().await > Duration::ZERO {
                continue; // an unknown kid fetched meanwhile
            }
            if let Err(error) = self.refresh(http, uri).await {
                let retry = shortest_interval(self.configured).min(Duration::from_secs(10));
                tracing::warn!(%error, retry_in = ?retry, "JWKS refresh failed; keeping the keys held");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn max_age_is_honoured_within_bounds() {
        assert_eq!(next_interval(Some("public, max-age=600"), HOUR), Duration::from_secs(600));
        assert_eq!(next_interval(Some("max-age=\"120\", must-revalidate"), HOUR), Duration::from_secs(120));
        assert_eq!(next_interval(Some("max-age=0"), HOUR), Duration::from_secs(60), "at least a minute");
        assert_eq!(next_interval(Some("max-age=9999999"), HOUR), LONGEST_INTERVAL);
        assert_eq!(next_interval(Some("no-cache"), HOUR), HOUR);
        assert_eq!(next_interval(Some("max-age=soon"), HOUR), HOUR);
        assert_eq!(next_interval(None, HOUR), HOUR);
        assert_eq!(next_interval(Some("max-age=0"), Duration::from_secs(2)), Duration::from_secs(2));
    }

    /// While one fetch hangs, a token with a known `kid` finds its key at once, and every caller
    /// with an unknown `kid` shares that one fetch.
    #[tokio::test]
    async fn a_slow_fetch_holds_up_neither_known_kids_nor_a_second_fetch() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers};
        let server = MockServer::start().await;
        let jwks = serde_json::json!({ "keys": [{ "kty": "oct", "kid": "known", "k": "c2VjcmV0" }] });
        Mock::given(matchers::any())
            .respond_with(ResponseTemplate::new(200).set_body_json(&jwks))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(matchers::any())
            .respond_with(ResponseTemplate::new(200).set_body_json(&jwks).set_delay(Duration::from_secs(2)))
            .mount(&server)
            .await;
        let cache = Arc::new(JwksCache::new(HOUR));
        let http = reqwest::Client::new();
        let uri: Url = server.uri().parse().unwrap();
        cache.refresh(&http, &uri).await.unwrap();
        assert!(cache.find(Some("known")).is_some());

        let unknown: Vec<_> = (0..5)
            .map(|_| {
                let (cache, http, uri) = (cache.clone(), http.clone(), uri.clone());
                tokio::spawn(async move { cache.refetch_for_unknown_kid(&http, &uri).await.unwrap() })
            })
            .collect();
        tokio::task::yield_now().await;
        let started = std::time::Instant::now();
        assert!(cache.find(Some("known")).is_some());
        assert!(started.elapsed() < Duration::from_millis(200), "a known kid waited for the fetch");
        let fetched = futures::future::join_all(unknown).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
        assert_eq!(fetched, 1, "one fetch for every unknown kid that arrived together");
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }
}
