//! The mock API behind `/api/`: 200 and a small JSON body for every request, saying which
//! method and path reached it, whether the gateway added a bearer token (never the token) and
//! the `traceparent` it received (the gateway's span, when the gateway traces).

use wiremock::{Request, Respond, ResponseTemplate};

struct Echo;

impl Respond for Echo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let bearer = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer "));
        let traceparent = request.headers.get("traceparent").and_then(|v| v.to_str().ok());
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "ok": true,
            "message": "hello from the API",
            "method": request.method.as_str(),
            "path": request.url.path(),
            "bearer_token_received": bearer,
            "traceparent": traceparent,
        }))
    }
}

/// A mock API on `bind` (e.g. `127.0.0.1:0`) answering every request.
pub async fn api_upstream(bind: &str) -> std::io::Result<wiremock::MockServer> {
    let listener = std::net::TcpListener::bind(bind)?;
    let server = wiremock::MockServer::builder().listener(listener).start().await;
    wiremock::Mock::given(wiremock::matchers::any()).respond_with(Echo).mount(&server).await;
    Ok(server)
}
