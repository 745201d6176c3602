//! Redis [`SessionStore`]: what lets any node serve any request.
//!
//! Every operation is a single command (`GETEX`, `SET EX`, `GETDEL`, `DEL`), so a request in
//! steady state costs exactly one round trip. Keys are `{prefix}:{key}` where `key` is already a
//! hash made by the session layer: a Redis dump holds no usable cookie.
//!
//! Each operation says whether it may be sent again after a dropped connection ([`Retry`]): the
//! locks and replay markers are written so that a second run answers like the first (the value
//! is unique to the caller, who recognises it); a one-time read (`GETDEL`) is never repeated.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::id::random_token;
use super::store::{SessionStore, StoreError};
use crate::redis_link::{RedisLink, Retry};

pub struct RedisStore {
    link: Arc<RedisLink>,
    prefix: String,
}

impl RedisStore {
    pub fn new(link: Arc<RedisLink>, prefix: &str) -> Self {
        RedisStore { link, prefix: prefix.to_owned() }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }
}

/// Sets the key to a value unique to the caller unless another value is there, for `ARGV[2]`
/// ms; answers 1 when the key holds the caller's value afterwards. A second run of a call whose
/// answer was lost finds its own value and answers 1 again, so it is safe to repeat, where a
/// plain `SET NX` would answer "taken" to the very caller that took it.
const TAKE_UNLESS_TAKEN: &str = "local held = redis.call('get', KEYS[1]) \
     if held == ARGV[1] then return 1 end \
     if held then return 0 end \
     redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1";

/// Extends a lock's lease only for its holder (a lock that expired and was taken by another
/// node is left alone).
const EXTEND_IF_HELD: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// Releases a lock only for its holder.
const DELETE_IF_HELD: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

fn seconds(ttl: Duration) -> u64 {
    ttl.as_secs().max(1)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("EX").arg(seconds(ttl));
        // The same value again: safe to repeat.
        self.link.query::<()>(&cmd, Retry::Safe).await
    }

    async fn get_and_touch(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("GETEX");
        cmd.arg(self.key(key)).arg("EX").arg(seconds(ttl));
        // A read; the expiry it sets is the same either way.
        self.link.query(&cmd, Retry::Safe).await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // Repeated when its connection dropped: almost always (a Redis restart) it never reached
        // Redis and the second run reads the state. Had the first run reached Redis, the state
        // is gone and the second reads nothing: that login is refused as unknown (a 400, start
        // again), never used twice, so one-time use holds either way.
        self.link.query(redis::cmd("GETDEL").arg(self.key(key)), Retry::Safe).await
    }

    async fn replace(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("XX").arg("EX").arg(seconds(ttl));
        // The same value again, still only if the session exists: safe to repeat.
        Ok(self.link.query::<Option<String>>(&cmd, Retry::Safe).await?.is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.link.query::<()>(redis::cmd("DEL").arg(self.key(key)), Retry::Safe).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("DEL");
        for key in keys {
            cmd.arg(self.key(key));
        }
        self.link.query::<()>(&cmd, Retry::Safe).await
    }

    async fn try_lock(&self, key: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        // `holder` is unique to this attempt, so the holder recognises its own lock: safe to
        // repeat.
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(TAKE_UNLESS_TAKEN).arg(1).arg(self.key(key)).arg(holder).arg(lease.as_millis() as u64);
        Ok(self.link.query::<i64>(&cmd, Retry::Safe).await? == 1)
    }

    async fn extend_lock(&self, key: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(EXTEND_IF_HELD).arg(1).arg(self.key(key)).arg(holder).arg(lease.as_millis() as u64);
        Ok(self.link.query::<i64>(&cmd, Retry::Safe).await? == 1)
    }

    async fn unlock(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DELETE_IF_HELD).arg(1).arg(self.key(key)).arg(holder);
        self.link.query::<()>(&cmd, Retry::Safe).await
    }

    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let key = self.key(index);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("SADD").arg(&key).arg(member).ignore().cmd("EXPIRE").arg(&key).arg(seconds(ttl)).ignore();
        // Adding a member twice and setting the same expiry twice: safe to repeat.
        self.link.pipeline::<()>(&pipe, Retry::Safe).await
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<(), StoreError> {
        // Redis deletes a set when its last member goes. Removing twice: safe to repeat.
        self.link.query::<()>(redis::cmd("SREM").arg(self.key(index)).arg(member), Retry::Safe).await
    }

    async fn index_take(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let key = self.key(index);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("SMEMBERS").arg(&key).cmd("DEL").arg(&key).ignore();
        // Never repeated: a second run after a first that reached Redis finds the index gone
        // and would end none of the sessions a logout names.
        let (members,): (Vec<String>,) = self.link.pipeline(&pipe, Retry::Never).await?;
        Ok(members)
    }

    async fn insert_new(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        // A marker unique to this call, so a second run recognises its own: safe to repeat (a
        // plain `SET NX` would call the first use of a logout token a replay).
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(TAKE_UNLESS_TAKEN).arg(1).arg(self.key(key)).arg(random_token()).arg(seconds(ttl) * 1000);
        Ok(self.link.query::<i64>(&cmd, Retry::Safe).await? == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.link.query::<()>(&redis::cmd("PING"), Retry::Safe).await
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
