//! The key ring: the AES-256-GCM keys that seal session data, like ASP.NET Data Protection
//! persisted to Redis.
//!
//! With `key_ring = "redis"` the ring is a Redis hash (`{prefix}:keyring`, one field per key)
//! shared by every node: the first node creates a key, the others load it; when the newest key
//! is older than `key_rotation`, one node (holding a short Redis lock) adds a new one, and old
//! keys keep opening what they sealed until nothing sealed under them can still be alive. An
//! optional key-encryption key wraps each key before it reaches Redis, so Redis alone can read
//! nothing. With `key_ring = "local"` the ring is one key made at start-up in node memory: fine
//! for one node, and exactly the mistake a multi-node verifier must catch.

mod sealing;
mod stored_key;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;
use tokio::time::Instant;

pub use sealing::{KeyId, OpenError, SealingKey, key_id_of};
use stored_key::StoredKey;

use crate::redis_link::{RedisLink, Retry};
use crate::session::StoreError;

/// The ring is not usable (yet): the node is not ready, requests that need it get a 503.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyRingError {
    #[error("key ring not loaded yet")]
    NotLoaded,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Shared {
    link: Arc<RedisLink>,
    hash_key: String,
    lock_key: String,
}

#[derive(Default)]
struct Ring {
    keys: HashMap<KeyId, Arc<SealingKey>>,
    /// The key that seals, and when it was made (unix seconds).
    current: Option<(Arc<SealingKey>, u64)>,
    /// Each key as it is written in Redis, to publish it again if Redis lost it.
    stored: HashMap<KeyId, StoredKey>,
}

pub struct KeyRing {
    shared: Option<Shared>,
    kek: Option<SealingKey>,
    rotation: Duration,
    /// Keys older than this are dropped from the shared ring.
    retention: Duration,
    ring: RwLock<Ring>,
    /// False from a Redis failure until the ring has been checked against Redis again.
    synced: AtomicBool,
    /// Serialises reloads and remembers the last one, so a burst of unknown key ids costs one
    /// Redis read, not one per request.
    last_reload: Mutex<Option<Instant>>,
}

