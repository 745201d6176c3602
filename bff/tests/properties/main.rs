//! Property tests through the router: attacker-shaped input to every handler that parses it (the
//! cookie header, the landing page, the callback query, logout tokens, request paths), sent with
//! `tower::ServiceExt::oneshot` to `bff::app` without a socket. Whatever arrives, the answer is
//! never a 5xx and nothing panics. The app runs on the in-memory store against the harness's mock
//! issuer on localhost; routes need a session, so no request leaves the gateway.

mod app;
mod handlers;
