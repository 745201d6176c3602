//! The gateway's flows with the slots spread over three primaries, and the node cache's change
//! notices on a cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use harness::{MockIssuer, VirtualUser};

use crate::fixture::{api_call, cluster_stack};
use crate::stack::{backchannel_logout, eventually, metrics};

#[tokio::test]
async fn login_me_refresh_logout_and_backchannel_logout_work_on_a_cluster() {
    let issuer = MockIssuer::builder().access_token_lifetime(Duration::from_secs(1)).run().await.unwrap();
    let s = cluster_stack().nodes(2).issuer(issuer).run().await;
    let users: Vec<VirtualUser> = (0..6).map(|i| VirtualUser::new(Some(&format!("user-{i}")))).collect();
    for (i, user) in users.iter().enumerate() {
        assert_eq!(user.login(&s.url(i % 2)).await.unwrap().status, 302, "login of user-{i}");
        let me = user.me(&s.url((i + 1) % 2)).await.unwrap();
        assert_eq!(me.status, 200, "me of user-{i} on the other node");
        assert_eq!(me.json().unwrap()["sub"], format!("user-{i}"));
    }
    // The access tokens (1 s) are due at once (the refresh skew is longer): an API call
    // refreshes, under the refresh lock.
    let refreshes = s.issuer.calls("refresh");
    assert_eq!(api_call(&users[0], &s.url(1)).await, 200);
    assert!(s.issuer.calls("refresh") > refreshes, "the API call refreshed the token");
    assert_eq!(api_call(&users[0], &s.url(0)).await, 200);

    // Back-channel logout by sid and by sub, on the node that did not log them in.
    let sid = s.issuer.last_sid("user-1").unwrap();
    assert_eq!(backchannel_logout(&s.url(0), &s.issuer.logout_token(Some(&sid), None)).await, 200);
    assert_eq!(backchannel_logout(&s.url(1), &s.issuer.logout_token(None, Some("user-2"))).await, 200);
    // The same token again is a replay.
    let token = s.issuer.logout_token(None, Some("user-3"));
    assert_eq!(backchannel_logout(&s.url(1), &token).await, 200);
    assert_ne!(backchannel_logout(&s.url(0), &token).await, 200, "a replayed logout token is refused");
    users[4].logout(&s.url(0)).await.unwrap();
    for node in 0..2 {
        for (i, user) in users.iter().enumerate() {
            let expected = if (1..=4).contains(&i) { 404 } else { 200 };
            assert_eq!(user.me(&s.url(node)).await.unwrap().status, expected, "user-{i} on node {node}");
        }
    }
    // The sessions, indexes and markers spread over the shards.
    let memory = s.cluster.memory_per_shard().await.unwrap();
    assert!(memory.iter().filter(|m| m.memory.keys > 0).count() >= 2, "keys on one shard only: {memory:?}");
}

