//! The node cache: with it a request in steady state costs no Redis command, the idle timeout
//! still slides in Redis, and a session ended on one node stops being served by every other
//! node at once, however long the cache would otherwise keep it.

use std::time::Duration;

use harness::VirtualUser;

use crate::stack::{Stack, backchannel_logout, eventually, redis_cmd, redis_command_calls, stack};

/// How many requests `node` has answered from its memory (its `/metrics`).
async fn cache_hits(s: &Stack, node: usize) -> u64 {
    let text = crate::stack::metrics(&s.url(node)).await;
    text.lines()
        .find(|l| l.starts_with("bff_session_cache_total{result=\"hit\"}"))
        .and_then(|l| l.split_whitespace().last())
        .map(|v| v.parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

/// Calls `/account/me` on `node` until the node answers it from memory.
async fn until_served_from_memory(s: &Stack, user: &VirtualUser, node: usize) {
    eventually(&format!("node {node} serves the session from memory"), Duration::from_secs(5), || async {
        let before = cache_hits(s, node).await;
        assert_eq!(user.me(&s.url(node)).await.unwrap().status, 200);
        cache_hits(s, node).await > before
    })
    .await;
}

async fn redis_calls(port: u16, command: &str) -> u64 {
    redis_command_calls(port).await.get(command).copied().unwrap_or(0)
}

async fn session_ttl(port: u16) -> i64 {
    let keys = match redis_cmd(port, &["KEYS", "bff:s:*"]).await {
        redis::Value::Array(keys) => keys,
        other => panic!("{other:?}"),
    };
    assert_eq!(keys.len(), 1, "one session: {keys:?}");
    let redis::Value::BulkString(key) = &keys[0] else { panic!("{keys:?}") };
    match redis_cmd(port, &["TTL", std::str::from_utf8(key).unwrap()]).await {
        redis::Value::Int(ttl) => ttl,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn steady_state_costs_no_redis_command_and_the_idle_timeout_still_slides() {
    let s = stack().env("BFF_SESSION_IDLE_TIMEOUT", "10s").env("BFF_SESSION_CACHE_MAX_AGE", "1s").run().await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    until_served_from_memory(&s, &user, 0).await;
    let port = s.redis().port();

    let _ = redis_cmd(port, &["CONFIG", "RESETSTAT"]).await;
    let started = tokio::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200);
    }
    // One read each time the entry's age (1 s) ran out, however slow this machine is.
    let allowed = started.elapsed().as_secs() + 1;
    assert!(redis_calls(port, "evalsha").await <= allowed, "20 requests, at most {allowed} reads");

    // Four seconds of activity: the session is read again every second, which slides its idle
    // timeout (TTL about 9); served from memory alone, its TTL would be down to about 6.
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ttl = session_ttl(port).await;
    assert!(ttl >= 7, "the idle timeout slid: TTL {ttl}");
    assert!(redis_calls(port, "evalsha").await >= 2);
}

#[tokio::test]
async fn a_session_ended_on_one_node_is_not_served_from_another_nodes_memory() {
    let s = stack().nodes(3).env("BFF_SESSION_CACHE_MAX_AGE", "10m").run().await;
    let user = VirtualUser::new(Some("erin"));
    let other = VirtualUser::new(Some("frank"));
    user.login(&s.url(0)).await.unwrap();
    other.login(&s.url(0)).await.unwrap();
    for node in 0..3 {
        until_served_from_memory(&s, &user, node).await;
        until_served_from_memory(&s, &other, node).await;
    }

    // The identity provider ends erin's session through node 2 (back-channel logout): her
    // browser still holds its cookie, so only the nodes' memories stand between it and a 200.
    let token = s.issuer.logout_token(Some(&s.issuer.last_sid("erin").unwrap()), None);
    assert_eq!(backchannel_logout(&s.url(2), &token).await, 200);
    for node in 0..3 {
        eventually(&format!("node {node} forgets the ended session"), Duration::from_secs(2), || async {
            user.me(&s.url(node)).await.unwrap().status == 404
        })
        .await;
        assert_eq!(other.me(&s.url(node)).await.unwrap().status, 200, "other sessions stay served");
    }
}

/// Processes that spin on the CPU until dropped, so that every node's tasks are scheduled late.
struct CpuBurners(Vec<std::process::Child>);

impl CpuBurners {
    fn start(n: usize) -> Self {
        let spin = || std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("sh");
        CpuBurners((0..n).map(|_| spin()).collect())
    }
}

impl Drop for CpuBurners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Once a logout (end-session, or the identity provider's back-channel logout) has answered on
/// one node, the very next request on another node, over the connection it already holds, is
/// refused: the other node had the session in memory, and the CPU is saturated, so a change
/// notice that is merely on its way would lose the race now and then.
#[tokio::test]
async fn no_node_serves_a_session_once_its_logout_has_answered_even_under_cpu_load() {
    const LOGOUTS: usize = 500;
    let s = stack().nodes(2).env("BFF_SESSION_CACHE_MAX_AGE", "10m").env("BFF_LOG_LEVEL", "warn").run().await;
    let (a, b) = (s.url(0), s.url(1));
    let _burners = CpuBurners::start(2);
    let hits_before = cache_hits(&s, 1).await;
    let mut stale = Vec::new();
    let mut logout_times = Vec::with_capacity(LOGOUTS);
    for i in 0..LOGOUTS {
        let name = format!("user-{i}");
        let user = VirtualUser::new(Some(&name));
        assert_eq!(user.login(&a).await.unwrap().status, 302);
        // The first read keeps the session in node b's memory, the second is served from it.
        assert_eq!(user.me(&b).await.unwrap().status, 200);
        assert_eq!(user.me(&b).await.unwrap().status, 200);
        let started = std::time::Instant::now();
        if i % 2 == 0 {
            let reply = user.logout_keeping_cookie(&a).await.unwrap();
            assert_eq!(reply.status, 302, "end-session: {reply:?}");
        } else {
            let token = s.issuer.logout_token(Some(&s.issuer.last_sid(&name).unwrap()), None);
            assert_eq!(backchannel_logout(&a, &token).await, 200);
        }
        logout_times.push(started.elapsed());
        let after = user.me(&b).await.unwrap();
        if after.status != 404 {
            stale.push((i, after.status));
        }
    }
    let hits = cache_hits(&s, 1).await - hits_before;
    logout_times.sort();
    println!(
        "{LOGOUTS} logouts under 2 CPU burners: {} stale answers; logout p50 {:?}, p99 {:?}, max {:?}; \
         {hits} reads served from node b's memory",
        stale.len(),
        logout_times[LOGOUTS / 2],
        logout_times[LOGOUTS * 99 / 100],
        logout_times[LOGOUTS - 1],
    );
    assert!(hits >= LOGOUTS as u64 / 2, "node b had the sessions in memory ({hits} hits), so the test can fail");
    assert!(stale.is_empty(), "served after logout: {stale:?}");
    // Every session ended: none of them, and none of their back-channel logout indexes, is left.
    let left = match redis_cmd(s.redis().port(), &["KEYS", "bff:[si]:*"]).await {
        redis::Value::Array(keys) => keys.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(left, 0, "sessions or indexes left behind after {LOGOUTS} logouts");
}
