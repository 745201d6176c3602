//! Redis trouble: requests that need the store get 503 while Redis is down, and the node heals by
//! itself when Redis returns; a node that starts before Redis becomes ready when Redis appears.

use std::time::Duration;

use harness::{RedisProcess, VirtualUser};

use crate::stack::{eventually, node_builder};

#[tokio::test]
async fn outage_gives_503_and_heals_without_a_restart() {
    let issuer = harness::MockIssuer::builder().run().await.unwrap();
    let mut redis = RedisProcess::start(true).await.unwrap();
    let port = harness::process::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let node = node_builder(&issuer, Some(&redis), &url).port(port).run().await.unwrap();
    let user = VirtualUser::new(None);
    user.login(&url).await.unwrap();
    let http = reqwest::Client::new();

    redis.stop().await;
    let me = user.me(&url).await.unwrap();
    assert_eq!(me.status, 503, "{me:?}");
    assert!(me.body.contains("session store unavailable"));
    // Starting a login stores nothing (it is sealed into the login cookie); finishing one needs
    // the store.
    let login = user.get(&format!("{url}/account/login")).await.unwrap();
    assert_eq!(login.status, 302, "{login:?}");
    let issued = user.get(login.location.as_deref().unwrap()).await.unwrap();
    let callback = user.get(issued.location.as_deref().unwrap()).await.unwrap();
    assert_eq!(callback.status, 503, "{callback:?}");
    assert_eq!(http.get(format!("{url}/ready")).send().await.unwrap().status(), 503);
    assert_eq!(http.get(format!("{url}/health")).send().await.unwrap().status(), 200);
    // What the `BffRedisErrors` alert reads: the commands that failed for good.
    let errors = crate::stack::metrics(&url)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("bff_redis_errors_total ").map(|v| v.parse::<f64>().unwrap()))
        .unwrap_or(0.0);
    assert!(errors >= 2.0, "the failed reads and writes are counted: {errors}");

    redis.start_again().await.unwrap();
    eventually("the node serves the session again", Duration::from_secs(15), || async {
        user.me(&url).await.map(|r| r.status == 200).unwrap_or(false)
    })
    .await;
    eventually("the node is ready again", Duration::from_secs(15), || async {
        http.get(format!("{url}/ready")).send().await.map(|r| r.status() == 200).unwrap_or(false)
    })
    .await;
    assert!(node.is_running());
}

#[tokio::test]
async fn a_node_started_before_redis_becomes_ready_when_redis_appears() {
    let issuer = harness::MockIssuer::builder().run().await.unwrap();
    let redis_port = harness::process::free_port();
    let port = harness::process::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _node = crate::stack::node_builder(&issuer, None, &url)
        .env("BFF_REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
        .port(port)
        .without_waiting_for_ready()
        .run()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let ready = http.get(format!("{url}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("not ready"));

    let _redis = RedisProcess::start_on(redis_port, false).await.unwrap();
    eventually("the node becomes ready", Duration::from_secs(15), || async {
        http.get(format!("{url}/ready")).send().await.map(|r| r.status() == 200).unwrap_or(false)
    })
    .await;
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&url).await.unwrap().status, 302);
    assert_eq!(user.me(&url).await.unwrap().status, 200);
}

#[tokio::test]
async fn a_redis_that_comes_back_empty_gets_the_key_ring_again() {
    let mut s = crate::stack::stack().run().await;
    let url = s.url(0);
    let http = reqwest::Client::new();
    let redis = s.redis.as_mut().unwrap();
    redis.stop().await;
    redis.start_again().await.unwrap(); // no persistence: everything is gone
    let port = redis.port();
    eventually("the node is ready again", Duration::from_secs(15), || async {
        http.get(format!("{url}/ready")).send().await.map(|r| r.status() == 200).unwrap_or(false)
    })
    .await;
    assert!(
        matches!(crate::stack::redis_cmd(port, &["HLEN", "bff:keyring"]).await, redis::Value::Int(1)),
        "the node published its key again"
    );
    // A node that starts now shares the key with the old one: sessions go both ways.
    let late = node_builder(&s.issuer, s.redis.as_ref(), &url).run().await.unwrap();
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&url).await.unwrap().status, 302);
    assert_eq!(user.me(&late.url()).await.unwrap().status, 200);
    let other = VirtualUser::new(None);
    let start = other.get(&format!("{}/account/login", late.url())).await.unwrap();
    let issued = other.get(start.location.as_deref().unwrap()).await.unwrap();
    let callback = issued.location.unwrap().replace(&url, &late.url());
    assert_eq!(other.get(&callback).await.unwrap().status, 302);
    assert_eq!(other.me(&url).await.unwrap().status, 200);
}

