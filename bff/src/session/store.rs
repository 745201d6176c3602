//! The [`SessionStore`] trait: what every place that can hold sealed session bytes must do.
//!
//! Stores see only opaque keys (hashes of session ids and login states) and sealed bytes; they
//! never see a session id, a token or a claim. One contract suite (`tests/session_store_contract.rs`)
//! runs against every implementation.

use std::time::Duration;

use async_trait::async_trait;

pub use crate::store_error::StoreError;

/// What [`SessionStore::read_and_touch`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub value: Vec<u8>,
    /// Time the key had left after the read (its expiry pushed back or not); `None` when it
    /// has no expiry.
    pub left: Option<Duration>,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores `value` under `key` for `ttl`, replacing what was there.
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError>;

    /// Reads `key` and, in the same operation, pushes its expiry back to `idle` from now when
    /// less than `idle - touch_interval` of it remains (sliding idle timeout). A key is thus
    /// written at most once per `touch_interval` however often it is read, and a read leaves it
    /// at least `idle - touch_interval` to live: a key read at least that often never expires,
    /// and a key not read for `idle` is gone. `touch_interval` zero pushes on every read. One
    /// round trip.
    async fn get_and_touch(
        &self,
        key: &str,
        idle: Duration,
        touch_interval: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read_and_touch(key, idle, touch_interval).await?.map(|read| read.value))
    }

    /// [`SessionStore::get_and_touch`], also answering how long the key has left to live after
    /// the read, as the store counted it: the node cache keeps a session no longer than that
    /// (less the margin that makes the next read push the expiry back, see `NodeCache`).
    async fn read_and_touch(
        &self,
        key: &str,
        idle: Duration,
        touch_interval: Duration,
    ) -> Result<Option<Read>, StoreError>;

    /// Pushes back the expiry of each of `keys` as [`SessionStore::read_and_touch`] does, without
    /// reading its value: for each, the time it has left afterwards (`Some(None)`: no expiry), or
    /// `None` when it is gone. What the node cache sends for the sessions it serves whose touch
    /// is due (see `NodeCache`); a store may do them all in one round trip.
    async fn touch_many(
        &self,
        keys: &[String],
        idle: Duration,
        touch_interval: Duration,
    ) -> Result<Vec<Option<Option<Duration>>>, StoreError> {
        let mut left = Vec::with_capacity(keys.len());
        for key in keys {
            left.push(self.read_and_touch(key, idle, touch_interval).await?.map(|read| read.left));
        }
        Ok(left)
    }

    /// Replaces `key` only if it still exists (a session ended meanwhile stays ended); returns
    /// whether it did.
    async fn replace(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError>;

    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError>;

    /// Takes the lock `key` for `lease` if nobody holds it; `holder` identifies the taker.
    async fn try_lock(&self, key: &str, holder: &str, lease: Duration) -> Result<bool, StoreError>;

    /// Extends the lease if `holder` still holds the lock; returns whether it did.
    async fn extend_lock(&self, key: &str, holder: &str, lease: Duration) -> Result<bool, StoreError>;

    /// Releases the lock if `holder` still holds it.
    async fn unlock(&self, key: &str, holder: &str) -> Result<(), StoreError>;

    /// Adds `member` to the set `index`, which then lives at least `ttl` from now: a lifetime
    /// is only ever lengthened (an index shared by several sessions keeps the longest).
    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Makes the set `index`, if it exists, live `ttl` from now when less than
    /// `ttl - touch_interval` of its life remains (never shortened, never created): an index
    /// follows the sessions in it as their idle timeouts slide, written at most once per
    /// `touch_interval` like them.
    async fn index_keep(&self, index: &str, ttl: Duration, touch_interval: Duration) -> Result<(), StoreError>;

    /// Removes `member` from the set `index`; a set left empty is gone.
    async fn index_remove(&self, index: &str, member: &str) -> Result<(), StoreError>;

    /// Removes the set `index` and returns its members.
    async fn index_take(&self, index: &str) -> Result<Vec<String>, StoreError>;

    /// The members of the set `index` (none when it does not exist); read only.
    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError>;

    /// The value under `key` and how long it has left to live (`None`: no expiry), read only:
    /// unlike [`SessionStore::get_and_touch`] it pushes no expiry back, so an operator looking
    /// at a session does not keep it alive. One round trip.
    async fn peek(&self, key: &str) -> Result<Option<(Vec<u8>, Option<Duration>)>, StoreError>;

    /// Puts a marker under `key` for `ttl` unless one is there; returns whether it was new.
    /// Atomic across nodes: of concurrent callers, exactly one gets `true` (replay detection).
    async fn insert_new(&self, key: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Whether `key` holds a value or marker now (read only: nothing is written or touched).
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;

    /// Answers when the store can serve requests.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A short name for logs and `/ready`.
    fn kind(&self) -> &'static str;
}
