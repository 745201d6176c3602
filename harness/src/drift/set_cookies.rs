//! The cookies one answer sets, reduced to what must agree between nodes: each cookie's name and
//! attributes and its lifetime, never its value (a value is per browser). Parsed with the
//! `cookie` crate, as a browser reads them.
//!
//! A lifetime is one figure in seconds whether the gateway sent `Max-Age` or `Expires`: an
//! `Expires` counts from the answer's own `Date`, so the node's clock cancels out, and
//! [`super::observed`] takes lifetimes a second or two apart as the same (the two headers are
//! written at slightly different instants, each cut to whole seconds).

use std::time::{SystemTime, UNIX_EPOCH};

use cookie::{Cookie, Expiration};

use super::observation::Observed;

/// How long a browser keeps a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lifetime {
    /// No `Max-Age` nor `Expires`: until the browser closes.
    Session,
    /// `Max-Age` of zero or less, or an `Expires` not after the answer's `Date`: a deletion.
    Cleared,
    Seconds(i64),
}

/// One `Set-Cookie` header without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SetCookie {
    pub name: String,
    pub path: Option<String>,
    pub domain: Option<String>,
    pub same_site: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    pub lifetime: Lifetime,
}

/// Reads one `Set-Cookie` header of an answer dated `date` (`None`: this machine's clock).
/// A header the cookie crate cannot read is kept, named `(unreadable)`, so it still counts.
pub(super) fn parse(header: &str, date: Option<SystemTime>) -> SetCookie {
    let Ok(cookie) = Cookie::parse(header) else {
        return SetCookie {
            name: "(unreadable)".into(),
            path: None,
            domain: None,
            same_site: None,
            secure: false,
            http_only: false,
            lifetime: Lifetime::Session,
        };
    };
    let lifetime = match (cookie.max_age(), cookie.expires()) {
        (Some(max_age), _) if max_age.whole_seconds() <= 0 => Lifetime::Cleared,
        (Some(max_age), _) => Lifetime::Seconds(max_age.whole_seconds()),
        (None, Some(Expiration::DateTime(at))) => {
            let date = date.unwrap_or_else(SystemTime::now);
            let date_secs = date.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default();
            match at.unix_timestamp() - date_secs {
                secs if secs <= 0 => Lifetime::Cleared,
                secs => Lifetime::Seconds(secs),
            }
        }
        _ => Lifetime::Session,
    };
    SetCookie {
        name: cookie.name().to_owned(),
        path: cookie.path().map(str::to_owned),
        domain: cookie.domain().map(|d| d.to_ascii_lowercase()),
        same_site: cookie.same_site().map(|s| s.to_string()),
        secure: cookie.secure().unwrap_or(false),
        http_only: cookie.http_only().unwrap_or(false),
        lifetime,
    }
}

/// Names with a per-request part (`mod_auth_openidc_state_<state>`, ASP.NET's
/// `.AspNetCore.Correlation.<random>`): where two answers of the same node name the cookie at
/// the same place differently, the name is kept up to where they part, then `*`.
pub(super) fn generalise_names(first: &mut [SetCookie], second: &[SetCookie]) {
    if first.len() != second.len() {
        return;
    }
    for (a, b) in first.iter_mut().zip(second) {
        if a.name != b.name {
            let common: String =
                a.name.chars().zip(b.name.chars()).take_while(|(x, y)| x == y).map(|(x, _)| x).collect();
            a.name = format!("{common}*");
        }
    }
}

