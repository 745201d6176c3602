//! The session API for operators over real processes: three `bff` nodes with node caches that
//! would keep a session for ten minutes, a real `redis-server`, the mock issuer. A user's
//! sessions are listed from any node, and once an end answered, the very next `/account/me` on
//! every node is a 404: no node serves the ended session from its memory.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use harness::VirtualUser;
use harness::session_api::{SessionApi, SessionApiError, Whose};

use crate::stack::{OPS_TOKEN, Stack, eventually, metrics, redis_cmd, stack};

/// Rounds of the bar: log a user in twice, end their sessions, `me` on every node.
const ROUNDS: usize = 500;
/// Users doing rounds at once (each its own `sub`): the load the ends run under.
const WORKERS: usize = 4;

async fn three_cached_nodes() -> Stack {
    let s = stack().nodes(3).named().env("BFF_SESSION_CACHE_MAX_AGE", "10m").run().await;
    for node in 0..3 {
        eventually(&format!("node {node}'s cache is live"), Duration::from_secs(10), || async {
            metrics(&s.url(node)).await.lines().any(|l| l == "bff_session_cache_live 1")
        })
        .await;
    }
    s
}

async fn me(user: &VirtualUser, s: &Stack, node: usize) -> u16 {
    user.me(&s.url(node)).await.unwrap().status
}

/// Index keys (`bff:i:*`) in Redis: the back-channel logout indexes the API reads.
async fn index_keys(s: &Stack) -> usize {
    match redis_cmd(s.redis().port(), &["KEYS", "bff:i:*"]).await {
        redis::Value::Array(keys) => keys.len(),
        other => panic!("{other:?}"),
    }
}

fn counter(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.split_whitespace().last())
        .map_or(0, |v| v.parse::<f64>().unwrap() as u64)
}

