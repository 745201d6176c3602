//! The restart-survival test and its multi-node form: log in, see yourself at `/account/me` on every node,
//! restart every node, still see yourself. With the in-memory store the same restart loses the
//! user (404): the failure the toolkit exists to catch.

use harness::VirtualUser;

use crate::stack::stack;

#[tokio::test]
async fn login_then_me_on_another_node_then_both_restarted() {
    let mut s = stack().nodes(2).run().await;
    let user = VirtualUser::new(Some("alice"));

    let callback = user.login(&s.url(0)).await.unwrap();
    assert_eq!(callback.status, 302, "{callback:?}");
    assert_eq!(callback.location.as_deref(), Some("/"));

    for node in 0..2 {
        let me = user.me(&s.url(node)).await.unwrap();
        assert_eq!(me.status, 200, "node {node}: {me:?}");
        let claims = me.json().unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["name"], "Alice Example");
        assert!(claims.get("nonce").is_none());
    }

    for node in &mut s.nodes {
        node.restart().await.unwrap();
    }
    for node in 0..2 {
        let me = user.me(&s.url(node)).await.unwrap();
        assert_eq!(me.status, 200, "after restart, node {node}: {me:?}");
        assert_eq!(me.json().unwrap()["sub"], "alice");
    }
}

#[tokio::test]
async fn callback_lands_on_another_node_than_login() {
    let s = stack().nodes(2).run().await;
    let user = VirtualUser::new(None);
    let start = user.get(&format!("{}/account/login?landingpage=/app/home", s.url(0))).await.unwrap();
    assert_eq!(start.status, 302);
    let issued = user.get(start.location.as_deref().unwrap()).await.unwrap();
    let callback = issued.location.unwrap().replace(&s.url(0), &s.url(1));
    assert!(callback.starts_with(&s.url(1)));
    let done = user.get(&callback).await.unwrap();
    assert_eq!(done.status, 302, "{done:?}");
    assert_eq!(done.location.as_deref(), Some("/app/home"));
    assert_eq!(user.me(&s.url(0)).await.unwrap().json().unwrap()["sub"], "alice");
}

#[tokio::test]
async fn users_see_only_themselves() {
    let s = stack().nodes(2).run().await;
    let users: Vec<_> = (0..8).map(|i| (format!("user-{i}"), VirtualUser::new(Some(&format!("user-{i}"))))).collect();
    for (i, (_, user)) in users.iter().enumerate() {
        assert_eq!(user.login(&s.url(i % 2)).await.unwrap().status, 302);
    }
    for (i, (sub, user)) in users.iter().enumerate() {
        let me = user.me(&s.url((i + 1) % 2)).await.unwrap();
        assert_eq!(me.json().unwrap()["sub"], sub.as_str());
    }
}

#[tokio::test]
async fn memory_store_loses_the_user_on_restart() {
    let mut s = stack().memory().run().await;
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&s.url(0)).await.unwrap().status, 302);
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200);
    s.nodes[0].restart().await.unwrap();
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 404);
    assert!(s.nodes[0].logs().iter().any(|l| l.contains("no redis_url")), "start-up warns about the memory store");
}

#[tokio::test]
async fn local_key_ring_on_shared_redis_does_not_scale() {
    let s = stack().nodes(2).env("BFF_KEY_RING", "local").run().await;
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&s.url(0)).await.unwrap().status, 302);
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200);
    assert_eq!(user.me(&s.url(1)).await.unwrap().status, 404, "another node cannot open a node-local key's seal");
}

#[tokio::test]
async fn end_session_on_one_node_ends_it_everywhere() {
    let s = stack().nodes(2).run().await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let bye = user.logout(&s.url(1)).await.unwrap();
    assert_eq!(bye.status, 302);
    let location = bye.location.unwrap();
    assert!(location.starts_with(&format!("{}/end_session?", s.issuer.url())), "{location}");
    assert!(location.contains("id_token_hint=") && location.contains("post_logout_redirect_uri="));

    let other = VirtualUser::new(None);
    other.login(&s.url(0)).await.unwrap();
    for node in 0..2 {
        assert_eq!(user.me(&s.url(node)).await.unwrap().status, 404);
        assert_eq!(other.me(&s.url(node)).await.unwrap().status, 200, "other sessions survive");
    }
    // Without a session, end-session just goes home.
    let again = user.logout(&s.url(0)).await.unwrap();
    assert_eq!(again.location.as_deref(), Some(format!("{}/", s.url(0)).as_str()));
}

#[tokio::test]
async fn a_new_login_replaces_the_previous_session_id() {
    let s = stack().run().await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let first = session_cookie(&user);
    user.login(&s.url(0)).await.unwrap();
    let second = session_cookie(&user);
    assert_ne!(first, second, "session fixation: a login must issue a new id");

    let planted = VirtualUser::new(None);
    set_session_cookie(&planted, &s.url(0), &first);
    assert_eq!(planted.me(&s.url(0)).await.unwrap().status, 404, "the replaced session is gone");
}

#[tokio::test]
async fn cookies_are_http_only_and_same_site() {
    let s = stack().run().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let start = http.get(format!("{}/account/login", s.url(0))).send().await.unwrap();
    let binding = start.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        binding.contains("HttpOnly") && binding.contains("SameSite=Lax") && binding.contains("Path=/"),
        "{binding}"
    );

    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let jar = user.jar().lock().unwrap();
    let cookie = jar.iter_any().find(|c| c.name() == "bff-session").expect("session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)");
    assert!(cookie.value().len() >= 43, "at least 256 bits");
}

pub fn session_cookie(user: &VirtualUser) -> String {
    let jar = user.jar().lock().unwrap();
    jar.iter_any().find(|c| c.name() == "bff-session").map(|c| c.value().to_owned()).expect("session cookie")
}

pub fn set_session_cookie(user: &VirtualUser, base: &str, value: &str) {
    let url = url::Url::parse(base).unwrap();
    let mut jar = user.jar().lock().unwrap();
    jar.parse(&format!("bff-session={value}; Path=/"), &url).unwrap();
}
