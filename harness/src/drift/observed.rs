//! The drift check from the outside: what any client can observe of each node, for gateways
//! that have no `/ops/fingerprint` (mod_auth_openidc, oauth2-proxy, Duende.BFF, OidcProxy.Net)
//! and, next to the fingerprint, for bff itself. Each node is asked directly, without cookies and
//! without following redirects off the node; the answers are compared setting by setting, in the
//! same [`DriftReport`] as the fingerprint check, so the same table and verdict name the odd node.
//!
//! What is compared, and why a difference breaks a scaled-out deployment:
//! - **The authorization request** (`authorize.*`, from the login answer's `Location`):
//!   - `endpoint` (issuer origin and path): logins on one node go to another issuer, whose
//!     sessions and tokens the other nodes do not accept;
//!   - `client_id`, `redirect_uri`: the callback lands on any node, which redeems the code with
//!     its own registration; the issuer refuses a code issued to another client or redirect URI;
//!   - `scope` (as a set), `response_type`, `response_mode`: the session one node creates lacks
//!     claims or a refresh token the others expect; a `form_post` callback is a POST the others
//!     may not take;
//!   - `code_challenge_method` and whether PKCE is used at all (`pkce`): a callback landing on a
//!     node that expects another method fails the code exchange;
//!   - `prompt` and every other steady parameter, and which parameters are present: users get
//!     another login experience (or another audience, ACR) depending on the node.
//! - **The cookies** the login answer sets (`cookie[login]…`: the state of a login in
//!   progress) and those the end of a login sets (`cookie[session]…`, with a [`ObserveLogin`]):
//!   - `name`: the other nodes never see this node's cookie: the callback or every later request
//!     on another node has no session;
//!   - `path`, `domain`: the browser does not send the cookie to some paths or hosts;
//!   - `samesite`, `secure`, `httponly`: the cookie is sent on other navigations (or not over
//!     http) depending on the node that set it: logins return to no state, sessions vanish on
//!     cross-site entry;
//!   - `lifetime` (`Max-Age`, or `Expires` counted from the answer's `Date`): sessions or logins
//!     in progress end early for users one node served;
//!   - the count: one node splits or adds cookies the others do not clear or read.
//! - **The anonymous answer** (`anonymous.login.*`, `anonymous.me.*`): the status, the
//!   `Content-Type` (without parameters) and where a redirect goes: a single-page app that gets a
//!   JSON 401 from two nodes and an HTML 302 from the third breaks one request in three.
//!
//! Values that are new for every request (`state`, `nonce`, `code_challenge`, any other
//! parameter a second request to the same node changes, the random part of a cookie's name) are
//! left out; URLs pointing back at the node itself are shown as `(this node)`. With no majority
//! (two nodes that differ, or three values among three nodes) every node that answered is named.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, DATE, LOCATION, SET_COOKIE};
use url::Url;

use super::authorization_request;
use super::observation::{LIFETIME_SKEW_SECS, Observed, lifetime_shown};
use super::set_cookies::{self, SetCookie};
use super::{DriftReport, DriftRow};

/// Redirects followed on the node itself before the login answer leaves it for the issuer.
const MAX_HOPS_ON_NODE: usize = 5;

/// The paths the check asks each node for; bff's by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPaths {
    /// Starts a login: answers with a redirect to the issuer.
    pub login: String,
    /// The current user: some error without a session.
    pub me: String,
    /// A header the `me` call sends, e.g. `X-CSRF: 1` for Duende.BFF's `/bff/user`.
    pub me_header: Option<(String, String)>,
}

impl Default for ObservedPaths {
    fn default() -> Self {
        ObservedPaths::from(&crate::client::GatewayPaths::default())
    }
}

impl From<&crate::client::GatewayPaths> for ObservedPaths {
    fn from(paths: &crate::client::GatewayPaths) -> Self {
        ObservedPaths { login: paths.login.clone(), me: paths.me.clone(), me_header: paths.me_header.clone() }
    }
}

