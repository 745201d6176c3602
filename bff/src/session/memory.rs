//! In-memory [`SessionStore`]: the default when no Redis is configured.
//!
//! It lives in one process, so it cannot scale out and loses everything on restart; the node
//! warns about that at start-up. Expiry uses `tokio::time::Instant`, so tests can pause time.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::store::{SessionStore, StoreError};

#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    locks: Mutex<HashMap<String, (String, Instant)>>,
    indexes: Mutex<HashMap<String, (HashSet<String>, Instant)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn purge_expired(entries: &mut HashMap<String, (Vec<u8>, Instant)>, now: Instant) {
        entries.retain(|_, (_, expires)| *expires > now);
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("memory store lock");
        // Amortised clean-up: expired entries go when the map has doubled since the last purge.
        if entries.len() >= 1024 && entries.len().is_power_of_two() {
            Self::purge_expired(&mut entries, now);
        }
        entries.insert(key.to_owned(), (value, now + ttl));
        Ok(())
    }

    async fn get_and_touch(
        &self,
        key: &str,
        idle: Duration,
        touch_interval: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("memory store lock");
        match entries.get_mut(key) {
            Some((value, expires)) if *expires > now => {
                if *expires - now < idle.saturating_sub(touch_interval) {
                    *expires = now + idle;
                }
                Ok(Some(value.clone()))
            }
            Some(_) => {
                entries.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn replace(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("memory store lock");
        match entries.get_mut(key) {
            Some(entry) if entry.1 > now => {
                *entry = (value, now + ttl);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.entries.lock().expect("memory store lock").remove(key);
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().expect("memory store lock");
        for key in keys {
            entries.remove(key);
        }
        Ok(())
    }

    async fn try_lock(&self, key: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut locks = self.locks.lock().expect("memory store lock");
        if locks.len() >= 1024 && locks.len().is_power_of_two() {
            locks.retain(|_, (_, until)| *until > now);
        }
        match locks.get(key) {
            Some((_, expires)) if *expires > now => Ok(false),
            _ => {
                locks.insert(key.to_owned(), (holder.to_owned(), now + lease));
                Ok(true)
            }
        }
    }

    async fn extend_lock(&self, key: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut locks = self.locks.lock().expect("memory store lock");
        match locks.get_mut(key) {
            Some((owner, expires)) if owner == holder && *expires > now => {
                *expires = now + lease;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn unlock(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let mut locks = self.locks.lock().expect("memory store lock");
        if locks.get(key).is_some_and(|(owner, _)| owner == holder) {
            locks.remove(key);
        }
        Ok(())
    }

    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let expires = now + ttl;
        let mut indexes = self.indexes.lock().expect("memory store lock");
        // Amortised clean-up, as for sessions: sid/sub indexes of sessions long gone must not pile up.
        if indexes.len() >= 1024 && indexes.len().is_power_of_two() {
            indexes.retain(|_, (_, until)| *until > now);
        }
        let entry = indexes.entry(index.to_owned()).or_insert_with(|| (HashSet::new(), expires));
        if entry.1 <= now {
            // Expired but not yet purged: a new index, not the old members.
            *entry = (HashSet::new(), expires);
        }
        entry.0.insert(member.to_owned());
        entry.1 = entry.1.max(expires);
        Ok(())
    }

    async fn index_keep(&self, index: &str, ttl: Duration, touch_interval: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        if let Some((_, until)) = self.indexes.lock().expect("memory store lock").get_mut(index)
            && *until > now
            && *until - now < ttl.saturating_sub(touch_interval)
        {
            *until = (*until).max(now + ttl);
        }
        Ok(())
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<(), StoreError> {
        let mut indexes = self.indexes.lock().expect("memory store lock");
        if let Some((members, _)) = indexes.get_mut(index) {
            members.remove(member);
            if members.is_empty() {
                indexes.remove(index);
            }
        }
        Ok(())
    }

    async fn index_take(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let now = Instant::now();
        let entry = self.indexes.lock().expect("memory store lock").remove(index);
        Ok(entry
            .filter(|(_, expires)| *expires > now)
            .map(|(members, _)| members.into_iter().collect())
            .unwrap_or_default())
    }

    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let now = Instant::now();
        let indexes = self.indexes.lock().expect("memory store lock");
        Ok(indexes
            .get(index)
            .filter(|(_, expires)| *expires > now)
            .map(|(members, _)| members.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn peek(&self, key: &str) -> Result<Option<(Vec<u8>, Option<Duration>)>, StoreError> {
        let now = Instant::now();
        let entries = self.entries.lock().expect("memory store lock");
        Ok(entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(value, expires)| (value.clone(), Some(*expires - now))))
    }

    async fn insert_new(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("memory store lock");
        if entries.get(key).is_some_and(|(_, expires)| *expires > now) {
            return Ok(false);
        }
        if entries.len() >= 1024 && entries.len().is_power_of_two() {
            Self::purge_expired(&mut entries, now);
        }
        entries.insert(key.to_owned(), (Vec::new(), now + ttl));
        Ok(true)
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        Ok(self.entries.lock().expect("memory store lock").get(key).is_some_and(|(_, expires)| *expires > now))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expired_indexes_and_locks_are_purged() {
        let store = MemoryStore::new();
        for round in 0..4 {
            for i in 0..3000 {
                store.index_add(&format!("i:{round}:{i}"), "s:x", Duration::from_secs(1)).await.unwrap();
                store.try_lock(&format!("r:{round}:{i}"), "me", Duration::from_secs(1)).await.unwrap();
            }
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        assert!(store.indexes.lock().unwrap().len() < 6000, "indexes of ended sessions pile up");
        assert!(store.locks.lock().unwrap().len() < 6000, "expired locks pile up");
    }
}
