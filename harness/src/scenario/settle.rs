//! After a fault that cut the nodes' links to the store (Redis restarted, failed over, links
//! reset), no read is judged until no node can answer it from a node cache filled before the
//! fault. Otherwise a store that lost every session passes: the next step's reads come back
//! from the nodes' memory within milliseconds, before any node has noticed.
//!
//! bff says what its cache may do in `/ready` (`session_cache`: `enabled`, `live`,
//! `confirmations`, which counts the times the node confirmed its change notices against a
//! store and emptied its cache). A node is settled when its cache is off, or not live (it reads
//! the store), or live under a confirmation made after the fault began. A gateway that says
//! nothing of the kind is held back for the scenario's `store_fault_settle_ms` when set; when
//! not, the report says that its reads after the fault may have come from a cache.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// How long nodes have to settle before the run says which did not.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// What one node's `/ready` says about its cache; `None` from a gateway that does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheState {
    pub enabled: bool,
    pub live: bool,
    pub confirmations: u64,
}

impl CacheState {
    fn from_ready(body: &Value) -> Option<CacheState> {
        let cache = body.get("session_cache")?;
        Some(CacheState {
            enabled: cache.get("enabled")?.as_bool()?,
            live: cache.get("live")?.as_bool()?,
            confirmations: cache.get("confirmations")?.as_u64()?,
        })
    }

    /// This node may not answer from a cache filled before `before` was read.
    fn settled_since(self, before: CacheState) -> bool {
        !self.enabled || !self.live || self.confirmations > before.confirmations
    }
}

/// Reads what each node's `/ready` says about its cache (`None` for a node that is down or
/// does not say).
pub async fn cache_states(http: &reqwest::Client, node_urls: &[Option<String>]) -> Vec<Option<CacheState>> {
    let reads = node_urls.iter().map(|url| async move {
        let url = format!("{}/ready", url.as_deref()?.trim_end_matches('/'));
        let response = http.get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
        CacheState::from_ready(&response.json::<Value>().await.ok()?)
    });
    futures::future::join_all(reads).await
}

/// How the nodes came out of a store fault.
#[derive(Debug, Default)]
pub struct Settled {
    /// Nodes that still served from a cache older than the fault when [`SETTLE_TIMEOUT`] ran
    /// out, with what they said.
    pub unsettled: Vec<(usize, String)>,
    /// Nodes that do not say when their cache is confirmed, when nothing held the reads back.
    pub unknown: Vec<usize>,
    pub waited: Duration,
}

/// Waits until every node that said how its cache stood `before` the fault has settled since
/// (see the module header), or [`SETTLE_TIMEOUT`]; then, for the nodes that do not say, waits
/// `settle` when given.
pub async fn after_store_fault(
    http: &reqwest::Client,
    node_urls: &[Option<String>],
    before: &[Option<CacheState>],
    settle: Option<Duration>,
) -> Settled {
    let started = Instant::now();
    let deadline = started + SETTLE_TIMEOUT;
    let mut waiting: Vec<usize> =
        (0..node_urls.len()).filter(|&i| before.get(i).copied().flatten().is_some()).collect();
    let mut last: Vec<Option<CacheState>> = vec![None; node_urls.len()];
    while !waiting.is_empty() {
        let now = cache_states(http, node_urls).await;
        waiting.retain(|&i| {
            last[i] = now[i];
            match (now[i], before[i]) {
                (Some(now), Some(before)) => !now.settled_since(before),
                // Down or not answering: nothing it could serve from memory; it is judged by
                // its readiness when it comes back.
                _ => false,
            }
        });
        if waiting.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unsettled = waiting
        .into_iter()
        .map(|i| {
            let said = last[i].map(|s| format!("live, {} confirmation(s) as before the fault", s.confirmations));
            (i, said.unwrap_or_else(|| "no answer".into()))
        })
        .collect();
    let silent: Vec<usize> = (0..node_urls.len())
        .filter(|&i| node_urls[i].is_some() && before.get(i).copied().flatten().is_none())
        .collect();
    let unknown = match settle {
        Some(time) if !silent.is_empty() => {
            tokio::time::sleep(time).await;
            Vec::new()
        }
        _ => silent,
    };
    Settled { unsettled, unknown, waited: started.elapsed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_settled_once_it_cannot_serve_what_it_cached_before() {
        let before = CacheState { enabled: true, live: true, confirmations: 3 };
        assert!(!before.settled_since(before), "live on the same confirmation: its cache may answer");
        assert!(CacheState { live: false, ..before }.settled_since(before), "not live: it reads the store");
        assert!(CacheState { confirmations: 4, ..before }.settled_since(before), "confirmed again");
        assert!(CacheState { enabled: false, ..before }.settled_since(before), "no cache");
    }

    #[test]
    fn the_ready_answer_is_read_only_when_it_says_everything() {
        let full = serde_json::json!({"status": "ready", "session_cache": {"enabled": true, "live": false, "confirmations": 2}});
        assert_eq!(CacheState::from_ready(&full), Some(CacheState { enabled: true, live: false, confirmations: 2 }));
        assert_eq!(CacheState::from_ready(&serde_json::json!({"status": "ready"})), None);
        assert_eq!(CacheState::from_ready(&serde_json::json!({"session_cache": {"enabled": true}})), None);
    }
}
