//! The example app a cluster can put behind its gateway: the single-page app of `examples/spa/`
//! (served at `/` through an `auth = "none"` route) and a mock API (behind `/api/`, auth
//! required) that says what reached it, and a real-time API (behind `/live/`: a WebSocket echo and
//! a server-sent events clock, started with the mock API). `bffctl up` starts them; the browser
//! tests drive them.

mod api;
mod live;
mod spa;

pub use api::api_upstream;
pub use live::{Handshake, LiveUpstream};
pub use spa::SpaServer;
