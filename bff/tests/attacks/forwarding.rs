//! Medium 7: forwarding headers come from the connection and the configuration. A client's own
//! `Forwarded`, `X-Real-IP` and `X-Forwarded-*` never reach an upstream, and `X-Forwarded-Host`
//! is the public URL's, not the client's `Host`; a configured trusted proxy's `X-Forwarded-For`
//! is kept and appended to.

use harness::MockIssuer;

use crate::fixture::{http, received, routes, upstream};
use crate::stack::stack;

/// Calls `/public/who` through a one-node stack with `env`, spoofing every forwarding header;
/// returns the headers the upstream received.
async fn spoofed_call(env: &[(&str, &str)]) -> (String, http::HeaderMap) {
    let up = upstream(Vec::new()).await;
    let mut b = stack().memory().issuer(MockIssuer::builder().run().await.unwrap()).config(&routes(&up.uri()));
    for (k, v) in env {
        b = b.env(k, v);
    }
    let s = b.run().await;
    let answer = http()
        .get(format!("{}/public/who", s.url(0)))
        .header("host", "evil.example")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-port", "443")
        .header("forwarded", "for=6.6.6.6;host=evil.example;proto=https")
        .header("x-real-ip", "6.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let got = received(&up, "/public/who").await.pop().expect("the upstream was called");
    (s.url(0).trim_start_matches("http://").to_owned(), got.headers)
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_clients_forwarding_headers_never_reach_the_upstream() {
    let (public_host, headers) = spoofed_call(&[]).await;
    assert_eq!(header(&headers, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&headers, "x-forwarded-host"), Some(public_host.as_str()));
    assert_eq!(header(&headers, "x-forwarded-proto"), Some("http"));
    for name in ["forwarded", "x-real-ip", "x-forwarded-port"] {
        assert_eq!(header(&headers, name), None, "{name} passed through");
    }
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_for_is_appended_to() {
    let (public_host, headers) = spoofed_call(&[("BFF_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]).await;
    assert_eq!(header(&headers, "x-forwarded-for"), Some("6.6.6.6, 127.0.0.1"));
    assert_eq!(header(&headers, "x-real-ip"), Some("6.6.6.6"));
    assert_eq!(header(&headers, "forwarded"), Some("for=6.6.6.6;host=evil.example;proto=https"));
    assert_eq!(header(&headers, "x-forwarded-host"), Some(public_host.as_str()), "from configuration even then");
    assert_eq!(header(&headers, "x-forwarded-proto"), Some("http"));
}