/// The answer that finished a login on one node (the callback's, as the browser got it).
#[derive(Debug, Clone, Default)]
pub struct LoginAnswer {
    /// Its `Set-Cookie` headers, in order.
    pub set_cookie: Vec<String>,
    /// Its `Date` header, against which an `Expires` becomes a lifetime.
    pub date: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ObserveLoginError {
    #[error("request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url} answered {status} (expected a redirect)")]
    NotARedirect { url: String, status: u16 },
    #[error("the callback {url} answered {status}")]
    Refused { url: String, status: u16 },
    #[error("no answer back at the node after {0} redirects")]
    TooManyRedirects(usize),
    #[error("{0}")]
    Other(String),
}

/// Logs a new browser in on one node, so that the session cookie can be compared. The login
/// must start and end on `node_url`: the issuer's redirect back goes to that node, not through
/// the load balancer (see [`super::PinnedLogin`]).
#[async_trait]
pub trait ObserveLogin: Send + Sync {
    async fn login(&self, node_url: &str) -> Result<LoginAnswer, ObserveLoginError>;
}

/// One answer of a node, reduced to what the check reads.
struct Answer {
    status: u16,
    content_type: Option<String>,
    location: Option<Url>,
    cookies: Vec<SetCookie>,
}

fn date_of(headers: &reqwest::header::HeaderMap) -> Option<SystemTime> {
    headers.get(DATE).and_then(|d| d.to_str().ok()).and_then(|d| httpdate::parse_http_date(d).ok())
}

async fn ask(http: &reqwest::Client, url: &Url, header: Option<&(String, String)>) -> Result<Answer, String> {
    let mut request = http.get(url.clone());
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| format!("gave no answer at {url}: {e}"))?;
    let headers = response.headers();
    let date = date_of(headers);
    let text = |name| headers.get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok());
    let content_type = text(CONTENT_TYPE).map(|t| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    let location = text(LOCATION).and_then(|l| url.join(l).ok());
    let cookies = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| set_cookies::parse(v, date))
        .collect();
    Ok(Answer { status: response.status().as_u16(), content_type, location, cookies })
}

/// The login path's answer, and the redirects on the node itself after it (a gateway may send
/// `/login` to `/oauth2/start` first): the first answer, every cookie set on the way, and the
/// first redirect off the node (the authorization request), if any.
struct LoginAnswers {
    first: Answer,
    cookies: Vec<SetCookie>,
    authorization: Option<Url>,
}

async fn ask_login(http: &reqwest::Client, node: &Url, paths: &ObservedPaths) -> Result<LoginAnswers, String> {
    let start = node.join(&paths.login).map_err(|e| format!("has no URL for {}: {e}", paths.login))?;
    let first = ask(http, &start, None).await?;
    let mut cookies = first.cookies.clone();
    let mut next = first.location.clone().filter(|_| (300..400).contains(&first.status));
    for _ in 0..MAX_HOPS_ON_NODE {
        match next {
            Some(url) if url.origin() == node.origin() => {
                let answer = ask(http, &url, None).await?;
                cookies.extend(answer.cookies.iter().cloned());
                next = answer.location.filter(|_| (300..400).contains(&answer.status));
            }
            _ => break,
        }
    }
    let authorization = next.filter(|url| url.origin() != node.origin());
    Ok(LoginAnswers { first, cookies, authorization })
}

fn anonymous(what: &str, answer: &Answer, node: &Url, out: &mut Vec<(String, Observed)>) {
    out.push((format!("anonymous.{what}.status"), Observed::text(answer.status.to_string())));
    let content_type = answer.content_type.clone().unwrap_or_else(|| "(none)".into());
    out.push((format!("anonymous.{what}.content_type"), Observed::text(content_type)));
    let location = match &answer.location {
        None => "(none)".to_owned(),
        Some(url) if url.origin() == node.origin() => "(this node)".to_owned(),
        Some(url) => url.origin().ascii_serialization(),
    };
    out.push((format!("anonymous.{what}.location"), Observed::text(location)));
}

