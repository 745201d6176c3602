//! What Redis holds: hashed keys and sealed blobs. No access token, refresh token, id_token,
//! claim value or cookie can be read from a dump; a blob changed in Redis is no session; the key
//! ring can be wrapped so Redis alone can read nothing, and it rotates.

use std::time::Duration;

use harness::VirtualUser;

use crate::login::session_cookie;
use crate::stack::{eventually, node_builder, redis_cmd, redis_command_calls, stack};

async fn dump(port: u16) -> Vec<(String, Vec<u8>)> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let value: Vec<u8> = match kind.as_str() {
            "hash" => {
                let fields: Vec<Vec<u8>> = redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap();
                fields.concat()
            }
            "set" => {
                let members: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(&key).query_async(&mut conn).await.unwrap();
                members.concat()
            }
            _ => redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap(),
        };
        out.push((key, value));
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn redis_holds_no_token_claim_or_cookie_in_plaintext() {
    let s = stack().run().await;
    let user = VirtualUser::new(Some("carol"));
    user.login(&s.url(0)).await.unwrap();
    let cookie = session_cookie(&user);
    let mut secrets = s.issuer.issued_access_tokens();
    secrets.extend(s.issuer.issued_refresh_tokens());
    secrets.extend(["carol", "carol@example.test", "User carol", "eyJ"].map(String::from));
    secrets.push(cookie);
    assert!(secrets.len() >= 6);

    let entries = dump(s.redis().port()).await;
    assert!(
        entries.iter().any(|(k, _)| k.starts_with("bff:s:")),
        "a session is stored: {:?}",
        entries.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    for (key, value) in &entries {
        for secret in &secrets {
            assert!(!key.contains(secret.as_str()), "key {key} contains {secret}");
            assert!(!contains(value, secret), "value of {key} contains {secret}");
        }
    }
}

#[tokio::test]
async fn a_blob_changed_in_redis_is_no_session() {
    let s = stack().run().await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let port = s.redis().port();
    let (key, mut value) = dump(port).await.into_iter().find(|(k, _)| k.starts_with("bff:s:")).unwrap();
    let last = value.len() - 1;
    value[last] ^= 1;
    let client = redis::Client::open(s.redis().url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET").arg(&key).arg(value).query_async(&mut conn).await.unwrap();

    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 404);
    assert!(s.nodes[0].logs().iter().any(|l| l.contains("cannot be opened")), "the node logs why");
}

#[tokio::test]
async fn sessions_slide_with_one_redis_command_per_request() {
    // Without the node cache (`tests/gateway/node_cache.rs` covers it), every request reads Redis.
    let s = stack().env("BFF_SESSION_CACHE_MAX_AGE", "off").run().await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let port = s.redis().port();
    let _ = redis_cmd(port, &["CONFIG", "RESETSTAT"]).await;
    for _ in 0..10 {
        assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200);
    }
    let stats = redis_command_calls(port).await;
    let calls = |cmd: &str| stats.get(cmd).copied().unwrap_or(0);
    // The read script, by digest (the first may find it unknown and send its body as EVAL).
    assert_eq!(calls("evalsha"), 10, "{stats:?}");
    // Redis counts the commands the script runs too: one GET and one PTTL per read.
    assert_eq!((calls("get"), calls("pttl")), (10, 10), "{stats:?}");
    assert_eq!(calls("set") + calls("expire"), 0, "no read-then-write: {stats:?}");
    // A session with more than idle_timeout - touch_interval left is not written.
    assert_eq!(calls("pexpire") + calls("getex"), 0, "a read that is not due writes nothing: {stats:?}");
}

#[tokio::test]
async fn wrapped_key_ring_is_unreadable_without_the_kek() {
    let kek = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    let s = stack().env("BFF_KEY_ENCRYPTION_KEY", kek).run().await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let ring = dump(s.redis().port()).await.into_iter().find(|(k, _)| k == "bff:keyring").unwrap().1;
    assert!(contains(&ring, "\"wrapped\":true"), "{}", String::from_utf8_lossy(&ring));

    // A node with another KEK cannot use the ring: it stays not ready and says why in its log.
    let other_kek = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let stranger = node_builder(&s.issuer, s.redis.as_ref(), &s.url(0))
        .env("BFF_KEY_ENCRYPTION_KEY", other_kek)
        .without_waiting_for_ready()
        .run()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    eventually("the stranger logs that it cannot unwrap the ring", Duration::from_secs(10), || async {
        stranger.logs().iter().any(|l| l.contains("key-encryption key does not open it"))
    })
    .await;
    let ready = http.get(format!("{}/ready", stranger.url())).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200);
}

#[tokio::test]
async fn keys_rotate_and_old_keys_still_open() {
    let s = stack().nodes(2).env("BFF_KEY_ROTATION", "1s").env("BFF_KEY_RING_REFRESH", "1s").run().await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let port = s.redis().port();
    eventually("a second key appears in the ring", Duration::from_secs(15), || async {
        matches!(redis_cmd(port, &["HLEN", "bff:keyring"]).await, redis::Value::Int(n) if n >= 2)
    })
    .await;
    for node in 0..2 {
        assert_eq!(user.me(&s.url(node)).await.unwrap().status, 200, "sealed under the old key, node {node}");
    }
    let late = VirtualUser::new(None);
    late.login(&s.url(1)).await.unwrap();
    assert_eq!(late.me(&s.url(0)).await.unwrap().status, 200, "sealed under the new key");
}

#[tokio::test]
async fn logs_hold_no_token_cookie_or_claim() {
    let s = stack().env("BFF_LOG_FORMAT", "json").run().await;
    let user = VirtualUser::new(Some("grace"));
    user.login(&s.url(0)).await.unwrap();
    user.me(&s.url(0)).await.unwrap();
    let cookie = session_cookie(&user);
    user.logout(&s.url(0)).await.unwrap();
    let bad = VirtualUser::new(None);
    crate::login::set_session_cookie(&bad, &s.url(0), &cookie);
    bad.me(&s.url(0)).await.unwrap();

    let logs = s.nodes[0].logs().join("\n");
    assert!(logs.contains("session created") && logs.contains("request_id"), "json logs with request ids:\n{logs}");
    let mut secrets = s.issuer.issued_access_tokens();
    secrets.extend(s.issuer.issued_refresh_tokens());
    secrets.extend([cookie, "grace@example.test".into(), "User grace".into(), "eyJ".into()]);
    for secret in secrets {
        assert!(!logs.contains(&secret), "the log holds {secret}");
    }
}
