//! The router: account endpoints under the configured prefix, and the probes.

mod account;
mod backchannel;
mod cookies;
mod current_session;
mod ops;
mod probes;
mod proxy;
pub mod request_path;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

pub use current_session::CurrentSession;
pub use proxy::{RouteLabel, proxy_request};

pub fn router(state: AppState) -> Router {
    let prefix = state.config.account_prefix.clone();
    let account = Router::new()
        .route("/login", get(account::login))
        .route("/login/callback", get(account::callback))
        .route("/me", get(account::me))
        .route("/end-session", axum::routing::post(account::end_session))
        .route("/backchannel-logout", axum::routing::post(backchannel::backchannel_logout));
    Router::new()
        .nest(&prefix, account)
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .route("/metrics", get(crate::metrics::render))
        .route("/ops/fingerprint", get(ops::fingerprint))
        .fallback(proxy::proxy)
        .with_state(state)
}
