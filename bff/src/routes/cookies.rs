//! The gateway's cookies: the session cookie and the short-lived login cookie (the sealed login in
//! progress). Both are HttpOnly; over https they are `Secure` and `__Host-` prefixed.

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use cookie::Cookie;
use cookie::time::Duration as CookieDuration;

use crate::config::{Config, SameSite};
use crate::session::SessionId;

/// The request's cookies, parsed by the `cookie` crate (names and values trimmed). This one
/// parser decides both which cookie is the session and which cookies are stripped before a
/// request is forwarded: were they to disagree (`bff-session =<id>`), a session id could be
/// accepted here and still reach an upstream.
fn parsed(headers: &HeaderMap) -> impl Iterator<Item = Cookie<'_>> {
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(Cookie::split_parse).filter_map(Result::ok)
}

/// The value of cookie `name` in the request, if any.
pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    parsed(headers).find(|c| c.name() == name).map(|c| c.value().to_owned())
}

/// The session id in cookie `name` of the request, if there is one of the right shape: what
/// [`read`] and [`SessionId::parse`] answer together, without a copy of the value.
pub fn session_id(headers: &HeaderMap, name: &str) -> Option<SessionId> {
    parsed(headers).find(|c| c.name() == name).and_then(|c| SessionId::parse(c.value()))
}

/// Whether a cookie called `name` is one of the gateway's own (the session or login binding
/// cookie, with or without a `__Host-`/`__Secure-` prefix, in any letter case): such cookies
/// never travel to or from an upstream.
pub fn is_own(config: &Config, name: &str) -> bool {
    let name = name.trim();
    let bare = ["__Host-", "__Secure-"]
        .iter()
        .find_map(|prefix| {
            name.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).map(|_| &name[prefix.len()..])
        })
        .unwrap_or(name);
    let session = config.session.cookie_name.as_str();
    bare.eq_ignore_ascii_case(session)
        || bare.len() == session.len() + "-login".len()
            && bare.get(..session.len()).is_some_and(|s| s.eq_ignore_ascii_case(session))
            && bare[session.len()..].eq_ignore_ascii_case("-login")
}

/// The request's `Cookie` header without the gateway's own cookies, or `None` when nothing is
/// left. Pieces the parser refuses are dropped too.
pub fn foreign(headers: &HeaderMap, config: &Config) -> Option<HeaderValue> {
    let kept: Vec<String> =
        parsed(headers).filter(|c| !is_own(config, c.name())).map(|c| format!("{}={}", c.name(), c.value())).collect();
    if kept.is_empty() { None } else { HeaderValue::from_str(&kept.join("; ")).ok() }
}

/// Whether an upstream's `Set-Cookie` value is dropped: it sets one of the gateway's own cookies
/// (by the name a browser would give it), or it has no name. A browser stores a nameless cookie
/// (`=bff-session=X`, or `bff-session=X` with no `=` before it) and sends back its value alone,
/// `bff-session=X`, which every server reads as the gateway's cookie. No copy of the value for
/// the usual UTF-8 one.
pub fn refused_from_upstream(config: &Config, value: &HeaderValue) -> bool {
    let text = String::from_utf8_lossy(value.as_bytes());
    let pair = text.split(';').next().unwrap_or_default();
    match pair.split_once('=') {
        None => true,
        Some((name, _)) => name.trim().is_empty() || is_own(config, name),
    }
}

fn build(config: &Config, name: &str, value: String, max_age: Option<CookieDuration>) -> String {
    let same_site = match config.session.same_site {
        SameSite::Lax => cookie::SameSite::Lax,
        SameSite::Strict => cookie::SameSite::Strict,
    };
    let mut cookie =
        Cookie::build((name, value)).path("/").http_only(true).secure(config.is_https()).same_site(same_site).build();
    if let Some(max_age) = max_age {
        cookie.set_max_age(max_age);
    }
    cookie.to_string()
}

pub fn session(config: &Config, value: String) -> String {
    build(config, config.cookie_name(), value, None)
}

pub fn clear_session(config: &Config) -> String {
    build(config, config.cookie_name(), String::new(), Some(CookieDuration::ZERO))
}

