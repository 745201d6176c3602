//! Redis [`SessionStore`]: what lets any node serve any request.
//!
//! Every operation is a single command (a read script by `EVALSHA`, `SET EX`, `EXISTS`, `DEL`), so
//! a request in steady state costs exactly one round trip; the session read writes (pushes the
//! expiry back) only when the session's remaining time fell below its idle timeout minus the touch
//! interval, so that reads are not replicated writes. Keys are `{prefix}:{key}` where `key` is already a
//! hash made by the session layer: a Redis dump holds no usable cookie.
//!
//! Each operation says whether it may be sent again after a dropped connection ([`Retry`]): the
//! locks and replay markers are written so that a second run answers like the first (the value
//! is unique to the caller, who recognises it); a one-time read (an index's `SMEMBERS` + `DEL`) is never repeated.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;

use super::id::random_token;
use super::store::{Read, SessionStore, StoreError};
use crate::redis_link::{LuaScript, RedisLink, Retry};

pub struct RedisStore {
    link: Arc<RedisLink>,
    prefix: String,
    /// Replicas that must confirm `put` and `replace` (`WAIT`); 0 = none.
    wait_replicas: u32,
}

impl RedisStore {
    pub fn new(link: Arc<RedisLink>, prefix: &str) -> Self {
        RedisStore { link, prefix: prefix.to_owned(), wait_replicas: 0 }
    }

    /// Session writes wait until `replicas` replicas have them (Redis `WAIT`, bounded by
    /// `redis_timeout`), so that a failover right after a login does not lose its session.
    /// Replication is asynchronous otherwise: a write the master acknowledged may not have
    /// reached the replica that a failover promotes.
    pub fn waiting_for(mut self, replicas: u32) -> Self {
        self.wait_replicas = replicas;
        self
    }

    /// Runs a write, then `WAIT` in the same round trip when replicas must confirm it (on a
    /// connection of its own: see [`RedisLink::write_and_wait`]). Fewer confirmations within
    /// the bound leave the write standing (it is on the master) and are logged and counted
    /// (`bff_redis_unconfirmed_writes_total`): refusing logins while a replica is away would
    /// make the replica a single point of failure instead.
    async fn write<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        if self.wait_replicas == 0 {
            return self.link.query(&cmd, Retry::Safe).await;
        }
        // The same write again and a second WAIT: safe to repeat.
        let (answer, confirmed): (T, u32) = self.link.write_and_wait(&cmd, self.wait_replicas, Retry::Safe).await?;
        if confirmed < self.wait_replicas {
            metrics::counter!("bff_redis_unconfirmed_writes_total").increment(1);
            tracing::warn!(
                confirmed,
                wanted = self.wait_replicas,
                "redis: a session write reached fewer replicas than redis_wait_replicas; it stands on the master"
            );
        }
        Ok(answer)
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

/// Makes a key live `ARGV[1]` ms from now, when it exists and less than `ARGV[2]` ms of its life
/// remain: a key with a longer life (or none) keeps it. Redis 6.2's `EXPIRE` has no `GT`, hence a
/// script.
const LIVE_AT_LEAST: &str = "local left = redis.call('pttl', KEYS[1]) \
     if left == -2 or left == -1 or left >= tonumber(ARGV[2]) then return 0 end \
     return redis.call('pexpire', KEYS[1], ARGV[1])";

/// Adds `ARGV[1]` to the set and makes it live at least `ARGV[2]` ms from now (a set just
/// created has no expiry yet: `PTTL` -1).
const ADD_AND_LIVE_AT_LEAST: &str = "redis.call('sadd', KEYS[1], ARGV[1]) \
     if redis.call('pttl', KEYS[1]) < tonumber(ARGV[2]) then redis.call('pexpire', KEYS[1], ARGV[2]) end \
     return 1";

/// Answers the key's value and the milliseconds it has left after the read (nil when there is
/// no key; -1 left when it has no expiry), and pushes its expiry back to `ARGV[1]` ms only when
/// less than `ARGV[2]` ms remain: in steady state the read writes nothing, and Redis 7 (which
/// replicates a script's effects, not the script) sends nothing to the AOF or replicas. A key
/// without an expiry (`PTTL` -1) is left so.
///
/// Declared (Redis 7 `#!lua`) without `no-writes`, so that a server that is a replica refuses it
/// with `READONLY`, as it refused `GETEX` before: the link then asks the sentinels where the
/// master is instead of serving sessions from a demoted master (a logout on the new master would
/// not be seen there). `allow-oom`: a full Redis (`maxmemory`) still serves sessions; the only
/// write, `PEXPIRE`, adds no memory.
static READ_AND_TOUCH_WHEN_DUE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "#!lua flags=allow-oom\n\
         local value = redis.call('get', KEYS[1]) \
         if not value then return false end \
         local left = redis.call('pttl', KEYS[1]) \
         if left >= 0 and left < tonumber(ARGV[2]) then \
           redis.call('pexpire', KEYS[1], ARGV[1]) left = tonumber(ARGV[1]) end \
         return {value, left}",
    )
});

