//! The node cache against the sliding idle timeout, on a paused clock (the in-memory store keeps
//! time with `tokio::time`): a session answered from memory is still touched in the store when
//! its touch is due, and an entry never answers past the expiry the store last gave it. And a
//! back-channel logout whose deletes fail ends its sessions when it is sent again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::advance;

use super::*;

const IDLE: Duration = Duration::from_secs(60);
const TOUCH: Duration = Duration::from_secs(10);

/// The in-memory store, counting the reads that reach it; its deletes fail while
/// `failing_deletes` is set.
#[derive(Default)]
struct Counted {
    inner: MemoryStore,
    reads: AtomicU64,
    failing_deletes: std::sync::atomic::AtomicBool,
}

impl Counted {
    fn deletes_fail(&self) -> Result<(), StoreError> {
        if self.failing_deletes.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("deletes fail in this test".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for Counted {
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.inner.put(key, value, ttl).await
    }
    async fn read_and_touch(&self, key: &str, idle: Duration, touch: Duration) -> Result<Option<Read>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_and_touch(key, idle, touch).await
    }
    async fn replace(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        self.inner.replace(key, value, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.deletes_fail()?;
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.deletes_fail()?;
        self.inner.delete_many(keys).await
    }
    async fn try_lock(&self, key: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        self.inner.try_lock(key, holder, lease).await
    }
    async fn extend_lock(&self, key: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        self.inner.extend_lock(key, holder, lease).await
    }
    async fn unlock(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        self.inner.unlock(key, holder).await
    }
    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        self.inner.index_add(index, member, ttl).await
    }
    async fn index_keep(&self, index: &str, ttl: Duration, touch: Duration) -> Result<(), StoreError> {
        self.inner.index_keep(index, ttl, touch).await
    }
    async fn index_remove(&self, index: &str, member: &str) -> Result<(), StoreError> {
        self.inner.index_remove(index, member).await
    }
    async fn index_take(&self, index: &str) -> Result<Vec<String>, StoreError> {
        self.inner.index_take(index).await
    }
    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        self.inner.index_members(index).await
    }
    async fn peek(&self, key: &str) -> Result<Option<(Vec<u8>, Option<Duration>)>, StoreError> {
        self.inner.peek(key).await
    }
    async fn insert_new(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.inner.insert_new(key, ttl).await
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.exists(key).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "counted memory"
    }
}

fn session() -> Session {
    Session {
        format: crate::compat::RecordFormat::current(),
        created_at: now_secs(),
        claims: serde_json::value::RawValue::from_string(r#"{"sub":"u"}"#.into()).unwrap(),
        id_token: "id".into(),
        access_token: "at".into(),
        refresh_token: None,
        access_token_expires_at: None,
        created_on: None,
        bearer: Default::default(),
    }
}

/// Sessions on a counted in-memory store with a live node cache (no Redis: nothing is listened
/// to) that keeps entries for up to an hour.
fn sessions(touch: Duration) -> (Sessions, Arc<Counted>, Arc<NodeCache>) {
    let store = Arc::new(Counted::default());
    let link = crate::redis_link::RedisLink::new("redis://127.0.0.1:1", Duration::from_secs(1)).unwrap();
    let cache = NodeCache::new(link, "test", Duration::from_secs(3600), 1 << 20);
    cache.live_for_a_test();
    let sessions = Sessions::new(store.clone(), KeyRing::local(u64::MAX), IDLE, IDLE * 10, IDLE, b"index secret")
        .touching_every(touch)
        .with_cache(cache.clone());
    (sessions, store, cache)
}

/// What the store has left for the session, read without pushing anything back.
async fn left_in_store(store: &Counted, id: &SessionId) -> Option<Duration> {
    let key = store_key("s", id.as_bytes());
    store.inner.read_and_touch(&key, IDLE, IDLE).await.unwrap().and_then(|read| read.left)
}

#[tokio::test(start_paused = true)]
async fn a_session_answered_from_memory_is_touched_in_the_store_when_due() {
    let (sessions, store, cache) = sessions(TOUCH);
    let id = sessions.create(&session()).await.unwrap();
    // One request a second for five idle timeouts, all on this node.
    for second in 0..(IDLE.as_secs() * 5) {
        cache.live_for_a_test();
        assert!(sessions.load(&id).await.unwrap().is_some(), "lost after {second} s of use");
        let left = left_in_store(&store, &id).await.expect("in the store");
        assert!(left >= IDLE - TOUCH - Duration::from_secs(1), "{left:?} left in the store after {second} s");
        // The second passes with the node running: a touch sent off the request's path (it
        // waits a few milliseconds for others to join it) goes to the store meanwhile.
        advance(Duration::from_millis(900)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reads = store.reads.load(Ordering::SeqCst);
    // About one read per touch interval (30 over 300 s), not one per request (300).
    let most = IDLE.as_secs() * 5 / TOUCH.as_secs() + 2;
    assert!(reads <= most, "{reads} store reads for 300 requests, at most {most}");
    assert!(reads >= IDLE.as_secs() * 5 / TOUCH.as_secs() / 2, "{reads} store reads: the touches did not happen");

    // Unused for an idle timeout: gone from the store, and not answered from memory either.
    advance(IDLE).await;
    cache.live_for_a_test();
    assert!(sessions.load(&id).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn an_entry_never_answers_past_the_expiry_the_store_last_gave() {
    // A touch interval as long as the idle timeout: reads never push the expiry back, so the
    // session ends one idle timeout after it was made however it is used.
    let (sessions, _store, cache) = sessions(IDLE);
    let id = sessions.create(&session()).await.unwrap();
    advance(IDLE - Duration::from_secs(2)).await;
    cache.live_for_a_test();
    assert!(sessions.load(&id).await.unwrap().is_some(), "read from the store, 2 s left");
    advance(Duration::from_millis(1500)).await;
    cache.live_for_a_test();
    assert!(sessions.load(&id).await.unwrap().is_some(), "answered from memory, 500 ms left");
    advance(Duration::from_millis(600)).await;
    cache.live_for_a_test();
    assert!(sessions.load(&id).await.unwrap().is_none(), "the store let it go: so does the cache");
}

/// A back-channel logout whose deletes failed (a shard out of reach) answers an error, and ends
/// the sessions when the issuer sends it again: the index still names them. When the index was
/// taken before the deletes, the second logout found it empty and the session lived on.
#[tokio::test(start_paused = true)]
async fn a_back_channel_logout_that_failed_half_way_ends_its_sessions_when_sent_again() {
    // No node cache: its notices need a Redis.
    let store = Arc::new(Counted::default());
    let sessions = Sessions::new(store.clone(), KeyRing::local(u64::MAX), IDLE, IDLE * 10, IDLE, b"index secret");
    let mut with_sid = session();
    with_sid.claims = serde_json::value::RawValue::from_string(r#"{"sub":"u","sid":"s1","iss":"i"}"#.into()).unwrap();
    let id = sessions.create(&with_sid).await.unwrap();
    store.failing_deletes.store(true, Ordering::SeqCst);
    assert!(sessions.end_all("i", Some("s1"), None).await.is_err(), "the deletes failed");
    store.failing_deletes.store(false, Ordering::SeqCst);
    assert_eq!(sessions.end_all("i", Some("s1"), None).await.unwrap(), 1, "sent again, it ends the session");
    assert!(sessions.load(&id).await.unwrap().is_none(), "the session is gone");
    assert_eq!(sessions.end_all("i", Some("s1"), None).await.unwrap(), 0, "and its index with it");
}
