//! Reading and filling an identity provider's HTML forms, as a person in a browser does: the
//! login form (username and password) and, when one appears, the consent form. Used by
//! [`crate::VirtualUser`] for `--login form`, against a real identity provider's pages.
//!
//! The password is only ever put into the submitted form body: no error, report or log line
//! carries it.

use scraper::{Html, Selector};
use url::Url;

/// A form to submit: where, and the fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub action: Url,
    /// `post` or `get`.
    pub method: String,
    pub fields: Vec<(String, String)>,
    /// True when the form asked for a password (a login form, not a consent form).
    pub asks_password: bool,
}

/// Reads a users file: one `username:password` a line (blank lines and `#` comments skipped).
/// Errors name the line, never its password.
pub fn read_users(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, password)) if !user.trim().is_empty() && !password.is_empty() => {
                users.push((user.trim().to_owned(), password.to_owned()));
            }
            _ => return Err(format!("line {}: expected username:password", i + 1)),
        }
    }
    if users.is_empty() {
        return Err("no user in the file".into());
    }
    Ok(users)
}

/// Words that mark a consent form's approving button.
const APPROVE: &[&str] = &["allow", "accept", "approve", "consent", "yes", "continue", "authorize", "grant"];

/// The first form of `page` (fetched from `page_url`) filled in: hidden fields as they are, the
/// username into the text or email field, the password into the password field, and the approving
/// submit button (or the first one). `None` when the page has no form.
pub fn fill(page: &str, page_url: &Url, username: &str, password: &str) -> Option<Submission> {
    let document = Html::parse_document(page);
    let form_selector = Selector::parse("form").expect("static selector");
    let field_selector = Selector::parse("input, button, select, textarea").expect("static selector");
    let form = document.select(&form_selector).next()?;
    let action = form.value().attr("action").filter(|a| !a.trim().is_empty());
    let action = match action {
        Some(action) => page_url.join(action.trim()).ok()?,
        None => page_url.clone(),
    };
    let method = form.value().attr("method").unwrap_or("get").to_ascii_lowercase();
    let mut fields = Vec::new();
    let mut asks_password = false;
    let mut buttons: Vec<(String, String)> = Vec::new();
    for element in form.select(&field_selector) {
        let el = element.value();
        let Some(name) = el.attr("name").filter(|n| !n.is_empty()) else { continue };
        let kind =
            el.attr("type").unwrap_or(if el.name() == "button" { "submit" } else { "text" }).to_ascii_lowercase();
        let value = el.attr("value").unwrap_or("").to_owned();
        match (el.name(), kind.as_str()) {
            ("button", "submit") | ("input", "submit") => buttons.push((name.to_owned(), value)),
            ("button", _) | ("input", "button" | "reset" | "image" | "file") => {}
            ("input", "password") => {
                asks_password = true;
                fields.push((name.to_owned(), password.to_owned()));
            }
            ("input", "text" | "email") if value.is_empty() => fields.push((name.to_owned(), username.to_owned())),
            ("input", "checkbox" | "radio") if el.attr("checked").is_none() => {}
            _ => fields.push((name.to_owned(), value)),
        }
    }
    // The button's value says what it does ("allow", "deny"); its name often only says which form.
    let approves = |text: &str| APPROVE.iter().any(|w| text.to_ascii_lowercase().contains(w));
    let approving = buttons
        .iter()
        .find(|(_, value)| approves(value))
        .or_else(|| buttons.iter().find(|(name, value)| value.is_empty() && approves(name)));
    if let Some(button) = approving.or(buttons.first()) {
        fields.push(button.clone());
    }
    Some(Submission { action, method, fields, asks_password })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_form_is_filled() {
        let page = r#"<html><body><form method="POST" action="/login?x=1">
            <input type="hidden" name="request" value="r-1">
            <input type="email" name="email"><input type="password" name="pw">
            <input type="checkbox" name="remember"><button type="submit" name="go" value="in">Sign in</button>
        </form></body></html>"#;
        let url = Url::parse("http://idp.test/authorize?a=b").unwrap();
        let filled = fill(page, &url, "alice", "s3cret").unwrap();
        assert_eq!(filled.action.as_str(), "http://idp.test/login?x=1");
        assert_eq!(filled.method, "post");
        assert!(filled.asks_password);
        let fields: Vec<(&str, &str)> = filled.fields.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(fields, [("request", "r-1"), ("email", "alice"), ("pw", "s3cret"), ("go", "in")]);
    }

    #[test]
    fn a_consent_form_is_approved() {
        let page = r#"<form method="post" action="consent"><input type="hidden" name="request" value="r">
            <button name="consent" value="deny">Deny</button><button name="consent" value="allow">Allow</button></form>"#;
        let url = Url::parse("http://idp.test/login").unwrap();
        let filled = fill(page, &url, "alice", "pw").unwrap();
        assert_eq!(filled.action.as_str(), "http://idp.test/consent");
        assert!(!filled.asks_password);
        assert_eq!(filled.fields.last().unwrap(), &("consent".to_owned(), "allow".to_owned()));
        assert!(fill("<p>no form</p>", &url, "a", "b").is_none());
    }

    #[test]
    fn users_files() {
        assert_eq!(
            read_users("# team\nalice:pa:ss\n\nbob:x\n").unwrap(),
            [("alice".into(), "pa:ss".into()), ("bob".into(), "x".into())]
        );
        assert_eq!(read_users("alice:pw\nbob\n").unwrap_err(), "line 2: expected username:password");
    }
}
