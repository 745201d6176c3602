//! What an upstream framework would read differently from the gateway: a path parameter that
//! Tomcat, Jetty and Spring resolve (`/public/..;/api`), client-address headers other than the
//! `X-Forwarded-*` family, and a nameless `Set-Cookie` that a browser returns as the session cookie.

use harness::MockIssuer;
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

use crate::fixture::{http, raw_get, received, routes, upstream};
use crate::stack::stack;

#[tokio::test]
async fn a_path_with_a_parameter_is_refused_and_reaches_no_upstream() {
    let up = upstream(Vec::new()).await;
    let s = stack().memory().issuer(MockIssuer::builder().run().await.unwrap()).config(&routes(&up.uri())).run().await;
    for target in ["/public/..;/api/admin", "/public/..;/..;/api/admin", "/public/x;jsessionid=abc", "/api;/x"] {
        assert_eq!(raw_get(&s.url(0), target, "").await, 400, "{target}");
    }
    assert!(up.received_requests().await.unwrap().is_empty(), "nothing was forwarded");
    assert_eq!(raw_get(&s.url(0), "/public/x?a=1;b=2", "").await, 200, "a ; in the query is not in the path");
}

#[tokio::test]
async fn a_clients_address_headers_never_reach_the_upstream() {
    const SPOOFED: [&str; 6] =
        ["true-client-ip", "x-client-ip", "cf-connecting-ip", "fastly-client-ip", "x-cluster-client-ip", "x-real-ip"];
    let up = upstream(Vec::new()).await;
    let s = stack().memory().issuer(MockIssuer::builder().run().await.unwrap()).config(&routes(&up.uri())).run().await;
    let mut request = http().get(format!("{}/public/who", s.url(0)));
    for name in SPOOFED {
        request = request.header(name, "6.6.6.6");
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    let got = received(&up, "/public/who").await.pop().expect("the upstream was called");
    for name in SPOOFED {
        assert!(got.headers.get(name).is_none(), "{name} passed through: {:?}", got.headers);
    }
    assert_eq!(got.headers.get("x-forwarded-for").unwrap(), "127.0.0.1");
}

#[tokio::test]
async fn an_upstream_cannot_set_a_nameless_cookie() {
    let cookies = ["=bff-session=planted", " =bff-session=planted; Path=/", "bff-session", "theme=dark; Path=/"];
    let mut reply = ResponseTemplate::new(200);
    for c in cookies {
        reply = reply.append_header("set-cookie", c);
    }
    let up = upstream(vec![Mock::given(path("/public/cookies")).respond_with(reply)]).await;
    let s = stack().memory().issuer(MockIssuer::builder().run().await.unwrap()).config(&routes(&up.uri())).run().await;
    let response = http().get(format!("{}/public/cookies", s.url(0))).send().await.unwrap();
    let set: Vec<&str> = response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(set, ["theme=dark; Path=/"]);
}

/// Low: a client's `x-request-id` reached upstreams and log lines as sent. An id of a safe shape
/// is kept (a caller's tracing still works); one too long, with quotes or spaces, or several,
/// is replaced by the gateway's own before the upstream, the log and the response see it.
#[tokio::test]
async fn a_clients_request_id_is_kept_only_in_a_safe_shape() {
    let up = upstream(Vec::new()).await;
    let s = stack().memory().issuer(MockIssuer::builder().run().await.unwrap()).config(&routes(&up.uri())).run().await;
    let long = "a".repeat(300);
    for (sent, kept) in [
        (vec!["0b9c6f2e-8d3a-4c1e-9f7a-2b4d6e8f0a1c"], true),
        (vec!["abc\" level=error msg=\"forged"], false),
        (vec![long.as_str()], false),
        (vec!["<script>alert(1)</script>"], false),
        (vec!["one", "two"], false),
    ] {
        let mut request = http().get(format!("{}/public/id", s.url(0)));
        for id in &sent {
            request = request.header("x-request-id", *id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let answered: Vec<String> =
            response.headers().get_all("x-request-id").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        let got = received(&up, "/public/id").await.pop().expect("the upstream was called");
        let forwarded: Vec<String> =
            got.headers.get_all("x-request-id").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        assert_eq!(forwarded.len(), 1, "{sent:?}: {forwarded:?}");
        assert_eq!(answered, forwarded, "{sent:?}: the response names the id the upstream saw");
        if kept {
            assert_eq!(forwarded, sent, "a well-formed id is kept");
        } else {
            assert!(!sent.contains(&forwarded[0].as_str()), "{sent:?} reached the upstream");
            assert!(uuid::Uuid::parse_str(&forwarded[0]).is_ok(), "{forwarded:?}");
        }
    }
    let logs = s.nodes[0].logs().join("\n");
    assert!(!logs.contains("forged") && !logs.contains("<script>"), "a client's id reached the log");
}
