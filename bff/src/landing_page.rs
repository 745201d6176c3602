//! Landing pages after login: only same-site relative paths, so `/account/login` cannot be used
//! as an open redirect. Anything that a browser could read as another origin is refused, also
//! when percent-encoded (once or more).

/// Returns the landing page to redirect to, or why it is refused.
pub fn validate(raw: &str) -> Result<String, &'static str> {
    let mut candidate = raw.to_owned();
    // Check the value as given and every percent-decoding of it, until decoding changes nothing.
    for _ in 0..4 {
        check_one(&candidate)?;
        let decoded = percent_decode(&candidate);
        if decoded == candidate {
            return Ok(raw.to_owned());
        }
        candidate = decoded;
    }
    Err("landing page is encoded too many times")
}

fn check_one(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("landing page must be a relative path starting with /");
    }
    if path.starts_with("//") || path.starts_with("/\\") {
        return Err("landing page must not point to another host");
    }
    if path.chars().any(|c| c == '\\' || c.is_control()) {
        return Err("landing page contains a forbidden character");
    }
    // Belt and braces: resolved against a dummy origin, it must stay on that origin.
    let base = url::Url::parse("http://same.invalid/").expect("static url");
    match base.join(path) {
        Ok(url) if url.origin() == base.origin() => Ok(()),
        _ => Err("landing page must stay on this site"),
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn same_site_paths_are_accepted() {
        for ok in ["/", "/app", "/app/page?x=1#top", "/a%20b", "/search?q=a+b"] {
            assert_eq!(validate(ok).as_deref(), Ok(ok), "{ok}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
            "%2F%2Fevil.example",
            "/%2F/evil.example",
            "/%5Cevil.example",
            "%252F%252Fevil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "https:%2F%2Fevil.example",
            "/%252F%252Fevil.example",
        ] {
            assert!(validate(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
