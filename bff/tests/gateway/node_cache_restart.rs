//! The node cache across Redis restarts: a Redis that comes back without its data (no
//! persistence) is another store, and no node may answer from memory for a session it lost, not
//! even in the first milliseconds after it accepts connections again; `/ready` says when a node's
//! cache is confirmed against the new server; with persistence, sessions survive and are served
//! from memory again.

use std::time::Duration;

use harness::{RedisProcess, VirtualUser};

use crate::stack::{Stack, eventually, node_builder, stack};

/// `GET /ready`'s `session_cache` object.
async fn session_cache(url: &str) -> serde_json::Value {
    let body = reqwest::get(format!("{url}/ready")).await.unwrap().text().await.unwrap();
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    ready["session_cache"].clone()
}

async fn confirmations(url: &str) -> u64 {
    session_cache(url).await["confirmations"].as_u64().expect("confirmations is a number")
}

async fn is_live(url: &str) -> bool {
    session_cache(url).await["live"] == true
}

/// How many requests the node at `url` has answered from its memory (its `/metrics`).
async fn cache_hits(url: &str) -> u64 {
    let text = crate::stack::metrics(url).await;
    text.lines()
        .find(|l| l.starts_with("bff_session_cache_total{result=\"hit\"}"))
        .and_then(|l| l.split_whitespace().last())
        .map(|v| v.parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

/// Calls `/account/me` on `url` until the node answers it from memory.
async fn until_served_from_memory(user: &VirtualUser, url: &str) {
    eventually(&format!("{url} serves the session from memory"), Duration::from_secs(10), || async {
        let before = cache_hits(url).await;
        user.me(url).await.map(|r| r.status == 200).unwrap_or(false) && cache_hits(url).await > before
    })
    .await;
}

async fn until_ready(url: &str) {
    let http = reqwest::Client::new();
    eventually(&format!("{url} is ready"), Duration::from_secs(15), || async {
        http.get(format!("{url}/ready")).send().await.map(|r| r.status() == 200).unwrap_or(false)
    })
    .await;
}

/// A Redis without persistence, restarted five times: each time every node had the session in
/// memory, and from the moment the new Redis answers PING every node is read in a tight loop
/// until it says 404. Not one 200 may come first: the session is gone from the store.
#[tokio::test]
async fn no_node_serves_a_session_that_a_restarted_redis_lost() {
    const RESTARTS: usize = 5;
    let mut s: Stack = stack().nodes(2).env("BFF_SESSION_CACHE_MAX_AGE", "10m").run().await;
    let urls: Vec<String> = (0..2).map(|node| s.url(node)).collect();
    let mut stale = Vec::new();
    for restart in 0..RESTARTS {
        for url in &urls {
            until_ready(url).await;
        }
        let user = VirtualUser::new(None);
        assert_eq!(user.login(&urls[0]).await.unwrap().status, 302, "login before restart {restart}");
        for url in &urls {
            until_served_from_memory(&user, url).await;
        }

        s.redis.as_mut().unwrap().restart().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        for (node, url) in urls.iter().enumerate() {
            let mut reads = 0;
            loop {
                let status = user.me(url).await.map(|r| r.status).unwrap_or(0);
                reads += 1;
                if status == 200 {
                    stale.push((restart, node, reads));
                }
                if status == 404 {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "node {node} never answered 404 (last {status})");
            }
            // Once the node knows, it stays knowing: another burst of reads, all 404.
            for _ in 0..50 {
                assert_eq!(user.me(url).await.unwrap().status, 404, "node {node} after restart {restart}");
            }
        }
    }
    let first: Vec<_> = stale.iter().take(10).collect();
    assert!(
        stale.is_empty(),
        "{} answers of 200 after Redis lost the session; first ones (restart, node, read): {first:?}",
        stale.len()
    );
}

/// `/ready` says whether the node's cache is on and counts its confirmations: the count grows
/// after a Redis restart, and `live` comes back true once the node has subscribed again.
#[tokio::test]
async fn ready_counts_a_confirmation_after_each_redis_restart() {
    let mut s = stack().run().await;
    let url = s.url(0);
    eventually("the cache is live", Duration::from_secs(10), || is_live(&url)).await;
    let cache = session_cache(&url).await;
    assert_eq!(cache["enabled"], true, "{cache}");
    let mut seen = confirmations(&url).await;
    assert!(seen >= 1, "the first subscription is a confirmation: {cache}");
    for _ in 0..2 {
        s.redis.as_mut().unwrap().restart().await.unwrap();
        eventually("a new confirmation, and the cache live again", Duration::from_secs(15), || async {
            let cache = session_cache(&url).await;
            cache["confirmations"].as_u64().unwrap() > seen && cache["live"] == true
        })
        .await;
        seen = confirmations(&url).await;
    }
    let metrics = crate::stack::metrics(&url).await;
    assert!(metrics.lines().any(|l| l == "bff_session_cache_live 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("bff_session_cache_confirmations_total ")), "{metrics}");
}

/// Without a node cache (memory store, or the cache switched off) `/ready` says so.
#[tokio::test]
async fn ready_says_when_there_is_no_node_cache() {
    let memory = stack().memory().run().await;
    let off = stack().env("BFF_SESSION_CACHE_MAX_AGE", "off").run().await;
    for s in [&memory, &off] {
        let cache = session_cache(&s.url(0)).await;
        assert_eq!(cache, serde_json::json!({ "enabled": false, "live": false, "confirmations": 0 }));
    }
}

/// With persistence the session outlives the restart: the node confirms its cache against the
/// new server, reads the session from Redis again and serves it from memory as before.
#[tokio::test]
async fn with_persistence_a_session_survives_a_redis_restart_and_is_cached_again() {
    let issuer = harness::MockIssuer::builder().run().await.unwrap();
    let mut redis = RedisProcess::start(true).await.unwrap();
    let port = harness::process::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _node = node_builder(&issuer, Some(&redis), &url)
        .env("BFF_SESSION_CACHE_MAX_AGE", "10m")
        .port(port)
        .run()
        .await
        .unwrap();
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&url).await.unwrap().status, 302);
    until_served_from_memory(&user, &url).await;
    let before = confirmations(&url).await;

    redis.restart().await.unwrap();
    eventually("the cache is confirmed against the restarted redis", Duration::from_secs(15), || async {
        confirmations(&url).await > before && is_live(&url).await
    })
    .await;
    eventually("the session is served again", Duration::from_secs(15), || async {
        user.me(&url).await.map(|r| r.status == 200).unwrap_or(false)
    })
    .await;
    until_served_from_memory(&user, &url).await;
}
