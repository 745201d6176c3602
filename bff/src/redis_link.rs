//! One shared, self-healing Redis connection for the whole node.
//!
//! A node must start even when Redis is down, stay not-ready, and become ready once Redis
//! appears; and it must ride out a Redis restart without being restarted itself. The redis
//! crate's `ConnectionManager` reconnects after it has connected once, but refuses to be built
//! while Redis is unreachable, so [`RedisLink`] keeps trying to build it in the background and
//! answers [`StoreError::Unavailable`] until it exists. Every command is bounded by
//! `redis_timeout`, so an outage costs a request a 503, never a hang.
//!
//! The shared connection learns that Redis went away (a restart) only when the next command
//! fails on it. That command is sent once more on the fresh connection the manager opens, but
//! only when its caller said, with [`Retry::Safe`], that running it twice does no harm: a
//! "broken pipe" does not tell whether the first attempt reached Redis.
//!
//! `rediss://` is TLS through rustls (redis-rs's `tokio-rustls-comp`), verified against the
//! system's roots or the CA of `redis_ca_file`. A server whose certificate does not verify is a
//! configuration error, not an outage: [`RedisLink::check_tls`] finds it at start-up, and the
//! node exits as for any bad setting instead of waiting for a Redis that will never do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Notify, OnceCell};

use crate::session::StoreError;

/// Whether a command may be sent a second time after its connection dropped. Every caller
/// decides, next to the command, and says why in a comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice has the effect of running it once, and the second answer is as good as
    /// the first (reads, `SET` of the same value, `DEL`, `EXPIRE`, a change notice).
    Safe,
    /// Its effect may have happened although the answer was lost, and a second run would
    /// answer differently in a way that does harm (a read-and-delete of an index whose loss
    /// would leave sessions behind, `SET NX` of a value others could also write).
    Never,
}

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
        Self::with_ca(url, timeout, None)
    }

    /// [`RedisLink::new`] for a `rediss://` server whose certificate chains to `ca_pem` (PEM)
    /// instead of the system's roots.
    pub fn with_ca(url: &str, timeout: Duration, ca_pem: Option<&[u8]>) -> Result<Arc<Self>, redis::RedisError> {
        let client = match ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) },
            )?,
            None => redis::Client::open(url)?,
        };
        Ok(Arc::new(RedisLink {
            client,
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

    /// For `rediss://`: one connection attempt, to tell a certificate that does not verify (or
    /// a server that does not speak TLS) from Redis being down. Only the first is an error;
    /// an unreachable Redis is left to the background connection, as for `redis://`.
    pub async fn check_tls(&self) -> Result<(), String> {
        if !matches!(self.client.get_connection_info().addr(), redis::ConnectionAddr::TcpTls { .. }) {
            return Ok(());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match self.client.get_multiplexed_async_connection_with_config(&config).await {
            Ok(_) => Ok(()),
            Err(error) => match tls_failure(&error) {
                Some(reason) => Err(reason),
                None => {
                    tracing::warn!(%error, "redis unreachable at start-up; retrying in the background");
                    Ok(())
                }
            },
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

    /// Runs one command, mapping every failure to `Unavailable`; a [`Retry::Safe`] command whose
    /// connection dropped runs once more on a fresh one.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd, retry: Retry) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        match cmd.query_async(&mut conn).await {
            Err(error) if retry == Retry::Safe && connection_dropped(&error) => {
                self.retry_after(error, cmd.query_async(&mut conn)).await
            }
            result => result.map_err(|error| self.failed(error)),
        }
    }

    /// Runs a pipeline (one round trip), with the same retry as [`RedisLink::query`].
    pub async fn pipeline<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        retry: Retry,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        match pipe.query_async(&mut conn).await {
            Err(error) if retry == Retry::Safe && connection_dropped(&error) => {
                self.retry_after(error, pipe.query_async(&mut conn)).await
            }
            result => result.map_err(|error| self.failed(error)),
        }
    }

    /// The second attempt: the manager has started reconnecting on the first failure, and this
    /// one waits for that connection. Bounded by `redis_timeout` of its own, so a Redis that is
    /// still down costs at most two bounds.
    async fn retry_after<T>(
        &self,
        first: redis::RedisError,
        second: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        // Redis may have restarted empty: whoever keeps things there checks, retry or not.
        self.report_trouble();
        tracing::debug!(error = %first, "redis connection dropped; sending the command again on a fresh connection");
        match tokio::time::timeout(self.timeout, second).await {
            Ok(result) => result.map_err(|error| self.failed(error)),
            Err(_) => Err(self.failed(first)),
        }
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

/// The connection was gone (closed by a restarted Redis, reset, refused): the manager
/// reconnects, so a second attempt can succeed. A timeout is not one of these: Redis may be
/// slow, and a second attempt would only double the wait.
fn connection_dropped(error: &redis::RedisError) -> bool {
    error.is_connection_dropped() || error.is_connection_refusal()
}

/// The TLS handshake's own failure inside a connection error (rustls reports it as an I/O
/// error of kind `InvalidData`), as a sentence; `None` for anything else (refused, timed out).
fn tls_failure(error: &redis::RedisError) -> Option<String> {
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        let inner: &(dyn std::error::Error + 'static) =
            match current.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
                Some(shared) => shared.as_ref(),
                None => current,
            };
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return (io.kind() == std::io::ErrorKind::InvalidData).then(|| {
                format!("TLS to redis failed: {}", io.get_ref().map(|e| e.to_string()).unwrap_or(io.to_string()))
            });
        }
        source = inner.source().filter(|next| !std::ptr::addr_eq(*next, current));
    }
    None
}

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        StoreError::Unavailable(format!("redis: {error}"))
    }
}
