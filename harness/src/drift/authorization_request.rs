//! The authorization request a node sends browsers to, reduced to what must agree between nodes:
//! where it goes and every parameter except those that are new for each request (`state`,
//! `nonce`, `code_challenge`, and any other a second request to the same node gives another
//! value). URLs that point back at the node itself are shown as `(this node)`, so a gateway that
//! builds them from the `Host` it was reached under is not taken for drift.

use std::collections::{BTreeMap, BTreeSet};

use url::Url;

use super::observation::Observed;

/// Parameters that are fresh for every request by design.
const PER_REQUEST: &[&str] = &["state", "nonce", "code_challenge"];

/// Parameters always shown (`(absent)` when missing), in this order.
const COMPARED: &[&str] =
    &["client_id", "redirect_uri", "scope", "response_type", "response_mode", "code_challenge_method", "prompt"];

/// Parameters whose value is a space-separated set: order is not meaning.
const SETS: &[&str] = &["scope", "response_type"];

/// Shown instead of a value that a second request to the same node gave otherwise.
const VARIES: &str = "(varies per request)";

/// `url` as seen from `node`: `(this node)/path?query` when it points at the node itself.
pub(super) fn relative_to_node(url: &Url, node: &Url) -> String {
    match url.origin() == node.origin() {
        true => format!("(this node){}", &url[url::Position::BeforePath..]),
        false => url.to_string(),
    }
}

fn parameters(url: &Url) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in url.query_pairs() {
        out.entry(name.into_owned())
            .and_modify(|v| *v = format!("{v} | {value}"))
            .or_insert_with(|| value.into_owned());
    }
    out
}

/// The parameters two requests to the same node gave different values (or presence).
pub(super) fn varying(first: &Url, second: &Url) -> BTreeSet<String> {
    let (a, b) = (parameters(first), parameters(second));
    a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

/// The settings of the authorization request at `location` (an answer of `node`):
/// `authorize.endpoint`, the [`COMPARED`] parameters, `authorize.pkce`, `authorize.parameters`
/// (which are present) and `authorize.NAME` for every other steady parameter.
pub(super) fn settings(location: &Url, node: &Url, varying: &BTreeSet<String>, out: &mut Vec<(String, Observed)>) {
    let mut endpoint = location.clone();
    endpoint.set_query(None);
    endpoint.set_fragment(None);
    out.push(("authorize.endpoint".into(), Observed::text(relative_to_node(&endpoint, node))));
    let params = parameters(location);
    let shown = |name: &str| -> String {
        if varying.contains(name) {
            return VARIES.into();
        }
        let Some(value) = params.get(name) else { return "(absent)".into() };
        if SETS.contains(&name) {
            let set: BTreeSet<&str> = value.split_whitespace().collect();
            return set.into_iter().collect::<Vec<_>>().join(" ");
        }
        match Url::parse(value) {
            Ok(url) if name == "redirect_uri" => relative_to_node(&url, node),
            _ => value.clone(),
        }
    };
    for name in COMPARED {
        out.push((format!("authorize.{name}"), Observed::text(shown(name))));
    }
    let pkce = if params.contains_key("code_challenge") { "yes" } else { "no" };
    out.push(("authorize.pkce".into(), Observed::text(pkce)));
    let present: Vec<&str> = params.keys().map(String::as_str).collect();
    out.push(("authorize.parameters".into(), Observed::text(present.join(" "))));
    for name in params.keys().filter(|n| !PER_REQUEST.contains(&n.as_str()) && !COMPARED.contains(&n.as_str())) {
        out.push((format!("authorize.{name}"), Observed::text(shown(name))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn shown(location: &str, node: &str, varying: &BTreeSet<String>) -> BTreeMap<String, String> {
        let mut out = Vec::new();
        settings(&url(location), &url(node), varying, &mut out);
        out.into_iter().map(|(k, v)| (k, v.to_string())).collect()
    }

    #[test]
    fn sets_are_sorted_and_per_request_values_left_out() {
        let a = shown(
            "https://idp.example/authorize?scope=openid%20email&state=s1&nonce=n1&code_challenge=c1&client_id=x&code_challenge_method=S256&response_type=code&redirect_uri=https%3A%2F%2Fapp%2Fcb",
            "http://127.0.0.1:1",
            &BTreeSet::new(),
        );
        let b = shown(
            "https://idp.example/authorize?client_id=x&scope=email%20openid&state=s2&nonce=n2&code_challenge=c2&code_challenge_method=S256&response_type=code&redirect_uri=https%3A%2F%2Fapp%2Fcb",
            "http://127.0.0.1:2",
            &BTreeSet::new(),
        );
        assert_eq!(a, b);
        assert_eq!(a["authorize.scope"], "email openid");
        assert_eq!(a["authorize.pkce"], "yes");
        assert_eq!(a["authorize.prompt"], "(absent)");
        assert_eq!(a["authorize.endpoint"], "https://idp.example/authorize");
        assert!(!a.values().any(|v| v.contains("s1") || v.contains("n1") || v.contains("c1")));
    }

    #[test]
    fn urls_pointing_back_at_the_node_are_relative_and_other_varying_values_hidden() {
        let first = url("https://idp/a?redirect_uri=http%3A%2F%2F127.0.0.1%3A7%2Fcb&x-request=1&client_id=c");
        let second = url("https://idp/a?redirect_uri=http%3A%2F%2F127.0.0.1%3A7%2Fcb&x-request=2&client_id=c");
        let varying = varying(&first, &second);
        let out = shown(first.as_str(), "http://127.0.0.1:7", &varying);
        assert_eq!(out["authorize.redirect_uri"], "(this node)/cb");
        assert_eq!(out["authorize.x-request"], VARIES);
        assert_eq!(out["authorize.client_id"], "c");
        assert_eq!(out["authorize.pkce"], "no");
    }
}
