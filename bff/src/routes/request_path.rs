//! The request path as route matching sees it. Routes carry different authentication, so a path
//! must not be able to look like one route to the gateway and like another to the upstream:
//! dot-segments (`/public/../api`), encoded slashes and backslashes (`..%2f`, `%5c`), encoded
//! dots, backslashes and path parameters (`;`: Tomcat, Jetty and Spring drop `;…` from a segment,
//! so `/public/..;/api` is `/api` to them) are refused (400); percent-encoded unreserved
//! characters (RFC 3986 §2.3, `/%61pi` is `/api`) are decoded, so every spelling of a path
//! matches the same route, and the upstream receives the decoded form. Route prefixes match on segment boundaries only
//! ([`under_prefix`]).

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains an encoded slash or backslash")]
    EncodedSeparator,
    #[error("the path contains an encoded dot")]
    EncodedDot,
    #[error("the path contains a malformed percent-encoding")]
    BadPercent,
    #[error("the path contains a dot-segment")]
    DotSegment,
    #[error("the path contains a ; (path parameter)")]
    Parameter,
}

/// The normalised path, or why it is refused.
pub fn normalise(raw: &str) -> Result<String, PathRefusal> {
    if !raw.starts_with('/') {
        return Err(PathRefusal::NotAbsolute);
    }
    if raw.contains('\\') {
        return Err(PathRefusal::Backslash);
    }
    if raw.contains(';') {
        return Err(PathRefusal::Parameter);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let hex = rest.get(at + 1..at + 3).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        let hex = hex.ok_or(PathRefusal::BadPercent)?;
        let byte = u8::from_str_radix(hex, 16).map_err(|_| PathRefusal::BadPercent)?;
        match byte {
            b'/' | b'\\' => return Err(PathRefusal::EncodedSeparator),
            b'.' => return Err(PathRefusal::EncodedDot),
            b if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'~' => out.push(b as char),
            _ => {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(PathRefusal::DotSegment);
    }
    Ok(out)
}

/// The part of `path` after the route `prefix`, when `path` is under it on a segment boundary:
/// `/api` and `/api/` both take `/api` and `/api/x`, never `/apiadmin`. The rest is empty or
/// starts with `/`.
pub fn under_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_are_decoded_and_the_rest_kept() {
        assert_eq!(normalise("/%61pi/x").as_deref(), Ok("/api/x"));
        assert_eq!(normalise("/a%20b/%7e%2D").as_deref(), Ok("/a%20b/~-"));
        assert_eq!(normalise("/api/x").as_deref(), Ok("/api/x"));
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (bad, why) in [
            ("/public/../api/x", PathRefusal::DotSegment),
            ("/public/./x", PathRefusal::DotSegment),
            ("/public/..", PathRefusal::DotSegment),
            ("/public/..%2fapi/x", PathRefusal::EncodedSeparator),
            ("/public/..%2Fapi/x", PathRefusal::EncodedSeparator),
            ("/public/%2e%2e/api", PathRefusal::EncodedDot),
            ("/public/%2E./api", PathRefusal::EncodedDot),
            ("/public/..%5capi", PathRefusal::EncodedSeparator),
            ("/public\\..\\api", PathRefusal::Backslash),
            ("/public/..;/api/admin", PathRefusal::Parameter),
            ("/public/x;jsessionid=1", PathRefusal::Parameter),
            ("/public/;/api", PathRefusal::Parameter),
            ("/a%zz", PathRefusal::BadPercent),
            ("/a%+1", PathRefusal::BadPercent),
            ("/a%", PathRefusal::BadPercent),
            ("api", PathRefusal::NotAbsolute),
        ] {
            assert_eq!(normalise(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        for prefix in ["/api", "/api/"] {
            assert_eq!(under_prefix("/api", prefix), Some(""));
            assert_eq!(under_prefix("/api/x", prefix), Some("/x"));
            assert_eq!(under_prefix("/apiadmin", prefix), None);
        }
        assert_eq!(under_prefix("/anything", "/"), Some("/anything"));
    }
}

#[cfg(test)]
mod properties {
    //! Any request path: never a panic; an accepted path has no dot-segment, no backslash, no `;`
    //! and no encoded separator or dot, normalising it again changes nothing, and a route prefix matches
    //! it on a segment boundary only.

    use proptest::prelude::*;

    use super::*;

    fn path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(String::from("/")),
            Just(String::from(".")),
            Just(String::from("..")),
            Just(String::from("%2e")),
            Just(String::from("%2E")),
            Just(String::from("%2f")),
            Just(String::from("%5c")),
            Just(String::from("%61")),
            Just(String::from("%25")),
            Just(String::from("%")),
            Just(String::from("\\")),
            Just(String::from(";")),
            Just(String::from("api")),
            Just(String::from("public")),
            Just(String::from("%zz")),
            "[a-z0-9%._~-]{1,4}",
        ];
        prop_oneof![proptest::collection::vec(piece, 0..10).prop_map(|p| p.concat()), any::<String>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn accepted_paths_are_unambiguous(raw in path(), prefix in prop_oneof![Just("/api"), Just("/api/"), Just("/")]) {
            if let Ok(path) = normalise(&raw) {
                prop_assert!(path.starts_with('/'));
                prop_assert!(!path.contains('\\'));
                prop_assert!(!path.contains(';'));
                prop_assert!(!path.split('/').any(|s| s == "." || s == ".."), "{raw:?} -> {path:?}");
                let lower = path.to_ascii_lowercase();
                prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%2e"), "{raw:?} -> {path:?}");
                prop_assert_eq!(normalise(&path), Ok(path.clone()), "not idempotent for {:?}", raw);
                if let Some(rest) = under_prefix(&path, prefix) {
                    prop_assert!(rest.is_empty() || rest.starts_with('/'));
                    prop_assert_eq!(format!("{}{rest}", prefix.trim_end_matches('/')), path);
                }
            }
        }
    }
}
