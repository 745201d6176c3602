//! The API gateway over real sockets: routes to a wiremock upstream that records what it
//! receives; CSRF; 401/502/504; one token refresh per session across three nodes however many
//! calls race for it; back-channel logout; metrics.

use std::sync::Arc;
use std::time::Duration;

use harness::{MockIssuer, TokenFaults, VirtualUser};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::stack::{Stack, backchannel_logout, eventually, stack};

fn routes(upstream: &str) -> String {
    format!(
        r#"
[[routes]]
path = "/api/"
upstreams = ["{upstream}"]
auth = "required"
rewrite = "/v1/"

[[routes]]
path = "/public/"
upstreams = ["{upstream}"]
auth = "none"

[[routes]]
path = "/slow/"
upstreams = ["{upstream}"]
auth = "none"
timeout = "300ms"

[[routes]]
path = "/down/"
upstreams = ["http://127.0.0.1:9"]
auth = "none"
"#
    )
}

async fn upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/slow/"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("from upstream").insert_header("connection", "close"))
        .mount(&server)
        .await;
    server
}

async fn api_stack(nodes: usize, issuer: MockIssuer, env: &[(&str, &str)]) -> (Stack, MockServer) {
    let up = upstream().await;
    let mut b = stack().nodes(nodes).issuer(issuer).config(&routes(&up.uri()));
    for (k, v) in env {
        b = b.env(k, v);
    }
    (b.run().await, up)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn session_header(user: &VirtualUser) -> String {
    format!("bff-session={}", crate::login::session_cookie(user))
}

async fn received(up: &MockServer, prefix: &str) -> Vec<Request> {
    up.received_requests().await.unwrap().into_iter().filter(|r| r.url.path().starts_with(prefix)).collect()
}

#[tokio::test]
async fn api_calls_carry_the_bearer_and_nothing_of_the_gateway() {
    let (s, up) = api_stack(1, MockIssuer::builder().run().await.unwrap(), &[]).await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let reply = http()
        .get(format!("{}/api/things?page=2", s.url(0)))
        .header("x-csrf", "1")
        .header("cookie", format!("theme=dark; {}", session_header(&user)))
        .header("connection", "x-private-hop")
        .header("x-private-hop", "secret")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.text().await.unwrap(), "from upstream");

    let seen = received(&up, "/v1/").await;
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.url.path(), "/v1/things");
    assert_eq!(r.url.query(), Some("page=2"));
    let header = |name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let bearer = header("authorization").unwrap();
    let token = bearer.strip_prefix("Bearer ").unwrap();
    assert!(s.issuer.issued_access_tokens().contains(&token.to_owned()));
    assert_eq!(header("cookie").as_deref(), Some("theme=dark"), "the gateway's cookie stays home");
    assert_eq!(header("x-private-hop"), None, "headers named in Connection are hop-by-hop");
    assert_eq!(header("x-forwarded-proto").as_deref(), Some("http"));
    assert!(header("x-forwarded-for").unwrap().contains("127.0.0.1"));
    assert!(header("x-forwarded-host").unwrap().starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn no_session_or_no_csrf_header_is_401_and_nothing_is_forwarded() {
    let (s, up) = api_stack(1, MockIssuer::builder().run().await.unwrap(), &[]).await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let no_csrf =
        http().get(format!("{}/api/x", s.url(0))).header("cookie", session_header(&user)).send().await.unwrap();
    assert_eq!(no_csrf.status(), 401);
    assert!(no_csrf.text().await.unwrap().contains("CSRF"));
    let no_session = http().get(format!("{}/api/x", s.url(0))).header("x-csrf", "1").send().await.unwrap();
    assert_eq!(no_session.status(), 401);
    assert!(received(&up, "/v1/").await.is_empty());

    let public = http().get(format!("{}/public/info", s.url(0))).send().await.unwrap();
    assert_eq!(public.status(), 200, "auth = none needs neither session nor CSRF header");
    let seen = received(&up, "/public/").await;
    assert!(seen[0].headers.get("authorization").is_none());
    let missing = http().get(format!("{}/nowhere", s.url(0))).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let (s, _up) = api_stack(1, MockIssuer::builder().run().await.unwrap(), &[]).await;
    assert_eq!(http().get(format!("{}/down/x", s.url(0))).send().await.unwrap().status(), 502);
    assert_eq!(http().get(format!("{}/slow/x", s.url(0))).send().await.unwrap().status(), 504);
}

/// Logs in with an access token that is already due for refresh; later tokens live long.
async fn storm_stack(issuer: MockIssuer, env: &[(&str, &str)]) -> (Stack, MockServer, VirtualUser) {
    let (s, up) = api_stack(3, issuer, env).await;
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&s.url(0)).await.unwrap().status, 302);
    s.issuer.set_access_token_lifetime(Duration::from_secs(300));
    (s, up, user)
}

