//! One property per handler: thousands of malformed inputs, never a 5xx.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::app::{App, app, status};

const CASES: u32 = 2000;

/// Runs `strategy` through `request` against one app; every answer must be below 500.
fn never_a_server_error<S: Strategy>(strategy: S, request: impl Fn(&App, S::Value) -> Option<Request<Body>>)
where
    S::Value: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = runtime.block_on(app());
    let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::with_cases(CASES) });
    runner
        .run(&strategy, |input| {
            let Some(request) = request(&app, input) else { return Ok(()) };
            let answer = runtime.block_on(status(&app.router, request));
            prop_assert!(!answer.is_server_error(), "answered {answer}");
            Ok(())
        })
        .unwrap();
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Text an attacker would try: arbitrary, printable, and built from separators and escapes.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(String::from("/")),
        Just(String::from("//")),
        Just(String::from("\\")),
        Just(String::from("%")),
        Just(String::from("%2F")),
        Just(String::from("%25")),
        Just(String::from("%00")),
        Just(String::from("..")),
        Just(String::from("=")),
        Just(String::from(";")),
        Just(String::from("&")),
        Just(String::from("\"")),
        Just(String::from("bff-session")),
        Just(String::from("state")),
        "[ -~]{0,6}",
    ];
    prop_oneof![proptest::collection::vec(piece, 0..10).prop_map(|p| p.concat()), any::<String>(), "[ -~]{0,80}"]
}

fn get(uri: &str) -> Option<axum::http::request::Builder> {
    axum::http::Uri::try_from(uri).ok().map(|uri| Request::builder().method(Method::GET).uri(uri))
}

#[test]
fn cookie_headers() {
    never_a_server_error((hostile_text(), any::<bool>()), |_, (cookie, api)| {
        let target = if api { "/api/x" } else { "/account/me" };
        get(target)?.header("x-csrf", "1").header("cookie", cookie).body(Body::empty()).ok()
    });
}

#[test]
fn landing_pages() {
    never_a_server_error((hostile_text(), any::<bool>()), |_, (page, encoded)| {
        let page = if encoded { encode(&page) } else { page };
        get(&format!("/account/login?landingpage={page}"))?.body(Body::empty()).ok()
    });
}

#[test]
fn callback_queries() {
    let pair = (prop_oneof![Just("state"), Just("code"), Just("error"), Just("x")], hostile_text());
    never_a_server_error(
        (proptest::collection::vec(pair, 0..5), hostile_text(), any::<bool>()),
        |_, (pairs, cookie, encoded)| {
            let query: Vec<String> = pairs
                .iter()
                .map(
                    |(name, value)| {
                        if encoded { format!("{name}={}", encode(value)) } else { format!("{name}={value}") }
                    },
                )
                .collect();
            get(&format!("/account/login/callback?{}", query.join("&")))?
                .header("cookie", format!("bff-session-login={cookie}"))
                .body(Body::empty())
                .ok()
        },
    );
}

#[test]
fn request_paths() {
    let piece = prop_oneof![
        Just(String::from("/")),
        Just(String::from("..")),
        Just(String::from(".")),
        Just(String::from("%2e")),
        Just(String::from("%2f")),
        Just(String::from("%5c")),
        Just(String::from("%61")),
        Just(String::from("%")),
        Just(String::from("\\")),
        Just(String::from("api")),
        "[ -~]{0,4}",
    ];
    never_a_server_error(proptest::collection::vec(piece, 0..10).prop_map(|p| p.concat()), |_, path| {
        get(&format!("/{path}"))?.header("x-csrf", "1").body(Body::empty()).ok()
    });
}

/// Mutations of a token the issuer really signed, and text that only looks like a token: each is
/// refused with a 4xx; only the token as signed ends a session (200).
#[test]
fn logout_tokens() {
    let mutation = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| (at, Some(byte), None)),
        any::<usize>().prop_map(|at| (at, None, None)),
        (any::<usize>(), "[A-Za-z0-9_.-]{1,8}").prop_map(|(at, text)| (at, None, Some(text))),
    ];
    never_a_server_error(
        (proptest::collection::vec(mutation, 0..3), hostile_text(), any::<bool>()),
        |app: &App, (mutations, text, signed)| {
            let mut token =
                if signed { app.issuer.logout_token(Some("sid-1"), None).into_bytes() } else { text.into_bytes() };
            for (at, byte, insert) in mutations {
                let at = if token.is_empty() { 0 } else { at % token.len() };
                match (byte, insert) {
                    (Some(byte), _) if at < token.len() => token[at] = byte,
                    (_, Some(text)) => token.splice(at..at, text.into_bytes()).for_each(drop),
                    _ if at < token.len() => drop(token.remove(at)),
                    _ => {}
                }
            }
            let body = format!("logout_token={}", url::form_urlencoded::byte_serialize(&token).collect::<String>());
            Request::builder()
                .method(Method::POST)
                .uri("/account/backchannel-logout")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .ok()
        },
    );
}

#[test]
fn a_changed_logout_token_is_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = runtime.block_on(app());
    let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::with_cases(300) });
    runner
        .run(&(any::<usize>(), 1u8..=255), |(at, mask)| {
            let mut token = app.issuer.logout_token(Some("sid-1"), None).into_bytes();
            let at = at % token.len();
            token[at] ^= mask;
            let body = format!("logout_token={}", url::form_urlencoded::byte_serialize(&token).collect::<String>());
            let request = Request::builder()
                .method(Method::POST)
                .uri("/account/backchannel-logout")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap();
            let answer = runtime.block_on(status(&app.router, request));
            // The last character of a base64url segment carries unused bits: flipping only those
            // leaves the token as signed, and that one may pass.
            let segment_end = token.get(at + 1).is_none_or(|next| *next == b'.');
            prop_assert!(answer == StatusCode::BAD_REQUEST || segment_end, "a changed token got {answer}");
            Ok(())
        })
        .unwrap();
}