/// After a Redis restart each node's shared connection is dead, and the node learns it only when
/// a command fails on it. That first command must be sent again on a fresh connection, not cost
/// its request a 503: the first request of each kind on a node that has seen no traffic since
/// the restart succeeds.
#[tokio::test]
async fn the_first_request_on_each_node_after_a_redis_restart_succeeds() {
    let upstream = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("from upstream"))
        .mount(&upstream)
        .await;
    let routes = tempfile::NamedTempFile::new().unwrap();
    let route = format!("[[routes]]\npath = \"/api/\"\nupstreams = [\"{}\"]\nauth = \"required\"\n", upstream.uri());
    std::fs::write(routes.path(), route).unwrap();

    let issuer = harness::MockIssuer::builder().run().await.unwrap();
    let mut redis = RedisProcess::start(true).await.unwrap();
    let ports: Vec<u16> = (0..5).map(|_| harness::process::free_port()).collect();
    let public = format!("http://127.0.0.1:{}", ports[0]);
    let mut nodes = Vec::new();
    for port in &ports {
        let node = node_builder(&issuer, Some(&redis), &public)
            .env("BFF_CONFIG", routes.path().display().to_string())
            .port(*port)
            .run()
            .await
            .unwrap();
        nodes.push(node);
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let users = [VirtualUser::new(None), VirtualUser::new(None), VirtualUser::new(None)];
    for user in &users {
        assert_eq!(user.login(&public).await.unwrap().status, 302);
    }

    redis.restart().await.unwrap();
    // Every node has noticed the restart: its change-notice listener is subscribed again, so its
    // shared connection, idle since, has been closed by the old Redis.
    let port = redis.port();
    eventually("every node subscribes again", Duration::from_secs(15), || async move {
        let numsub = crate::stack::redis_cmd(port, &["PUBSUB", "NUMSUB", "bff:session-changed"]).await;
        matches!(numsub, redis::Value::Array(ref v) if v.get(1) == Some(&redis::Value::Int(5)))
    })
    .await;

    let me = users[0].me(&urls[0]).await.unwrap();
    assert_eq!(me.status, 200, "first /account/me after the restart: {me:?}");
    let api = users[1].api(&format!("{}/api/things", urls[1])).await.unwrap();
    assert_eq!(api.status, 200, "first API call after the restart: {api:?}");
    assert_eq!(api.body, "from upstream");
    let logout = users[2].logout_keeping_cookie(&urls[2]).await.unwrap();
    assert_eq!(logout.status, 302, "first end-session after the restart: {logout:?}");
    // The logout did end the session, for every node: the cookie kept by the client is dead.
    assert_eq!(users[2].me(&urls[0]).await.unwrap().status, 404);
    // A login begun on one fresh node and called back on another: the one-time login state is
    // written by the first and taken (GETDEL) by the second, each its node's first command.
    let user = VirtualUser::new(None);
    let start = user.get(&format!("{}/account/login", urls[3])).await.unwrap();
    let issued = user.get(start.location.as_deref().expect("a redirect to the issuer")).await.unwrap();
    let callback = issued.location.expect("a redirect back").replace(&public, &urls[4]);
    let done = user.get(&callback).await.unwrap();
    assert_eq!(done.status, 302, "first login callback after the restart: {done:?}");
    assert_eq!(user.me(&urls[4]).await.unwrap().status, 200);
    for node in &nodes {
        assert!(node.is_running());
    }
}