/// What one node shows; `Err` when it could not be asked. The second value is why its login
/// failed, when it did.
async fn observe_node(
    http: &reqwest::Client,
    node_url: &str,
    paths: &ObservedPaths,
    login: Option<&dyn ObserveLogin>,
) -> Result<(Vec<(String, Observed)>, Option<String>), String> {
    let node = Url::parse(node_url).map_err(|e| format!("has no valid URL {node_url}: {e}"))?;
    let mut out = Vec::new();
    // Twice, to tell a per-request value from a setting.
    let first = ask_login(http, &node, paths).await?;
    let second = ask_login(http, &node, paths).await?;
    anonymous("login", &first.first, &node, &mut out);
    let me = node.join(&paths.me).map_err(|e| format!("has no URL for {}: {e}", paths.me))?;
    anonymous("me", &ask(http, &me, paths.me_header.as_ref()).await?, &node, &mut out);
    match (&first.authorization, &second.authorization) {
        (Some(a), Some(b)) => {
            let varying = authorization_request::varying(a, b);
            authorization_request::settings(a, &node, &varying, &mut out);
        }
        (Some(a), None) => authorization_request::settings(a, &node, &BTreeSet::new(), &mut out),
        (None, _) => out.push(("authorize.endpoint".into(), Observed::text("(no redirect off the node)"))),
    }
    let mut cookies = first.cookies;
    set_cookies::generalise_names(&mut cookies, &second.cookies);
    set_cookies::settings("login", &cookies, &mut out);
    let Some(login) = login else { return Ok((out, None)) };
    match login.login(node_url).await {
        Ok(answer) => {
            let date = answer.date.as_deref().and_then(|d| httpdate::parse_http_date(d).ok());
            let cookies: Vec<SetCookie> = answer.set_cookie.iter().map(|h| set_cookies::parse(h, date)).collect();
            out.push(("login.completes".into(), Observed::text("yes")));
            set_cookies::settings("session", &cookies, &mut out);
            Ok((out, None))
        }
        Err(error) => {
            out.push(("login.completes".into(), Observed::text("no")));
            Ok((out, Some(error.to_string())))
        }
    }
}

/// Asks every node (`(name, base URL)`, `None` for a node that is down) at `paths`, logs a
/// browser in on each with `login` when given, and compares what they show.
pub async fn observe(
    nodes: &[(String, Option<String>)],
    paths: &ObservedPaths,
    login: Option<&dyn ObserveLogin>,
) -> DriftReport {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("http client");
    let mut observations = Vec::new();
    let mut problems = Vec::new();
    let mut failed_logins = Vec::new();
    for (name, url) in nodes {
        let observation = match url {
            None => Err(format!("{name} is down")),
            Some(url) => observe_node(&http, url, paths, login).await.map_err(|e| format!("{name} {e}")),
        };
        match observation {
            Ok((settings, failed_login)) => {
                if let Some(reason) = failed_login {
                    failed_logins.push(format!("{name}: the login did not complete: {reason}"));
                }
                observations.push(Some(settings));
            }
            Err(problem) => {
                problems.push(problem);
                observations.push(None);
            }
        }
    }
    // A login that fails everywhere is the login's failure (the issuer, the credentials), not
    // drift; one that fails on some nodes only is.
    if failed_logins.len() < observations.iter().flatten().count() {
        problems.extend(failed_logins);
    }
    same_url_said_two_ways(nodes, &mut observations);
    compare(nodes.iter().map(|(n, _)| n.clone()).collect(), observations, problems)
}

/// A setting that names a URL as `(this node)…` on one node and as that same URL in full on
/// the others (the node that is also the public URL) agrees: it is written out in full on every
/// node when that makes every node say the same.
fn same_url_said_two_ways(nodes: &[(String, Option<String>)], observations: &mut [Option<Vec<(String, Observed)>>]) {
    let origins: Vec<Option<String>> = nodes
        .iter()
        .map(|(_, url)| Some(url::Url::parse(url.as_deref()?).ok()?.origin().ascii_serialization()))
        .collect();
    let settings: Vec<String> = observations
        .iter()
        .flatten()
        .flatten()
        .filter(|(_, v)| matches!(v, Observed::Text(t) if t.contains("(this node)")))
        .map(|(s, _)| s.clone())
        .collect();
    for setting in settings {
        let written_out: Vec<Option<String>> = observations
            .iter()
            .zip(&origins)
            .map(|(o, origin)| {
                let text = o.as_ref()?.iter().find(|(s, _)| *s == setting).map(|(_, v)| v.to_string())?;
                Some(match origin {
                    Some(origin) => text.replace("(this node)", origin),
                    None => text,
                })
            })
            .collect();
        let said: Vec<&String> = written_out.iter().flatten().collect();
        if said.len() > 1 && said.windows(2).all(|w| w[0] == w[1]) {
            for (o, value) in observations.iter_mut().zip(&written_out) {
                if let (Some(o), Some(value)) = (o.as_mut(), value)
                    && let Some(entry) = o.iter_mut().find(|(s, _)| *s == setting)
                {
                    entry.1 = Observed::text(value.clone());
                }
            }
        }
    }
}

