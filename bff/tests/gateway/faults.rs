//! The gateway under faults on its link to Redis, made by a [`Fault`] relay between each node and
//! a real `redis-server`: a link that goes silent, one that is slow, one that is reset, and one
//! node cut off while the others carry on. Whatever happens, a request is answered (503 at
//! worst, in bounded time), a session is never taken for absent, and service comes back by
//! itself once the fault ends.

use std::time::{Duration, Instant};

use harness::VirtualUser;
use harness::fault::Fault;

use crate::stack::{Stack, eventually, stack};

const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// What a request may take beyond `redis_timeout` while Redis does not answer.
const SLACK: Duration = Duration::from_millis(700);

async fn logged_in_users(s: &Stack, n: usize) -> Vec<VirtualUser> {
    let mut users = Vec::new();
    for i in 0..n {
        let user = VirtualUser::new(Some(&format!("fault-user-{i}")));
        assert_eq!(user.login(&s.url(0)).await.unwrap().status, 302);
        users.push(user);
    }
    users
}

fn set_all(s: &Stack, fault: Fault) {
    for proxy in &s.proxies {
        proxy.set(fault);
    }
}

/// `/account/me` for every user on every node at once; returns each (status, time taken).
async fn everyone_asks(s: &Stack, users: &[VirtualUser]) -> Vec<(u16, Duration)> {
    let asks = users.iter().flat_map(|user| {
        (0..s.nodes.len()).map(move |node| async move {
            let started = Instant::now();
            let status = user.me(&s.url(node)).await.map(|r| r.status).unwrap_or(0);
            (status, started.elapsed())
        })
    });
    futures::future::join_all(asks).await
}

/// From the end of a fault: how long until every user is served on every node again.
async fn time_to_recover(s: &Stack, users: &[VirtualUser]) -> Duration {
    let healed = Instant::now();
    eventually("every user is served on every node again", Duration::from_secs(5), || async {
        let answers = everyone_asks(s, users).await;
        assert!(answers.iter().all(|(status, _)| *status != 404), "a session was lost: {answers:?}");
        answers.iter().all(|(status, _)| *status == 200)
    })
    .await;
    healed.elapsed()
}

#[tokio::test]
async fn while_redis_is_black_holed_requests_answer_503_in_bounded_time_and_no_session_is_lost() {
    let s = stack()
        .nodes(2)
        .fault_proxies()
        .env("BFF_REDIS_TIMEOUT", "500ms")
        .env("BFF_SESSION_CACHE_MAX_AGE", "off")
        .run()
        .await;
    let users = logged_in_users(&s, 5).await;

    set_all(&s, Fault::Blackhole);
    // Twice: the first requests meet a connection that has just gone silent, the second ones a
    // connection the nodes already know to be in trouble.
    for round in 0..2 {
        let answers = everyone_asks(&s, &users).await;
        let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
        println!("black-holed, round {round}: slowest answer {slowest:?}");
        assert!(answers.iter().all(|(status, _)| *status == 503), "round {round}: {answers:?}");
        assert!(slowest <= REDIS_TIMEOUT + SLACK, "round {round}: an answer took {slowest:?}");
    }

    set_all(&s, Fault::None);
    let recovered = time_to_recover(&s, &users).await;
    println!("service back {recovered:?} after the black hole ended");
    assert!(recovered < Duration::from_secs(2), "service came back after {recovered:?}");
}

#[tokio::test]
async fn reset_connections_and_a_slow_redis_cost_no_session() {
    // Every request reads Redis (no node cache), so every one meets the fault.
    let s = stack()
        .nodes(2)
        .fault_proxies()
        .env("BFF_REDIS_TIMEOUT", "500ms")
        .env("BFF_SESSION_CACHE_MAX_AGE", "off")
        .run()
        .await;
    let users = logged_in_users(&s, 5).await;

    // Slower than usual but inside redis_timeout: served, only later.
    set_all(&s, Fault::Latency(Duration::from_millis(150)));
    let answers = everyone_asks(&s, &users).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "slow redis: {answers:?}");

    // Slower than redis_timeout: 503, never 404, in bounded time.
    set_all(&s, Fault::Latency(Duration::from_millis(800)));
    let fresh = VirtualUser::new(Some("fault-user-late"));
    let login = fresh.login(&s.url(0)).await.map(|r| r.status).unwrap_or(0);
    assert_ne!(login, 302, "a login through a Redis slower than redis_timeout cannot complete");
    let answers = everyone_asks(&s, &users).await;
    assert!(answers.iter().all(|(status, took)| *status != 404 && *took <= REDIS_TIMEOUT * 2 + SLACK), "{answers:?}");
    set_all(&s, Fault::None);
    let recovered = time_to_recover(&s, &users).await;
    println!("service back {recovered:?} after redis latency 800 ms ended");
    assert!(recovered < Duration::from_secs(2));

    set_all(&s, Fault::Reset);
    let answers = everyone_asks(&s, &users).await;
    assert!(answers.iter().all(|(status, _)| *status == 503), "reset: {answers:?}");
    set_all(&s, Fault::None);
    let recovered = time_to_recover(&s, &users).await;
    println!("service back {recovered:?} after connection resets ended");
    assert!(recovered < Duration::from_secs(2));
}

