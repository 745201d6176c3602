//! Writes that wait for replicas (`WAIT`), on connections of their own.
//!
//! Redis answers the commands of one connection in order, and `WAIT` holds its connection until
//! the replicas confirm or its bound passes: sent on the node's one shared connection, it made
//! every other user's reads on that node queue behind it for as long as a replica was away, and
//! its own answer raced the shared connection's response bound (a stored login answered 503).
//! Here each write and its `WAIT` go, in one round trip, on a connection that carries nothing
//! else meanwhile. The connections are kept for the next write (at most [`MOST_AT_ONCE`] are
//! open), belong to one server (the link drops them with the server it moved away from), and
//! when one fails, it and every one kept beside it are closed rather than kept. Their response bound is `WAIT`'s own bound plus
//! `redis_timeout`, so that `WAIT` runs out first and answers how many replicas confirmed.
//!
//! On a cluster ([`ConfirmedClusterWrites`]) the same holds with cluster connections (each one
//! multiplexed connection per node, following `MOVED` and `ASK`): one write at a time on each.
//! Shared, a shard whose replica is away (or that has none, a primary just added) made every
//! write to it wait behind the `WAIT`s before it; the caller gave up at its bound while its
//! command was still queued in Redis, and a logout's `DEL` then ran seconds after the logout
//! had answered 503 and had told no node cache: the browser's second logout found no session,
//! so it told none either, and a node went on serving the session from memory. A connection
//! whose write failed or was given up is dropped with what it still carries.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use tokio::sync::Semaphore;

/// Writes waiting for replicas at once on one node; more wait for a free connection (up to
/// `redis_timeout`, then `Unavailable`). A login or a refresh holds one for up to
/// `redis_timeout` while a replica is away.
const MOST_AT_ONCE: usize = 32;

pub(super) struct ConfirmedWrites {
    client: redis::Client,
    timeout: Duration,
    idle: Mutex<Vec<MultiplexedConnection>>,
    slots: Semaphore,
}

impl ConfirmedWrites {
    pub(super) fn new(client: redis::Client, timeout: Duration) -> Self {
        ConfirmedWrites { client, timeout, idle: Mutex::new(Vec::new()), slots: Semaphore::new(MOST_AT_ONCE) }
    }

    /// Runs `pipe` (a write, then `WAIT`) on a connection that carries nothing else until it
    /// answers.
    pub(super) async fn send<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> redis::RedisResult<T> {
        let _slot = tokio::time::timeout(self.timeout, self.slots.acquire()).await.map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Client, "too many session writes waiting for replicas"))
        })?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout * 2));
                self.client.get_multiplexed_async_connection_with_config(&config).await?
            }
        };
        let answer = pipe.query_async(&mut conn).await;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if still_good(&answer) {
            idle.push(conn);
        } else {
            // A connection that dropped says the server went away (a restart in place keeps
            // the address, and with it this pool): the others it kept are as dead, and the
            // caller's second attempt must get a fresh one.
            idle.clear();
        }
        answer
    }
}

/// Cluster connections for writes that wait for replicas, each carrying one write at a time.
pub(super) struct ConfirmedClusterWrites {
    client: ClusterClient,
    timeout: Duration,
    idle: Mutex<Vec<ClusterConnection>>,
    slots: Semaphore,
}

impl ConfirmedClusterWrites {
    /// `first` is the connection the link opened with the others (it proved the cluster
    /// answers); more are opened from `client` as writes come together.
    pub(super) fn new(client: ClusterClient, first: ClusterConnection, timeout: Duration) -> Self {
        ConfirmedClusterWrites { client, timeout, idle: Mutex::new(vec![first]), slots: Semaphore::new(MOST_AT_ONCE) }
    }

    /// Runs `pipe` (a write, then `WAIT`) on a cluster connection that carries nothing else
    /// until it answers; dropped (the future given up) or failed, the connection is not kept.
    pub(super) async fn send<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> redis::RedisResult<T> {
        let _slot = tokio::time::timeout(self.timeout, self.slots.acquire()).await.map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Client, "too many session writes waiting for replicas"))
        })?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => tokio::time::timeout(self.timeout, self.client.get_async_connection())
                .await
                .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??,
        };
        let answer = pipe.query_async(&mut conn).await;
        if still_good(&answer) {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        }
        answer
    }
}

/// Whether a connection is still good after this answer: it answered, or Redis refused the
/// command (the connection itself is fine).
fn still_good<T>(answer: &redis::RedisResult<T>) -> bool {
    match answer {
        Ok(_) => true,
        Err(error) => error.code().is_some() && !error.is_unrecoverable_error(),
    }
}
