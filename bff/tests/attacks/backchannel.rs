//! Medium 8: back-channel logout tokens. A replayed token ends nothing (a user who logged in
//! again stays logged in), on any node; a request without a token is a 400.

use harness::VirtualUser;

use std::time::Duration;

use crate::fixture::{http, redis_keys};
use crate::stack::{backchannel_logout, eventually, stack};

#[tokio::test]
async fn a_replayed_logout_token_is_refused_on_every_node() {
    let s = stack().nodes(2).run().await;
    let user = VirtualUser::new(Some("erin"));
    user.login(&s.url(0)).await.unwrap();
    let token = s.issuer.logout_token(None, Some("erin"));
    assert_eq!(backchannel_logout(&s.url(0), &token).await, 200);
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 404);

    let again = VirtualUser::new(Some("erin"));
    again.login(&s.url(0)).await.unwrap();
    for node in 0..2 {
        assert_eq!(backchannel_logout(&s.url(node), &token).await, 400, "replay on node {node}");
    }
    assert_eq!(again.me(&s.url(1)).await.unwrap().status, 200, "the replay ended the new session");
}

#[tokio::test]
async fn a_request_without_a_token_is_400() {
    let s = stack().run().await;
    let url = format!("{}/account/backchannel-logout", s.url(0));
    let empty = http().post(&url).send().await.unwrap();
    assert_eq!(empty.status(), 400);
    let other = http().post(&url).header("content-type", "application/x-www-form-urlencoded").body("x=1");
    assert_eq!(other.send().await.unwrap().status(), 400);
}

/// A session's back-channel logout indexes live as long as the session and not much longer: an
/// active session still ends by `sid` after many idle timeouts, and the indexes of a session
/// that idled out go with it instead of staying until the absolute lifetime.
#[tokio::test]
async fn indexes_follow_their_sessions_lifetimes() {
    let s =
        stack().nodes(2).env("BFF_SESSION_IDLE_TIMEOUT", "2s").env("BFF_SESSION_CACHE_MAX_AGE", "500ms").run().await;
    let port = s.redis().port();
    let active = VirtualUser::new(Some("frank"));
    active.login(&s.url(0)).await.unwrap();
    let idle = VirtualUser::new(Some("grace"));
    idle.login(&s.url(1)).await.unwrap();
    assert_eq!(redis_keys(port, "bff:i:*").await.len(), 4, "sid and sub of each");
    let mut node = 0;
    // Frank keeps his session alive on both nodes; Grace's idles out. Frank's indexes were
    // written before Grace's, so once hers have expired, his are there only if reads
    // lengthened them.
    eventually("the idle session's indexes expire with it", Duration::from_secs(20), || {
        node = 1 - node;
        let (active, url) = (&active, s.url(node));
        async move {
            assert_eq!(active.me(&url).await.unwrap().status, 200, "an active session stays");
            redis_keys(port, "bff:i:*").await.len() == 2
        }
    })
    .await;
    assert_eq!(idle.me(&s.url(0)).await.unwrap().status, 404);
    let sid = s.issuer.last_sid("frank").unwrap();
    let token = s.issuer.logout_token(Some(&sid), None);
    assert_eq!(backchannel_logout(&s.url(1), &token).await, 200);
    assert_eq!(active.me(&s.url(0)).await.unwrap().status, 404, "ended by sid after its first indexes' time");
    assert!(redis_keys(port, "bff:*").await.iter().all(|k| !k.starts_with("bff:s:") && !k.starts_with("bff:i:")));
}

/// Low: the token's `jti` was marked used before the sessions were ended, so a Redis failure in
/// between (a 503) left the sessions alive and the issuer's retry refused as a replay. Here
/// Redis refuses the node the one command that ends sessions by index (an ACL without
/// `SMEMBERS`) for the first delivery, then allows it: the retry ends the session.
#[tokio::test]
async fn a_logout_that_failed_half_way_ends_the_sessions_when_the_issuer_retries() {
    let redis = harness::RedisProcess::start(false).await.unwrap();
    let port = redis.port();
    crate::stack::redis_cmd(port, &["ACL", "SETUSER", "bff", "on", ">bff-pw", "~*", "&*", "+@all", "-smembers"]).await;
    let issuer = harness::MockIssuer::builder().run().await.unwrap();
    let node_port = harness::process::free_port();
    let url = format!("http://127.0.0.1:{node_port}");
    let _node = crate::stack::node_builder(&issuer, None, &url)
        .port(node_port)
        .env("BFF_REDIS_URL", format!("redis://bff:bff-pw@127.0.0.1:{port}"))
        .run()
        .await
        .unwrap();
    let user = VirtualUser::new(Some("heidi"));
    assert_eq!(user.login(&url).await.unwrap().status, 302);
    let token = issuer.logout_token(None, Some("heidi"));

    assert_eq!(backchannel_logout(&url, &token).await, 503, "the store failed half-way");
    crate::stack::redis_cmd(port, &["ACL", "SETUSER", "bff", "+smembers"]).await;
    assert_eq!(backchannel_logout(&url, &token).await, 200, "the issuer's retry was refused as a replay");
    assert_eq!(user.me(&url).await.unwrap().status, 404, "the session outlived its logout");
    assert_eq!(backchannel_logout(&url, &token).await, 400, "a replay after it worked");
}
