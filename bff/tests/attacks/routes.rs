//! Medium 6: route matching on raw paths. A path must not reach a weaker route, or another path
//! upstream, by dot-segments, encoded slashes or dots, backslashes, encoded letters, or a prefix
//! that is not a whole segment.

use harness::MockIssuer;

use crate::fixture::{api_stack, raw_get, received, session_cookie};

#[tokio::test]
async fn ambiguous_paths_are_refused_before_matching() {
    let (s, up, _user) = api_stack(1, MockIssuer::builder().run().await.unwrap(), &[]).await;
    for target in [
        "/public/../api/x",
        "/public/./../api/x",
        "/public/..%2fapi/x",
        "/public/..%2Fapi/x",
        "/public/%2e%2e/api/x",
        "/public/.%2E/api/x",
        "/public/..%5capi/x",
        "/public/..\\api/x",
    ] {
        assert_eq!(raw_get(&s.url(0), target, "").await, 400, "{target}");
    }
    assert!(up.received_requests().await.unwrap().is_empty(), "nothing was forwarded");
}

#[tokio::test]
async fn encoded_letters_do_not_escape_a_route() {
    let (s, up, user) = api_stack(1, MockIssuer::builder().run().await.unwrap(), &[]).await;
    for target in ["/%61pi/x", "/%61%70%69/x", "/ap%69"] {
        assert_eq!(raw_get(&s.url(0), target, "").await, 401, "{target} fell under a weaker route");
    }
    let cookie = format!("Cookie: bff-session={}\r\nX-CSRF: 1\r\n", session_cookie(&user));
    assert_eq!(raw_get(&s.url(0), "/%61pi/x", &cookie).await, 200);
    let seen: Vec<String> = received(&up, "/").await.iter().map(|r| r.url.path().to_owned()).collect();
    assert_eq!(seen, ["/v1/x"], "the upstream gets the decoded path");
}

#[tokio::test]
async fn prefixes_match_whole_segments() {
    let (s, up, user) = api_stack(1, MockIssuer::builder().run().await.unwrap(), &[]).await;
    assert_eq!(raw_get(&s.url(0), "/apiadmin", "").await, 200, "/apiadmin is not under /api");
    let cookie = format!("Cookie: bff-session={}\r\nX-CSRF: 1\r\n", session_cookie(&user));
    for target in ["/api", "/api/", "/api/x"] {
        assert_eq!(raw_get(&s.url(0), target, &cookie).await, 200, "{target}");
    }
    let seen: Vec<String> = received(&up, "/").await.iter().map(|r| r.url.path().to_owned()).collect();
    assert_eq!(seen, ["/apiadmin", "/v1", "/v1/", "/v1/x"]);
}