/// Lines the observations up setting by setting (in the order first seen) and marks the nodes
/// that differ from the majority, or every answering node where there is none.
pub(super) fn compare(
    nodes: Vec<String>,
    observations: Vec<Option<Vec<(String, Observed)>>>,
    mut problems: Vec<String>,
) -> DriftReport {
    if observations.iter().all(Option::is_none) {
        return DriftReport { nodes, rows: Vec::new(), problems, skipped: true, notes: Vec::new() };
    }
    let mut settings: Vec<&str> = Vec::new();
    for (setting, _) in observations.iter().flatten().flatten() {
        if !settings.contains(&setting.as_str()) {
            settings.push(setting);
        }
    }
    let mut without_majority = Vec::new();
    let rows: Vec<DriftRow> = settings
        .into_iter()
        .map(|setting| {
            let observed: Vec<Option<Observed>> = observations
                .iter()
                .map(|o| {
                    let found = o.as_ref()?.iter().find(|(s, _)| s == setting).map(|(_, v)| v.clone());
                    Some(found.unwrap_or_else(|| Observed::text("(absent)")))
                })
                .collect();
            let mut values = shown_with_skew(&observed);
            if setting.ends_with(".name") {
                set_cookies::same_name_across_nodes(&mut values);
            }
            let (odd, tied) = odd_or_all(&values);
            if tied {
                without_majority.push(setting.to_owned());
            }
            DriftRow { setting: setting.to_owned(), secret: false, values, odd }
        })
        .collect();
    problems.sort();
    if !without_majority.is_empty() {
        problems.push(format!(
            "no majority value for {}: every node is named, as none can be told the odd one",
            without_majority.join(", ")
        ));
    }
    DriftReport { nodes, rows, problems, skipped: false, notes: Vec::new() }
}

/// Each value as shown; a lifetime within [`LIFETIME_SKEW_SECS`] of an earlier node's is shown
/// as that node's, so that only a real difference makes two values differ.
fn shown_with_skew(observed: &[Option<Observed>]) -> Vec<Option<String>> {
    let mut seen: Vec<i64> = Vec::new();
    observed
        .iter()
        .map(|value| {
            Some(match value.as_ref()? {
                Observed::Seconds(secs) => {
                    let like = seen.iter().find(|s| (*s - secs).abs() <= LIFETIME_SKEW_SECS).copied();
                    let secs = like.unwrap_or_else(|| {
                        seen.push(*secs);
                        *secs
                    });
                    lifetime_shown(secs)
                }
                text => text.to_string(),
            })
        })
        .collect()
}

