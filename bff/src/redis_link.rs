//! One shared, self-healing Redis connection for the whole node.
//!
//! A node must start even when Redis is down, stay not-ready, and become ready once Redis
//! appears; and it must ride out a Redis restart without being restarted itself. The redis
//! crate's `ConnectionManager` reconnects after it has connected once, but refuses to be built
//! while Redis is unreachable, so [`RedisLink`] keeps trying to build it in the background and
//! answers [`StoreError::Unavailable`] until it exists. Every command is bounded by
//! `redis_timeout`, so an outage costs a request a 503, never a hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Notify, OnceCell};

use crate::session::StoreError;

pub struct RedisLink {
    client: redis::Client,
    timeout: Duration,
    manager: OnceCell<ConnectionManager>,
    /// Set when a command failed: Redis may have restarted empty, so what this node keeps in
    /// Redis for everyone (the key ring) must be checked again.
    trouble: AtomicBool,
    trouble_seen: Notify,
}

impl RedisLink {
    /// Parses the URL; connecting happens in [`RedisLink::connect_in_background`].
    pub fn new(url: &str, timeout: Duration) -> Result<Arc<Self>, redis::RedisError> {
        Ok(Arc::new(RedisLink {
            client: redis::Client::open(url)?,
            timeout,
            manager: OnceCell::new(),
            trouble: AtomicBool::new(false),
            trouble_seen: Notify::new(),
        }))
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
    }

    /// Tries to connect until it succeeds; returns at once when already connected. Concurrent
    /// callers share one attempt.
    pub async fn connect(&self) {
        let mut delay = Duration::from_millis(100);
        loop {
            let attempt = self
                .manager
                .get_or_try_init(|| async {
                    let manager =
                        ConnectionManager::new_with_config(self.client.clone(), self.manager_config()).await?;
                    tracing::info!("connected to redis");
                    Ok::<_, redis::RedisError>(manager)
                })
                .await;
            match attempt {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?delay, "redis unreachable");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// The client, for connections of their own (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The bound on every command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn connect_in_background(self: &Arc<Self>) {
        let link = self.clone();
        tokio::spawn(async move { link.connect().await });
    }

    /// A handle on the shared connection (cheap to clone), or `Unavailable` before the first
    /// connection succeeded.
    pub fn conn(&self) -> Result<ConnectionManager, StoreError> {
        self.manager.get().cloned().ok_or_else(|| StoreError::Unavailable("not connected to redis yet".into()))
    }

    /// Runs one command, mapping every failure to `Unavailable`.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        cmd.query_async(&mut conn).await.map_err(|error| self.failed(error))
    }

    /// Runs a pipeline (one round trip).
    pub async fn pipeline<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        pipe.query_async(&mut conn).await.map_err(|error| self.failed(error))
    }

    fn failed(&self, error: redis::RedisError) -> StoreError {
        self.report_trouble();
        StoreError::from(error)
    }

    /// Wakes whoever waits in [`RedisLink::trouble`]: Redis may have lost what this node keeps
    /// there.
    pub fn report_trouble(&self) {
        self.trouble.store(true, Ordering::Relaxed);
        self.trouble_seen.notify_waiters();
    }

    /// Waits until a command fails (returns at once if one failed since the last call), and
    /// clears the flag.
    pub async fn trouble(&self) {
        loop {
            let seen = self.trouble_seen.notified();
            if self.trouble.swap(false, Ordering::Relaxed) {
                return;
            }
            seen.await;
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        StoreError::Unavailable(format!("redis: {error}"))
    }
}
