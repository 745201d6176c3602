//! Medium: one slow `WAIT` stalled a node. With `redis_wait_replicas = 1` and the replica down,
//! a login's `WAIT` held the node's one shared Redis connection for `redis_timeout`, so every
//! other user's reads on that node queued behind it, and the login itself, stored on the master,
//! was answered 503 (its answer raced the connection's own bound). Against a real master and a
//! real replica that is then killed: while a login's `WAIT` is blocked in Redis, another user's
//! `/account/me` is answered, read from Redis (the same `WAIT` is still blocked after the answer);
//! the login then succeeds, its session is there, and the missing confirmation is logged.

use std::time::Duration;

use harness::{RedisProcess, VirtualUser};

use crate::stack::{eventually, node_builder, redis_cmd, redis_command_calls};

/// `INFO {section}` of the server on `port`, as text.
async fn info(port: u16, section: &str) -> String {
    match redis_cmd(port, &["INFO", section]).await {
        redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("{other:?}"),
    }
}

/// `CLIENT LIST` of the server on `port`: one map of fields per client.
async fn clients(port: u16) -> Vec<std::collections::HashMap<String, String>> {
    let text = match redis_cmd(port, &["CLIENT", "LIST"]).await {
        redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("{other:?}"),
    };
    text.lines()
        .map(|line| {
            line.split(' ')
                .filter_map(|field| field.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// The id of the client blocked in `WAIT`, if one is.
async fn blocked_in_wait(port: u16) -> Option<String> {
    clients(port)
        .await
        .into_iter()
        .find(|c| c.get("cmd").map(String::as_str) == Some("wait") && c.get("flags").is_some_and(|f| f.contains('b')))
        .map(|c| c["id"].clone())
}

/// A master and a replica of it, in sync.
async fn master_and_replica() -> (RedisProcess, RedisProcess) {
    let master = RedisProcess::start(false).await.unwrap();
    let replica = RedisProcess::start_with(
        harness::process::free_port(),
        false,
        vec!["--replicaof".into(), "127.0.0.1".into(), master.port().to_string()],
    )
    .await
    .unwrap();
    eventually("the replica is in sync", Duration::from_secs(15), || async {
        info(master.port(), "replication").await.contains("state=online")
    })
    .await;
    (master, replica)
}

/// Kills the replica (SIGKILL) and waits until the master knows.
async fn kill_replica(master: &RedisProcess, replica: &mut RedisProcess) {
    replica.kill().await;
    eventually("the master sees the replica gone", Duration::from_secs(15), || async {
        info(master.port(), "replication").await.contains("connected_slaves:0")
    })
    .await;
}

/// Polls until a client is blocked in `WAIT` (within 15 s); returns its id.
async fn until_blocked_in_wait(port: u16) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(id) = blocked_in_wait(port).await {
            return id;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for a WAIT blocked in redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_wait_for_a_dead_replica_stalls_nobody_else_and_the_login_stands() {
    let (master, mut replica) = master_and_replica().await;

    let issuer = harness::MockIssuer::builder().run().await.unwrap();
    let port = harness::process::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let node = node_builder(&issuer, Some(&master), &url)
        .port(port)
        .env("BFF_REDIS_WAIT_REPLICAS", "1")
        .env("BFF_REDIS_TIMEOUT", "5s")
        // Every `/account/me` reads Redis: a node cache would hide the stall.
        .env("BFF_SESSION_CACHE_MAX_AGE", "off")
        .run()
        .await
        .unwrap();
    let alice = VirtualUser::new(Some("alice"));
    assert_eq!(alice.login(&url).await.unwrap().status, 302, "a login with the replica up");

    kill_replica(&master, &mut replica).await;

    let bob = std::sync::Arc::new(VirtualUser::new(Some("bob")));
    let login = {
        let (bob, url) = (bob.clone(), url.clone());
        tokio::spawn(async move { bob.login(&url).await })
    };
    let waiting = until_blocked_in_wait(master.port()).await;

    let reads_before = redis_command_calls(master.port()).await.get("evalsha").copied().unwrap_or(0);
    let me = alice.me(&url).await.unwrap();
    assert_eq!(me.status, 200, "another user's read while a WAIT is blocked: {me:?}");
    let after = clients(master.port()).await;
    assert!(
        after.iter().any(|c| c["id"] == waiting && c.get("flags").is_some_and(|f| f.contains('b'))),
        "alice was answered only after the WAIT ended (it held her read up): {after:?}"
    );
    let reads_after = redis_command_calls(master.port()).await.get("evalsha").copied().unwrap_or(0);
    assert!(reads_after > reads_before, "alice's session was read from redis, not from memory");

    let login = login.await.unwrap().expect("bob's login answers");
    assert_eq!(login.status, 302, "a login stored on the master stands without the replica: {login:?}");
    assert_eq!(bob.me(&url).await.unwrap().status, 200);
    let logs = node.logs().join("\n");
    assert!(logs.contains("fewer replicas than redis_wait_replicas"), "the missing confirmation is logged");
}

/// Low: the refresh lock was renewed while the token endpoint worked, not while the refreshed
/// tokens were stored: a save that took longer than the lease (here a `WAIT` for a dead replica,
/// 3 s, against a 600 ms lease) let the lock lapse, and another node could have refreshed with
/// the refresh token the issuer had just rotated. The lock is there for as long as the save's
/// `WAIT` is blocked, and the call that refreshed is answered.
#[tokio::test]
async fn the_refresh_lock_is_held_until_the_refreshed_tokens_are_saved() {
    let (master, mut replica) = master_and_replica().await;
    let up = crate::fixture::upstream(Vec::new()).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), crate::fixture::routes(&up.uri())).unwrap();
    let issuer = crate::fixture::short_lived_issuer().await;
    let port = harness::process::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _node = node_builder(&issuer, Some(&master), &url)
        .port(port)
        .env("BFF_CONFIG", config.path().display().to_string())
        .env("BFF_REDIS_WAIT_REPLICAS", "1")
        .env("BFF_REDIS_TIMEOUT", "3s")
        .env("BFF_REFRESH_LOCK_LEASE", "600ms")
        .env("BFF_SESSION_CACHE_MAX_AGE", "off")
        .run()
        .await
        .unwrap();
    let user = std::sync::Arc::new(VirtualUser::new(Some("ivan")));
    assert_eq!(user.login(&url).await.unwrap().status, 302);
    kill_replica(&master, &mut replica).await;

    let call = {
        let (user, url) = (user.clone(), url.clone());
        tokio::spawn(async move { crate::fixture::api_call(&url, "/api/data", &user).await.status() })
    };
    let saving = until_blocked_in_wait(master.port()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut looked = 0;
    loop {
        let held = !crate::fixture::redis_keys(master.port(), "bff:r:*").await.is_empty();
        if blocked_in_wait(master.port()).await.as_deref() != Some(saving.as_str()) {
            break;
        }
        assert!(held, "the refresh lock lapsed while the refreshed tokens were being saved (look {looked})");
        looked += 1;
        assert!(tokio::time::Instant::now() < deadline, "the save's WAIT never ended");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    println!("the lock was there at each of {looked} looks while the save waited for the replica");
    assert_eq!(call.await.unwrap(), 200, "the call that refreshed");
    assert_eq!(issuer.calls("refresh"), 1);
    assert!(crate::fixture::redis_keys(master.port(), "bff:r:*").await.is_empty(), "the lock was released");
}