/// How often the node's cache was switched on for a confirmed subscription.
async fn confirmations(base: &str) -> u64 {
    metrics(base)
        .await
        .lines()
        .find(|l| l.starts_with("bff_session_cache_confirmations_total"))
        .and_then(|l| l.split_whitespace().last())
        .map(|v| v.parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

pub async fn cache_hits(base: &str) -> u64 {
    counter(base, "bff_session_cache_total{result=\"hit\"}").await
}

/// The value of the metric whose line starts with `name` (0 when there is none yet).
async fn counter(base: &str, name: &str) -> u64 {
    metrics(base)
        .await
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .map(|v| v.parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

/// Reads `/account/me` on `base` until the node answers it from its cache (a cache hit counted).
pub async fn until_served_from_memory(user: &VirtualUser, base: &str) {
    eventually("the node serves the session from memory", Duration::from_secs(10), || async {
        let before = cache_hits(base).await;
        assert_eq!(user.me(base).await.unwrap().status, 200);
        cache_hits(base).await > before
    })
    .await;
}

#[tokio::test]
async fn a_logout_reaches_every_nodes_cache_and_a_lost_subscription_empties_it() {
    let s = cluster_stack().nodes(2).replicas_per_primary(1).env("BFF_SESSION_CACHE_MAX_AGE", "30s").run().await;
    let (alice, bob) = (VirtualUser::new(Some("alice")), VirtualUser::new(Some("bob")));
    for user in [&alice, &bob] {
        user.login(&s.url(0)).await.unwrap();
        until_served_from_memory(user, &s.url(1)).await;
    }
    // A logout on node 0 is not served from node 1's memory, at once.
    alice.logout_keeping_cookie(&s.url(0)).await.unwrap();
    assert_eq!(alice.me(&s.url(1)).await.unwrap().status, 404, "node 1 served a logged-out session from memory");

    // The primary that carries the notices dies: every node's cache goes off, subscribes again
    // on the replica that replaced it, and serves correctly again.
    let notices = s.cluster.shard_of("bff:session-changed").await.unwrap();
    let mut before = Vec::new();
    for node in 0..2 {
        before.push(confirmations(&s.url(node)).await);
    }
    let mut s = s;
    s.cluster.kill_primary(notices).await.unwrap();
    for (node, before) in before.iter().enumerate() {
        let base = s.url(node);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while confirmations(&base).await <= *before {
            if tokio::time::Instant::now() > deadline {
                let logs = s.nodes[node].logs();
                panic!("node {node} did not subscribe again:\n{}", logs[logs.len().saturating_sub(30)..].join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    until_served_from_memory(&bob, &s.url(1)).await;
    bob.logout_keeping_cookie(&s.url(0)).await.unwrap();
    assert_eq!(bob.me(&s.url(1)).await.unwrap().status, 404, "node 1 served a logged-out session after the failover");
    assert_eq!(alice.me(&s.url(1)).await.unwrap().status, 404);
}

/// Logouts that come together on a shard whose writes wait for a replica that is not there (a
/// primary just added: each `DEL` waits the whole `WAIT` bound) each answer within their bound,
/// and none leaves its session in another node's memory, whatever a logout answered first (a
/// browser sends a logout that answered 503 again). When such writes queued behind one another on
/// one connection, a `DEL` ran after its logout had answered 503 without telling the caches; the
/// second logout found no session and told no one, and the other node served the session from
/// memory.
#[tokio::test]
async fn logouts_together_on_a_shard_without_replica_leave_no_session_in_a_nodes_memory() {
    let mut s = cluster_stack()
        .nodes(2)
        .replicas_per_primary(1)
        .env("BFF_REDIS_WAIT_REPLICAS", "1")
        .env("BFF_SESSION_CACHE_MAX_AGE", "60s")
        .run()
        .await;
    let added = s.cluster.add_primary().await.unwrap();
    s.cluster.reshard(2, added, 0.1).await.unwrap();
    // Users whose sessions live on the added primary, which has no replica.
    let mut users = Vec::new();
    for i in 0..400 {
        if users.len() == 5 {
            break;
        }
        let user = VirtualUser::new(Some(&format!("user-{i}")));
        if !user.login(&s.url(0)).await.is_ok_and(|reply| reply.status == 302) {
            continue;
        }
        let key = crate::fixture::session_key(&user).expect("a session cookie");
        if s.cluster.shard_of(&key).await.unwrap() == added {
            until_served_from_memory(&user, &s.url(1)).await;
            users.push(user);
        }
    }
    assert_eq!(users.len(), 5, "sessions on the added primary");
    let logouts = users.iter().map(|user| async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut answers = Vec::new();
        loop {
            let status = user.logout_keeping_cookie(&s.url(0)).await.map(|reply| reply.status).unwrap_or(0);
            answers.push(status);
            if status == 302 || tokio::time::Instant::now() > deadline {
                return answers;
            }
        }
    });
    let answers = futures::future::join_all(logouts).await;
    println!("logout answers (each user's, in order): {answers:?}");
    for (i, user) in users.iter().enumerate() {
        assert_eq!(answers[i].last(), Some(&302), "logout {i}");
        let me = user.me(&s.url(1)).await.unwrap();
        assert_eq!(me.status, 404, "node 1 served session {i} after its logout answered {:?}", answers[i]);
    }
}

/// A stand-in for a gateway node whose subscription is on another node of the cluster than the
/// writer's (as during a failover of the notice node, when one gateway node has moved and another
/// has not): it hears notices over the cluster bus and acknowledges them only when `ack` is set.
async fn subscriber_elsewhere(address: std::net::SocketAddr, ack: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let client = redis::Client::open(format!("redis://{address}")).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("bff:session-changed").await.unwrap();
    let mut publisher = client.get_multiplexed_async_connection().await.unwrap();
    tokio::spawn(async move {
        let mut notices = pubsub.on_message();
        while let Some(notice) = notices.next().await {
            let payload: String = notice.get_payload().unwrap();
            let [key, writer, nonce] = payload.split(' ').collect::<Vec<_>>()[..] else { continue };
            if ack.load(Ordering::SeqCst) {
                let _: () = redis::cmd("PUBLISH")
                    .arg(format!("bff:session-changed-ack:{writer}"))
                    .arg(format!("{nonce} elsewhere {key}"))
                    .query_async(&mut publisher)
                    .await
                    .unwrap();
            }
        }
    })
}

/// A logout waits for the subscribers of every node of the cluster, not only those of the node
/// that took its notice (`PUBLISH` counts only those): a subscriber on another node that does not
/// acknowledge holds the writer for its lease (counted unacknowledged), and one that does lets
/// it answer. Counting one node's subscribers, a writer answered at once while a gateway node
/// subscribed elsewhere could still serve the session from memory.
#[tokio::test]
async fn a_logout_waits_for_subscribers_on_every_node_of_the_cluster() {
    let s = cluster_stack().nodes(1).replicas_per_primary(1).env("BFF_SESSION_CACHE_MAX_AGE", "30s").run().await;
    let notices = s.cluster.shard_of("bff:session-changed").await.unwrap();
    let elsewhere = s.cluster.primaries().into_iter().find(|m| m.shard != notices).unwrap().address;
    let ack = Arc::new(AtomicBool::new(false));
    let _subscriber = subscriber_elsewhere(elsewhere, ack.clone()).await;
    let unacknowledged = |base: String| async move { counter(&base, "bff_session_change_unacknowledged_total").await };

    let (alice, bob) = (VirtualUser::new(Some("alice")), VirtualUser::new(Some("bob")));
    for user in [&alice, &bob] {
        user.login(&s.url(0)).await.unwrap();
        until_served_from_memory(user, &s.url(0)).await;
    }
    let before = unacknowledged(s.url(0)).await;
    assert_eq!(alice.logout(&s.url(0)).await.unwrap().status, 302);
    assert_eq!(
        unacknowledged(s.url(0)).await,
        before + 1,
        "the logout did not wait for the subscriber on another node of the cluster"
    );
    ack.store(true, Ordering::SeqCst);
    assert_eq!(bob.logout(&s.url(0)).await.unwrap().status, 302);
    assert_eq!(
        unacknowledged(s.url(0)).await,
        before + 1,
        "an acknowledgement from a subscriber on another node was not counted"
    );
}
