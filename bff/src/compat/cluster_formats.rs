//! The record formats of the builds sharing a Redis, announced by each node: the Redis hash
//! `{prefix}:formats`, one field per format (`"2"`) holding the version of the build that last
//! announced it and when (`"0.2.0 1767000000"`).
//!
//! A node announces its format at start and every `key_ring_refresh` after; an announcement
//! counts for `lifetime` (the session absolute lifetime plus one refresh): records written in a
//! format can live that long after the last node writing it stopped. Before it serves, a node
//! reads the hash and refuses to start if a live announcement is of a format outside what it
//! reads and writes for ([`super::readable`]), naming both versions. bff 0.1.0 (format 1)
//! announces nothing: a format-2 build reads its records, but a build of format 3 or more would
//! neither read them nor see a 0.1.0 node in the hash (`docs/src/upgrades.md` says how to roll
//! past it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::redis_link::{RedisLink, Retry};
use crate::session::now_secs;
use crate::store_error::StoreError;

/// The cluster is outside this build's window, or its announcements could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FormatError {
    #[error(
        "bff {ours} (record format {written}) does not start here: record format {theirs} (written by bff \
         {their_version}) is in use in this Redis ({key}), and bff {ours} reads and writes for formats {lowest} to \
         {highest} only: finish the roll to a build that reads both, or roll back"
    )]
    Outside { theirs: u8, their_version: String, ours: &'static str, written: u8, lowest: u8, highest: u8, key: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One live announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub format: u8,
    /// The version of the build that last announced it.
    pub version: String,
    /// Unix seconds of the last announcement.
    pub seen: u64,
}

pub struct ClusterFormats {
    link: Arc<RedisLink>,
    key: String,
    lifetime: Duration,
    /// The start-up check passed and announced this build: the background task waits one
    /// period before its first announcement.
    announced_at_start: AtomicBool,
    /// Why this node must not serve, when a later check found a live format it does not read
    /// (builds started together, each checked before the other announced): `/ready` answers 503
    /// with it, so that a load balancer stops sending this node requests whose records it would
    /// take for absent. Cleared when a check passes again (the other build is gone).
    refusal: std::sync::RwLock<Option<String>>,
}

impl ClusterFormats {
    /// Announcements under `{prefix}:formats`, each counting for `lifetime`.
    pub fn new(link: Arc<RedisLink>, prefix: &str, lifetime: Duration) -> Arc<Self> {
        Arc::new(ClusterFormats {
            link,
            key: format!("{prefix}:formats"),
            lifetime,
            announced_at_start: AtomicBool::new(false),
            refusal: std::sync::RwLock::new(None),
        })
    }

    /// Why this node must not serve now (see the field), if it must not.
    pub fn refusal(&self) -> Option<String> {
        self.refusal.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn refuse(&self, why: Option<String>) {
        *self.refusal.write().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// The announcements that still count.
    pub async fn live(&self) -> Result<Vec<Announced>, StoreError> {
        let fields: std::collections::HashMap<String, String> =
            self.link.query(redis::cmd("HGETALL").arg(&self.key), Retry::Safe).await?;
        let now = now_secs();
        let mut live: Vec<Announced> = fields
            .into_iter()
            .filter_map(|(field, value)| {
                let format = field.parse().ok()?;
                let (version, seen) = value.rsplit_once(' ')?;
                let seen: u64 = seen.parse().ok()?;
                (now.saturating_sub(seen) <= self.lifetime.as_secs()).then(|| Announced {
                    format,
                    version: version.to_owned(),
                    seen,
                })
            })
            .collect();
        live.sort_by_key(|a| a.format);
        Ok(live)
    }

    /// Refuses a cluster where a live announcement is of a format this build does not read and
    /// write for.
    pub async fn check(&self) -> Result<(), FormatError> {
        let readable = super::readable();
        match self.live().await?.into_iter().find(|a| !readable.contains(&a.format)) {
            None => Ok(()),
            Some(outside) => Err(FormatError::Outside {
                theirs: outside.format,
                their_version: outside.version,
                ours: crate::config::fingerprint::version(),
                written: super::written(),
                lowest: *readable.start(),
                highest: *readable.end(),
                key: self.key.clone(),
            }),
        }
    }

    /// Announces this build's format; the hash lives as long as its newest announcement counts.
    pub async fn announce(&self) -> Result<(), StoreError> {
        let value = format!("{} {}", crate::config::fingerprint::version(), now_secs());
        let mut pipe = redis::pipe();
        pipe.cmd("HSET").arg(&self.key).arg(super::written().to_string()).arg(value).ignore();
        pipe.cmd("EXPIRE").arg(&self.key).arg(self.lifetime.as_secs().max(1)).ignore();
        // The same field and value again: safe to repeat.
        self.link.pipeline::<()>(&pipe, Retry::Safe).await
    }

    /// At start: when Redis answers within `wait`, checks the cluster and announces this build
    /// (a refusal stops the start); when it does not, the check runs in the background once
    /// Redis answers, and a node outside the window never announces itself and logs why.
    pub async fn check_at_start(self: &Arc<Self>, wait: Duration) -> Result<(), FormatError> {
        if tokio::time::timeout(wait, self.link.connect()).await.is_err() {
            tracing::warn!("redis unreachable at start-up: the record format check runs when it answers");
            return Ok(());
        }
        match self.check().await {
            Err(FormatError::Store(error)) => {
                tracing::warn!(%error, "record format check failed at start-up; it runs again in the background");
                Ok(())
            }
            Err(outside) => Err(outside),
            Ok(()) => {
                match self.announce().await {
                    Ok(()) => self.announced_at_start.store(true, Ordering::Relaxed),
                    Err(error) => {
                        tracing::warn!(%error, "record format announcement failed; it runs again in the background")
                    }
                }
                Ok(())
            }
        }
    }

    /// Announces again every `every` (and checks first, for a start that could not).
    pub fn announce_in_background(self: &Arc<Self>, every: Duration) {
        let formats = self.clone();
        tokio::spawn(async move {
            if formats.announced_at_start.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
            }
            loop {
                formats.link.connect().await;
                match formats.check().await {
                    Err(error @ FormatError::Outside { .. }) => {
                        tracing::error!(%error, "this node must not serve in this cluster: not ready, not announcing it");
                        formats.refuse(Some(error.to_string()));
                    }
                    Err(error) => tracing::warn!(%error, "record format check failed; trying again"),
                    Ok(()) => {
                        formats.refuse(None);
                        if let Err(error) = formats.announce().await {
                            tracing::warn!(%error, "record format announcement failed; trying again");
                        }
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
    }
}
