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
//!
//! Keys also rotate by use: AES-GCM with random 96-bit nonces must not seal more than 2^32
//! messages under one key, and anonymous logins (each seals a login cookie) let anyone drive
//! seals. Each node counts its seals under the current key and adds them, every
//! `key_rotation_seals / 256` seals, to a counter in Redis beside the ring
//! (`{prefix}:keyring:seals:<key id>`); the node whose report reaches `key_rotation_seals` adds
//! a new key, and the others switch to it at their next report or reload. The count lags by at
//! most one report per node, far below the bound. A local ring rotates by its own count.
//!
//! On a Redis Cluster the ring, its lock and its counters share one hash tag
//! (`{{prefix}:keyring}`, `{{prefix}:keyring}:lock`, `{{prefix}:keyring}:seals:<key id>`): they
//! live on one shard, so the ring is whole or absent (never half of it on a shard that failed
//! over), and a command that ever needs two of them together stays on one slot. On one server
//! and with Sentinel the names stay as they always were, which nodes of the previous release
//! read and write during a rolling upgrade.

mod sealing;
mod stored_key;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

pub use sealing::{KeyId, OpenError, SealingKey, key_id_of};
use stored_key::StoredKey;

use crate::redis_link::{RedisLink, Retry};
use crate::store_error::StoreError;

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
    /// Prefix of the per-key seal counters.
    seals_prefix: String,
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
    /// Seals after which the current key is replaced (`key_rotation_seals`).
    seal_limit: u64,
    /// Seals this node made under the current key and has not added to the shared count yet
    /// (a local ring: all its seals under the current key).
    unreported: AtomicU64,
    /// A shared ring reports its seals every this many.
    report_every: u64,
    /// Wakes the maintenance task to report seals.
    seals_due: Notify,
}