#[tokio::test]
async fn a_node_cut_off_from_redis_serves_nothing_stale_and_drops_out_of_readiness() {
    let s = stack()
        .nodes(2)
        .fault_proxies()
        .env("BFF_REDIS_TIMEOUT", "500ms")
        .env("BFF_SESSION_CACHE_MAX_AGE", "10m")
        .run()
        .await;
    let (a, b) = (s.url(0), s.url(1));
    let leaving = VirtualUser::new(Some("leaving"));
    let staying = VirtualUser::new(Some("staying"));
    for user in [&leaving, &staying] {
        assert_eq!(user.login(&a).await.unwrap().status, 302);
        assert_eq!(user.me(&b).await.unwrap().status, 200, "node b keeps the session in memory");
    }

    // Node b is cut off from Redis; it still answers its clients.
    s.proxies[1].set(Fault::Blackhole);
    let cut = Instant::now();
    let started = Instant::now();
    let logout = leaving.logout_keeping_cookie(&a).await.unwrap();
    let took = started.elapsed();
    println!("logout with one node cut off took {took:?}");
    assert_eq!(logout.status, 302);
    assert!(took < bff::session::LEASE + SLACK, "the logout waits at most the lease: {took:?}");
    let stale = leaving.me(&b).await.unwrap();
    assert_ne!(stale.status, 200, "node b served a session after its logout had answered");

    // Past the lease, node b serves nobody from memory: it answers 503, and says it is not ready.
    eventually("node b stops serving from memory", Duration::from_secs(3), || async {
        staying.me(&b).await.unwrap().status == 503
    })
    .await;
    assert!(cut.elapsed() < bff::session::LEASE + REDIS_TIMEOUT + SLACK, "served from memory for {:?}", cut.elapsed());
    eventually("node b drops out of readiness", Duration::from_secs(3), || async {
        reqwest::get(format!("{b}/ready")).await.unwrap().status() == 503
    })
    .await;
    assert_eq!(staying.me(&a).await.unwrap().status, 200, "node a carries on");

    s.proxies[1].set(Fault::None);
    let healed = Instant::now();
    eventually("node b serves again", Duration::from_secs(2), || async { staying.me(&b).await.unwrap().status == 200 })
        .await;
    println!("node b back {:?} after the partition ended", healed.elapsed());
    assert_eq!(leaving.me(&b).await.unwrap().status, 404, "the ended session stays ended");
    eventually("node b ready again", Duration::from_secs(2), || async {
        reqwest::get(format!("{b}/ready")).await.unwrap().status() == 200
    })
    .await;
}

/// The issuer rotates the refresh token while Redis is cut off: the new tokens are its only copy.
/// The gateway keeps trying to store them while its refresh lock lasts, so the session survives
/// the blip and no refresh token is ever presented twice.
#[tokio::test]
async fn tokens_refreshed_while_redis_is_cut_off_are_stored_once_it_is_back() {
    use harness::{MockIssuer, TokenFaults};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let upstream = MockServer::start().await;
    Mock::given(wiremock::matchers::any()).respond_with(ResponseTemplate::new(200)).mount(&upstream).await;
    let issuer = MockIssuer::builder()
        .rotate_refresh_tokens(true)
        .access_token_lifetime(Duration::from_secs(1))
        .run()
        .await
        .unwrap();
    let routes = format!("[[routes]]\npath = \"/api/\"\nupstreams = [\"{}\"]\nauth = \"required\"\n", upstream.uri());
    let s = stack()
        .issuer(issuer)
        .config(&routes)
        .fault_proxies()
        .env("BFF_REDIS_TIMEOUT", "300ms")
        .env("BFF_SESSION_CACHE_MAX_AGE", "off")
        .run()
        .await;
    let user = VirtualUser::new(Some("rotating"));
    assert_eq!(user.login(&s.url(0)).await.unwrap().status, 302);
    s.issuer.set_access_token_lifetime(Duration::from_secs(300));
    let token_delay = Duration::from_millis(800);
    s.issuer.set_token_faults(TokenFaults { delay: Some(token_delay), status: None });

    let api = format!("{}/api/data", s.url(0));
    // The same browser in another tab: the call runs on while the test cuts the link.
    let during = tokio::spawn({
        let api = api.clone();
        let jar = user.jar().lock().unwrap().clone();
        async move {
            let caller = VirtualUser::new(None);
            *caller.jar().lock().unwrap() = jar;
            caller.api(&api).await.map(|r| r.status).unwrap_or(0)
        }
    });
    eventually("the refresh reaches the token endpoint", Duration::from_secs(5), || async {
        s.issuer.calls("refresh") >= 1
    })
    .await;
    // Cut off while the issuer works, and for a while after it answered with rotated tokens.
    s.proxies[0].set(Fault::Reset);
    tokio::time::sleep(token_delay + Duration::from_millis(700)).await;
    s.proxies[0].set(Fault::None);
    let first = during.await.unwrap();
    assert!(matches!(first, 200 | 503), "the call during the blip: {first}");

    eventually("the session is served with the stored tokens", Duration::from_secs(5), || async {
        user.api(&api).await.map(|r| r.status).unwrap_or(0) == 200
    })
    .await;
    assert_eq!(s.issuer.calls("refresh"), 1, "one refresh, its tokens kept");
    assert_eq!(s.issuer.refresh_tokens_presented_twice(), Some(0));
}
