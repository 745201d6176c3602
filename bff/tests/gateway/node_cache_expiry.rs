//! The node cache keeps what it can trust, for as long as it can: an entry lives until its
//! session's expiry in Redis is due to be pushed back, not for a fixed short time, so a session
//! used only through one node's memory is still read from Redis when its touch is due and never
//! expires there while in use; and the cache reports the memory it takes.

use std::time::Duration;

use harness::VirtualUser;

use crate::stack::{Stack, eventually, metrics, redis_cmd, redis_command_calls, stack};

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The session's reads and touches that reached Redis (`EVALSHA` of the read script, and of
/// the touch script sent off the request's path).
async fn reads(s: &Stack) -> u64 {
    redis_command_calls(s.redis().port()).await.get("evalsha").copied().unwrap_or(0)
}

async fn session_pttl(s: &Stack) -> i64 {
    let port = s.redis().port();
    let redis::Value::Array(keys) = redis_cmd(port, &["KEYS", "bff:s:*"]).await else { panic!("KEYS") };
    assert_eq!(keys.len(), 1, "one session");
    let redis::Value::BulkString(key) = &keys[0] else { panic!("{keys:?}") };
    match redis_cmd(port, &["PTTL", std::str::from_utf8(key).unwrap()]).await {
        redis::Value::Int(ttl) => ttl,
        other => panic!("{other:?}"),
    }
}

/// Idle timeout 4 s, touch interval 1 s, no `cache_max_age`: served from memory, the session
/// would expire in Redis 4 s after its last store read. Used every 100 ms for two idle timeouts,
/// it is touched in Redis about once a second (each touch due pushes the expiry back, sent off
/// the request's path while the request is answered from memory), and it is never lost.
#[tokio::test]
async fn a_session_used_only_through_memory_is_still_touched_in_redis_when_due() {
    let s = stack().env("BFF_SESSION_IDLE_TIMEOUT", "4s").env("BFF_SESSION_TOUCH_INTERVAL", "1s").run().await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let before = reads(&s).await;
    let (started, mut requests) = (tokio::time::Instant::now(), 0u64);
    while started.elapsed() < Duration::from_secs(8) {
        assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200, "lost after {:?} of use", started.elapsed());
        requests += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (reads, seconds) = (reads(&s).await - before, started.elapsed().as_secs());
    assert!(reads >= 4, "{reads} reads in {seconds} s: the touches did not reach Redis");
    assert!(reads <= seconds + 3, "{reads} reads for {requests} requests in {seconds} s: about one per touch interval");
    let left = session_pttl(&s).await;
    assert!(left >= 2000, "{left} ms left in Redis: the expiry was pushed back while the session was used");
}

#[tokio::test]
async fn the_cache_reports_its_memory_its_entries_and_its_budget() {
    let s = stack().env("BFF_SESSION_CACHE_MEMORY", "8MiB").run().await;
    let user = VirtualUser::new(Some("grace"));
    user.login(&s.url(0)).await.unwrap();
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200);
    eventually("the cache reports one entry", Duration::from_secs(5), || async {
        gauge(&metrics(&s.url(0)).await, "bff_session_cache_entries") == Some(1.0)
    })
    .await;
    let text = metrics(&s.url(0)).await;
    let bytes = gauge(&text, "bff_session_cache_bytes").expect("bff_session_cache_bytes");
    assert!((500.0..65536.0).contains(&bytes), "one session's tokens and bookkeeping: {bytes} bytes");
    assert_eq!(gauge(&text, "bff_session_cache_budget_bytes"), Some(8.0 * 1024.0 * 1024.0));
}