const RELOAD_AT_MOST_EVERY: Duration = Duration::from_millis(500);

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl KeyRing {
    /// A ring made in node memory, ready at once.
    pub fn local() -> Arc<Self> {
        let key = Arc::new(SealingKey::new(sealing::random(), &sealing::random()));
        let ring = Ring {
            keys: HashMap::from([(key.id, key.clone())]),
            current: Some((key, now_secs())),
            stored: HashMap::new(),
        };
        Arc::new(KeyRing {
            shared: None,
            kek: None,
            rotation: Duration::MAX,
            retention: Duration::MAX,
            ring: RwLock::new(ring),
            synced: AtomicBool::new(true),
            last_reload: Mutex::new(None),
        })
    }

    /// A ring kept in Redis under `{prefix}:keyring`; empty until [`KeyRing::reload`] succeeds.
    pub fn shared(
        link: Arc<RedisLink>,
        prefix: &str,
        rotation: Duration,
        retention: Duration,
        kek: Option<[u8; 32]>,
    ) -> Arc<Self> {
        Arc::new(KeyRing {
            shared: Some(Shared {
                link,
                hash_key: format!("{prefix}:keyring"),
                lock_key: format!("{prefix}:keyring:lock"),
            }),
            kek: kek.map(|k| SealingKey::new(*b"kek\0\0\0\0\0", &k)),
            rotation,
            retention,
            ring: RwLock::new(Ring::default()),
            synced: AtomicBool::new(false),
            last_reload: Mutex::new(None),
        })
    }

    pub fn is_loaded(&self) -> bool {
        self.ring.read().expect("ring lock").current.is_some()
    }

    /// Loaded, and checked against Redis since Redis last failed (a Redis that restarted
    /// empty has had this node's keys published again).
    pub fn is_ready(&self) -> bool {
        self.is_loaded() && self.synced.load(Ordering::Relaxed)
    }

    /// For the readiness probe: the shared ring is still in Redis. A Redis that came back empty
    /// is not always seen as a failed command (a connection opened after the restart never
    /// fails), so the probe looks; when the ring is gone, the node turns not-ready and publishes
    /// its keys again.
    pub async fn check_published(&self) -> Result<(), KeyRingError> {
        let Some(shared) = &self.shared else { return Ok(()) };
        let present: bool = shared.link.query(redis::cmd("EXISTS").arg(&shared.hash_key), Retry::Safe).await?;
        if !present {
            self.synced.store(false, Ordering::Relaxed);
            shared.link.report_trouble();
            return Err(KeyRingError::NotLoaded);
        }
        Ok(())
    }

    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Seals with the current key.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyRingError> {
        let ring = self.ring.read().expect("ring lock");
        let (key, _) = ring.current.as_ref().ok_or(KeyRingError::NotLoaded)?;
        Ok(key.seal(aad, plaintext))
    }

    /// Opens with whichever key sealed the blob. An unknown key id makes a shared ring re-read
    /// Redis once (another node may have just rotated) before giving up.
    pub async fn open(&self, aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, OpenError> {
        let id = key_id_of(blob)?;
        if let Some(key) = self.key(&id) {
            return key.open(aad, blob);
        }
        if self.shared.is_some() {
            if let Err(error) = self.reload_unless_recent().await {
                tracing::warn!(%error, "key ring reload after an unknown key id failed");
            }
            if let Some(key) = self.key(&id) {
                return key.open(aad, blob);
            }
        }
        Err(OpenError::UnknownKey(id))
    }

    fn key(&self, id: &KeyId) -> Option<Arc<SealingKey>> {
        self.ring.read().expect("ring lock").keys.get(id).cloned()
    }

    async fn reload_unless_recent(&self) -> Result<(), KeyRingError> {
        let mut last = self.last_reload.lock().await;
        if last.is_some_and(|t| t.elapsed() < RELOAD_AT_MOST_EVERY) {
            return Ok(());
        }
        let result = self.load_and_rotate().await;
        *last = Some(Instant::now());
        result
    }

    /// Re-reads the shared ring and adds a key when there is none or the newest is due for
    /// rotation. A local ring has nothing to do.
    pub async fn reload(&self) -> Result<(), KeyRingError> {
        let _guard = self.last_reload.lock().await;
        self.load_and_rotate().await
    }

    async fn load_and_rotate(&self) -> Result<(), KeyRingError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let now = now_secs();
        let mut entries = self.read_ring(shared).await?;
        if self.republish_lost_keys(shared, &entries, now).await? {
            entries = self.read_ring(shared).await?;
        }
        let newest = entries.iter().map(|(_, k)| k.created).max();
        let due = newest.is_none_or(|created| now.saturating_sub(created) >= self.rotation.as_secs());
        if due && self.try_lock(shared).await? {
            self.add_key(shared, now).await?;
            self.drop_retired(shared, &entries, now).await?;
            entries = self.read_ring(shared).await?;
        }
        self.install(entries);
        Ok(())
    }

    /// Writes back the keys this node holds that Redis no longer has (Redis restarted without
    /// persistence, or was flushed): what other nodes sealed with them must stay readable, and
    /// nodes that start later must find them. Retired keys stay retired.
    async fn republish_lost_keys(
        &self,
        shared: &Shared,
        entries: &[(KeyId, StoredKey)],
        now: u64,
    ) -> Result<bool, KeyRingError> {
        let lost: Vec<(KeyId, String)> = {
            let ring = self.ring.read().expect("ring lock");
            ring.stored
                .iter()
                .filter(|(id, stored)| {
                    !entries.iter().any(|(known, _)| known == *id)
                        && now.saturating_sub(stored.created) <= self.retention.as_secs()
                })
                .map(|(id, stored)| (*id, stored.encode()))
                .collect()
        };
        for (id, encoded) in &lost {
            let mut cmd = redis::cmd("HSETNX");
            cmd.arg(&shared.hash_key).arg(hex::encode(id)).arg(encoded);
            // The same field and value again; its answer is ignored: safe to repeat.
            shared.link.query::<()>(&cmd, Retry::Safe).await?;
            tracing::warn!(key_id = %hex::encode(id), "redis had lost a key of the ring; published it again");
        }
        Ok(!lost.is_empty())
    }

    async fn read_ring(&self, shared: &Shared) -> Result<Vec<(KeyId, StoredKey)>, KeyRingError> {
        let fields: HashMap<String, String> =
            shared.link.query(redis::cmd("HGETALL").arg(&shared.hash_key), Retry::Safe).await?;
        let mut out = Vec::with_capacity(fields.len());
        for (field, value) in fields {
            match StoredKey::decode(&field, &value) {
                Ok((id, stored)) => out.push((id, stored)),
                Err(reason) => {
                    tracing::error!(key_id = %field, %reason, "ignoring unreadable key ring entry")
                }
            }
        }
        Ok(out)
    }

    async fn try_lock(&self, shared: &Shared) -> Result<bool, KeyRingError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&shared.lock_key).arg(1).arg("NX").arg("PX").arg(5000);
        // Never repeated: a second run after a first that reached Redis would find the lock
        // taken (by this node) and add no key; failing instead makes the maintenance loop try
        // again shortly.
        let got: Option<String> = shared.link.query(&cmd, Retry::Never).await?;
        Ok(got.is_some())
    }

    async fn add_key(&self, shared: &Shared, now: u64) -> Result<(), KeyRingError> {
        let id: KeyId = sealing::random();
        let stored = StoredKey::new(sealing::random(), now, self.kek.as_ref(), &id);
        let mut cmd = redis::cmd("HSETNX");
        cmd.arg(&shared.hash_key).arg(hex::encode(id)).arg(stored.encode());
        // The same field and value again: safe to repeat.
        shared.link.query::<()>(&cmd, Retry::Safe).await?;
        tracing::info!(key_id = %hex::encode(id), wrapped = self.kek.is_some(), "added a key to the shared key ring");
        Ok(())
    }

    async fn drop_retired(
        &self,
        shared: &Shared,
        entries: &[(KeyId, StoredKey)],
        now: u64,
    ) -> Result<(), KeyRingError> {
        for (id, stored) in entries {
            if now.saturating_sub(stored.created) > self.retention.as_secs() {
                shared
                    .link
                    .query::<()>(redis::cmd("HDEL").arg(&shared.hash_key).arg(hex::encode(id)), Retry::Safe)
                    .await?;
                tracing::info!(key_id = %hex::encode(id), "retired a key from the shared key ring");
            }
        }
        Ok(())
    }

    fn install(&self, entries: Vec<(KeyId, StoredKey)>) {
        let mut ring = Ring::default();
        for (id, stored) in entries {
            let created = stored.created;
            match stored.unwrap(self.kek.as_ref(), &id) {
                Ok(material) => {
                    let key = Arc::new(SealingKey::new(id, &material));
                    let newer = ring.current.as_ref().is_none_or(|(k, c)| (created, id) > (*c, k.id));
                    if newer {
                        ring.current = Some((key.clone(), created));
                    }
                    ring.keys.insert(id, key);
                    ring.stored.insert(id, stored);
                }
                Err(reason) => {
                    tracing::error!(key_id = %hex::encode(id), %reason, "cannot use key ring entry")
                }
            }
        }
        *self.ring.write().expect("ring lock") = ring;
    }

    /// Keeps the shared ring loaded: retries quickly until a load succeeds, then re-reads it
    /// every `refresh` (rotations by other nodes) and at once after any Redis failure (Redis
    /// may have come back empty).
    pub fn maintain_in_background(self: &Arc<Self>, refresh: Duration) {
        let Some(shared) = &self.shared else { return };
        let (ring, link) = (self.clone(), shared.link.clone());
        tokio::spawn(async move {
            // The first load waits for the connection instead of failing and backing off.
            link.connect().await;
            loop {
                let result = ring.reload().await;
                if let Err(error) = &result {
                    tracing::warn!(%error, "key ring reload failed");
                }
                let ok = result.is_ok() && ring.is_loaded();
                ring.synced.store(ok, Ordering::Relaxed);
                if !ok {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                tokio::select! {
                    () = tokio::time::sleep(refresh) => {}
                    () = link.trouble() => ring.synced.store(false, Ordering::Relaxed),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_ring_opens_its_own_and_refuses_anothers() {
        let a = KeyRing::local();
        let b = KeyRing::local();
        let blob = a.seal(b"k", b"v").unwrap();
        assert_eq!(a.open(b"k", &blob).await.unwrap(), b"v");
        assert!(matches!(b.open(b"k", &blob).await, Err(OpenError::UnknownKey(_))));
    }
}
