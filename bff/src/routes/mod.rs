//! The router: account endpoints under the configured prefix, the probes, and the operator
//! endpoints behind the ops token (`/ops/fingerprint`, the session API `/ops/sessions`). `/metrics` is here
//! for operators only (the ops token, see [`ops`]), unless `metrics_listen` gives it a listener of
//! its own ([`metrics_router`]); then the public listener answers 404 for it. Never proxied: the
//! path stays the gateway's, whatever the routes.

mod account;
mod backchannel;
mod cookies;
mod current_session;
mod event_stream;
mod ops;
mod ops_sessions;
mod probes;
mod proxy;
pub mod request_path;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

pub use current_session::CurrentSession;
pub use proxy::proxy_request;

pub use crate::metrics::RouteLabel;

pub fn router(state: AppState) -> Router {
    let prefix = state.config.account_prefix.clone();
    let account = Router::new()
        .route("/login", get(account::login))
        .route("/login/callback", get(account::callback))
        .route("/me", get(account::me))
        .route("/end-session", axum::routing::post(account::end_session))
        .route("/backchannel-logout", axum::routing::post(backchannel::backchannel_logout));
    let router = Router::new()
        .nest(&prefix, account)
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .route("/ops/fingerprint", get(ops::fingerprint))
        .route("/ops/sessions", get(ops_sessions::list).delete(ops_sessions::end_all))
        .route("/ops/sessions/{id}", axum::routing::delete(ops_sessions::end_one))
        .route("/metrics", get(ops::metrics));
    router.fallback(proxy::proxy).with_state(state)
}

/// The operator-only listener's router: `/metrics` and nothing else.
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(crate::metrics::render))
}
