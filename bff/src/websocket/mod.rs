//! WebSockets on proxied routes: the handshake is checked and authenticated like any request of
//! the route (see `routes::proxy`), then the gateway opens its own WebSocket to the upstream and
//! joins the two at the message level until either side closes, the session ends or the node
//! stops.
//!
//! Joining messages rather than bytes costs a parse of every frame, and buys the gateway its own
//! voice on both connections: it can close the browser's socket with a code that says why (1008
//! when the session ended, 1001 when the node stops) and close the upstream's cleanly too, and a
//! client's frames are checked (size, masking, UTF-8) before they reach an upstream.
//!
//! - [`handshake`]: which requests are upgrades, the `Origin` rule, the upstream handshake's
//!   headers and its answer.
//! - [`relay`]: the joined sockets, watched by the session's registration
//!   ([`crate::session::OpenSockets`]).

pub mod handshake;
pub mod relay;

pub use handshake::{UpstreamHandshake, is_upgrade, origin_allowed};
pub use relay::{SessionWatch, relay};
