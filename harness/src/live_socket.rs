//! [`LiveSocket`]: a browser-like WebSocket client for the gateway's proxied routes: it sends the
//! page's `Origin` and the user's cookies with the handshake, as a browser does, and reads the
//! node that answered (`x-bff-node`) and the close frame the gateway sends.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

type Stream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LiveSocketError {
    /// The gateway (or the upstream) answered the handshake with this status instead of 101.
    #[error("handshake refused with {0}")]
    Refused(u16),
    #[error("bad WebSocket URL {0}")]
    Url(String),
    #[error("websocket: {0}")]
    Failed(String),
}

/// How a socket ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code and reason.
    Closed(u16, String),
    /// The connection ended without a close frame.
    Dropped,
}

/// One open WebSocket.
pub struct LiveSocket {
    stream: Stream,
    /// `x-bff-node` of the handshake's answer, when the gateway names its nodes.
    pub node: Option<String>,
}

/// `http(s)://…` → `ws(s)://…`.
pub fn ws_url(http_url: &str) -> String {
    match http_url.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some((_, rest)) => format!("ws://{rest}"),
        None => http_url.to_owned(),
    }
}

impl LiveSocket {
    /// Opens `url` (`http://` or `ws://`) with `Origin: origin` and, when given, `Cookie: cookie`.
    pub async fn open(url: &str, origin: &str, cookie: Option<&str>) -> Result<Self, LiveSocketError> {
        let mut request = ws_url(url).into_client_request().map_err(|e| LiveSocketError::Url(e.to_string()))?;
        let header = |v: &str| HeaderValue::from_str(v).map_err(|e| LiveSocketError::Url(e.to_string()));
        request.headers_mut().insert("origin", header(origin)?);
        if let Some(cookie) = cookie {
            request.headers_mut().insert("cookie", header(cookie)?);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, response)) => {
                let node = response.headers().get("x-bff-node").and_then(|v| v.to_str().ok()).map(str::to_owned);
                Ok(LiveSocket { stream, node })
            }
            Err(tungstenite::Error::Http(response)) => Err(LiveSocketError::Refused(response.status().as_u16())),
            Err(error) => Err(LiveSocketError::Failed(error.to_string())),
        }
    }

    /// Sends `text` and waits, up to `within`, for the same text to come back.
    pub async fn echo(&mut self, text: &str, within: Duration) -> Result<(), LiveSocketError> {
        self.stream.send(Message::text(text)).await.map_err(|e| LiveSocketError::Failed(e.to_string()))?;
        let answer = tokio::time::timeout(within, async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(back))) => return Ok(back.as_str().to_owned()),
                    Some(Ok(Message::Close(frame))) => {
                        return Err(format!("closed instead: {:?}", frame.map(|f| (u16::from(f.code), f.reason))));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return Err(error.to_string()),
                    None => return Err("connection ended".to_owned()),
                }
            }
        })
        .await
        .map_err(|_| LiveSocketError::Failed(format!("no echo within {within:?}")))?
        .map_err(LiveSocketError::Failed)?;
        if answer != text {
            return Err(LiveSocketError::Failed(format!("sent {text:?}, got back {answer:?}")));
        }
        Ok(())
    }

    /// Waits, up to `within`, for the socket to end (data frames are skipped); `None` when it is
    /// still open then.
    pub async fn ended(&mut self, within: Duration) -> Option<Ended> {
        tokio::time::timeout(within, async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Close(frame))) => {
                        return match frame {
                            Some(f) => Ended::Closed(u16::from(f.code), f.reason.as_str().to_owned()),
                            None => Ended::Closed(1005, String::new()),
                        };
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Ended::Dropped,
                }
            }
        })
        .await
        .ok()
    }

    /// Closes the socket (1000).
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
