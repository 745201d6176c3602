//! Low: `/metrics` on an operator-only listener. With `metrics_listen` set, the metrics are served
//! there and nowhere else: the public listener answers 404 for `/metrics` (not even a catch-all
//! route sends it upstream), and the operator listener serves nothing but `/metrics`.

use harness::MockIssuer;

use crate::fixture::{http, received, routes, upstream};
use crate::stack::stack;

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
