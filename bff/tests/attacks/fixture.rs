//! What the attack tests share: a stack with API routes in front of a recording upstream, and a
//! browser-less HTTP client that sends exactly the headers a test gives it.

use std::time::Duration;

use harness::{MockIssuer, VirtualUser};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::stack::{Stack, stack};

/// Routes: `/api` (session required, rewritten to `/v1`), `/public/` and everything else `/`
/// (no session): a path that escapes `/api` lands on a weaker route.
pub fn routes(upstream: &str) -> String {
    format!(
        r#"
[[routes]]
path = "/api"
upstreams = ["{upstream}"]
auth = "required"
rewrite = "/v1"

[[routes]]
path = "/public/"
upstreams = ["{upstream}"]
auth = "none"

[[routes]]
path = "/"
upstreams = ["{upstream}"]
auth = "none"
"#
    )
}

/// An upstream that answers 200 to everything, plus whatever `extra` mounts first.
pub async fn upstream(extra: Vec<Mock>) -> MockServer {
    let server = MockServer::start().await;
    for mock in extra {
        mock.mount(&server).await;
    }
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("from upstream"))
        .mount(&server)
        .await;
    server
}

/// A stack of `nodes` nodes with [`routes`], and a user logged in on node 0.
pub async fn api_stack(nodes: usize, issuer: MockIssuer, env: &[(&str, &str)]) -> (Stack, MockServer, VirtualUser) {
    let up = upstream(Vec::new()).await;
    let mut b = stack().nodes(nodes).issuer(issuer).config(&routes(&up.uri()));
    for (k, v) in env {
        b = b.env(k, v);
    }
    let s = b.run().await;
    let user = VirtualUser::new(None);
    assert_eq!(user.login(&s.url(0)).await.unwrap().status, 302);
    (s, up, user)
}

/// An issuer whose first access token is already due for refresh.
pub async fn short_lived_issuer() -> MockIssuer {
    MockIssuer::builder().access_token_lifetime(Duration::from_secs(1)).run().await.unwrap()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub fn session_cookie(user: &VirtualUser) -> String {
    let jar = user.jar().lock().unwrap();
    jar.iter_any().find(|c| c.name() == "bff-session").map(|c| c.value().to_owned()).expect("session cookie")
}

/// An API call with the CSRF header and the user's session cookie.
pub async fn api_call(base: &str, path: &str, user: &VirtualUser) -> reqwest::Response {
    http()
        .get(format!("{base}{path}"))
        .header("x-csrf", "1")
        .header("cookie", format!("bff-session={}", session_cookie(user)))
        .send()
        .await
        .unwrap()
}

pub async fn received(up: &MockServer, prefix: &str) -> Vec<Request> {
    up.received_requests().await.unwrap().into_iter().filter(|r| r.url.path().starts_with(prefix)).collect()
}

/// The Redis keys matching `pattern` (`KEYS`), e.g. the refresh locks `bff:r:*`.
pub async fn redis_keys(port: u16, pattern: &str) -> Vec<String> {
    match crate::stack::redis_cmd(port, &["KEYS", pattern]).await {
        redis::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

/// Sends `GET {target}` as written, byte for byte (HTTP clients normalise `..` away), and
/// returns the status code.
pub async fn raw_get(base: &str, target: &str, extra_headers: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}
