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

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
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

/// Whether a connection is still good after this answer: it answered, or Redis refused the
/// command (the connection itself is fine).
fn still_good<T>(answer: &redis::RedisResult<T>) -> bool {
    match answer {
        Ok(_) => true,
        Err(error) => error.code().is_some() && !error.is_unrecoverable_error(),
    }
}
