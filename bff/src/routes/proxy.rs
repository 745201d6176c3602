//! The API gateway: requests under a configured route go to one of its upstreams, with the
//! session's access token as a bearer token.
//!
//! In order: the path is normalised or refused (see [`request_path`]) and the route matched
//! (longest prefix, on segment boundaries); the CSRF header is required on routes that
//! carry the session (a cross-site form cannot send it); the session is loaded (`required`
//! without one: 401, an API gets no login redirect); the access token is refreshed when it
//! is about to expire; then the request is streamed to the upstream without hop-by-hop headers,
//! without the gateway's own cookies and without the browser's own `Authorization`, with
//! `X-Forwarded-*` set by the gateway (see [`set_forwarding_headers`]), and the response streamed back without any `Set-Cookie` for the
//! gateway's cookies. An unreachable upstream is a 502, a slow one a 504.
//!
//! A WebSocket handshake takes the same path with an `Origin` check in place of the CSRF header;
//! once the upstream accepted the gateway's own handshake, the two sockets are joined by
//! [`crate::websocket`]. Event streams pass unbuffered and are counted ([`event_stream`]).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CONNECTION, COOKIE, HOST, SEC_WEBSOCKET_PROTOCOL, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rand::Rng;

use super::{cookies, event_stream, request_path};
use crate::client_addr::ClientAddr;
use crate::config::{Balance, Route, RouteAuth};
use crate::metrics::RouteLabel;
use crate::session::{RefreshError, SocketPlace};
use crate::state::AppState;
use crate::websocket::{self, SessionWatch, UpstreamHandshake};

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn refuse(status: StatusCode, message: &str, route: &str) -> Response {
    let mut response = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    response.extensions_mut().insert(RouteLabel(route.into()));
    response
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds the ones present (usually none): removing each listed name
    // by its text would parse and look up all nine, twice per proxied request.
    let mut dropped: Vec<HeaderName> =
        headers.keys().filter(|name| HOP_BY_HOP.contains(&name.as_str())).cloned().collect();
    if dropped.is_empty() {
        return;
    }
    dropped.extend(
        headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::try_from(name.trim()).ok()),
    );
    for name in dropped {
        headers.remove(name);
    }
}

/// An upstream must not set, overwrite or delete the gateway's own cookies (the session cookie
/// above all), nor set a nameless cookie that a browser would send back looking like one: such
/// `Set-Cookie` headers are dropped ([`cookies::refused_from_upstream`]).
fn drop_refused_set_cookies(headers: &mut HeaderMap, config: &crate::config::Config) {
    if !headers.get_all(SET_COOKIE).iter().any(|v| cookies::refused_from_upstream(config, v)) {
        return;
    }
    let kept: Vec<HeaderValue> =
        headers.get_all(SET_COOKIE).iter().filter(|v| !cookies::refused_from_upstream(config, v)).cloned().collect();
    headers.remove(SET_COOKIE);
    for value in kept {
        headers.append(SET_COOKIE, value);
    }
}

/// What the upstream learns about the client: `X-Forwarded-Proto` and `X-Forwarded-Host` from
/// `public_url` (never the client's `Host`), `X-Forwarded-For` ending in the connection's peer.
/// The client's own `Forwarded`, `X-Real-IP`, the other client-address headers of CDNs and load
/// balancers ([`CLIENT_ADDRESS_HEADERS`]) and `X-Forwarded-*` are dropped, unless the peer is a
/// trusted proxy: then all but `X-Forwarded-*` pass and its `X-Forwarded-For` is appended to.
/// Otherwise any client could claim any address to an upstream that logs or rate-limits by it.
fn set_forwarding_headers(headers: &mut HeaderMap, config: &crate::config::Config, peer: Option<IpAddr>) {
    let trusted = peer.is_some_and(|ip| config.is_trusted_proxy(ip));
    let inbound_for = trusted
        .then(|| headers.get_all(X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(", "))
        .filter(|list| !list.trim().is_empty());
    // One pass over the names finds what goes (usually nothing: the list is then never
    // allocated and no name is looked up).
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            name.as_str().starts_with("x-forwarded-") || !trusted && CLIENT_ADDRESS_HEADERS.contains(&name.as_str())
        })
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
    let forwarded_for = match (inbound_for, peer) {
        (Some(list), Some(ip)) => Some(format!("{list}, {ip}")),
        (None, Some(ip)) => Some(ip_text(ip)),
        (list, None) => list,
    };
    if let Some(value) = forwarded_for.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let (proto, host) = config.forwarded_proto_and_host();
    headers.insert(X_FORWARDED_PROTO, proto.clone());
    headers.insert(X_FORWARDED_HOST, host.clone());
}

