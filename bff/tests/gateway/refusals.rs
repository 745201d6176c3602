//! Everything the gateway must refuse with a 4xx, never a 5xx and never a session: forged and
//! replayed states, every kind of bad id_token, issuer errors, open redirects, tampered cookies.

use harness::{IdTokenFault, VirtualUser};

use crate::login::{session_cookie, set_session_cookie};
use crate::stack::stack;

/// Runs the login by hand up to the callback URL, which is returned unvisited.
async fn callback_url(user: &VirtualUser, base: &str) -> String {
    let start = user.get(&format!("{base}/account/login")).await.unwrap();
    assert_eq!(start.status, 302, "{start:?}");
    let issued = user.get(start.location.as_deref().unwrap()).await.unwrap();
    assert_eq!(issued.status, 302, "{issued:?}");
    issued.location.unwrap()
}

fn has_session(user: &VirtualUser) -> bool {
    user.jar().lock().unwrap().iter_any().any(|c| c.name() == "bff-session")
}

#[tokio::test]
async fn every_bad_id_token_is_refused_without_a_session() {
    let s = stack().run().await;
    for fault in [
        IdTokenFault::WrongAudience,
        IdTokenFault::WrongIssuer,
        IdTokenFault::WrongNonce,
        IdTokenFault::Expired,
        IdTokenFault::IssuedInTheFuture,
        IdTokenFault::WrongSignature,
        IdTokenFault::UnknownKid,
        IdTokenFault::MissingSub,
    ] {
        s.issuer.set_id_token_fault(Some(fault));
        let user = VirtualUser::new(None);
        let reply = user.login(&s.url(0)).await.unwrap();
        assert_eq!(reply.status, 400, "{fault:?}: {reply:?}");
        assert!(reply.body.contains("invalid id_token"), "{fault:?}: {}", reply.body);
        assert!(!has_session(&user), "{fault:?} left a session cookie");
        assert_eq!(user.me(&s.url(0)).await.unwrap().status, 404);
    }
    s.issuer.set_id_token_fault(None);
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&s.url(0)).await.unwrap().status, 302, "the same node logs in once the issuer behaves");
}

#[tokio::test]
async fn issuer_key_rotation_is_followed() {
    let s = stack().run().await;
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&s.url(0)).await.unwrap().status, 302);
    s.issuer.rotate_signing_key();
    let jwks_before = s.issuer.calls("jwks");
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&s.url(0)).await.unwrap().status, 302, "unknown kid → JWKS refetched once");
    assert_eq!(s.issuer.calls("jwks"), jwks_before + 1);
}

#[tokio::test]
async fn es256_issuer_is_accepted() {
    let issuer = harness::MockIssuer::builder().signing_alg(harness::issuer::SigningAlg::Es256).run().await.unwrap();
    let s = stack().issuer(issuer).run().await;
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&s.url(0)).await.unwrap().status, 302);
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200);
}

#[tokio::test]
async fn replayed_and_forged_states_are_refused() {
    let s = stack().nodes(2).run().await;
    let user = VirtualUser::new(None);
    let callback = callback_url(&user, &s.url(0)).await;
    assert_eq!(user.get(&callback).await.unwrap().status, 302);
    let cookie = session_cookie(&user);

    // The same callback again, on either node: the state was used up.
    for node in 0..2 {
        let replay = user.get(&callback.replace(&s.url(0), &s.url(node))).await.unwrap();
        assert_eq!(replay.status, 400, "{replay:?}");
        assert!(replay.body.contains("login state"), "{}", replay.body);
    }
    assert_eq!(session_cookie(&user), cookie, "a refused callback leaves the session alone");

    let stranger = VirtualUser::new(None);
    for url in [
        format!("{}/account/login/callback?state=forged&code=whatever", s.url(0)),
        format!("{}/account/login/callback?code=whatever", s.url(0)),
        format!("{}/account/login/callback", s.url(0)),
    ] {
        let reply = stranger.get(&url).await.unwrap();
        assert_eq!(reply.status, 400, "{url}: {reply:?}");
        assert!(!has_session(&stranger));
    }
}

#[tokio::test]
async fn a_callback_from_another_browser_is_refused() {
    let s = stack().run().await;
    let victim = VirtualUser::new(None);
    let attacker = VirtualUser::new(Some("mallory"));
    let callback = callback_url(&attacker, &s.url(0)).await;
    let reply = victim.get(&callback).await.unwrap();
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.body.contains("another browser"));
    assert!(!has_session(&victim));
}

#[tokio::test]
async fn issuer_errors_and_refused_codes_are_4xx() {
    let s = stack().run().await;
    let user = VirtualUser::new(None);
    let start = user.get(&format!("{}/account/login", s.url(0))).await.unwrap();
    let denied = user.get(&format!("{}&prompt=deny", start.location.unwrap())).await.unwrap();
    let reply = user.get(denied.location.as_deref().unwrap()).await.unwrap();
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("access_denied"), "{}", reply.body);

    // A code the issuer does not know.
    let callback = callback_url(&user, &s.url(0)).await;
    let mut url = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.to_string(), if k == "code" { "code-forged".into() } else { v.into_owned() }))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let reply = user.get(url.as_str()).await.unwrap();
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.body.contains("refused the authorization code"));
    assert!(!has_session(&user));
}

#[tokio::test]
async fn open_redirects_are_refused() {
    let s = stack().run().await;
    let user = VirtualUser::new(None);
    for landing in [
        "https%3A%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "javascript%3Aalert(1)",
        "%252F%252Fevil.example",
        "https:evil.example",
        "evil.example",
        "%2F%09%2Fevil.example",
    ] {
        let reply = user.get(&format!("{}/account/login?landingpage={landing}", s.url(0))).await.unwrap();
        assert_eq!(reply.status, 400, "{landing}: {reply:?}");
    }
    let ok = user.get(&format!("{}/account/login?landingpage=%2Fapp%3Ftab%3D2", s.url(0))).await.unwrap();
    assert_eq!(ok.status, 302);
}

#[tokio::test]
async fn tampered_or_foreign_cookies_are_no_session() {
    let s = stack().run().await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let good = session_cookie(&user);
    let mut flipped = good.clone().into_bytes();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    for value in [String::from_utf8(flipped).unwrap(), "x".repeat(43), "garbage".into(), format!("{good}AA")] {
        let other = VirtualUser::new(None);
        set_session_cookie(&other, &s.url(0), &value);
        let me = other.me(&s.url(0)).await.unwrap();
        assert_eq!(me.status, 404, "{value}: {me:?}");
    }
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200);
}
