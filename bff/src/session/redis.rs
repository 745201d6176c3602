//! Redis [`SessionStore`]: what lets any node serve any request.
//!
//! Every operation is a single command (`GETEX`, `SET EX`, `GETDEL`, `DEL`), so a request in
//! steady state costs exactly one round trip. Keys are `{prefix}:{key}` where `key` is already a
//! hash made by the session layer: a Redis dump holds no usable cookie.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::store::{SessionStore, StoreError};
use crate::redis_link::RedisLink;

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
        self.link.query::<()>(&cmd).await
    }

    async fn get_and_touch(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("GETEX");
        cmd.arg(self.key(key)).arg("EX").arg(seconds(ttl));
        self.link.query(&cmd).await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.link.query(redis::cmd("GETDEL").arg(self.key(key))).await
    }

    async fn replace(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("XX").arg("EX").arg(seconds(ttl));
        Ok(self.link.query::<Option<String>>(&cmd).await?.is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.link.query::<()>(redis::cmd("DEL").arg(self.key(key))).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("DEL");
        for key in keys {
            cmd.arg(self.key(key));
        }
        self.link.query::<()>(&cmd).await
    }

    async fn try_lock(&self, key: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(holder).arg("NX").arg("PX").arg(lease.as_millis() as u64);
        Ok(self.link.query::<Option<String>>(&cmd).await?.is_some())
    }

    async fn extend_lock(&self, key: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(EXTEND_IF_HELD).arg(1).arg(self.key(key)).arg(holder).arg(lease.as_millis() as u64);
        Ok(self.link.query::<i64>(&cmd).await? == 1)
    }

    async fn unlock(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DELETE_IF_HELD).arg(1).arg(self.key(key)).arg(holder);
        self.link.query::<()>(&cmd).await
    }

    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let key = self.key(index);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("SADD").arg(&key).arg(member).ignore().cmd("EXPIRE").arg(&key).arg(seconds(ttl)).ignore();
        self.link.pipeline::<()>(&pipe).await
    }

    async fn index_take(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let key = self.key(index);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("SMEMBERS").arg(&key).cmd("DEL").arg(&key).ignore();
        let (members,): (Vec<String>,) = self.link.pipeline(&pipe).await?;
        Ok(members)
    }

    async fn insert_new(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(1).arg("NX").arg("EX").arg(seconds(ttl));
        Ok(self.link.query::<Option<String>>(&cmd).await?.is_some())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.link.query::<()>(&redis::cmd("PING")).await
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
