//! The gateway's cookies: the session cookie and the short-lived login binding cookie. Both are
//! HttpOnly with the configured SameSite; over https they are `Secure` and `__Host-` prefixed.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use cookie::Cookie;
use cookie::time::Duration as CookieDuration;

use crate::config::{Config, SameSite};

/// The value of cookie `name` in the request, if any.
pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
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

/// The login binding cookie must survive the top-level redirect back from the issuer, so it is
/// always SameSite=Lax, whatever the session cookie uses.
pub fn login_binding(config: &Config, value: String) -> String {
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

pub fn clear_login_binding(config: &Config) -> String {
    build(config, config.login_cookie_name(), String::new(), Some(CookieDuration::ZERO))
}
