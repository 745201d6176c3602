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
        RedisStore {
            link,
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }
}

fn seconds(ttl: Duration) -> u64 {
    ttl.as_secs().max(1)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let cmd = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("EX")
            .arg(seconds(ttl))
            .clone();
        self.link.query::<()>(&cmd).await
    }

    async fn get_and_touch(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>, StoreError> {
        let cmd = redis::cmd("GETEX")
            .arg(self.key(key))
            .arg("EX")
            .arg(seconds(ttl))
            .clone();
        self.link.query(&cmd).await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.link
            .query(redis::cmd("GETDEL").arg(self.key(key)))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.link
            .query::<()>(redis::cmd("DEL").arg(self.key(key)))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.link.query::<()>(&redis::cmd("PING")).await
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
