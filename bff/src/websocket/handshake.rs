//! The two handshakes of a proxied WebSocket: which requests are upgrades, whether the browser's
//! page may open one ([`origin_allowed`]), and the gateway's own handshake with the upstream
//! ([`UpstreamHandshake`]).
//!
//! Browsers send cookies with a WebSocket handshake from any site and cannot be made to add the
//! CSRF header to it, so the `Origin` header, which a page cannot forge, must name the gateway's
//! own public origin: otherwise any site a user visits could open a socket as that user
//! (cross-site WebSocket hijacking).

use axum::http::header::{CONNECTION, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY};
use axum::http::header::{SEC_WEBSOCKET_VERSION, UPGRADE};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::config::Config;

/// Whether the request asks to become a WebSocket (`Connection: upgrade`, `Upgrade: websocket`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(CONNECTION, "upgrade") && has_token(UPGRADE, "websocket")
}

/// Whether `Origin` is the public URL's origin (scheme, host and port), exactly.
pub fn origin_allowed(headers: &HeaderMap, config: &Config) -> bool {
    let mut origins = headers.get_all(ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (Some(origin), None) => origin.as_bytes() == config.public_url.origin().ascii_serialization().as_bytes(),
        _ => false,
    }
}

/// The gateway's handshake with an upstream: the request headers it sends (on top of the
/// proxied request's), and the check of the answer.
pub struct UpstreamHandshake {
    key: String,
}

impl UpstreamHandshake {
    /// Sets the handshake headers on a request whose hop-by-hop headers were stripped: a key of
    /// the gateway's own (the browser's is for the browser's socket), no extensions (the gateway
    /// speaks plain frames to both sides; a browser's `permessage-deflate` stays between it and
    /// the gateway, where it is declined). `Sec-WebSocket-Protocol` passes as the browser sent it.
    pub fn prepare(headers: &mut HeaderMap) -> Self {
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        headers.insert(SEC_WEBSOCKET_KEY, HeaderValue::from_str(&key).expect("base64 is a header value"));
        headers.remove(SEC_WEBSOCKET_EXTENSIONS);
        UpstreamHandshake { key }
    }

    /// Whether the upstream accepted: 101 with the `Sec-WebSocket-Accept` that answers this key.
    pub fn accepted<B>(&self, response: &Response<B>) -> bool {
        let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        response.status() == StatusCode::SWITCHING_PROTOCOLS
            && response.headers().get(SEC_WEBSOCKET_ACCEPT).is_some_and(|v| v.as_bytes() == expected.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn an_upgrade_needs_both_headers() {
        assert!(is_upgrade(&headers(&[("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket")])));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&headers(&[("connection", "upgrade"), ("upgrade", "h2c")])));
    }

    #[test]
    fn only_the_public_origin_is_allowed() {
        let env: std::collections::HashMap<String, String> = [
            ("BFF_PUBLIC_URL", "https://app.example.com/"),
            ("BFF_OIDC_AUTHORITY", "https://issuer.example.com"),
            ("BFF_OIDC_CLIENT_ID", "c"),
            ("BFF_OIDC_CLIENT_SECRET", "s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = Config::from_env_map(&env).unwrap();
        assert!(origin_allowed(&headers(&[("origin", "https://app.example.com")]), &config));
        assert!(!origin_allowed(&headers(&[("origin", "https://evil.example.com")]), &config));
        assert!(!origin_allowed(&headers(&[("origin", "http://app.example.com")]), &config));
        assert!(!origin_allowed(&headers(&[("origin", "https://app.example.com:8443")]), &config));
        assert!(!origin_allowed(&headers(&[("origin", "null")]), &config));
        assert!(!origin_allowed(&headers(&[]), &config), "no Origin: not a browser page we serve");
        assert!(!origin_allowed(
            &headers(&[("origin", "https://app.example.com"), ("origin", "https://evil.example.com")]),
            &config
        ));
    }
}
