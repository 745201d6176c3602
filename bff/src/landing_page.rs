//! Landing pages after login: only same-site relative paths, so `/account/login` cannot be used
//! as an open redirect. Anything that a browser could read as another origin is refused, also
//! when percent-encoded (once or more).

/// Longest landing page accepted: it travels in the login cookie, which must stay well under a
/// browser's 4 KB per cookie.
pub const MAX_LEN: usize = 1024;

/// Returns the landing page to redirect to, or why it is refused.
pub fn validate(raw: &str) -> Result<String, &'static str> {
    if raw.len() > MAX_LEN {
        return Err("landing page is too long");
    }
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

#[cfg(test)]
mod properties {
    //! Any `landingpage` an attacker sends: never a panic, and whatever is accepted is a path on
    //! this site however a browser decodes it.

    use proptest::prelude::*;

    use super::{percent_decode, validate};

    /// Text built from the pieces of open-redirect attempts.
    fn landing_page() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/"),
            Just("//"),
            Just("\\"),
            Just("%2F"),
            Just("%2f"),
            Just("%5C"),
            Just("%25"),
            Just("%252F"),
            Just("%09"),
            Just("\t"),
            Just(":"),
            Just("https:"),
            Just("evil.example"),
            Just("@"),
            Just("?"),
            Just("#"),
            Just("."),
            Just("+"),
            Just("%"),
            Just("\u{3000}"),
            Just("\u{ff0f}"),
        ];
        prop_oneof![proptest::collection::vec(piece, 0..8).prop_map(|p| p.concat()), "\\PC{0,32}", any::<String>(),]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn whatever_is_accepted_stays_on_this_site(raw in landing_page()) {
            if let Ok(accepted) = validate(&raw) {
                prop_assert_eq!(&accepted, &raw);
                let base = url::Url::parse("http://same.invalid/").unwrap();
                let mut candidate = accepted.clone();
                for _ in 0..4 {
                    prop_assert!(candidate.starts_with('/') && !candidate.starts_with("//"), "{raw:?} -> {candidate:?}");
                    prop_assert!(!candidate.contains('\\'), "{raw:?} -> {candidate:?}");
                    prop_assert_eq!(base.join(&candidate).unwrap().origin(), base.origin(), "{:?}", raw);
                    candidate = percent_decode(&candidate);
                }
            }
        }
    }
}
