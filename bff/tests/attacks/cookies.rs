//! The low-severity findings about what crosses the gateway: its own cookies in both directions,
//! a browser's `Authorization`, the login binding, logout during a Redis outage, and what the
//! back-channel indexes reveal to a Redis reader.

use harness::VirtualUser;
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

use crate::fixture::{api_stack, http, received, redis_keys, routes, session_cookie, upstream};
use crate::stack::stack;

#[tokio::test]
async fn an_upstream_cannot_set_the_gateways_cookies() {
    let cookies = ["bff-session=planted", "__Host-bff-session=x", "BFF-Session-login=y; Path=/", "theme=dark; Path=/"];
    let mut reply = ResponseTemplate::new(200);
    for c in cookies {
        reply = reply.append_header("set-cookie", c);
    }
    let up = upstream(vec![Mock::given(path("/public/cookies")).respond_with(reply)]).await;
    let s = stack().config(&routes(&up.uri())).run().await;
    let response = http().get(format!("{}/public/cookies", s.url(0))).send().await.unwrap();
    let set: Vec<&str> = response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(set, ["theme=dark; Path=/"]);
}

#[tokio::test]
async fn a_session_cookie_the_gateway_accepts_is_never_forwarded() {
    let (s, up, user) = api_stack(1, harness::MockIssuer::builder().run().await.unwrap(), &[]).await;
    let id = session_cookie(&user);
    for header in [format!("theme=dark; bff-session ={id}"), format!("theme=dark;bff-session= {id}")] {
        let reply = http()
            .get(format!("{}/api/x", s.url(0)))
            .header("x-csrf", "1")
            .header("cookie", &header)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{header}: the gateway takes it as the session");
    }
    for seen in received(&up, "/v1/").await {
        let cookie = seen.headers.get("cookie").unwrap().to_str().unwrap();
        assert!(!cookie.contains(&id), "the session id reached the upstream: {cookie}");
        assert_eq!(cookie, "theme=dark");
    }
}

#[tokio::test]
async fn a_browsers_authorization_header_never_reaches_an_upstream() {
    let (s, up, _user) = api_stack(1, harness::MockIssuer::builder().run().await.unwrap(), &[]).await;
    let reply = http()
        .get(format!("{}/public/x", s.url(0)))
        .header("authorization", "Bearer forged-by-the-browser")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let seen = received(&up, "/public/").await;
    assert!(seen[0].headers.get("authorization").is_none(), "{:?}", seen[0].headers);
}

#[tokio::test]
async fn the_login_binding_is_fresh_for_every_login() {
    let s = stack().run().await;
    let planted = "A".repeat(43);
    let reply = http()
        .get(format!("{}/account/login", s.url(0)))
        .header("cookie", format!("bff-session-login={planted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 302);
    let set = reply.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(set.starts_with("bff-session-login="), "{set}");
    assert!(!set.contains(&planted), "a planted binding was reused: {set}");
}

#[tokio::test]
async fn logout_clears_the_cookie_even_when_redis_is_down() {
    let mut s = stack().env("BFF_SESSION_CACHE_MAX_AGE", "off").run().await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let id = session_cookie(&user);
    s.redis.as_mut().unwrap().stop().await;
    let reply = http()
        .post(format!("{}/account/end-session", s.url(0)))
        .header("x-csrf", "1")
        .header("cookie", format!("bff-session={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 503);
    let set = reply.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(set.starts_with("bff-session=;") && set.contains("Max-Age=0"), "cookie not cleared: {set:?}");
}

#[tokio::test]
async fn a_redis_reader_cannot_test_who_is_logged_in() {
    let s = stack().run().await;
    let user = VirtualUser::new(Some("alice"));
    user.login(&s.url(0)).await.unwrap();
    let iss = s.issuer.url().to_owned();
    let sid = s.issuer.last_sid("alice").unwrap();
    let keys = redis_keys(s.redis().port(), "bff:i:*").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    for (claim, value) in [("sub", "alice"), ("sid", sid.as_str())] {
        let guess = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("{iss}\0{value}").as_bytes());
        let guessed = format!("bff:i:{claim}:{}", hex::encode(guess.as_ref()));
        assert!(!keys.contains(&guessed), "{claim} index is a plain hash anyone can compute");
    }
}
