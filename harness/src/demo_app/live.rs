//! [`LiveUpstream`]: the example app's real-time API, behind `/live/`: a WebSocket echo and a
//! server-sent events clock. It records each WebSocket handshake it received (whether a bearer
//! token came, which cookies), so that a test can check what the gateway forwarded.
//!
//! - `…/echo`: a WebSocket that sends back every text and binary message;
//! - `…/ticks`: a WebSocket on which the API pushes `{"n": 1}`, `{"n": 2}`, … every second (the
//!   example app's live panel);
//! - `…/clock?every=100ms&count=600`: `text/event-stream`, one event every `every`, `count`
//!   events (default: every second, for ever); each event's data is
//!   `{"n": 1, "sent_unix_micros": …}`, the moment the upstream wrote it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

/// What one WebSocket handshake carried.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub path: String,
    /// The `Authorization` header, when one came.
    pub authorization: Option<String>,
    /// The `Cookie` header, when one came.
    pub cookie: Option<String>,
}

/// The live API; it stops when dropped.
pub struct LiveUpstream {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(serde::Deserialize)]
struct ClockQuery {
    every: Option<String>,
    count: Option<u64>,
}

fn unix_micros() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or_default()
}

async fn live(State(handshakes): State<Arc<Mutex<Vec<Handshake>>>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if path.ends_with("/echo") {
        let (mut parts, _) = request.into_parts();
        let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let handshake = Handshake {
            path: path.clone(),
            authorization: header(axum::http::header::AUTHORIZATION),
            cookie: header(axum::http::header::COOKIE),
        };
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
        handshakes.lock().expect("handshakes").push(handshake);
        return upgrade.on_upgrade(|mut socket| async move {
            while let Some(Ok(message)) = socket.recv().await {
                let echo = match message {
                    Message::Text(_) | Message::Binary(_) => message,
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                if socket.send(echo).await.is_err() {
                    break;
                }
            }
        });
    }
    if path.ends_with("/ticks") {
        let (mut parts, _) = request.into_parts();
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
        return upgrade.on_upgrade(|mut socket| async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            for n in 1u64.. {
                tokio::select! {
                    _ = every.tick() => {
                        let tick = serde_json::json!({ "n": n }).to_string();
                        if socket.send(Message::text(tick)).await.is_err() {
                            break;
                        }
                    }
                    message = socket.recv() => match message {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                }
            }
        });
    }
    if path.ends_with("/clock") {
        let Query(query) = match Query::<ClockQuery>::try_from_uri(request.uri()) {
            Ok(q) => q,
            Err(rejection) => return rejection.into_response(),
        };
        let every = match query.every.as_deref().map(humantime::parse_duration) {
            None => Duration::from_secs(1),
            Some(Ok(every)) if !every.is_zero() => every,
            Some(_) => return (StatusCode::BAD_REQUEST, "every: expected a duration like 100ms").into_response(),
        };
        let count = query.count.unwrap_or(u64::MAX);
        let ticks = futures::stream::unfold((0u64, None::<tokio::time::Interval>), move |(n, interval)| async move {
            if n >= count {
                return None;
            }
            let mut interval = interval.unwrap_or_else(|| tokio::time::interval(every));
            interval.tick().await;
            let data = serde_json::json!({ "n": n + 1, "sent_unix_micros": unix_micros() as u64 });
            let event = Event::default().data(data.to_string());
            Some((Ok::<_, std::convert::Infallible>(event), (n + 1, Some(interval))))
        });
        return Sse::new(ticks.boxed()).into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

impl LiveUpstream {
    /// Serves on `bind` (e.g. `127.0.0.1:0`).
    pub async fn start(bind: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(live).with_state(handshakes.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(LiveUpstream { addr, handshakes, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every WebSocket handshake received so far.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().expect("handshakes").clone()
    }
}

impl Drop for LiveUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