/// A name's per-request tail, seen in one answer only (`mod_auth_openidc_state_<hash of the
/// state>` cleared at the callback): the longest run of trailing segments (split at `_`, `-`,
/// `.`) that each look random (a digit or a capital in it, or at most 3 characters), when it is more than 16
/// characters, becomes `*`. Words (`state`, `session`, `login`) end the run.
pub(super) fn without_random_tail(name: &str) -> String {
    let random =
        |segment: &str| segment.len() <= 3 || segment.chars().any(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
    let mut cut = name.len();
    for (at, c) in name.char_indices().rev() {
        if matches!(c, '_' | '-' | '.') {
            if !random(&name[at + 1..cut]) {
                break;
            }
            cut = at;
        }
    }
    let tail = &name[cut..];
    if tail.len() > 16 && name[..cut].chars().any(|c| c.is_ascii_alphabetic()) {
        format!("{}*", &name[..=cut])
    } else {
        name.to_owned()
    }
}

/// Cookie names of one setting across nodes that part only in a per-request tail (one node's
/// answer generalised to `…_state_a*`, another's seen once in full) are one name: the common
/// prefix up to its last separator, then `*`, when every node's rest is at least 8 characters
/// or was generalised already. A renamed cookie (`bff-session`, `bff-session2`, `other`) is not.
pub(super) fn same_name_across_nodes(names: &mut [Option<String>]) {
    let present: Vec<&str> = names.iter().flatten().map(|n| n.trim_end_matches('*')).collect();
    if present.len() < 2 || present.windows(2).all(|w| w[0] == w[1]) {
        return;
    }
    let first = present[0];
    let common = present
        .iter()
        .fold(first.len(), |len, name| first.bytes().zip(name.bytes()).take(len).take_while(|(a, b)| a == b).count());
    let Some(cut) = first[..common].rfind(['_', '-', '.']).map(|at| at + 1) else { return };
    let long_rests = names.iter().flatten().all(|name| name.ends_with('*') || name.len() - cut >= 8);
    if cut < 4 || !long_rests {
        return;
    }
    let general = format!("{}*", &first[..cut]);
    for name in names.iter_mut().flatten() {
        *name = general.clone();
    }
}

/// The settings of one answer's cookies: `cookies[ROLE].count`, then per cookie set
/// `cookie[ROLE]` (the first), `cookie[ROLE.2]`…, and per cookie cleared `cookie[ROLE.cleared]`…,
/// each with `.name`, `.path`, `.domain`, `.samesite`, `.secure`, `.httponly`, `.lifetime`.
/// Cookies are told apart by role and place, not by name, so a node that names its cookie
/// otherwise shows as that node's `cookie[ROLE].name`.
pub(super) fn settings(role: &str, cookies: &[SetCookie], out: &mut Vec<(String, Observed)>) {
    let (set, cleared): (Vec<&SetCookie>, Vec<&SetCookie>) =
        cookies.iter().partition(|c| c.lifetime != Lifetime::Cleared);
    out.push((
        format!("cookies[{role}].count"),
        Observed::text(format!("{} set, {} cleared", set.len(), cleared.len())),
    ));
    let groups = [(role.to_owned(), set), (format!("{role}.cleared"), cleared)];
    for (label, cookies) in groups {
        for (i, c) in cookies.into_iter().enumerate() {
            let key = if i == 0 { format!("cookie[{label}]") } else { format!("cookie[{label}.{}]", i + 1) };
            let or_absent = |v: &Option<String>| Observed::text(v.clone().unwrap_or_else(|| "(absent)".into()));
            let yes_no = |b: bool| Observed::text(if b { "yes" } else { "no" });
            out.push((format!("{key}.name"), Observed::text(without_random_tail(&c.name))));
            out.push((format!("{key}.path"), or_absent(&c.path)));
            out.push((format!("{key}.domain"), or_absent(&c.domain)));
            out.push((format!("{key}.samesite"), or_absent(&c.same_site)));
            out.push((format!("{key}.secure"), yes_no(c.secure)));
            out.push((format!("{key}.httponly"), yes_no(c.http_only)));
            let lifetime = match c.lifetime {
                Lifetime::Session => Observed::text("until the browser closes"),
                Lifetime::Cleared => Observed::text("cleared"),
                Lifetime::Seconds(secs) => Observed::Seconds(secs),
            };
            out.push((format!("{key}.lifetime"), lifetime));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn date(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn attributes_are_read_and_the_value_is_not_kept() {
        let c = parse("__Host-bff-session=secret; Path=/; Secure; HttpOnly; SameSite=Strict", None);
        assert_eq!(c.name, "__Host-bff-session");
        assert_eq!((c.path.as_deref(), c.domain.as_deref(), c.same_site.as_deref()), (Some("/"), None, Some("Strict")));
        assert!(c.secure && c.http_only);
        assert_eq!(c.lifetime, Lifetime::Session);
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn max_age_and_expires_give_one_lifetime() {
        assert_eq!(parse("a=1; Max-Age=600", None).lifetime, Lifetime::Seconds(600));
        assert_eq!(parse("a=; Max-Age=0", None).lifetime, Lifetime::Cleared);
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777.
        let expires = "a=1; Expires=Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(parse(expires, date(784_111_777 - 600)).lifetime, Lifetime::Seconds(600));
        assert_eq!(parse(expires, date(784_111_777)).lifetime, Lifetime::Cleared);
        // Max-Age wins over Expires, as in browsers.
        assert_eq!(parse(&format!("{expires}; Max-Age=60"), date(0)).lifetime, Lifetime::Seconds(60));
    }

    #[test]
    fn per_request_parts_of_names_are_generalised() {
        let mut first = vec![parse("mod_auth_openidc_state_AbC123=1", None), parse("csrf=1", None)];
        let second = vec![parse("mod_auth_openidc_state_xYz987=1", None), parse("csrf=2", None)];
        generalise_names(&mut first, &second);
        assert_eq!(first[0].name, "mod_auth_openidc_state_*");
        assert_eq!(first[1].name, "csrf");
    }

    #[test]
    fn a_random_tail_seen_once_is_generalised_and_words_are_not() {
        assert_eq!(
            without_random_tail("mod_auth_openidc_state_8uHQAk9uByE_6y__SUaEnzAqVTA"),
            "mod_auth_openidc_state_*"
        );
        assert_eq!(without_random_tail("mod_auth_openidc_state_i-Yq8_lm_Zx9-kQpW3rT"), "mod_auth_openidc_state_*");
        assert_eq!(without_random_tail("mod_auth_openidc_state_lm_abcDefGhij-klmnoP"), "mod_auth_openidc_state_*");
        assert_eq!(without_random_tail("mod_auth_openidc_session"), "mod_auth_openidc_session");
        assert_eq!(without_random_tail("__Host-bff-session-login"), "__Host-bff-session-login");
        assert_eq!(without_random_tail("bff-session"), "bff-session");
        assert_eq!(without_random_tail("other"), "other");
        assert_eq!(without_random_tail("_oauth2_proxy_csrf_Q3xZ9kq0Lm2Tz8Ab"), "_oauth2_proxy_csrf_*");
    }

    #[test]
    fn names_that_part_only_in_a_long_tail_are_one_name_across_nodes() {
        let mut names: Vec<Option<String>> =
            vec![Some("mod_auth_openidc_state_a*".into()), Some("mod_auth_openidc_state_xk3pLm0QzT8vBn".into()), None];
        same_name_across_nodes(&mut names);
        assert_eq!(names[0].as_deref(), Some("mod_auth_openidc_state_*"));
        assert_eq!(names[1].as_deref(), Some("mod_auth_openidc_state_*"));
        let mut drift = vec![Some("bff-session".to_owned()), Some("bff-session2".to_owned())];
        same_name_across_nodes(&mut drift);
        assert_eq!(drift[1].as_deref(), Some("bff-session2"), "a renamed cookie stays drift");
        let mut other = vec![Some("bff-session".to_owned()), Some("other".to_owned())];
        same_name_across_nodes(&mut other);
        assert_eq!(other[1].as_deref(), Some("other"));
    }
}
