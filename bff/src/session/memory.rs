//! In-memory [`SessionStore`]: the default when no Redis is configured.
//!
//! It lives in one process, so it cannot scale out and loses everything on restart; the node
//! warns about that at start-up. Expiry uses `tokio::time::Instant`, so tests can pause time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::store::{SessionStore, StoreError};

#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
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

    async fn get_and_touch(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>, StoreError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("memory store lock");
        match entries.get_mut(key) {
            Some((value, expires)) if *expires > now => {
                *expires = now + ttl;
                Ok(Some(value.clone()))
            }
            Some(_) => {
                entries.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = Instant::now();
        let entry = self.entries.lock().expect("memory store lock").remove(key);
        Ok(entry
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| value))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.entries.lock().expect("memory store lock").remove(key);
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
