//! One contract for every [`SessionStore`]: the same tests run against the in-memory store,
//! against Redis (a real `redis-server`) and against a Redis Cluster of three primaries (real
//! `redis-server` processes, the slots spread over them). Expiry itself is checked per store below: with a paused
//! clock for memory, with `TTL` for Redis (whose expiry is Redis's own job).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bff::redis_link::RedisLink;
use bff::session::{MemoryStore, RedisStore, SessionStore};
use harness::RedisProcess;
use harness::process::SentinelGroup;

const LONG: Duration = Duration::from_secs(600);
/// A touch interval of zero: every read pushes the expiry back.
const EVERY_READ: Duration = Duration::ZERO;

/// The sliding expiry of the cases below: reads push the expiry back to `IDLE` only when less
/// than `IDLE - TOUCH` (1 s) remains. Real time, the same for both stores (Redis expires keys on
/// its own clock); a second is wide enough for a loaded machine.
const IDLE: Duration = Duration::from_secs(2);
const TOUCH: Duration = Duration::from_secs(1);
/// Slack for polling and scheduling (a loaded machine) when checking when a key went.
const SLACK: Duration = Duration::from_millis(400);

/// Polls until `key` is gone, up to `deadline`; answers when it was first seen gone.
async fn gone_at(store: &Arc<dyn SessionStore>, key: &str, deadline: Instant) -> Option<Instant> {
    while Instant::now() < deadline {
        if !store.exists(key).await.unwrap() {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn a_read_that_is_not_due_does_not_push_the_expiry(store: Arc<dyn SessionStore>) {
    store.put("s:quiet", b"q".to_vec(), IDLE).await.unwrap();
    let stored = Instant::now();
    // 500 ms after the write, 1.5 s remain: more than IDLE - TOUCH, so nothing is pushed (a
    // push would keep it until 2.5 s, past IDLE + SLACK).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(store.get_and_touch("s:quiet", IDLE, TOUCH).await.unwrap().is_some());
    let gone = gone_at(&store, "s:quiet", stored + IDLE + Duration::from_secs(2)).await.expect("the session expires");
    assert!(gone <= stored + IDLE + SLACK, "gone {:?} after it was written: the read pushed its expiry", gone - stored);
    assert_eq!(store.get_and_touch("s:quiet", IDLE, TOUCH).await.unwrap(), None, "never served once gone");
}

async fn a_session_used_often_enough_is_never_lost_and_goes_one_idle_timeout_after_its_last_use(
    store: Arc<dyn SessionStore>,
) {
    store.put("s:busy", b"b".to_vec(), IDLE).await.unwrap();
    let started = Instant::now();
    let mut last_read = started;
    // A read every 500 ms (IDLE - TOUCH is 1 s) for more than twice the idle timeout.
    while started.elapsed() < IDLE * 2 + Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last_read = Instant::now();
        assert!(
            store.get_and_touch("s:busy", IDLE, TOUCH).await.unwrap().is_some(),
            "lost {:?} after it was written, though read every 500 ms",
            started.elapsed()
        );
    }
    let gone = gone_at(&store, "s:busy", last_read + IDLE + Duration::from_secs(2)).await.expect("the session expires");
    assert!(gone >= last_read + (IDLE - TOUCH), "gone {:?} after its last use", gone - last_read);
    assert!(gone <= last_read + IDLE + SLACK, "served {:?} after its last use", gone - last_read);
}

/// The time left that a read answers is the key's life after the read: what was left when the
/// read was not due, the whole idle timeout when it pushed the expiry back. The node cache
/// trusts it to keep an entry no longer than the store keeps the session.
async fn a_read_answers_the_time_the_key_has_left_after_it(store: Arc<dyn SessionStore>) {
    const IDLE_LONG: Duration = Duration::from_secs(600);
    const TOUCH_LONG: Duration = Duration::from_secs(60);
    store.put("s:left", b"l".to_vec(), Duration::from_secs(590)).await.unwrap();
    let read = store.read_and_touch("s:left", IDLE_LONG, TOUCH_LONG).await.unwrap().unwrap();
    assert_eq!(read.value, b"l");
    let left = read.left.expect("an expiry");
    assert!(left <= Duration::from_secs(590) && left > Duration::from_secs(585), "not due, not pushed: {left:?}");
    store.put("s:left", b"l".to_vec(), Duration::from_secs(500)).await.unwrap();
    let left = store.read_and_touch("s:left", IDLE_LONG, TOUCH_LONG).await.unwrap().unwrap().left.unwrap();
    assert!(left > Duration::from_secs(595) && left <= IDLE_LONG, "due, pushed back to the idle timeout: {left:?}");
    assert_eq!(store.read_and_touch("s:none", IDLE_LONG, TOUCH_LONG).await.unwrap(), None);
}

/// A touch without a read: the same rule (pushed back only when due), the same answer (the life
/// left after it), `None` for a key that is gone; several keys at once, in their order (on a
/// cluster, spread over the shards).
async fn a_touch_pushes_back_what_is_due_and_answers_the_life_left_without_reading(store: Arc<dyn SessionStore>) {
    const IDLE_LONG: Duration = Duration::from_secs(600);
    const TOUCH_LONG: Duration = Duration::from_secs(60);
    store.put("s:not-due", b"n".to_vec(), Duration::from_secs(590)).await.unwrap();
    store.put("s:due", b"d".to_vec(), Duration::from_secs(500)).await.unwrap();
    let keys: Vec<String> = ["s:not-due", "s:gone", "s:due"].map(String::from).to_vec();
    let left = store.touch_many(&keys, IDLE_LONG, TOUCH_LONG).await.unwrap();
    assert_eq!(left.len(), 3);
    let not_due = left[0].expect("there").expect("an expiry");
    assert!(
        not_due <= Duration::from_secs(590) && not_due > Duration::from_secs(585),
        "not due, not pushed: {not_due:?}"
    );
    assert_eq!(left[1], None, "gone");
    let due = left[2].expect("there").expect("an expiry");
    assert!(due > Duration::from_secs(595) && due <= IDLE_LONG, "due, pushed back to the idle timeout: {due:?}");
    // What the store holds now says the same, and the values are untouched.
    let read = store.read_and_touch("s:due", IDLE_LONG, TOUCH_LONG).await.unwrap().unwrap();
    assert_eq!(read.value, b"d");
    assert!(read.left.unwrap() > Duration::from_secs(590), "the touch pushed the expiry in the store");
    let many: Vec<String> = (0..40).map(|i| format!("s:many-{i}")).collect();
    for key in &many {
        store.put(key, b"m".to_vec(), Duration::from_secs(500)).await.unwrap();
    }
    let left = store.touch_many(&many, IDLE_LONG, TOUCH_LONG).await.unwrap();
    assert!(left.iter().all(|l| l.flatten().is_some_and(|l| l > Duration::from_secs(595))), "{left:?}");
}

async fn put_then_get_returns_the_value(store: Arc<dyn SessionStore>) {
    store.put("s:a", b"sealed-a".to_vec(), LONG).await.unwrap();
    assert_eq!(store.get_and_touch("s:a", LONG, EVERY_READ).await.unwrap().as_deref(), Some(&b"sealed-a"[..]));
    assert_eq!(
        store.get_and_touch("s:a", LONG, EVERY_READ).await.unwrap().as_deref(),
        Some(&b"sealed-a"[..]),
        "reads do not consume"
    );
    assert_eq!(store.get_and_touch("s:missing", LONG, EVERY_READ).await.unwrap(), None);
}

async fn put_replaces(store: Arc<dyn SessionStore>) {
    store.put("s:b", b"one".to_vec(), LONG).await.unwrap();
    store.put("s:b", b"two".to_vec(), LONG).await.unwrap();
    assert_eq!(store.get_and_touch("s:b", LONG, EVERY_READ).await.unwrap().as_deref(), Some(&b"two"[..]));
}

async fn delete_removes(store: Arc<dyn SessionStore>) {
    store.put("s:d", b"x".to_vec(), LONG).await.unwrap();
    store.delete("s:d").await.unwrap();
    store.delete("s:never-there").await.unwrap();
    assert_eq!(store.get_and_touch("s:d", LONG, EVERY_READ).await.unwrap(), None);
}

async fn ping_answers(store: Arc<dyn SessionStore>) {
    store.ping().await.unwrap();
}

async fn values_are_binary_safe(store: Arc<dyn SessionStore>) {
    let value: Vec<u8> = (0..=255).collect();
    store.put("s:f", value.clone(), LONG).await.unwrap();
    assert_eq!(store.get_and_touch("s:f", LONG, EVERY_READ).await.unwrap(), Some(value));
}

async fn replace_only_touches_what_exists(store: Arc<dyn SessionStore>) {
    assert!(!store.replace("s:r", b"new".to_vec(), LONG).await.unwrap(), "an ended session stays ended");
    assert_eq!(store.get_and_touch("s:r", LONG, EVERY_READ).await.unwrap(), None);
    store.put("s:r", b"old".to_vec(), LONG).await.unwrap();
    assert!(store.replace("s:r", b"new".to_vec(), LONG).await.unwrap());
    assert_eq!(store.get_and_touch("s:r", LONG, EVERY_READ).await.unwrap().as_deref(), Some(&b"new"[..]));
}

async fn one_lock_holder_at_a_time(store: Arc<dyn SessionStore>) {
    let attempts = futures::future::join_all((0..8).map(|i| {
        let store = store.clone();
        async move { store.try_lock("r:l", &format!("holder-{i}"), LONG).await.unwrap() }
    }))
    .await;
    assert_eq!(attempts.iter().filter(|won| **won).count(), 1);
    let winner = format!("holder-{}", attempts.iter().position(|w| *w).unwrap());
    assert!(!store.extend_lock("r:l", "someone-else", LONG).await.unwrap(), "only the holder extends");
    assert!(store.extend_lock("r:l", &winner, LONG).await.unwrap());
    store.unlock("r:l", "someone-else").await.unwrap();
    assert!(!store.try_lock("r:l", "late", LONG).await.unwrap(), "only the holder unlocks");
    store.unlock("r:l", &winner).await.unwrap();
    assert!(store.try_lock("r:l", "late", LONG).await.unwrap());
}

async fn index_collects_and_is_taken_once(store: Arc<dyn SessionStore>) {
    for member in ["s:1", "s:2", "s:1"] {
        store.index_add("i:x", member, LONG).await.unwrap();
    }
    let mut members = store.index_take("i:x").await.unwrap();
    members.sort();
    assert_eq!(members, ["s:1", "s:2"]);
    assert!(store.index_take("i:x").await.unwrap().is_empty());
    store.put("s:1", b"a".to_vec(), LONG).await.unwrap();
    store.put("s:2", b"b".to_vec(), LONG).await.unwrap();
    store.delete_many(&["s:1".into(), "s:2".into()]).await.unwrap();
    assert_eq!(store.get_and_touch("s:1", LONG, EVERY_READ).await.unwrap(), None);
    assert_eq!(store.get_and_touch("s:2", LONG, EVERY_READ).await.unwrap(), None);
}

async fn index_remove_leaves_the_others_and_an_empty_index_is_gone(store: Arc<dyn SessionStore>) {
    for member in ["s:1", "s:2"] {
        store.index_add("i:y", member, LONG).await.unwrap();
    }
    store.index_remove("i:y", "s:1").await.unwrap();
    store.index_remove("i:y", "s:unknown").await.unwrap();
    assert_eq!(store.index_take("i:y").await.unwrap(), ["s:2"]);
    store.index_add("i:z", "s:1", LONG).await.unwrap();
    store.index_remove("i:z", "s:1").await.unwrap();
    assert!(store.index_take("i:z").await.unwrap().is_empty());
}

async fn insert_new_admits_one_of_many(store: Arc<dyn SessionStore>) {
    let tries = futures::future::join_all((0..8).map(|_| store.insert_new("j:x", LONG))).await;
    assert_eq!(tries.into_iter().filter(|r| *r.as_ref().unwrap()).count(), 1, "exactly one caller is first");
    assert!(!store.insert_new("j:x", LONG).await.unwrap());
    assert!(store.insert_new("j:y", LONG).await.unwrap());
}

async fn exists_sees_values_and_markers_only_while_they_live(store: Arc<dyn SessionStore>) {
    assert!(!store.exists("l:x").await.unwrap());
    assert!(store.insert_new("l:x", LONG).await.unwrap());
    assert!(store.exists("l:x").await.unwrap());
    store.put("s:x", b"v".to_vec(), LONG).await.unwrap();
    assert!(store.exists("s:x").await.unwrap());
    store.delete("s:x").await.unwrap();
    assert!(!store.exists("s:x").await.unwrap());
}

async fn index_members_are_read_without_taking_them(store: Arc<dyn SessionStore>) {
    assert!(store.index_members("i:none").await.unwrap().is_empty(), "an absent index has no members");
    store.index_add("i:m", "s:1", LONG).await.unwrap();
    store.index_add("i:m", "s:2", LONG).await.unwrap();
    for _ in 0..2 {
        let mut members = store.index_members("i:m").await.unwrap();
        members.sort();
        assert_eq!(members, ["s:1", "s:2"], "reading leaves the index as it was");
    }
    store.index_remove("i:m", "s:1").await.unwrap();
    assert_eq!(store.index_members("i:m").await.unwrap(), ["s:2"]);
    assert_eq!(store.index_take("i:m").await.unwrap(), ["s:2"]);
    assert!(store.index_members("i:m").await.unwrap().is_empty());
}

async fn peek_reads_the_value_and_its_life_without_pushing_the_expiry(store: Arc<dyn SessionStore>) {
    assert_eq!(store.peek("s:none").await.unwrap(), None);
    store.put("s:peek", b"p\0q".to_vec(), IDLE).await.unwrap();
    let (value, first) = store.peek("s:peek").await.unwrap().expect("stored");
    assert_eq!(value, b"p\0q");
    let first = first.expect("a session has an expiry");
    assert!(first <= IDLE && first > IDLE - SLACK, "left {first:?} of {IDLE:?}");
    // A get_and_touch here would push the expiry back (less than IDLE - TOUCH remains from
    // 1 s on); peeks never do, so the key goes IDLE after it was written.
    let stored = Instant::now();
    let mut last = first;
    while let Some((_, left)) = store.peek("s:peek").await.unwrap() {
        let left = left.expect("still has an expiry");
        assert!(left <= last, "peek pushed the expiry back: {last:?} then {left:?}");
        last = left;
        assert!(stored.elapsed() < IDLE + SLACK, "still there {:?} after it was written", stored.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!store.exists("s:peek").await.unwrap());
}

async fn memory() -> (Arc<dyn SessionStore>, Option<RedisProcess>) {
    (Arc::new(MemoryStore::new()), None)
}

async fn redis() -> (Arc<dyn SessionStore>, Option<RedisProcess>) {
    let server = RedisProcess::start(false).await.unwrap();
    let link = RedisLink::new(&server.url(), Duration::from_secs(2)).unwrap();
    link.connect().await;
    (Arc::new(RedisStore::new(link, "contract")), Some(server))
}

async fn redis_cluster() -> (Arc<dyn SessionStore>, harness::process::RedisCluster) {
    let cluster = harness::process::RedisCluster::builder().primaries(3).replicas_per_primary(0).run().await.unwrap();
    let link = RedisLink::new(&cluster.url(), Duration::from_secs(2)).unwrap();
    link.connect().await;
    (Arc::new(RedisStore::new(link, "contract")), cluster)
}

async fn sentinel() -> (Arc<dyn SessionStore>, Option<SentinelGroup>) {
    let group = SentinelGroup::start(false).await.unwrap();
    let link = RedisLink::new(&group.url(), Duration::from_secs(2)).unwrap();
    link.connect_in_background();
    link.connect().await;
    (Arc::new(RedisStore::new(link, "contract")), Some(group))
}

/// The operations the session API adds, also behind Sentinel (a group per case costs seconds,
/// so not the whole contract).
mod sentinel_store {
    #[tokio::test]
    async fn index_members_are_read_without_taking_them() {
        let (store, _guard) = super::sentinel().await;
        super::index_members_are_read_without_taking_them(store).await;
    }

    #[tokio::test]
    async fn peek_reads_the_value_and_its_life_without_pushing_the_expiry() {
        let (store, _guard) = super::sentinel().await;
        super::peek_reads_the_value_and_its_life_without_pushing_the_expiry(store).await;
    }
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory_store {
            $(#[tokio::test] async fn $case() { let (store, _guard) = super::memory().await; super::$case(store).await; })*
        }
        mod redis_store {
            $(#[tokio::test] async fn $case() { let (store, _guard) = super::redis().await; super::$case(store).await; })*
        }
        mod redis_cluster_store {
            $(#[tokio::test] async fn $case() { let (store, _guard) = super::redis_cluster().await; super::$case(store).await; })*
        }
    };
}

contract!(
    put_then_get_returns_the_value,
    put_replaces,
    delete_removes,
    ping_answers,
    values_are_binary_safe,
    replace_only_touches_what_exists,
    one_lock_holder_at_a_time,
    index_collects_and_is_taken_once,
    index_remove_leaves_the_others_and_an_empty_index_is_gone,
    insert_new_admits_one_of_many,
    exists_sees_values_and_markers_only_while_they_live,
    a_read_that_is_not_due_does_not_push_the_expiry,
    a_read_answers_the_time_the_key_has_left_after_it,
    a_touch_pushes_back_what_is_due_and_answers_the_life_left_without_reading,
    a_session_used_often_enough_is_never_lost_and_goes_one_idle_timeout_after_its_last_use,
    index_members_are_read_without_taking_them,
    peek_reads_the_value_and_its_life_without_pushing_the_expiry,
);

#[tokio::test]
async fn redis_get_and_touch_slides_the_expiry_in_redis() {
    let (store, server) = redis().await;
    let server = server.unwrap();
    store.put("s:g", b"x".to_vec(), Duration::from_secs(30)).await.unwrap();
    store.get_and_touch("s:g", Duration::from_secs(1200), EVERY_READ).await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL").arg("contract:s:g").query_async(&mut conn).await.unwrap();
    assert!(ttl > 1100, "ttl {ttl}");
    // A server that forgot the read script (a restart, a promoted replica) is sent its body.
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
    assert!(store.get_and_touch("s:g", Duration::from_secs(1200), EVERY_READ).await.unwrap().is_some());
    assert!(store.get_and_touch("s:g", Duration::from_secs(1200), EVERY_READ).await.unwrap().is_some());
    store.put("s:h", b"x".to_vec(), Duration::from_secs(45)).await.unwrap();
    let ttl: i64 = redis::cmd("TTL").arg("contract:s:h").query_async(&mut conn).await.unwrap();
    assert!((40..=45).contains(&ttl), "put sets the expiry in redis: {ttl}");
}

#[tokio::test(start_paused = true)]
async fn memory_get_and_touch_slides_the_expiry() {
    let store = MemoryStore::new();
    store.put("s:h", b"x".to_vec(), Duration::from_secs(60)).await.unwrap();
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(store.get_and_touch("s:h", Duration::from_secs(60), EVERY_READ).await.unwrap().is_some());
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(store.get_and_touch("s:h", Duration::from_secs(60), EVERY_READ).await.unwrap().is_some(), "slid at 50 s");
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(store.get_and_touch("s:h", Duration::from_secs(60), EVERY_READ).await.unwrap().is_none(), "expired");
    assert!(store.insert_new("l:i", Duration::from_secs(10)).await.unwrap());
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(!store.exists("l:i").await.unwrap(), "exists does not see an expired marker");
}

#[tokio::test]
async fn redis_index_lifetimes_only_grow() {
    let (store, server) = redis().await;
    let server = server.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut ttl = async |key: &str| -> i64 { redis::cmd("TTL").arg(key).query_async(&mut conn).await.unwrap() };
    store.index_add("i:t", "s:1", Duration::from_secs(600)).await.unwrap();
    assert!((590..=600).contains(&ttl("contract:i:t").await), "a new index lives for its ttl");
    store.index_add("i:t", "s:2", Duration::from_secs(30)).await.unwrap();
    assert!(ttl("contract:i:t").await > 590, "a shorter session does not shorten a shared index");
    store.index_keep("i:t", Duration::from_secs(1200), EVERY_READ).await.unwrap();
    assert!(ttl("contract:i:t").await > 1190, "keep lengthens");
    store.index_keep("i:t", Duration::from_secs(60), EVERY_READ).await.unwrap();
    assert!(ttl("contract:i:t").await > 1190, "keep never shortens");
    store.index_keep("i:none", Duration::from_secs(60), EVERY_READ).await.unwrap();
    assert_eq!(ttl("contract:i:none").await, -2, "keep creates nothing");
    store.index_keep("i:t", Duration::from_secs(1800), Duration::from_secs(700)).await.unwrap();
    assert!(ttl("contract:i:t").await <= 1200, "not due: more than 1800 s - 700 s remain");
    store.index_keep("i:t", Duration::from_secs(1800), Duration::from_secs(500)).await.unwrap();
    assert!(ttl("contract:i:t").await > 1790, "due: less than 1800 s - 500 s remain");
}

#[tokio::test(start_paused = true)]
async fn memory_index_lifetimes_only_grow() {
    let store = MemoryStore::new();
    store.index_add("i:t", "s:1", Duration::from_secs(60)).await.unwrap();
    store.index_add("i:t", "s:2", Duration::from_secs(10)).await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    store.index_keep("i:t", Duration::from_secs(120), EVERY_READ).await.unwrap();
    store.index_keep("i:t", Duration::from_secs(5), EVERY_READ).await.unwrap();
    tokio::time::advance(Duration::from_secs(100)).await;
    let mut members = store.index_take("i:t").await.unwrap();
    members.sort();
    assert_eq!(members, ["s:1", "s:2"], "lengthened at 30 s to 150 s, never shortened");
    store.index_add("i:u", "s:1", Duration::from_secs(10)).await.unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    store.index_keep("i:u", Duration::from_secs(600), EVERY_READ).await.unwrap();
    assert!(store.index_take("i:u").await.unwrap().is_empty(), "an expired index is not brought back");
    store.index_add("i:v", "s:1", Duration::from_secs(100)).await.unwrap();
    // 100 s remain, at least 120 s - 30 s: not due, so not lengthened.
    store.index_keep("i:v", Duration::from_secs(120), Duration::from_secs(30)).await.unwrap();
    tokio::time::advance(Duration::from_secs(101)).await;
    assert!(store.index_take("i:v").await.unwrap().is_empty(), "a keep that is not due writes nothing");
}
