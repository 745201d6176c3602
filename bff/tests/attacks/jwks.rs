//! Medium 9: a signing key the issuer withdrew stops being trusted without a restart, because the
//! JWKS is fetched again on a schedule (here every second, `oidc.jwks_refresh`).

use std::time::Duration;

use harness::MockIssuer;

use crate::stack::{backchannel_logout, eventually, stack};

#[tokio::test]
async fn a_withdrawn_signing_key_is_refused_after_the_scheduled_refresh() {
    let issuer = MockIssuer::builder().run().await.unwrap();
    let s = stack().memory().issuer(issuer).env("BFF_OIDC_JWKS_REFRESH", "1s").run().await;
    // Tokens signed by the first key, each with its own jti.
    let old: Vec<String> = (0..2).map(|_| s.issuer.logout_token(None, Some("alice"))).collect();
    assert_eq!(backchannel_logout(&s.url(0), &old[0]).await, 200, "the key is trusted while published");

    s.issuer.rotate_signing_key();
    let fetched = s.issuer.calls("jwks");
    // Two more fetches: the second starts only after the first, which saw the rotated keys, ended.
    eventually("two scheduled JWKS fetches after the rotation", Duration::from_secs(10), || async {
        s.issuer.calls("jwks") >= fetched + 2
    })
    .await;
    assert_eq!(backchannel_logout(&s.url(0), &old[1]).await, 400, "a token signed by the withdrawn key");
    let current = s.issuer.logout_token(None, Some("alice"));
    assert_eq!(backchannel_logout(&s.url(0), &current).await, 200, "the new key is trusted");
}
