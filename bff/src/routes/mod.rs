//! The router: account endpoints under the configured prefix, and the probes.

mod account;
mod cookies;
mod current_session;
mod probes;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

pub use current_session::CurrentSession;

pub fn router(state: AppState) -> Router {
    let prefix = state.config.account_prefix.clone();
    let account = Router::new()
        .route("/login", get(account::login))
        .route("/login/callback", get(account::callback))
        .route("/me", get(account::me))
        .route(
            "/end-session",
            get(account::end_session).post(account::end_session),
        );
    Router::new()
        .nest(&prefix, account)
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .with_state(state)
}
