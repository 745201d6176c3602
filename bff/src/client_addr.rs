//! [`ClientAddr`]: the peer address the server puts in each request's `ConnectInfo`.
//!
//! The server sets it as it hands a connection to a serving thread; the proxy reads it for
//! `X-Forwarded-For`. It stands below both, so the proxy (in `routes`) does not reach up into
//! the server that calls it.

use std::net::SocketAddr;

/// The peer address of a connection, for `ConnectInfo`.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);
