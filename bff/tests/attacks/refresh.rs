//! High 1: an identity provider's error must not end sessions that should survive, and a refresh
//! must never run without its lock, nor leave the lock renewed after its caller left.

use std::time::Duration;

use harness::TokenFaults;

use crate::fixture::{api_call, api_stack, redis_keys, short_lived_issuer};
use crate::stack::{eventually, redis_cmd};

#[tokio::test]
async fn only_invalid_grant_ends_a_session_on_refresh() {
    let (s, _up, user) = api_stack(1, short_lived_issuer().await, &[]).await;
    // 429 (rate limited), 401 (invalid_client while a secret rotates), 400 with another error
    // code, 403, 500: the issuer is unavailable, the session stays.
    for status in [429, 401, 400, 403, 500] {
        s.issuer.set_token_faults(TokenFaults { delay: None, status: Some(status) });
        let reply = api_call(&s.url(0), "/api/x", &user).await;
        assert_eq!(reply.status(), 503, "token endpoint answered {status}");
        assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200, "{status} ended the session");
    }
    s.issuer.set_token_faults(TokenFaults::default());
    assert_eq!(api_call(&s.url(0), "/api/x", &user).await.status(), 200, "the issuer is back: the refresh works");
    s.issuer.set_access_token_lifetime(Duration::from_secs(1));
    assert_eq!(api_call(&s.url(0), "/api/x", &user).await.status(), 200);
    s.issuer.revoke_all_refresh_tokens();
    assert_eq!(api_call(&s.url(0), "/api/x", &user).await.status(), 401, "invalid_grant ends it");
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 404);
}

#[tokio::test]
async fn a_refresh_that_loses_its_lock_stops() {
    let (s, _up, user) = api_stack(1, short_lived_issuer().await, &[("BFF_REFRESH_LOCK_LEASE", "900ms")]).await;
    s.issuer.set_token_faults(TokenFaults { delay: Some(Duration::from_secs(3)), status: None });
    let base = s.url(0);
    let call = tokio::spawn({
        let cookie = crate::fixture::session_cookie(&user);
        async move {
            crate::fixture::http()
                .get(format!("{base}/api/x"))
                .header("x-csrf", "1")
                .header("cookie", format!("bff-session={cookie}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let port = s.redis().port();
    eventually("the refresh lock is taken", Duration::from_secs(5), || async {
        !redis_keys(port, "bff:r:*").await.is_empty()
    })
    .await;
    // Another party takes the lock over (its lease ran out and another node took it).
    for key in redis_keys(port, "bff:r:*").await {
        redis_cmd(port, &["SET", &key, "another-node", "PX", "60000"]).await;
    }
    let started = tokio::time::Instant::now();
    let status = call.await.unwrap();
    assert_eq!(status, 503, "a refresh without its lock must not be used");
    assert!(started.elapsed() < Duration::from_secs(2), "it stopped when the lease could not be renewed");
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200, "the session is kept");
}

#[tokio::test]
async fn a_caller_that_leaves_mid_refresh_neither_cancels_it_nor_keeps_the_lock() {
    let (s, _up, user) = api_stack(1, short_lived_issuer().await, &[("BFF_REFRESH_LOCK_LEASE", "900ms")]).await;
    s.issuer.set_token_faults(TokenFaults { delay: Some(Duration::from_millis(1500)), status: None });
    s.issuer.set_access_token_lifetime(Duration::from_secs(300));
    let impatient = crate::fixture::http()
        .get(format!("{}/api/x", s.url(0)))
        .header("x-csrf", "1")
        .header("cookie", format!("bff-session={}", crate::fixture::session_cookie(&user)))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(impatient.is_err(), "the caller gave up before the refresh finished");
    let port = s.redis().port();
    eventually("the refresh finished and released its lock", Duration::from_secs(6), || async {
        redis_keys(port, "bff:r:*").await.is_empty()
    })
    .await;
    s.issuer.set_token_faults(TokenFaults::default());
    assert_eq!(api_call(&s.url(0), "/api/x", &user).await.status(), 200);
    assert_eq!(s.issuer.calls("refresh"), 1, "the new tokens were stored: no second refresh");
}