/// `ip` as `Display` writes it. IPv4 digit by digit: the standard formatter pads through a
/// buffer and costs about ten times as much, on every proxied request.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// Headers in which a proxy in front of a server names the client's address (besides
/// `X-Forwarded-For`), which upstream frameworks read as the client's.
const CLIENT_ADDRESS_HEADERS: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `rest` is what follows the route's prefix in the normalised path (empty or `/...`).
fn upstream_uri(state: &AppState, index: usize, route: &Route, rest: &str, uri: &Uri) -> Option<Uri> {
    let upstream = match route.balance {
        Balance::Random => &route.upstreams[rand::rng().random_range(0..route.upstreams.len())],
        Balance::RoundRobin => {
            let n = state.route_counters[index].fetch_add(1, Ordering::Relaxed);
            &route.upstreams[n % route.upstreams.len()]
        }
    };
    let host = upstream.host_str()?;
    let prefix = upstream.path().trim_end_matches('/');
    let query = uri.query();
    // One string for the whole URI: this runs for every proxied request.
    let mut out = String::with_capacity(
        16 + host.len() + prefix.len() + route.rewrite.len() + rest.len() + query.map_or(0, |q| q.len() + 1),
    );
    out.push_str("http://");
    out.push_str(host);
    if let Some(port) = upstream.port() {
        let _ = write!(out, ":{port}");
    }
    out.push_str(prefix);
    match (route.rewrite.ends_with('/'), rest.starts_with('/')) {
        (true, true) => {
            out.push_str(&route.rewrite);
            out.push_str(&rest[1..]);
        }
        (false, false) if !rest.is_empty() => {
            out.push_str(&route.rewrite);
            out.push('/');
            out.push_str(rest);
        }
        _ => {
            out.push_str(&route.rewrite);
            out.push_str(rest);
        }
    }
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Uri::try_from(out).ok()
}

pub async fn proxy(State(state): State<AppState>, request: Request) -> Response {
    proxy_request(state, request).await
}

