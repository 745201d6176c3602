//! Low: after a Sentinel failover the change-notice subscription was said to stay on the demoted
//! master, so a logout on another node would no longer reach this node's cache. Against a real
//! primary, replica and three sentinels: after the sentinels fail over (the old master lives on
//! as a replica), the node's subscription is on the new master and not on the old one, its
//! cache is confirmed again, and a session ended on another node is not served from this one's
//! memory.

use std::time::Duration;

use harness::VirtualUser;
use harness::process::SentinelGroup;

use crate::stack::{eventually, node_builder};

async fn session_cache(url: &str) -> serde_json::Value {
    let body = reqwest::get(format!("{url}/ready")).await.unwrap().text().await.unwrap();
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["session_cache"].clone()
}

/// How many subscribers `PUBSUB NUMSUB` counts on the notices' channel of the server on `port`.
async fn subscribers(port: u16) -> i64 {
    match crate::stack::redis_cmd(port, &["PUBSUB", "NUMSUB", "bff:session-changed"]).await {
        redis::Value::Array(items) => match items.get(1) {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn after_a_failover_the_change_notices_come_from_the_new_master() {
    let mut group = SentinelGroup::start(false).await.unwrap();
    let old_master = group.master_port().await.unwrap();
    let issuer = harness::MockIssuer::builder().run().await.unwrap();
    let ports = [harness::process::free_port(), harness::process::free_port()];
    let public_url = format!("http://127.0.0.1:{}", ports[0]);
    let mut nodes = Vec::new();
    for port in ports {
        let node = node_builder(&issuer, None, &public_url)
            .port(port)
            .env("BFF_REDIS_URL", group.url())
            .env("BFF_SESSION_CACHE_MAX_AGE", "10m")
            .run()
            .await
            .unwrap();
        nodes.push(node);
    }
    let (cached, other) = (nodes[0].url(), nodes[1].url());
    eventually("both caches are live on the first master", Duration::from_secs(15), || async {
        session_cache(&cached).await["live"] == true && session_cache(&other).await["live"] == true
    })
    .await;
    assert_eq!(subscribers(old_master).await, 2);
    let confirmed = session_cache(&cached).await["confirmations"].as_u64().unwrap();

    let new_master = group.failover(false).await.unwrap();
    assert_ne!(new_master, old_master);
    eventually("the subscriptions moved to the new master", Duration::from_secs(30), || async {
        subscribers(new_master).await == 2
            && subscribers(old_master).await == 0
            && session_cache(&cached).await["live"] == true
            && session_cache(&cached).await["confirmations"].as_u64().unwrap() > confirmed
            && session_cache(&other).await["live"] == true
    })
    .await;

    let user = VirtualUser::new(Some("kim"));
    assert_eq!(user.login(&other).await.unwrap().status, 302);
    assert_eq!(user.me(&cached).await.unwrap().status, 200);
    assert_eq!(user.me(&cached).await.unwrap().status, 200, "now from the cache");
    assert_eq!(user.logout_keeping_cookie(&other).await.unwrap().status, 302);
    assert_eq!(user.me(&cached).await.unwrap().status, 404, "a session ended on the new master was served from memory");
}
