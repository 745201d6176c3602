//! Low: `/metrics` is for operators only. By default the public listener serves it only with the
//! ops token (401 without it, 404 when no token is set: it answered 200 to anyone before); with
//! `metrics_listen` set, the metrics are served there and nowhere else: the public listener
//! answers 404 for `/metrics` (not even a catch-all route sends it upstream), and the operator
//! listener serves nothing but `/metrics`.

use harness::MockIssuer;

use crate::fixture::{http, received, routes, upstream};
use crate::stack::{OPS_TOKEN, stack};

#[tokio::test]
async fn metrics_are_served_only_on_the_operator_listener() {
    let up = upstream(Vec::new()).await;
    let port = harness::process::free_port();
    let s = stack()
        .memory()
        .issuer(MockIssuer::builder().run().await.unwrap())
        .config(&routes(&up.uri()))
        .env("BFF_METRICS_LISTEN", &format!("127.0.0.1:{port}"))
        .run()
        .await;
    let operator = format!("http://127.0.0.1:{port}");

    assert_eq!(http().get(format!("{}/public/x", s.url(0))).send().await.unwrap().status(), 200);
    let public = http().get(format!("{}/metrics", s.url(0))).send().await.unwrap();
    assert_eq!(public.status(), 404, "the public listener must not serve /metrics");
    assert!(!public.text().await.unwrap().contains("bff_requests_total"));
    assert!(received(&up, "/metrics").await.is_empty(), "/metrics went upstream");

    let metrics = http().get(format!("{operator}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("bff_requests_total"), "{text}");
    for other in ["/health", "/account/me", "/public/x"] {
        let reply = http().get(format!("{operator}{other}")).send().await.unwrap();
        assert_eq!(reply.status(), 404, "{other} on the operator listener");
    }
}

#[tokio::test]
async fn the_public_listener_serves_metrics_only_with_the_ops_token() {
    let up = upstream(Vec::new()).await;
    let issuer = MockIssuer::builder().run().await.unwrap();
    let s = stack().memory().issuer(issuer).config(&routes(&up.uri())).run().await;
    let url = format!("{}/metrics", s.url(0));
    for (presented, status) in [(None, 401), (Some("a-wrong-token-of-some-length"), 401), (Some(OPS_TOKEN), 200)] {
        let mut request = http().get(&url);
        if let Some(token) = presented {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{presented:?}");
        assert_eq!(response.text().await.unwrap().contains("bff_requests_total"), status == 200, "{presented:?}");
    }

    let issuer = MockIssuer::builder().run().await.unwrap();
    let without = stack().memory().issuer(issuer).config(&routes(&up.uri())).env("BFF_OPS_TOKEN", "").run().await;
    let response = http().get(format!("{}/metrics", without.url(0))).send().await.unwrap();
    assert_eq!(response.status(), 404, "without an ops token, no public metrics at all");
    assert!(received(&up, "/metrics").await.is_empty(), "/metrics went upstream");
}