/// [`READ_AND_TOUCH_WHEN_DUE`] without the read: pushes the expiry back when due, answers the
/// time left after (`-1`: no expiry), or nothing when the key is gone.
static TOUCH_WHEN_DUE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "#!lua flags=allow-oom\n\
         local left = redis.call('pttl', KEYS[1]) \
         if left == -2 then return false end \
         if left >= 0 and left < tonumber(ARGV[2]) then \
           redis.call('pexpire', KEYS[1], ARGV[1]) left = tonumber(ARGV[1]) end \
         return left",
    )
});

/// Releases a lock only for its holder.
const DELETE_IF_HELD: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

fn seconds(ttl: Duration) -> u64 {
    ttl.as_secs().max(1)
}

/// A script's `PTTL`-style answer in milliseconds as a life left (`None`: no expiry).
fn time_left(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("EX").arg(seconds(ttl));
        // The same value again: safe to repeat.
        self.write::<()>(cmd).await
    }

    async fn read_and_touch(
        &self,
        key: &str,
        idle: Duration,
        touch_interval: Duration,
    ) -> Result<Option<Read>, StoreError> {
        let call = READ_AND_TOUCH_WHEN_DUE
            .call(&[&self.key(key)], (millis(idle), millis(idle.saturating_sub(touch_interval))));
        // A read; the expiry it may set is the same either way.
        let answer: Option<(Vec<u8>, i64)> = self.link.query_script(&call, Retry::Safe).await?;
        Ok(answer.map(|(value, left)| Read { value, left: time_left(left) }))
    }

    async fn touch_many(
        &self,
        keys: &[String],
        idle: Duration,
        touch_interval: Duration,
    ) -> Result<Vec<Option<Option<Duration>>>, StoreError> {
        let args = (millis(idle), millis(idle.saturating_sub(touch_interval)));
        let left = |answer: Option<i64>| answer.map(time_left);
        // The expiry it may set is the same however often it is sent: safe to repeat.
        if self.link.is_cluster() {
            // A pipeline goes to one slot's node: each key on its own, all at once.
            let touches = keys.iter().map(|key| async move {
                let call = TOUCH_WHEN_DUE.call(&[&self.key(key)], args);
                self.link.query_script::<Option<i64>>(&call, Retry::Safe).await
            });
            let answers = futures::future::try_join_all(touches).await?;
            return Ok(answers.into_iter().map(left).collect());
        }
        let calls: Vec<_> = keys.iter().map(|key| TOUCH_WHEN_DUE.call(&[&self.key(key)], args)).collect();
        let answers: Vec<Option<i64>> = self.link.pipeline_scripts(&calls, Retry::Safe).await?;
        Ok(answers.into_iter().map(left).collect())
    }

    async fn replace(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("XX").arg("EX").arg(seconds(ttl));
        // The same value again, still only if the session exists: safe to repeat.
        Ok(self.write::<Option<String>>(cmd).await?.is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(key));
        // Waits for replicas too: a logout the master acknowledged must not come undone when a
        // failover promotes a replica it had not reached. Deleting twice: safe to repeat.
        self.write::<()>(cmd).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        if self.wait_replicas > 0 {
            // One write and its `WAIT` per key: a `WAIT` goes to the shard of its write, and on
            // a cluster the keys may be on several.
            for key in keys {
                self.delete(key).await?;
            }
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
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ADD_AND_LIVE_AT_LEAST).arg(1).arg(self.key(index)).arg(member).arg(millis(ttl));
        // Adding a member twice and lengthening a life twice: safe to repeat. Waits for replicas
        // as the session's own write does: a failover that lost the membership would leave the
        // session out of reach of a back-channel logout.
        self.write::<()>(cmd).await
    }

    async fn index_keep(&self, index: &str, ttl: Duration, touch_interval: Duration) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("EVAL");
        let due = millis(ttl.saturating_sub(touch_interval));
        cmd.arg(LIVE_AT_LEAST).arg(1).arg(self.key(index)).arg(millis(ttl)).arg(due);
        self.link.query::<()>(&cmd, Retry::Safe).await
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

    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        // A read: safe to repeat.
        self.link.query(redis::cmd("SMEMBERS").arg(self.key(index)), Retry::Safe).await
    }

    async fn peek(&self, key: &str) -> Result<Option<(Vec<u8>, Option<Duration>)>, StoreError> {
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("GET").arg(&key).cmd("PTTL").arg(&key);
        // A read: safe to repeat.
        let (value, left): (Option<Vec<u8>>, i64) = self.link.pipeline(&pipe, Retry::Safe).await?;
        Ok(value.map(|value| (value, u64::try_from(left).ok().map(Duration::from_millis))))
    }

    async fn insert_new(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        // A marker unique to this call, so a second run recognises its own: safe to repeat (a
        // plain `SET NX` would call the first use of a logout token a replay).
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(TAKE_UNLESS_TAKEN).arg(1).arg(self.key(key)).arg(random_token()).arg(seconds(ttl) * 1000);
        Ok(self.link.query::<i64>(&cmd, Retry::Safe).await? == 1)
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        // A read: safe to repeat.
        self.link.query(redis::cmd("EXISTS").arg(self.key(key)), Retry::Safe).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.link.query::<()>(&redis::cmd("PING"), Retry::Safe).await
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
