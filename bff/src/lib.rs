//! `bff`: a Backend-for-Frontend security gateway that scales out.
//!
//! It logs users in with OpenID Connect (code flow + PKCE), keeps their tokens in a server-side
//! session sealed under a key ring, and gives the browser only an opaque HttpOnly cookie. With
//! Redis configured, sessions and the key ring are shared by every node, so any node can serve any
//! request and a restart loses nobody.
//!
//! Embedding and tests use [`run`] with a bound listener and a shutdown future; [`app`] is the
//! router alone, for tests without a socket.

// The proxied path's future nests the store, the link and its Sentinel lookups deeply enough to pass
// the compiler's default layout depth.
#![recursion_limit = "256"]

pub mod bench_sessions;
pub mod body_deadline;
pub mod client_addr;
pub mod compat;
pub mod config;
pub mod cutoff;
pub mod error;
pub mod keyring;
pub mod landing_page;
pub mod localhost;
pub mod metrics;
pub mod oidc;
pub mod redis_link;
pub mod routes;
pub mod server;
pub mod session;
pub mod state;
pub mod store_error;
pub mod telemetry;
pub mod traces;
pub mod websocket;

pub use config::{Config, ConfigError};
pub use server::{RunError, run};
pub use state::AppState;

/// The complete router with its middleware (request ids, tracing, the body size limit).
pub fn app(state: AppState) -> axum::Router {
    let _ = metrics::handle();
    let node_name = state.config.node_name.clone();
    let max_body = state.config.server.max_body_size;
    let router = telemetry::layer(
        routes::router(state)
            .layer(axum::middleware::from_fn(metrics::track))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body)),
    );
    match node_name {
        // A verifier behind someone else's load balancer learns which node answered.
        Some(name) => router.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            axum::http::HeaderName::from_static("x-bff-node"),
            axum::http::HeaderValue::from_str(&name).expect("node_name is checked to be a header value"),
        )),
        None => router,
    }
}
