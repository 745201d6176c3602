//! [`NodeCache`]: sessions this node opened recently, kept in its memory, so that a request in
//! steady state costs no Redis round trip, while a session that ends or changes on any node
//! stops being served from every node's memory within milliseconds.
//!
//! How it stays coherent:
//! - Every write that ends or changes a session (logout, back-channel logout, token refresh, the
//!   absolute lifetime) publishes the session's store key on a Redis pub/sub channel after the
//!   write; every node listens and drops that entry.
//! - While this node's listener is not subscribed (starting, a Redis outage, a dropped
//!   connection), notices may be missed: the cache is emptied and not used until it is
//!   subscribed again.
//! - A read from Redis that raced with a notice is not kept: every notice moves a generation
//!   counter, and an entry is taken back when the counter moved while it was read or stored.
//! - An entry is served for at most `max_age`; the next request reads Redis again with `GETEX`,
//!   which is what slides the session's idle timeout in Redis.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::Session;
use crate::redis_link::{RedisLink, Retry};
use crate::session::StoreError;

struct Cached {
    /// Shared with every request that reads it: a hit copies no token.
    session: Arc<Session>,
    until: Instant,
}

pub struct NodeCache {
    entries: quick_cache::sync::Cache<String, Arc<Cached>>,
    max_age: Duration,
    /// Moves on every notice and whenever the cache is switched on or off.
    generation: AtomicU64,
    /// Subscribed to the notices: only then may entries be served.
    live: AtomicBool,
    link: Arc<RedisLink>,
    channel: String,
}

static HITS: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("bff_session_cache_total", "result" => "hit"));
static MISSES: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("bff_session_cache_total", "result" => "miss"));

/// How often the listener checks that its connection still answers.
const PING_EVERY: Duration = Duration::from_secs(5);

/// How long the listener waits before subscribing again after a failure.
const RETRY_EVERY: Duration = Duration::from_millis(250);

impl NodeCache {
    pub fn new(link: Arc<RedisLink>, key_prefix: &str, max_age: Duration, capacity: usize) -> Arc<Self> {
        Arc::new(NodeCache {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
            max_age,
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
            link,
            channel: format!("{key_prefix}:session-changed"),
        })
    }

    /// Whether entries are served (the listener is subscribed).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// The session under `key`, when this node read it less than `max_age` ago and no notice
    /// about it came since.
    pub fn get(&self, key: &str) -> Option<Arc<Session>> {
        if !self.is_live() {
            return None;
        }
        match self.entries.get(key) {
            Some(cached) if cached.until > Instant::now() => {
                HITS.increment(1);
                Some(cached.session.clone())
            }
            Some(_) => {
                self.entries.remove(key);
                MISSES.increment(1);
                None
            }
            None => {
                MISSES.increment(1);
                None
            }
        }
    }

    /// Taken before reading a session from the store, handed to [`NodeCache::keep`] after.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Keeps what was read from the store, unless a notice came since `seen` (what was read may
    /// already be stale).
    pub fn keep(&self, key: &str, session: &Arc<Session>, seen: u64) {
        if !self.is_live() || self.generation() != seen {
            return;
        }
        let cached = Cached { session: session.clone(), until: Instant::now() + self.max_age };
        self.entries.insert(key.to_owned(), Arc::new(cached));
        // A notice that moved the counter before this insert may have removed the key before it
        // was inserted: take it back.
        if self.generation() != seen {
            self.entries.remove(key);
        }
    }

    fn forget(&self, key: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(key);
    }

    fn switch(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }

    /// Tells every node (this one included) that these sessions changed or ended; called after
    /// the store was written.
    pub async fn changed(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        for key in keys {
            self.forget(key);
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("PUBLISH").arg(&self.channel).arg(key).ignore();
        }
        // A notice says "read it again": two of them do no harm. Safe to repeat.
        self.link.pipeline::<()>(&pipe, Retry::Safe).await
    }

    /// Listens for notices for as long as the node runs, subscribing again after every
    /// connection loss; the cache is live only while subscribed.
    pub fn listen_in_background(self: &Arc<Self>) {
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                let Err(error) = cache.listen().await;
                if cache.is_live() {
                    tracing::warn!(%error, "session cache off until change notices are received again");
                    // The command connection most likely broke with this one: a PING now lets it
                    // reconnect before a user's request finds it broken (a one-time login state
                    // or a logout index cannot be read twice).
                    let _: Result<String, _> = cache.link.query(&redis::cmd("PING"), Retry::Safe).await;
                }
                cache.switch(false);
                tokio::time::sleep(RETRY_EVERY).await;
            }
        });
    }

    /// One subscription, until its connection fails.
    async fn listen(&self) -> Result<std::convert::Infallible, redis::RedisError> {
        let timeout = self.link.timeout();
        let client = self.link.pubsub_client().await.map_err(|error| {
            redis::RedisError::from((redis::ErrorKind::Io, "no redis to subscribe on", error.to_string()))
        })?;
        let pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
            .await
            .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        let (mut sink, mut notices) = pubsub.split();
        sink.subscribe(&self.channel).await?;
        self.switch(true);
        tracing::info!("session cache on: subscribed to change notices");
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        loop {
            tokio::select! {
                notice = notices.next() => match notice {
                    Some(notice) => match notice.get_payload::<String>() {
                        Ok(key) => self.forget(key.as_str()),
                        Err(_) => self.switch(true),
                    },
                    None => return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()),
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => return Err(error),
                        Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            created_at: 0,
            claims: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            id_token: "id".into(),
            access_token: "at".into(),
            refresh_token: None,
            access_token_expires_at: None,
            bearer: Default::default(),
        }
    }

    fn cache(max_age: Duration) -> Arc<NodeCache> {
        // No I/O happens until the listener starts, which these tests do not do.
        let link = RedisLink::new("redis://127.0.0.1:1", Duration::from_secs(1)).unwrap();
        let cache = NodeCache::new(link, "test", max_age, 10);
        cache.switch(true);
        cache
    }

    #[tokio::test]
    async fn serves_what_it_kept_until_a_notice_or_its_age_runs_out() {
        let cache = cache(Duration::from_secs(60));
        cache.keep("s:a", &Arc::new(session()), cache.generation());
        assert!(cache.get("s:a").is_some());
        cache.forget("s:a");
        assert!(cache.get("s:a").is_none());

        let short = self::cache(Duration::from_millis(1));
        short.keep("s:a", &Arc::new(session()), short.generation());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(short.get("s:a").is_none(), "older than max_age");
    }

    #[tokio::test]
    async fn a_read_that_raced_with_a_notice_is_not_kept() {
        let cache = cache(Duration::from_secs(60));
        let seen = cache.generation();
        cache.forget("s:other"); // a notice arrives while the session is read from the store
        cache.keep("s:a", &Arc::new(session()), seen);
        assert!(cache.get("s:a").is_none());
    }

    #[tokio::test]
    async fn nothing_is_served_while_not_subscribed() {
        let cache = cache(Duration::from_secs(60));
        cache.keep("s:a", &Arc::new(session()), cache.generation());
        cache.switch(false);
        assert!(cache.get("s:a").is_none());
        cache.switch(true);
        assert!(cache.get("s:a").is_none(), "switching empties the cache");
    }
}
