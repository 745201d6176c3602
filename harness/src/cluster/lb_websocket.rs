//! WebSockets through the [`super::LoadBalancer`]: the handshake goes to a node chosen like any
//! request; the node's answer (101 or a refusal, with `x-bff-node`) comes back as it was, and the
//! two sockets are then joined message by message, close frames and their codes included, so
//! that a client sees the node's 1001 when it stops, as it would behind nginx.

use axum::extract::FromRequestParts;
use axum::extract::ws::{self, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self as ts};

type NodeSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a handshake to a node did not give a socket.
pub enum NodeRefused {
    /// The node could not be reached: another may be tried.
    Unreachable,
    /// The node answered: this is the answer for the client.
    Answered(Response),
}

/// Headers of the client's handshake that the node must see.
const PASSED: &[&str] = &["origin", "cookie", "sec-websocket-protocol", "user-agent", "x-csrf"];

/// Opens the node's socket for the client's handshake in `parts`, and answers the client.
/// The load balancer names the node on either answer.
pub async fn forward(parts: &mut Parts, node: std::net::SocketAddr) -> Result<Response, NodeRefused> {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let Ok(mut request) = format!("ws://{node}{path}").into_client_request() else {
        return Err(NodeRefused::Answered((StatusCode::BAD_REQUEST, "bad path").into_response()));
    };
    for name in PASSED {
        for value in parts.headers.get_all(*name) {
            request.headers_mut().append(HeaderName::from_static(name), value.clone());
        }
    }
    let (socket, answer) = match tokio_tungstenite::connect_async(request).await {
        Ok(opened) => opened,
        Err(ts::Error::Http(refused)) => {
            let status = StatusCode::from_u16(refused.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = refused.into_body().unwrap_or_default();
            return Err(NodeRefused::Answered((status, body).into_response()));
        }
        Err(ts::Error::Io(_)) => return Err(NodeRefused::Unreachable),
        Err(error) => {
            return Err(NodeRefused::Answered((StatusCode::BAD_GATEWAY, error.to_string()).into_response()));
        }
    };
    let mut upgrade = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Err(NodeRefused::Answered(rejection.into_response())),
    };
    if let Some(protocol) = answer.headers().get("sec-websocket-protocol") {
        upgrade.set_selected_protocol(protocol.clone());
    }
    Ok(upgrade.on_upgrade(move |client| join(client, socket)))
}

async fn join(mut client: ws::WebSocket, mut node: NodeSocket) {
    loop {
        tokio::select! {
            message = client.recv() => match message {
                Some(Ok(ws::Message::Text(text))) => { let _ = node.send(ts::Message::text(text.as_str())).await; }
                Some(Ok(ws::Message::Binary(data))) => { let _ = node.send(ts::Message::Binary(data)).await; }
                Some(Ok(ws::Message::Close(frame))) => {
                    let frame = frame.map(|f| CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                    let _ = node.send(ts::Message::Close(frame)).await;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => { let _ = node.close(None).await; break; }
            },
            message = node.next() => match message {
                Some(Ok(ts::Message::Text(text))) => { let _ = client.send(ws::Message::Text(text.as_str().into())).await; }
                Some(Ok(ts::Message::Binary(data))) => { let _ = client.send(ws::Message::Binary(data)).await; }
                Some(Ok(ts::Message::Close(frame))) => {
                    let frame = frame.map(|f| ws::CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                    let _ = client.send(ws::Message::Close(frame)).await;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => { let _ = client.send(ws::Message::Close(None)).await; break; }
            },
        }
    }
    // Let both sides finish their close handshakes, within a bound.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        tokio::join!(async { while client.recv().await.is_some() {} }, async { while node.next().await.is_some() {} })
    })
    .await;
}
