//! [`relay`]: a browser's WebSocket joined to the gateway's own WebSocket to the upstream.
//!
//! Text, binary and close frames pass both ways; pings and pongs do not (each side of the
//! gateway answers its own peer's pings). The relay ends when either side closes or fails, and
//! the gateway closes both sides itself when:
//! - the session ended ([`SessionWatch`]): the browser gets 1008 `session ended`. Checked when
//!   this node hears that the session changed (a notice over Redis that the node cache listens
//!   to, within milliseconds of a logout on any node) and every `websocket.session_check` (idle
//!   and absolute expiry, a missed notice, the in-memory store, the node cache off);
//! - the node stops ([`SocketSignal::GoingAway`]): the browser gets 1001 `going away` and
//!   reconnects, through the load balancer, to another node;
//! - the browser is silent: it is pinged every `websocket.ping_interval`, and one that sends
//!   nothing (no pong, no message) for two intervals is closed (1001 `no answer to pings`), so
//!   that a dead client, or one that trickles a message, does not keep its socket.
//!
//! A message either way is at most `websocket.max_message_size`: a larger one ends the socket.
//!
//! Metrics: `bff_websockets_open` (gauge) and `bff_websocket_closes_total{by}`.

use std::time::Duration;

use axum::extract::ws::{self, WebSocket};
use futures::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self as ts, Utf8Bytes};

use crate::session::{OpenSocket, SessionId, SocketSignal};
use crate::state::AppState;

/// How long a side has, after the gateway or its peer closed, to answer the close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);

/// The session a socket was opened with, re-checked while it is open.
pub struct SessionWatch {
    pub id: SessionId,
    /// Unix seconds: the absolute lifetime counts from here.
    pub created_at: u64,
}

/// Why a relay ended, for metrics and logs.
#[derive(Debug, Clone, Copy)]
enum Closed {
    Client,
    Upstream,
    SessionEnd,
    GoingAway,
    /// The browser answered no ping for two intervals.
    Silent,
    Error,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Closed::Client => "client",
            Closed::Upstream => "upstream",
            Closed::SessionEnd => "session_ended",
            Closed::GoingAway => "going_away",
            Closed::Silent => "silent",
            Closed::Error => "error",
        }
    }
}

/// Keeps `bff_websockets_open` right however the relay ends.
struct OpenGauge;

impl OpenGauge {
    fn new() -> Self {
        metrics::gauge!("bff_websockets_open").increment(1.0);
        OpenGauge
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        metrics::gauge!("bff_websockets_open").decrement(1.0);
    }
}