async fn storm(s: &Stack, user: &VirtualUser, calls: usize) -> Vec<u16> {
    let client = Arc::new(http());
    let cookie = session_header(user);
    let requests = (0..calls).map(|i| {
        let (client, cookie, url) = (client.clone(), cookie.clone(), s.url(i % s.nodes.len()));
        async move {
            client
                .get(format!("{url}/api/storm/{i}"))
                .header("x-csrf", "1")
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    futures::future::join_all(requests).await
}

async fn assert_one_refresh(s: &Stack, up: &MockServer, statuses: &[u16]) {
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(s.issuer.calls("refresh"), 1, "exactly one call to the token endpoint for a refresh");
    let seen = received(up, "/v1/storm/").await;
    assert_eq!(seen.len(), statuses.len());
    let bearers: std::collections::HashSet<_> =
        seen.iter().map(|r| r.headers.get("authorization").unwrap().to_str().unwrap().to_owned()).collect();
    assert_eq!(bearers.len(), 1, "every call used the one refreshed token");
    let mut refreshed = 0.0;
    for node in 0..s.nodes.len() {
        let metrics = crate::stack::metrics(&s.url(node)).await;
        refreshed += metrics
            .lines()
            .find_map(|l| l.strip_prefix("bff_token_refresh_total{result=\"ok\"} ").map(|v| v.parse::<f64>().unwrap()))
            .unwrap_or(0.0);
    }
    assert_eq!(refreshed, 1.0, "bff_token_refresh_total{{result=\"ok\"}} over the nodes");
}

#[tokio::test]
async fn a_refresh_storm_over_three_nodes_refreshes_once() {
    let issuer = MockIssuer::builder().access_token_lifetime(Duration::from_secs(1)).run().await.unwrap();
    let (s, up, user) = storm_stack(issuer, &[]).await;
    let statuses = storm(&s, &user, 100).await;
    assert_one_refresh(&s, &up, &statuses).await;
}

#[tokio::test]
async fn a_refresh_storm_with_rotating_refresh_tokens_refreshes_once() {
    let issuer = MockIssuer::builder()
        .access_token_lifetime(Duration::from_secs(1))
        .rotate_refresh_tokens(true)
        .run()
        .await
        .unwrap();
    let (s, up, user) = storm_stack(issuer, &[]).await;
    let statuses = storm(&s, &user, 100).await;
    assert_one_refresh(&s, &up, &statuses).await;
    // The rotated refresh token was stored: the next refresh works.
    s.issuer.set_access_token_lifetime(Duration::from_secs(1));
    let expire_now = storm(&s, &user, 1).await; // uses the 300 s token
    assert_eq!(expire_now, [200]);
}

#[tokio::test]
async fn a_refresh_slower_than_the_lock_lease_still_refreshes_once() {
    let issuer = MockIssuer::builder().access_token_lifetime(Duration::from_secs(1)).run().await.unwrap();
    let (s, up, user) = storm_stack(issuer, &[("BFF_REFRESH_LOCK_LEASE", "1s")]).await;
    s.issuer.set_token_faults(TokenFaults { delay: Some(Duration::from_millis(2500)), status: None });
    let statuses = storm(&s, &user, 60).await;
    assert_one_refresh(&s, &up, &statuses).await;
}

#[tokio::test]
async fn a_refused_refresh_token_ends_the_session_and_an_issuer_outage_keeps_it() {
    let issuer = MockIssuer::builder().access_token_lifetime(Duration::from_secs(1)).run().await.unwrap();
    let (s, _up) = api_stack(1, issuer, &[]).await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();

    s.issuer.set_token_faults(TokenFaults { delay: None, status: Some(503) });
    assert_eq!(storm(&s, &user, 1).await, [503], "token endpoint down: this call fails");
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 200, "and the session is kept");

    s.issuer.set_token_faults(TokenFaults::default());
    s.issuer.revoke_all_refresh_tokens();
    assert_eq!(storm(&s, &user, 1).await, [401], "invalid_grant ends the session");
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 404);
    // Each outcome counted by what the alert rules and the metrics table name.
    let metrics = crate::stack::metrics(&s.url(0)).await;
    for line in [
        "bff_token_refresh_total{result=\"issuer_error\"} 1",
        "bff_token_refresh_total{result=\"invalid_grant\"} 1",
        "bff_sessions_ended_total{reason=\"refresh_failure\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

#[tokio::test]
async fn backchannel_logout_ends_the_session_on_every_node() {
    let (s, _up) = api_stack(3, MockIssuer::builder().run().await.unwrap(), &[]).await;
    let user = VirtualUser::new(Some("erin"));
    user.login(&s.url(0)).await.unwrap();
    let bystander = VirtualUser::new(Some("frank"));
    bystander.login(&s.url(0)).await.unwrap();

    assert_eq!(backchannel_logout(&s.url(1), "not.a.jwt").await, 400);

    let sid = s.issuer.last_sid("erin").unwrap();
    let token = s.issuer.logout_token(Some(&sid), None);
    assert_eq!(backchannel_logout(&s.url(1), &token).await, 200);
    for node in 0..3 {
        assert_eq!(user.me(&s.url(node)).await.unwrap().status, 404, "node {node}");
        assert_eq!(bystander.me(&s.url(node)).await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_and_metrics_count() {
    let (s, _up) = api_stack(1, MockIssuer::builder().run().await.unwrap(), &[]).await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    user.logout(&s.url(0)).await.unwrap();
    eventually("the refresh token is revoked", Duration::from_secs(5), || async { s.issuer.calls("revoke") == 1 })
        .await;

    let metrics = crate::stack::metrics(&s.url(0)).await;
    for name in
        ["bff_requests_total", "bff_request_duration_seconds", "bff_sessions_created_total", "bff_sessions_ended_total"]
    {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
    assert!(metrics.lines().any(|l| l == "bff_sessions_ended_total{reason=\"logout\"} 1"), "{metrics}");
}

/// Proxied requests are served outside the axum router (see `server::dispatch`): they keep
/// everything its layers give a request, here checked over a real socket. A request id is made
/// when the caller sent none, kept when it sent one, forwarded upstream and returned; the node
/// header is set; the proxied route is counted by route and status, an unreachable upstream too.
#[tokio::test]
async fn proxied_requests_keep_request_ids_the_node_header_and_metrics() {
    let (s, up) =
        api_stack(1, MockIssuer::builder().run().await.unwrap(), &[("BFF_NODE_NAME", "node-under-test")]).await;
    let answer = http().get(format!("{}/public/made-id", s.url(0))).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let made = answer.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 36, "a uuid: {made}");
    assert_eq!(answer.headers()["x-bff-node"], "node-under-test");

    let answer = http()
        .get(format!("{}/public/kept-id", s.url(0)))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["x-request-id"], "caller-chosen-id");
    let forwarded = received(&up, "/public/").await;
    let id_of = |path: &str| {
        forwarded.iter().find(|r| r.url.path() == path).and_then(|r| r.headers.get("x-request-id")).cloned()
    };
    assert_eq!(id_of("/public/made-id").unwrap(), made.as_str());
    assert_eq!(id_of("/public/kept-id").unwrap(), "caller-chosen-id");

    let down = http().get(format!("{}/down/x", s.url(0))).send().await.unwrap();
    assert_eq!(down.status(), 502);
    assert_eq!(down.headers()["x-bff-node"], "node-under-test");
    assert!(down.headers().contains_key("x-request-id"));

    let metrics = crate::stack::metrics(&s.url(0)).await;
    for line in [
        r#"bff_requests_total{route="/public/",status="200"} 2"#,
        r#"bff_requests_total{route="/down/",status="502"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from /metrics:\n{metrics}");
    }
}
