//! Medium 4: logout CSRF. A cross-site link (GET) or a cross-site form (POST without the CSRF
//! header, not same-origin) must not end the session; the single-page app's POST with `X-CSRF`
//! and a same-origin form do.

use harness::VirtualUser;

use crate::fixture::{http, session_cookie};
use crate::stack::stack;

async fn end_session(base: &str, user: &VirtualUser, method: reqwest::Method, headers: &[(&str, &str)]) -> u16 {
    let mut request = http()
        .request(method, format!("{base}/account/end-session"))
        .header("cookie", format!("bff-session={}", session_cookie(user)));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_cross_site_request_does_not_log_out() {
    let s = stack().run().await;
    let base = s.url(0);
    let user = VirtualUser::new(None);
    user.login(&base).await.unwrap();
    for (method, headers) in [
        (reqwest::Method::GET, vec![]),
        (reqwest::Method::GET, vec![("x-csrf", "1")]),
        (reqwest::Method::POST, vec![]),
        (reqwest::Method::POST, vec![("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")]),
        (reqwest::Method::POST, vec![("x-csrf", "0")]),
    ] {
        let status = end_session(&base, &user, method.clone(), &headers).await;
        assert!(status == 403 || status == 405, "{method} {headers:?}: {status}");
        assert_eq!(user.me(&base).await.unwrap().status, 200, "{method} {headers:?} logged the user out");
    }
}

#[tokio::test]
async fn the_apps_post_and_a_same_origin_form_log_out() {
    let s = stack().run().await;
    let base = s.url(0);
    for headers in [vec![("x-csrf", "1")], vec![("sec-fetch-site", "same-origin")], vec![("origin", base.as_str())]] {
        let user = VirtualUser::new(None);
        user.login(&base).await.unwrap();
        assert_eq!(end_session(&base, &user, reqwest::Method::POST, &headers).await, 302, "{headers:?}");
        assert_eq!(user.me(&base).await.unwrap().status, 404, "{headers:?}");
    }
}

/// Low: a flood of logouts with made-up, well-formed session ids sent one change notice each to
/// every node (and kept their caches from caching meanwhile). An id the store does not hold
/// ends nothing, so it tells nobody: no `PUBLISH` reaches Redis. A real logout still does.
#[tokio::test]
async fn logouts_of_sessions_that_never_existed_send_no_change_notices() {
    use base64::Engine;
    let s = stack().nodes(2).run().await;
    let base = s.url(0);
    let port = s.redis().port();
    let published = || async { crate::stack::redis_command_calls(port).await.get("publish").copied().unwrap_or(0) };
    let before = published().await;
    for _ in 0..50 {
        let made_up = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let status = http()
            .post(format!("{base}/account/end-session"))
            .header("x-csrf", "1")
            .header("cookie", format!("bff-session={made_up}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 302);
    }
    assert_eq!(published().await, before, "logouts of unknown sessions published change notices");

    let user = VirtualUser::new(None);
    user.login(&base).await.unwrap();
    assert_eq!(end_session(&base, &user, reqwest::Method::POST, &[("x-csrf", "1")]).await, 302);
    assert!(published().await > before, "a real logout tells the other nodes");
    assert_eq!(user.me(&s.url(1)).await.unwrap().status, 404);
}