const RELOAD_AT_MOST_EVERY: Duration = Duration::from_millis(500);

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl KeyRing {
    /// A ring made in node memory, ready at once; a new key becomes current every `seal_limit`
    /// seals (the old ones keep opening what they sealed).
    pub fn local(seal_limit: u64) -> Arc<Self> {
        let ring = Arc::new(Self::empty(None, None, Duration::MAX, Duration::MAX, seal_limit));
        ring.rotate_local();
        ring.synced.store(true, Ordering::Relaxed);
        ring
    }

    fn empty(
        shared: Option<Shared>,
        kek: Option<SealingKey>,
        rotation: Duration,
        retention: Duration,
        seal_limit: u64,
    ) -> Self {
        let seal_limit = seal_limit.max(1);
        KeyRing {
            shared,
            kek,
            rotation,
            retention,
            ring: RwLock::new(Ring::default()),
            synced: AtomicBool::new(false),
            last_reload: Mutex::new(None),
            seal_limit,
            unreported: AtomicU64::new(0),
            report_every: (seal_limit / 256).max(1),
            seals_due: Notify::new(),
        }
    }

    /// A local ring's new current key.
    fn rotate_local(&self) {
        let key = Arc::new(SealingKey::new(sealing::random(), &sealing::random()));
        let mut ring = self.ring.write().expect("ring lock");
        ring.keys.insert(key.id, key.clone());
        ring.current = Some((key, now_secs()));
        self.unreported.store(0, Ordering::Relaxed);
    }

    /// A ring kept in Redis under `{prefix}:keyring`; empty until [`KeyRing::reload`] succeeds.
    /// A new key becomes current when the newest is `rotation` old or has sealed `seal_limit`
    /// times across nodes.
    pub fn shared(
        link: Arc<RedisLink>,
        prefix: &str,
        rotation: Duration,
        retention: Duration,
        seal_limit: u64,
        kek: Option<[u8; 32]>,
    ) -> Arc<Self> {
        // A cluster needs no compatibility with earlier names (no earlier release ran on one).
        let ring = if link.is_cluster() { format!("{{{prefix}:keyring}}") } else { format!("{prefix}:keyring") };
        let shared =
            Shared { link, lock_key: format!("{ring}:lock"), seals_prefix: format!("{ring}:seals"), hash_key: ring };
        let kek = kek.map(|k| SealingKey::new(*b"kek\0\0\0\0\0", &k));
        Arc::new(Self::empty(Some(shared), kek, rotation, retention, seal_limit))
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

    /// Seals with the current key, and counts the seal (see the module's header).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyRingError> {
        let sealed = {
            let ring = self.ring.read().expect("ring lock");
            let (key, _) = ring.current.as_ref().ok_or(KeyRingError::NotLoaded)?;
            key.seal(aad, plaintext)
        };
        let count = self.unreported.fetch_add(1, Ordering::Relaxed) + 1;
        if self.shared.is_some() {
            if count.is_multiple_of(self.report_every) {
                self.seals_due.notify_one();
            }
        } else if count >= self.seal_limit {
            self.rotate_local();
        }
        Ok(sealed)
    }

    /// The current key's id, if loaded.
    pub fn current_key_id(&self) -> Option<KeyId> {
        self.ring.read().expect("ring lock").current.as_ref().map(|(key, _)| key.id)
    }

    /// Adds this node's seals to the shared count of the current key; returns that key's id
    /// when the count reached the limit (the key is due for rotation).
    async fn report_seals(&self, shared: &Shared) -> Result<Option<KeyId>, KeyRingError> {
        let Some(id) = self.current_key_id() else { return Ok(None) };
        let seals = self.unreported.swap(0, Ordering::Relaxed);
        if seals == 0 {
            return Ok(None);
        }
        let counter = format!("{}:{}", shared.seals_prefix, hex::encode(id));
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("INCRBY")
            .arg(&counter)
            .arg(seals)
            .cmd("EXPIRE")
            .arg(&counter)
            .arg(self.retention.as_secs().clamp(1, i64::MAX as u64))
            .ignore();
        // Never repeated, and counted again later when it fails: a count can only come out
        // high (an earlier rotation), never low.
        match shared.link.pipeline::<(u64,)>(&pipe, Retry::Never).await {
            Ok((total,)) => Ok((total >= self.seal_limit).then_some(id)),
            Err(error) => {
                self.unreported.fetch_add(seals, Ordering::Relaxed);
                Err(error.into())
            }
        }
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
        let result = self.load_and_rotate(None).await;
        *last = Some(Instant::now());
        result
    }

    /// Re-reads the shared ring and adds a key when there is none or the newest is due for
    /// rotation. A local ring has nothing to do.
    pub async fn reload(&self) -> Result<(), KeyRingError> {
        self.reload_rotating(None).await
    }

    /// [`KeyRing::reload`], also rotating when the newest key is `used_up` (it sealed
    /// `key_rotation_seals` times).
    async fn reload_rotating(&self, used_up: Option<KeyId>) -> Result<(), KeyRingError> {
        let _guard = self.last_reload.lock().await;
        self.load_and_rotate(used_up).await
    }

    async fn load_and_rotate(&self, used_up: Option<KeyId>) -> Result<(), KeyRingError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let now = now_secs();
        let mut entries = self.read_ring(shared).await?;
        if self.republish_lost_keys(shared, &entries, now).await? {
            entries = self.read_ring(shared).await?;
        }
        // The newest as `install` picks the current one: latest creation, then highest id.
        let newest = entries.iter().map(|(id, k)| (k.created, *id)).max();
        let due = newest
            .is_none_or(|(created, id)| now.saturating_sub(created) >= self.rotation.as_secs() || used_up == Some(id));
        if due && let Some(holder) = self.try_lock(shared).await? {
            self.add_key(shared, now).await?;
            self.drop_retired(shared, &entries, now).await?;
            self.unlock(shared, &holder).await?;
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

    /// Takes the rotation lock; returns the value that identifies this holder.
    async fn try_lock(&self, shared: &Shared) -> Result<Option<String>, KeyRingError> {
        let holder = hex::encode(sealing::random::<16>());
        let mut cmd = redis::cmd("SET");
        cmd.arg(&shared.lock_key).arg(&holder).arg("NX").arg("PX").arg(5000);
        // Never repeated: a second run after a first that reached Redis would find the lock
        // taken (by this node) and add no key; failing instead makes the maintenance loop try
        // again shortly.
        let got: Option<String> = shared.link.query(&cmd, Retry::Never).await?;
        Ok(got.map(|_| holder))
    }

    /// Releases the rotation lock at once (a key used up by its seals may be due again soon),
    /// only if this node still holds it.
    async fn unlock(&self, shared: &Shared, holder: &str) -> Result<(), KeyRingError> {
        const DELETE_IF_HELD: &str =
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DELETE_IF_HELD).arg(1).arg(&shared.lock_key).arg(holder);
        // Deleting only this holder's lock: safe to repeat.
        shared.link.query::<()>(&cmd, Retry::Safe).await?;
        Ok(())
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
            let shared = ring.shared.as_ref().expect("a shared ring");
            // The current key when a report found it used up (`key_rotation_seals`).
            let mut used_up = None;
            loop {
                let rotate = used_up.take();
                if let Some(id) = rotate {
                    tracing::info!(key_id = %hex::encode(id), "the current key reached key_rotation_seals; rotating");
                }
                let result = ring.reload_rotating(rotate).await;
                if let Err(error) = &result {
                    tracing::warn!(%error, "key ring reload failed");
                }
                let ok = result.is_ok() && ring.is_loaded();
                ring.synced.store(ok, Ordering::Relaxed);
                if !ok {
                    used_up = rotate;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                tokio::select! {
                    () = tokio::time::sleep(refresh) => {}
                    () = link.trouble() => ring.synced.store(false, Ordering::Relaxed),
                    // Seals to report; the reload that follows also picks up another node's
                    // rotation.
                    () = ring.seals_due.notified() => match ring.report_seals(shared).await {
                        Ok(found) => used_up = found,
                        Err(error) => tracing::warn!(%error, "reporting seals to the key ring failed"),
                    },
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
        let a = KeyRing::local(u64::MAX);
        let b = KeyRing::local(u64::MAX);
        let blob = a.seal(b"k", b"v").unwrap();
        assert_eq!(a.open(b"k", &blob).await.unwrap(), b"v");
        assert!(matches!(b.open(b"k", &blob).await, Err(OpenError::UnknownKey(_))));
    }

    #[tokio::test]
    async fn a_local_ring_rotates_by_count_and_old_keys_still_open() {
        let ring = KeyRing::local(3);
        let first = ring.current_key_id().unwrap();
        let blobs: Vec<Vec<u8>> = (0..7).map(|i| ring.seal(b"k", &[i]).unwrap()).collect();
        let ids: std::collections::HashSet<KeyId> = blobs.iter().map(|b| key_id_of(b).unwrap()).collect();
        assert_eq!(ids.len(), 3, "7 seals at 3 per key use 3 keys");
        assert_ne!(ring.current_key_id().unwrap(), first);
        for (i, blob) in blobs.iter().enumerate() {
            assert_eq!(ring.open(b"k", blob).await.unwrap(), vec![i as u8]);
        }
    }
}