/// A request for no endpoint of the gateway's own: matched against the routes and proxied.
pub async fn proxy_request(state: AppState, request: Request) -> Response {
    let path = match request_path::normalise(request.uri().path()) {
        Ok(path) => path,
        Err(refusal) => return refuse(StatusCode::BAD_REQUEST, &refusal.to_string(), "unmatched"),
    };
    let Some((index, route, rest)) = state
        .config
        .routes
        .iter()
        .enumerate()
        .find_map(|(i, r)| request_path::under_prefix(&path, &r.path).map(|rest| (i, r, rest)))
    else {
        return refuse(StatusCode::NOT_FOUND, "not found", "unmatched");
    };
    let label = route.path.as_str();
    let config = &state.config;

    // A browser cannot add the CSRF header to a WebSocket handshake, but always sends the page's
    // `Origin`: that must be the gateway's own, on every route (see `websocket::handshake`).
    let upgrade = websocket::is_upgrade(request.headers());
    if upgrade && !websocket::origin_allowed(request.headers(), config) {
        return refuse(StatusCode::FORBIDDEN, "WebSocket from a foreign origin", label);
    }
    // An upgraded connection leaves the server's connection count: open sockets have a bound of
    // their own, the same number. The place is taken now and held through the upstream
    // handshake, so that handshakes under way together cannot pass the bound.
    let socket_place = match upgrade {
        true => match state.sockets.reserve(config.server.max_connections) {
            Some(place) => Some(place),
            None => return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many WebSockets open on this node", label),
        },
        false => None,
    };
    if !upgrade
        && route.auth != RouteAuth::None
        && config.csrf.enabled
        && request.headers().get(&config.csrf.header).and_then(|v| v.to_str().ok()) != Some(config.csrf.value.as_str())
    {
        let message = format!("missing CSRF header {}: {}", config.csrf.header, config.csrf.value);
        return refuse(StatusCode::UNAUTHORIZED, &message, label);
    }

    let mut bearer = None;
    let mut session_id = None;
    if route.auth != RouteAuth::None {
        let id = cookies::session_id(request.headers(), config.cookie_name());
        let loaded = match &id {
            Some(id) => match state.sessions.load(id).await {
                Ok(found) => found,
                Err(error) => {
                    tracing::error!(%error, "session store unavailable");
                    return refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "session store unavailable, try again shortly",
                        label,
                    );
                }
            },
            None => None,
        };
        match (loaded, id) {
            (Some(session), Some(id)) => match state.refresher.fresh(&id, session).await {
                Ok(session) => {
                    bearer = Some(session);
                    session_id = Some(id);
                }
                Err(RefreshError::Ended) => return refuse(StatusCode::UNAUTHORIZED, "session ended", label),
                Err(error) => {
                    tracing::warn!(%error, "token refresh failed; session kept");
                    return refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "token refresh unavailable, try again shortly",
                        label,
                    );
                }
            },
            _ if route.auth == RouteAuth::Required => return refuse(StatusCode::UNAUTHORIZED, "no session", label),
            _ => {}
        }
    }

    let Some(uri) = upstream_uri(&state, index, route, rest, request.uri()) else {
        return refuse(StatusCode::BAD_GATEWAY, "bad upstream address", label);
    };
    let peer = request.extensions().get::<ConnectInfo<ClientAddr>>().map(|c| c.0.0.ip());
    let (mut parts, mut body) = request.into_parts();
    let client_socket = match upgrade {
        true => match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(socket) => Some(
                socket
                    .max_message_size(config.websocket_max_message_size)
                    .max_frame_size(config.websocket_max_message_size),
            ),
            Err(rejection) => return refuse(rejection.status(), &rejection.body_text(), label),
        },
        false => None,
    };
    strip_hop_by_hop(&mut parts.headers);
    let handshake = client_socket.is_some().then(|| {
        body = Body::empty();
        UpstreamHandshake::prepare(&mut parts.headers)
    });
    parts.headers.remove(HOST);
    match cookies::foreign(&parts.headers, config) {
        Some(cookie) => parts.headers.insert(COOKIE, cookie),
        None => parts.headers.remove(COOKIE),
    };
    // Only the gateway speaks for the user upstream: a browser's own Authorization never passes.
    parts.headers.remove(AUTHORIZATION);
    if let Some(session) = &bearer {
        let Some(value) = session.bearer().cloned() else {
            tracing::warn!(route = label, "the access token is not a valid header value");
            return refuse(StatusCode::BAD_GATEWAY, "unusable access token from the identity provider", label);
        };
        parts.headers.insert(AUTHORIZATION, value);
    }
    set_forwarding_headers(&mut parts.headers, config, peer);
    // With traces on: the upstream's traceparent names this span as its parent.
    let span = crate::traces::spans::upstream(&parts.method, label);
    crate::traces::spans::inject(&span, &mut parts.headers);
    parts.uri = uri;
    let outgoing = axum::http::Request::from_parts(parts, body);

    let timeout = route.timeout.unwrap_or(config.upstream_timeout);
    let sent = tracing::Instrument::instrument(crate::state::send_upstream(outgoing), span);
    let response = match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) if crate::body_deadline::BodyError::timed_out_in(&error) => {
            tracing::debug!(route = label, "request body not received within server.body_timeout");
            return refuse(StatusCode::REQUEST_TIMEOUT, "request body not received in time", label);
        }
        Ok(Err(error)) => {
            metrics::counter!("bff_upstream_errors_total", "kind" => "unreachable").increment(1);
            tracing::warn!(%error, route = label, "upstream unreachable");
            return refuse(StatusCode::BAD_GATEWAY, "upstream unreachable", label);
        }
        Err(_) => {
            metrics::counter!("bff_upstream_errors_total", "kind" => "timeout").increment(1);
            tracing::warn!(route = label, ?timeout, "upstream timed out");
            return refuse(StatusCode::GATEWAY_TIMEOUT, "upstream timed out", label);
        }
    };
    let mut response = match (client_socket, handshake) {
        (Some(client_socket), Some(handshake)) if handshake.accepted(&response) => {
            let place = socket_place.expect("a WebSocket handshake holds a place");
            let watch = match (session_id, &bearer) {
                (Some(id), Some(session)) => Some(SessionWatch { id, created_at: session.created_at }),
                _ => None,
            };
            // The browser's 101 is the gateway's own: none of the upstream's headers but the
            // chosen protocol.
            let mut response = join_sockets(&state, client_socket, place, response, watch);
            response.extensions_mut().insert(RouteLabel(state.route_labels[index].clone()));
            return response;
        }
        (Some(_), Some(_)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            tracing::warn!(
                route = label,
                "upstream answered the WebSocket handshake with a wrong Sec-WebSocket-Accept"
            );
            return refuse(StatusCode::BAD_GATEWAY, "upstream WebSocket handshake invalid", label);
        }
        _ => event_stream::counted(response.map(Body::new), state.sockets.node_stops()),
    };
    strip_hop_by_hop(response.headers_mut());
    drop_refused_set_cookies(response.headers_mut(), config);
    response.extensions_mut().insert(RouteLabel(state.route_labels[index].clone()));
    response
}

/// Answers the browser's handshake (101) and joins its socket to the upstream's, which has
/// accepted with `upstream`, in a task of its own registered under the session.
fn join_sockets(
    state: &AppState,
    mut client_socket: WebSocketUpgrade,
    place: SocketPlace,
    upstream: Response<hyper::body::Incoming>,
    watch: Option<SessionWatch>,
) -> Response {
    if let Some(protocol) = upstream.headers().get(SEC_WEBSOCKET_PROTOCOL) {
        client_socket.set_selected_protocol(protocol.clone());
    }
    let registration = place.register(watch.as_ref().map(|w| &w.id));
    let upstream = hyper::upgrade::on(upstream);
    let state = state.clone();
    client_socket.on_upgrade(move |socket| websocket::relay(state, socket, upstream, registration, watch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_what_display_writes() {
        for a in 0..=255u8 {
            let ip = IpAddr::from([a, 255 - a, a / 3, a % 10]);
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for ip in ["0.0.0.0", "255.255.255.255", "::1", "2001:db8::1", "::ffff:10.0.0.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("keep-alive, X-Private"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["content-type"]);

        // Without a hop-by-hop header, nothing goes (x-private is named by no Connection header).
        let mut headers = HeaderMap::new();
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["content-type", "x-private"]);
    }
}