/// The login cookie (the sealed login in progress) must survive the top-level redirect back from
/// the issuer, so it is always SameSite=Lax, whatever the session cookie uses.
pub fn pending_login(config: &Config, value: String) -> String {
    let mut cookie = Cookie::build((config.login_cookie_name().to_owned(), value))
        .path("/")
        .http_only(true)
        .secure(config.is_https())
        .same_site(cookie::SameSite::Lax)
        .max_age(CookieDuration::seconds(config.session.login_timeout.as_secs() as i64))
        .build();
    cookie.set_path("/");
    cookie.to_string()
}

pub fn clear_pending_login(config: &Config) -> String {
    build(config, config.login_cookie_name(), String::new(), Some(CookieDuration::ZERO))
}

#[cfg(test)]
mod properties {
    //! Any `Cookie` header an attacker sends: the parser never panics, and what it forwards never
    //! holds one of the gateway's own cookies, whatever spelling the session cookie came in.

    use axum::http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    fn config() -> Config {
        let vars = [
            ("BFF_PUBLIC_URL", "http://localhost:8080"),
            ("BFF_OIDC_AUTHORITY", "http://issuer.test"),
            ("BFF_OIDC_CLIENT_ID", "client"),
            ("BFF_OIDC_CLIENT_SECRET", "secret"),
        ];
        Config::from_env_map(&vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap()
    }

    /// Cookie pairs built from pieces an attacker would try: the gateway's names in odd spellings,
    /// stray spaces, quotes, separators and arbitrary printable text.
    fn cookie_header() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("bff-session".to_owned()),
            Just(" bff-session ".to_owned()),
            Just("BFF-Session".to_owned()),
            Just("__Host-bff-session".to_owned()),
            Just("__secure-bff-session-login".to_owned()),
            Just("bff-session-login".to_owned()),
            "[ -~]{0,12}",
        ];
        let value = prop_oneof![Just("abc".to_owned()), Just("\"quoted\"".to_owned()), "[ -~]{0,24}"];
        let separator = prop_oneof![Just("; "), Just(";"), Just(","), Just(" ;; "), Just("")];
        proptest::collection::vec((name, prop_oneof![Just("="), Just(" ="), Just("")], value, separator), 0..6)
            .prop_map(|pairs| pairs.into_iter().map(|(n, eq, v, sep)| format!("{n}{eq}{v}{sep}")).collect())
    }

    #[test]
    fn nameless_and_own_cookies_from_upstreams_are_refused() {
        let config = config();
        for (set, refused) in [
            ("=bff-session=x", true),
            (" = bff-session=x; Path=/", true),
            ("bff-session", true),
            ("__Host-bff-session=x", true),
            ("theme=dark; Path=/", false),
            ("theme=", false),
        ] {
            assert_eq!(refused_from_upstream(&config, &HeaderValue::from_static(set)), refused, "{set}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn no_cookie_header_panics_or_leaks_the_gateways_cookies(
            headers in proptest::collection::vec(prop_oneof![cookie_header(), "[\\x20-\\x7e\\t]{0,64}"], 1..3),
            bytes in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            let config = config();
            let mut map = HeaderMap::new();
            for text in &headers {
                if let Ok(value) = HeaderValue::from_str(text) {
                    map.append(COOKIE, value);
                }
            }
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                map.append(COOKIE, value);
            }
            let _ = read(&map, config.cookie_name());
            let _ = read(&map, config.login_cookie_name());
            if let Some(forwarded) = foreign(&map, &config) {
                let mut again = HeaderMap::new();
                again.insert(COOKIE, forwarded);
                prop_assert!(parsed(&again).all(|c| !is_own(&config, c.name())));
                // The raw text forwarded has no own cookie under any parse a server might use.
                let text = again.get(COOKIE).unwrap().to_str().unwrap().to_owned();
                for piece in text.split(';') {
                    let name = piece.split('=').next().unwrap_or_default();
                    prop_assert!(!is_own(&config, name), "{name:?} forwarded in {text:?}");
                }
            }
        }

        #[test]
        fn any_set_cookie_value_is_judged_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let _ = refused_from_upstream(&config(), &value);
            }
        }
    }
}