type Upstream = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Joins `client` to the upstream connection that `upstream` hands over, until one of them
/// closes, the watched session ends or the node stops. `registration` keeps the socket in the
/// node's registry for as long as it is open.
pub async fn relay(
    state: AppState,
    mut client: WebSocket,
    upstream: OnUpgrade,
    mut registration: OpenSocket,
    session: Option<SessionWatch>,
) {
    let mut upstream: Upstream = match upstream.await {
        Ok(io) => {
            let limit = state.config.websocket_max_message_size;
            let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
            WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Client, Some(config)).await
        }
        Err(error) => {
            tracing::warn!(%error, "upstream WebSocket not handed over");
            let _ = client.send(close_to_client(1011, "upstream unavailable")).await;
            count(Closed::Error);
            return;
        }
    };
    let _open = OpenGauge::new();
    let limit = state.config.server.write_timeout;
    let mut check = tokio::time::interval(state.config.websocket_session_check);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.reset();
    // The browser is pinged every interval; it must answer (a pong, or any message) within two.
    let ping_every = state.config.websocket_ping_interval;
    let mut ping = tokio::time::interval(ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.reset();
    let mut heard = tokio::time::Instant::now();
    let ended = loop {
        tokio::select! {
            message = client.recv() => match message.inspect(|m| if m.is_ok() { heard = tokio::time::Instant::now() }) {
                Some(Ok(ws::Message::Close(frame))) => {
                    let frame = frame.map(|f| CloseFrame { code: CloseCode::from(f.code), reason: f.reason.as_str().into() });
                    bounded(limit, upstream.send(ts::Message::Close(frame))).await;
                    break Closed::Client;
                }
                Some(Ok(message)) => {
                    let Some(message) = to_upstream(message) else { continue };
                    if !bounded(limit, upstream.send(message)).await {
                        let _ = client.send(close_to_client(1011, "upstream failed")).await;
                        break Closed::Error;
                    }
                }
                Some(Err(_)) | None => {
                    bounded(limit, upstream.send(close_to_upstream(CloseCode::Away))).await;
                    break Closed::Client;
                }
            },
            message = upstream.next() => match message {
                Some(Ok(ts::Message::Close(frame))) => {
                    let frame = frame.map(|f| ws::CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                    let _ = client.send(ws::Message::Close(frame)).await;
                    break Closed::Upstream;
                }
                Some(Ok(message)) => {
                    let Some(message) = to_client(message) else { continue };
                    if client.send(message).await.is_err() {
                        bounded(limit, upstream.send(close_to_upstream(CloseCode::Away))).await;
                        break Closed::Client;
                    }
                }
                Some(Err(_)) | None => {
                    let _ = client.send(close_to_client(1011, "upstream failed")).await;
                    break Closed::Upstream;
                }
            },
            signal = registration.signals.recv() => match signal {
                Some(SocketSignal::GoingAway) | None => {
                    let _ = client.send(close_to_client(1001, "going away")).await;
                    bounded(limit, upstream.send(close_to_upstream(CloseCode::Away))).await;
                    break Closed::GoingAway;
                }
                Some(SocketSignal::Recheck) => {
                    if session_ended(&state, session.as_ref()).await {
                        break end_session(&mut client, &mut upstream, limit).await;
                    }
                }
            },
            _ = ping.tick() => {
                if heard.elapsed() >= ping_every * 2 {
                    let _ = client.send(close_to_client(1001, "no answer to pings")).await;
                    bounded(limit, upstream.send(close_to_upstream(CloseCode::Away))).await;
                    break Closed::Silent;
                }
                if client.send(ws::Message::Ping(Default::default())).await.is_err() {
                    bounded(limit, upstream.send(close_to_upstream(CloseCode::Away))).await;
                    break Closed::Client;
                }
            }
            _ = check.tick(), if session.is_some() => {
                if session_ended(&state, session.as_ref()).await {
                    break end_session(&mut client, &mut upstream, limit).await;
                }
            }
        }
    };
    count(ended);
    tracing::debug!(ended = ended.label(), "websocket closed");
    // Both sides answer the close frames (tungstenite replies while it is read), within a bound.
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        tokio::join!(async { while client.recv().await.is_some() {} }, async {
            while upstream.next().await.is_some() {}
        })
    })
    .await;
}

async fn end_session(client: &mut WebSocket, upstream: &mut Upstream, limit: Duration) -> Closed {
    let _ = client.send(close_to_client(1008, "session ended")).await;
    bounded(limit, upstream.send(close_to_upstream(CloseCode::Away))).await;
    Closed::SessionEnd
}

/// Whether the watched session no longer exists or is past its lifetime. A store that does not
/// answer ends nothing: the check runs again at the next notice or interval.
async fn session_ended(state: &AppState, session: Option<&SessionWatch>) -> bool {
    let Some(session) = session else { return false };
    match state.sessions.is_open(&session.id, session.created_at).await {
        Ok(open) => !open,
        Err(error) => {
            tracing::debug!(%error, "websocket session check failed; checked again later");
            false
        }
    }
}

/// A send to the upstream, within `server.write_timeout` as every write to a client is (see
/// `server::write_deadline`): an upstream that stops reading must not hold the relay, and with it
/// the session checks and the node's stop. Whether it was sent.
async fn bounded<E>(limit: Duration, send: impl std::future::Future<Output = Result<(), E>>) -> bool {
    matches!(tokio::time::timeout(limit, send).await, Ok(Ok(())))
}

fn count(ended: Closed) {
    metrics::counter!("bff_websocket_closes_total", "by" => ended.label()).increment(1);
}

fn close_to_client(code: u16, reason: &'static str) -> ws::Message {
    ws::Message::Close(Some(ws::CloseFrame { code, reason: reason.into() }))
}

fn close_to_upstream(code: CloseCode) -> ts::Message {
    ts::Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static("") }))
}

/// A browser's data frame for the upstream (pings and pongs stay on their hop).
fn to_upstream(message: ws::Message) -> Option<ts::Message> {
    match message {
        ws::Message::Text(text) => Some(ts::Message::Text(text.as_str().into())),
        ws::Message::Binary(data) => Some(ts::Message::Binary(data)),
        ws::Message::Ping(_) | ws::Message::Pong(_) | ws::Message::Close(_) => None,
    }
}

/// An upstream's data frame for the browser (pings, pongs and raw frames stay on their hop).
fn to_client(message: ts::Message) -> Option<ws::Message> {
    match message {
        ts::Message::Text(text) => Some(ws::Message::Text(text.as_str().into())),
        ts::Message::Binary(data) => Some(ws::Message::Binary(data)),
        _ => None,
    }
}