/// The indexes whose value is not the majority's, and whether there was no majority (then every
/// answering index); nodes without an answer are not counted.
fn odd_or_all(values: &[Option<String>]) -> (Vec<usize>, bool) {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for value in values.iter().flatten() {
        match counts.iter_mut().find(|(v, _)| v == value) {
            Some(entry) => entry.1 += 1,
            None => counts.push((value, 1)),
        }
    }
    let Some(top) = counts.iter().map(|(_, n)| *n).max() else { return (Vec::new(), false) };
    let leaders: Vec<&str> = counts.iter().filter(|(_, n)| *n == top).map(|(v, _)| *v).collect();
    let answering = values.iter().enumerate().filter_map(|(i, v)| v.as_deref().map(|v| (i, v)));
    match leaders.as_slice() {
        [majority] => (answering.filter(|(_, v)| v != majority).map(|(i, _)| i).collect(), false),
        _ => (answering.map(|(i, _)| i).collect(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node that is also the public URL names its callback as itself; the others name that
    /// same URL: one callback, no drift.
    #[test]
    fn one_url_said_as_this_node_and_in_full_is_one_url() {
        let nodes = vec![
            ("node-1".to_owned(), Some("http://127.0.0.1:1000".to_owned())),
            ("node-2".to_owned(), Some("http://127.0.0.1:2000".to_owned())),
        ];
        let setting = |v: &str| Some(vec![("authorize.redirect_uri".to_owned(), Observed::text(v))]);
        let mut observations = vec![setting("(this node)/cb"), setting("http://127.0.0.1:1000/cb")];
        same_url_said_two_ways(&nodes, &mut observations);
        assert_eq!(observations[0], setting("http://127.0.0.1:1000/cb"));
        let mut own = vec![setting("(this node)/cb"), setting("(this node)/cb")];
        same_url_said_two_ways(&nodes, &mut own);
        assert_eq!(own[0], setting("(this node)/cb"), "each its own callback: said as itself");
    }

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    /// A node as bff shows itself, with `changes` applied over it.
    fn node(changes: &[(&str, Observed)]) -> Option<Vec<(String, Observed)>> {
        let mut out: Vec<(String, Observed)> = [
            ("anonymous.me.status", Observed::text("404")),
            ("authorize.client_id", Observed::text("bff-client")),
            ("authorize.scope", Observed::text("email offline_access openid profile")),
            ("cookie[session].name", Observed::text("__Host-bff-session")),
            ("cookie[session].samesite", Observed::text("Lax")),
            ("cookie[login].lifetime", Observed::Seconds(600)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (key, value) in changes {
            match out.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = value.clone(),
                None => out.push(((*key).to_owned(), value.clone())),
            }
        }
        Some(out)
    }

    #[test]
    fn alike_nodes_including_the_host_prefix_agree() {
        let report = compare(names(3), vec![node(&[]), node(&[]), node(&[])], Vec::new());
        assert!(!report.found_drift(), "{:?}", report.drifted());
        let name = report.rows.iter().find(|r| r.setting == "cookie[session].name").unwrap();
        assert_eq!(name.shown(0), ("__Host-bff-session".to_owned(), false));
    }

    #[test]
    fn the_odd_node_and_attribute_are_named() {
        let report = compare(
            names(3),
            vec![
                node(&[]),
                node(&[("cookie[session].samesite", Observed::text("Strict"))]),
                node(&[("authorize.client_id", Observed::text("other-client"))]),
            ],
            Vec::new(),
        );
        assert_eq!(report.drifted(), ["authorize.client_id (node-3)", "cookie[session].samesite (node-2)"]);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn lifetimes_a_second_apart_agree_and_a_shorter_one_is_named() {
        let skewed = compare(
            names(3),
            vec![
                node(&[("cookie[login].lifetime", Observed::Seconds(599))]),
                node(&[]),
                node(&[("cookie[login].lifetime", Observed::Seconds(601))]),
            ],
            Vec::new(),
        );
        assert!(!skewed.found_drift(), "{:?}", skewed.drifted());
        let row = skewed.rows.iter().find(|r| r.setting == "cookie[login].lifetime").unwrap();
        assert_eq!(row.shown(1).0, "10m");
        let shorter = compare(
            names(3),
            vec![node(&[]), node(&[("cookie[login].lifetime", Observed::Seconds(300))]), node(&[])],
            vec![],
        );
        assert_eq!(shorter.drifted(), ["cookie[login].lifetime (node-2)"]);
    }

    #[test]
    fn two_nodes_that_differ_are_both_named() {
        let report =
            compare(names(2), vec![node(&[]), node(&[("cookie[session].name", Observed::text("other"))])], Vec::new());
        assert_eq!(report.drifted(), ["cookie[session].name (node-1, node-2)"]);
        assert!(report.problems.iter().any(|p| p.contains("no majority") && p.contains("cookie[session].name")));
    }

    #[test]
    fn a_setting_one_node_lacks_is_drift_and_a_node_down_is_a_problem() {
        let report = compare(
            names(4),
            vec![node(&[]), node(&[]), node(&[("authorize.prompt", Observed::text("login"))]), None],
            vec!["node-4 is down".into()],
        );
        assert_eq!(report.drifted(), ["authorize.prompt (node-3)"]);
        assert!(report.found_drift());
        let row = report.rows.iter().find(|r| r.setting == "authorize.prompt").unwrap();
        assert_eq!(row.values, [Some("(absent)".into()), Some("(absent)".into()), Some("login".into()), None]);
        assert!(compare(names(2), vec![None, None], vec!["down".into()]).skipped);
    }

    #[test]
    fn lifetimes_are_shown_in_whole_minutes_when_near_one() {
        assert_eq!(lifetime_shown(1799), "30m");
        assert_eq!(lifetime_shown(1801), "30m");
        assert_eq!(lifetime_shown(45), "45s");
        assert_eq!(lifetime_shown(1830), "30m 30s");
    }
}
