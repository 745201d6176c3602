//! The router under test and a way to send it one request.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use harness::MockIssuer;
use tower::ServiceExt;

/// The app and the issuer it discovered (kept alive as long as the app).
pub struct App {
    pub router: axum::Router,
    pub issuer: MockIssuer,
}

/// Builds the app on the memory store, with routes that all need a session, and loads the mock
/// issuer's metadata and keys.
pub async fn app() -> App {
    let issuer = MockIssuer::builder().run().await.expect("mock issuer starts");
    let vars: HashMap<String, String> = [
        ("BFF_PUBLIC_URL", "http://gateway.test"),
        ("BFF_OIDC_AUTHORITY", issuer.url()),
        ("BFF_OIDC_CLIENT_ID", "bff-client"),
        ("BFF_OIDC_CLIENT_SECRET", "bff-secret"),
        (
            "BFF_ROUTES",
            r#"[{ path = "/api", upstreams = ["http://127.0.0.1:9"], auth = "required" },
                { path = "/", upstreams = ["http://127.0.0.1:9"], auth = "required" }]"#,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = bff::Config::from_env_map(&vars).expect("test configuration");
    let state = bff::AppState::new(config).expect("state");
    state.oidc.discover().await.expect("the mock issuer answers discovery");
    App { router: bff::app(state), issuer }
}

/// Sends one request, returns its status.
pub async fn status(router: &axum::Router, request: Request<Body>) -> StatusCode {
    router.clone().oneshot(request).await.expect("infallible").status()
}