#[tokio::test]
async fn a_users_sessions_are_listed_and_ended_on_every_node_at_once_under_load() {
    let s = three_cached_nodes().await;
    let api = |node: usize| SessionApi::new(&s.url(node), OPS_TOKEN);

    // Someone else, busy on every node the whole time: never logged out by another's end.
    let bystander = Arc::new(VirtualUser::new(Some("bob")));
    bystander.login(&s.url(2)).await.unwrap();
    let stop = Arc::new(tokio::sync::Notify::new());
    let bystander_failures = Arc::new(AtomicU64::new(0));
    let load = {
        let (user, stop, failures) = (bystander.clone(), stop.clone(), bystander_failures.clone());
        let urls: Vec<String> = (0..3).map(|n| s.url(n)).collect();
        tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                tokio::select! {
                    () = stop.notified() => return n,
                    reply = user.me(&urls[n % 3]) => {
                        if reply.map(|r| r.status).unwrap_or(0) != 200 {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        n += 1;
                    }
                }
            }
        })
    };

    // The bar's picture: alice logged in twice (two browsers, two logins at the issuer), started
    // on node-1 and node-2, each session read (and cached) on all three nodes. The login
    // callback comes back to the public URL (node-1's here), which creates the session.
    let alice = Whose::Sub("alice".into());
    let (first, second) = (VirtualUser::new(Some("alice")), VirtualUser::new(Some("alice")));
    first.login(&s.url(0)).await.unwrap();
    second.login(&s.url(1)).await.unwrap();
    for node in 0..3 {
        assert_eq!((me(&first, &s, node).await, me(&second, &s, node).await), (200, 200));
    }
    let listing = api(2).list(&alice).await.unwrap();
    assert_eq!(listing.sessions.len(), 2, "{listing:?}");
    for session in &listing.sessions {
        assert_eq!(session.created_on.as_deref(), Some("node-1"), "the node of the callback");
    }
    let sids: BTreeSet<_> = listing.sessions.iter().map(|s| s.sid.clone().unwrap()).collect();
    assert_eq!(sids.len(), 2, "two logins at the issuer");
    for session in &listing.sessions {
        assert_eq!(session.sub.as_deref(), Some("alice"));
        assert_eq!(session.id.len(), 32);
        assert!(session.created_at <= session.last_seen_at && session.last_seen_at <= session.idle_expires_at);
        assert!(session.idle_expires_at <= session.absolute_expires_at);
    }
    // Nothing but the summary: no token, no other claim.
    let raw: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/ops/sessions?sub=alice", s.url(0)))
        .bearer_auth(OPS_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fields: BTreeSet<_> = raw["sessions"][0].as_object().unwrap().keys().cloned().collect();
    let expected =
        ["absolute_expires_at", "created_at", "created_on", "id", "idle_expires_at", "last_seen_at", "sid", "sub"];
    assert_eq!(fields, expected.into_iter().map(str::to_owned).collect());
    // The same answer from every node (the store's, not a node's; the expiries computed from
    // the time left may fall either side of a second).
    let again = api(0).list(&alice).await.unwrap().sessions;
    assert_eq!(again.len(), 2);
    for (a, b) in again.iter().zip(&listing.sessions) {
        assert_eq!((&a.id, a.created_at, &a.created_on, &a.sid), (&b.id, b.created_at, &b.created_on, &b.sid));
        assert!(a.idle_expires_at.abs_diff(b.idle_expires_at) <= 1, "{a:?} {b:?}");
    }

    // One session by its handle: the other stays.
    let one = &listing.sessions[0];
    let ended = api(0).end(&alice, Some(&one.id)).await.unwrap();
    assert_eq!(ended.ids, std::slice::from_ref(&one.id));
    let left = api(1).list(&alice).await.unwrap().sessions;
    assert_eq!(left.iter().map(|s| &s.id).collect::<Vec<_>>(), [&listing.sessions[1].id]);
    assert_eq!(api(0).end(&alice, Some(&one.id)).await.unwrap().ended, 0, "ending it again ends nothing");
    // All of them; again: nothing left, nothing counted.
    assert_eq!(api(1).end(&alice, None).await.unwrap().ended, 1);
    for node in 0..3 {
        assert_eq!((me(&first, &s, node).await, me(&second, &s, node).await), (404, 404), "node {node}");
    }
    assert_eq!(api(2).end(&alice, None).await.unwrap().ended, 0);
    assert!(api(2).list(&alice).await.unwrap().sessions.is_empty());
    // Every end is an audit line naming the asker and a digest of the user, never the user.
    let logs: Vec<String> = (0..3).flat_map(|n| s.nodes[n].logs()).collect();
    let audit: Vec<&String> = logs.iter().filter(|l| l.contains("operator ended sessions")).collect();
    assert_eq!(audit.len(), 4, "{audit:#?}");
    for line in &audit {
        assert!(line.contains("bff::audit") && line.contains("ops_token") && line.contains("127.0.0.1"), "{line}");
        assert!(line.contains("request_id") && line.contains(&listing.subject), "{line}");
        assert!(!line.contains("alice"), "no claim in the log: {line}");
    }

    // The bar, repeated: WORKERS users at once, ROUNDS in all, each round two fresh logins on
    // two nodes, read on all three (cached), an end by `sub` through a third node, and then
    // `me` on every node at once: any 200 is a stale answer.
    let stale = Arc::new(AtomicU64::new(0));
    let s = Arc::new(s);
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (s, stale) = (s.clone(), stale.clone());
        workers.push(tokio::spawn(async move {
            let sub = format!("carol-{worker}");
            let whose = Whose::Sub(sub.clone());
            for round in 0..ROUNDS / WORKERS {
                let (a, b) = (VirtualUser::new(Some(&sub)), VirtualUser::new(Some(&sub)));
                a.login(&s.url(round % 3)).await.unwrap();
                b.login(&s.url((round + 1) % 3)).await.unwrap();
                for node in 0..3 {
                    assert_eq!((me(&a, &s, node).await, me(&b, &s, node).await), (200, 200));
                }
                let ending = SessionApi::new(&s.url((round + 2) % 3), OPS_TOKEN).end(&whose, None).await.unwrap();
                assert_eq!(ending.ended, 2, "round {round} of {sub}");
                let answers =
                    futures::future::join_all((0..3).flat_map(|node| [me(&a, &s, node), me(&b, &s, node)])).await;
                let served = answers.iter().filter(|status| **status != 404).count();
                stale.fetch_add(served as u64, Ordering::Relaxed);
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    stop.notify_one();
    let bystander_reads = load.await.unwrap();
    assert_eq!(stale.load(Ordering::Relaxed), 0, "answers that served an ended session");
    assert_eq!(bystander_failures.load(Ordering::Relaxed), 0, "the bystander's {bystander_reads} reads");
    assert!(bystander_reads > 0);

    // The indexes went with the sessions: only the bystander's `sid` and `sub` remain.
    assert_eq!(index_keys(&s).await, 2);
    let ended: u64 = futures::future::join_all((0..3).map(|n| {
        let url = s.url(n);
        async move { counter(&metrics(&url).await, "bff_sessions_ended_total{reason=\"operator\"}") }
    }))
    .await
    .into_iter()
    .sum();
    assert_eq!(ended as usize, 2 + ROUNDS / WORKERS * WORKERS * 2);
}

#[tokio::test]
async fn the_api_refuses_what_is_not_an_operators_well_formed_request() {
    let s = stack().run().await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", s.url(0));
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(http.get(url("/ops/sessions?sub=a")).send().await.unwrap()), 401);
    assert_eq!(
        status(http.delete(url("/ops/sessions?sub=a")).bearer_auth("wrong-token-wrong").send().await.unwrap()),
        401
    );
    for (method, path) in [
        (reqwest::Method::GET, "/ops/sessions"),
        (reqwest::Method::GET, "/ops/sessions?sub=a&sid=b"),
        (reqwest::Method::GET, "/ops/sessions?sub="),
        (reqwest::Method::DELETE, "/ops/sessions"),
        (reqwest::Method::DELETE, "/ops/sessions/not-a-handle?sub=a"),
    ] {
        let answer = http.request(method.clone(), url(path)).bearer_auth(OPS_TOKEN).send().await.unwrap();
        assert_eq!(status(answer), 400, "{method} {path}");
    }
    // A session cookie is no handle: a user's own cookie value ends nothing.
    let user = VirtualUser::new(Some("dave"));
    user.login(&s.url(0)).await.unwrap();
    let cookie = {
        let jar = user.jar().lock().unwrap();
        jar.iter_unexpired().find(|c| c.name() == "bff-session").map(|c| c.value().to_owned()).unwrap()
    };
    let answer =
        http.delete(url(&format!("/ops/sessions/{cookie}?sub=dave"))).bearer_auth(OPS_TOKEN).send().await.unwrap();
    assert_eq!(status(answer), 400);
    assert_eq!(me(&user, &s, 0).await, 200);
    let unknown = SessionApi::new(&s.url(0), "wrong-token-wrong").list(&Whose::Sub("dave".into())).await;
    assert!(matches!(unknown, Err(SessionApiError::Refused { .. })), "{unknown:?}");
}

#[tokio::test]
async fn the_in_memory_store_lists_and_ends_too() {
    let s = stack().memory().run().await;
    let api = SessionApi::new(&s.url(0), OPS_TOKEN);
    let user = VirtualUser::new(Some("erin"));
    user.login(&s.url(0)).await.unwrap();
    let listing = api.list(&Whose::Sub("erin".into())).await.unwrap();
    assert_eq!(listing.sessions.len(), 1);
    let sid = listing.sessions[0].sid.clone().unwrap();
    assert_eq!(api.end(&Whose::Sid(sid.clone()), None).await.unwrap().ended, 1);
    assert_eq!(me(&user, &s, 0).await, 404);
    assert_eq!(api.end(&Whose::Sid(sid), None).await.unwrap().ended, 0);
    assert!(api.list(&Whose::Sub("erin".into())).await.unwrap().sessions.is_empty());
}

#[tokio::test]
async fn fleet_metrics_show_the_same_fingerprint_on_every_node_and_what_happened() {
    let s = three_cached_nodes().await;
    let user = VirtualUser::new(Some("frank"));
    user.login(&s.url(0)).await.unwrap();
    for node in 0..3 {
        assert_eq!(me(&user, &s, node).await, 200);
    }
    SessionApi::new(&s.url(1), OPS_TOKEN).end(&Whose::Sub("frank".into()), None).await.unwrap();
    let texts: Vec<String> = futures::future::join_all((0..3).map(|n| {
        let url = s.url(n);
        async move { metrics(&url).await }
    }))
    .await;
    let fingerprint = |text: &str| -> BTreeSet<String> {
        text.lines().filter(|l| l.starts_with("bff_config_fingerprint{")).map(str::to_owned).collect()
    };
    let first = fingerprint(&texts[0]);
    assert!(first.iter().any(|l| l.contains("setting=\"oidc.client_secret\"")), "{first:#?}");
    assert!(!first.iter().any(|l| l.contains("bff-secret")), "a secret in a label: {first:#?}");
    for text in &texts[1..] {
        assert_eq!(fingerprint(text), first, "the same digests on every node");
    }
    assert!(texts[0].lines().any(|l| l.starts_with("bff_sessions_created_total 1")), "{}", texts[0]);
    let text = &texts[1];
    for expected in [
        "bff_sessions_ended_total{reason=\"operator\"} 1",
        "bff_redis_command_duration_seconds_count ",
        "bff_session_cache_invalidations_total{scope=\"session\"} ",
        "bff_session_cache_live 1",
    ] {
        assert!(text.lines().any(|l| l.starts_with(expected)), "{expected} in\n{text}");
    }
    // The other nodes dropped the session on the notice.
    assert!(counter(&texts[2], "bff_session_cache_invalidations_total{scope=\"session\"}") >= 1);
    // A cookie that names a session the store no longer holds: what a node sees of idle expiry.
    assert_eq!(me(&user, &s, 2).await, 404);
    assert!(counter(&metrics(&s.url(2)).await, "bff_sessions_ended_total{reason=\"idle\"}") >= 1);
}
