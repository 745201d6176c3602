//! Medium 5: the pending-login flood. An anonymous `GET /account/login` used to store a record for
//! `session.login_timeout`, unbounded; now the login in progress travels sealed in the browser's
//! login cookie and nothing is stored until the issuer accepted a code. A login state is still
//! redeemed at most once, on any node, and logins still cross nodes. Every seal (these cookies
//! included) counts towards `key_rotation_seals`, so a flood rotates the sealing keys early
//! instead of wearing one key out, and what older keys sealed still opens.

use std::time::Duration;

use futures::StreamExt;
use harness::VirtualUser;

use crate::fixture::http;
use crate::stack::{eventually, redis_cmd, stack};

const ANONYMOUS_LOGINS: usize = 10_000;

fn int(value: redis::Value) -> i64 {
    match value {
        redis::Value::Int(n) => n,
        other => panic!("{other:?}"),
    }
}

async fn used_memory(port: u16) -> u64 {
    let info = match redis_cmd(port, &["INFO", "memory"]).await {
        redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("{other:?}"),
    };
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
}

/// `count` anonymous `GET /account/login` spread over `bases`, 32 at a time; each must be a 302
/// that sets the login cookie.
async fn anonymous_logins(bases: &[String], count: usize) {
    let client = http();
    futures::stream::iter(0..count)
        .map(|i| {
            let (client, url) = (client.clone(), format!("{}/account/login", bases[i % bases.len()]));
            async move {
                let reply = client.get(url).send().await.unwrap();
                assert_eq!(reply.status(), 302);
                let cookie = reply.headers().get("set-cookie").unwrap().to_str().unwrap();
                assert!(cookie.starts_with("bff-session-login="), "{cookie}");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

/// The login cookie in a user's jar.
fn login_cookie(user: &VirtualUser) -> String {
    let jar = user.jar().lock().unwrap();
    jar.iter_any().find(|c| c.name() == "bff-session-login").map(|c| c.value().to_owned()).expect("login cookie")
}

/// Starts a login on `base` and lets the issuer answer: the callback URL it sends the browser to.
async fn callback_url(user: &VirtualUser, base: &str) -> String {
    let start = user.get(&format!("{base}/account/login")).await.unwrap();
    assert_eq!(start.status, 302, "{start:?}");
    let issued = user.get(start.location.as_deref().unwrap()).await.unwrap();
    assert_eq!(issued.status, 302, "{issued:?}");
    issued.location.unwrap()
}

#[tokio::test]
async fn ten_thousand_anonymous_logins_leave_no_record_in_redis() {
    let s = stack().run().await;
    let port = s.redis().port();
    let (keys_before, memory_before) = (int(redis_cmd(port, &["DBSIZE"]).await), used_memory(port).await);

    let started = std::time::Instant::now();
    anonymous_logins(&[s.url(0)], ANONYMOUS_LOGINS).await;
    let took = started.elapsed();

    let (keys_after, memory_after) = (int(redis_cmd(port, &["DBSIZE"]).await), used_memory(port).await);
    println!(
        "{ANONYMOUS_LOGINS} anonymous logins in {took:.1?}: redis keys {keys_before} -> {keys_after}, used_memory {memory_before} -> {memory_after} bytes ({:+} bytes)",
        memory_after as i64 - memory_before as i64
    );
    assert!(
        keys_after - keys_before <= 1,
        "{ANONYMOUS_LOGINS} anonymous logins added {} keys to redis",
        keys_after - keys_before
    );

    // Logging in still works, and its one-time marker is the only key a login leaves.
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&s.url(0)).await.unwrap().status, 302);
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200);
}

#[tokio::test]
async fn a_login_state_is_redeemed_once_on_any_node_even_with_its_cookie_copied() {
    let s = stack().nodes(2).run().await;
    let user = VirtualUser::new(None);
    let callback = callback_url(&user, &s.url(0)).await;
    let copied = login_cookie(&user);

    // Begun on node 0, finished on node 1.
    let done = user.get(&callback.replace(&s.url(0), &s.url(1))).await.unwrap();
    assert_eq!(done.status, 302, "{done:?}");
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200);

    // Whoever kept the login cookie cannot redeem the state again, on either node.
    for node in 0..2 {
        let replay = http()
            .get(callback.replace(&s.url(0), &s.url(node)))
            .header("cookie", format!("bff-session-login={copied}"))
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status(), 400, "node {node}");
        assert!(replay.headers().get("set-cookie").is_none_or(|c| !c.to_str().unwrap().starts_with("bff-session=")));
        let body = replay.text().await.unwrap();
        assert!(body.contains("already used"), "node {node}: {body}");
    }

    // The same callback sent twice at once to two nodes: at most one session comes of it.
    let other = VirtualUser::new(None);
    let callback = callback_url(&other, &s.url(0)).await;
    let cookie = login_cookie(&other);
    let send = |node: usize| {
        let (url, cookie) = (callback.replace(&s.url(0), &s.url(node)), cookie.clone());
        async move { http().get(url).header("cookie", format!("bff-session-login={cookie}")).send().await.unwrap().status() }
    };
    let (a, b) = tokio::join!(send(0), send(1));
    assert_eq!([a, b].iter().filter(|s| s.as_u16() == 302).count(), 1, "{a} {b}");
}

#[tokio::test]
async fn a_login_flood_rotates_the_sealing_keys_by_count_and_older_seals_still_open() {
    let s = stack().nodes(2).env("BFF_KEY_ROTATION_SEALS", "20").run().await;
    let port = s.redis().port();
    let keys = || async { int(redis_cmd(port, &["HLEN", "bff:keyring"]).await) };
    assert_eq!(keys().await, 1);

    // A session and a login in progress sealed under the first key.
    let alice = VirtualUser::new(Some("alice"));
    assert_eq!(alice.login(&s.url(0)).await.unwrap().status, 302);
    let bob = VirtualUser::new(None);
    let bobs_callback = callback_url(&bob, &s.url(0)).await;

    let bases = [s.url(0), s.url(1)];
    anonymous_logins(&bases, 100).await;
    eventually("100 seals at 20 a key rotate the ring at least twice", Duration::from_secs(10), || async {
        keys().await >= 3
    })
    .await;
    println!("keys in the ring after 100 anonymous logins at key_rotation_seals = 20: {}", keys().await);

    // Bob's login, sealed under a retired key, finishes on the other node; both stay logged in.
    let done = bob.get(&bobs_callback.replace(&s.url(0), &s.url(1))).await.unwrap();
    assert_eq!(done.status, 302, "{done:?}");
    for node in 0..2 {
        assert_eq!(alice.me(&s.url(node)).await.unwrap().status, 200, "node {node}");
        assert_eq!(bob.me(&s.url(node)).await.unwrap().status, 200, "node {node}");
    }
}
