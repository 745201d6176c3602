//! `bff seed-sessions`, for benchmarks: the sessions it seals and stores with the gateway's own
//! code are served by a node configured alike, as a login's are; it refuses the in-memory store,
//! whose sessions would end with it.

use harness::MockIssuer;

use crate::stack::{BFF, stack};

/// The environment of a stack's node (see `stack::node_builder`), for a command run beside it.
fn node_env(issuer: &MockIssuer, public_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("BFF_PUBLIC_URL", public_url.to_owned()),
        ("BFF_OIDC_AUTHORITY", issuer.url().to_string()),
        ("BFF_OIDC_CLIENT_ID", "bff-client".into()),
        ("BFF_OIDC_CLIENT_SECRET", "bff-secret".into()),
        ("BFF_KEY_ENCRYPTION_KEY", harness::cluster::KEY_ENCRYPTION_KEY.into()),
        ("BFF_LOG_LEVEL", "warn".into()),
    ]
}

#[tokio::test]
async fn seeded_sessions_are_served_by_a_node_configured_alike() {
    let s = stack().run().await;
    let out = tempfile::NamedTempFile::new().unwrap();
    let done = tokio::process::Command::new(BFF)
        .args(["seed-sessions", "--count", "3", "--out"])
        .arg(out.path())
        .env_clear()
        .envs(node_env(&s.issuer, &s.url(0)))
        .env("BFF_REDIS_URL", s.redis().url())
        .output()
        .await
        .unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let cookies: Vec<String> = std::fs::read_to_string(out.path()).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(cookies.len(), 3);
    let client = reqwest::Client::new();
    for cookie in &cookies {
        assert!(cookie.starts_with("bff-session="), "{cookie}");
        let me = client.get(format!("{}/account/me", s.url(0))).header("cookie", cookie).send().await.unwrap();
        assert_eq!(me.status(), 200, "{cookie}");
        assert!(me.text().await.unwrap().contains("bench-seeded-"));
    }
    let forged = client.get(format!("{}/account/me", s.url(0))).header("cookie", "bff-session=AAAA").send().await;
    assert_ne!(forged.unwrap().status(), 200);
}

#[tokio::test]
async fn seeding_refuses_the_in_memory_store() {
    let issuer = MockIssuer::builder().run().await.unwrap();
    let done = tokio::process::Command::new(BFF)
        .args(["seed-sessions", "--count", "1"])
        .env_clear()
        .envs(node_env(&issuer, "http://127.0.0.1:1"))
        .output()
        .await
        .unwrap();
    assert_eq!(done.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&done.stderr).contains("needs the Redis store"));
}
