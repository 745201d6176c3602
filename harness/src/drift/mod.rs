//! The drift check: before any user runs, every node's `/ops/fingerprint` (the settings nodes must
//! share) is fetched and compared. One node of N with another secret, key prefix, idle timeout or
//! version is the scale-out bug that behaviour alone may not show; this names the node and the
//! setting. Plain values are shown, secrets only as "same" or "differs".
//!
//! Each check sends a fresh random nonce, so the secrets' digests of one run match nothing of
//! another. A node's clock is compared with this machine's too: a node whose clock is off by
//! more than [`CLOCK_BOUND_MS`] expires tokens and sessions at other times than its peers.
//!
//! A gateway bffctl did not build has no fingerprint: [`observe`] compares what any client sees
//! of each node instead (the authorization request, the cookies, the anonymous answers), in the
//! same report; [`DriftReport::merged`] puts both checks in one when both ran.

mod authorization_request;
mod observation;
mod observed;
mod pinned_login;
mod set_cookies;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use observation::LIFETIME_SKEW_SECS;
pub use observed::{LoginAnswer, ObserveLogin, ObserveLoginError, ObservedPaths, observe};
pub use pinned_login::PinnedLogin;

/// The largest clock offset between a node and this machine that is not drift.
pub const CLOCK_BOUND_MS: i64 = 2_000;

/// One setting across the nodes.
#[derive(Debug, Clone, Serialize)]
pub struct DriftRow {
    pub setting: String,
    pub secret: bool,
    /// The value on each node (`None` where the node gave no answer).
    pub values: Vec<Option<String>>,
    /// The nodes (0-based) whose value differs from the majority's.
    pub odd: Vec<usize>,
}

impl DriftRow {
    /// Node `index`'s value as a report shows it (a secret only as `same` or `differs`, `-` for
    /// no answer), and whether that node is odd.
    pub fn shown(&self, index: usize) -> (String, bool) {
        let odd = self.odd.contains(&index);
        let shown = match (self.values.get(index).and_then(Option::as_ref), self.secret) {
            (None, _) => "-".to_owned(),
            (Some(_), true) if odd => "differs".to_owned(),
            (Some(_), true) => "same".to_owned(),
            (Some(v), false) => v.clone(),
        };
        (shown, odd)
    }
}

/// What the check found.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub nodes: Vec<String>,
    pub rows: Vec<DriftRow>,
    /// Nodes that gave no fingerprint, and why (a wrong ops token, no such endpoint).
    pub problems: Vec<String>,
    /// True when no node serves a fingerprint: nothing was compared.
    pub skipped: bool,
    /// What differs and is no failure by itself (nodes on two versions during a roll).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl DriftReport {
    /// The settings that differ, each with its odd nodes: `session.cookie_name (node-2)`.
    pub fn drifted(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| !r.odd.is_empty())
            .map(|r| {
                let nodes: Vec<&str> = r.odd.iter().map(|i| self.nodes[*i].as_str()).collect();
                format!("{} ({})", r.setting, nodes.join(", "))
            })
            .collect()
    }

    /// Takes `setting` out of the verdict: its values differ by design (each node reaches Redis
    /// through a relay of its own); the table still shows them.
    pub fn accept_differing(&mut self, setting: &str) {
        for row in self.rows.iter_mut().filter(|r| r.setting == setting) {
            row.odd.clear();
        }
    }

    /// Reports nodes that differ only in `version` as a note instead of drift: during a rolling
    /// upgrade two builds share the cluster by design, and whether each reads what the other
    /// writes is decided by the users' requests, not by the version strings. The table still
    /// shows the versions; `--strict-version` (not calling this) keeps the difference a failure.
    pub fn version_as_info(&mut self) {
        let nodes = &self.nodes;
        for row in self.rows.iter_mut().filter(|r| r.setting == "version" && !r.odd.is_empty()) {
            let versions: Vec<String> = row
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some(format!("{} {}", nodes.get(i)?, v.as_deref()?)))
                .collect();
            self.notes.push(format!(
                "nodes run different versions ({}): reported, not a failure (a rolling upgrade; the requests decide; --strict-version fails it)",
                versions.join(", ")
            ));
            row.odd.clear();
        }
    }

    /// True when any setting differs or a node gave no fingerprint while others did.
    pub fn found_drift(&self) -> bool {
        !self.skipped && (self.rows.iter().any(|r| !r.odd.is_empty()) || !self.problems.is_empty())
    }

    /// This report and `other`'s in one (the fingerprint's and the observed one): rows of both,
    /// lined up by node name, problems of both once each. A skipped report adds nothing: a
    /// gateway without `/ops/fingerprint` is judged by what is observed alone.
    pub fn merged(self, other: DriftReport) -> DriftReport {
        if self.skipped {
            return other;
        }
        if other.skipped {
            return self;
        }
        let mut nodes = self.nodes.clone();
        for name in &other.nodes {
            if !nodes.contains(name) {
                nodes.push(name.clone());
            }
        }
        let line_up = |report: DriftReport| -> Vec<DriftRow> {
            let place: Vec<usize> =
                report.nodes.iter().map(|n| nodes.iter().position(|m| m == n).expect("every node is listed")).collect();
            report
                .rows
                .into_iter()
                .map(|row| {
                    let mut values = vec![None; nodes.len()];
                    for (i, value) in row.values.into_iter().enumerate() {
                        values[place[i]] = value;
                    }
                    let odd = row.odd.iter().map(|i| place[*i]).collect();
                    DriftRow { setting: row.setting, secret: row.secret, values, odd }
                })
                .collect()
        };
        let mut problems = self.problems.clone();
        for problem in &other.problems {
            if !problems.contains(problem) {
                problems.push(problem.clone());
            }
        }
        let mut rows = line_up(self);
        rows.extend(line_up(other));
        DriftReport { nodes, rows, problems, skipped: false, notes: Vec::new() }
    }

    /// One line for a verdict.
    pub fn summary(&self) -> String {
        let mut parts = self.drifted();
        parts.extend(self.problems.iter().cloned());
        format!("settings differ between nodes: {}", parts.join("; "))
    }
}

#[derive(Deserialize)]
struct Answer {
    time_ms: i64,
    settings: Vec<AnsweredSetting>,
}

#[derive(Deserialize)]
struct AnsweredSetting {
    name: String,
    value: String,
    secret: bool,
}

/// Fetches every node's fingerprint (`(name, base URL)`, `None` for a node that is down) with
/// `token`, and compares them.
pub async fn check(nodes: &[(String, Option<String>)], token: &str) -> DriftReport {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build().expect("http client");
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let mut answers = Vec::new();
    let mut problems = Vec::new();
    for (name, url) in nodes {
        let answer = match url {
            None => Err(format!("{name} is down")),
            Some(url) => fetch(&http, url, token, &nonce).await.map_err(|e| format!("{name} {e}")),
        };
        if let Err(problem) = &answer {
            problems.push(problem.clone());
        }
        answers.push(answer.ok());
    }
    compare(nodes.iter().map(|(n, _)| n.clone()).collect(), answers, problems)
}

/// A node's answer with its clock offset (node time minus this machine's, at mid-request).
async fn fetch(http: &reqwest::Client, url: &str, token: &str, nonce: &str) -> Result<(Answer, i64), String> {
    let sent = now_ms();
    let response = http
        .get(format!("{}/ops/fingerprint?nonce={nonce}", url.trim_end_matches('/')))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("gave no fingerprint: {e}"))?;
    let received = now_ms();
    match response.status().as_u16() {
        200 => {}
        401 => return Err("refused the ops token: its ops_token differs".into()),
        404 => return Err("has no /ops/fingerprint: another version, or no ops_token".into()),
        other => return Err(format!("answered {other} for its fingerprint")),
    }
    let answer: Answer = response.json().await.map_err(|e| format!("sent an unreadable fingerprint: {e}"))?;
    let offset = answer.time_ms - (sent + received) / 2;
    Ok((answer, offset))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Lines the answers up setting by setting and marks the nodes that differ from the majority
/// (a tie goes to the value of the lowest-numbered node).
fn compare(nodes: Vec<String>, answers: Vec<Option<(Answer, i64)>>, mut problems: Vec<String>) -> DriftReport {
    if answers.iter().all(Option::is_none) {
        return DriftReport { nodes, rows: Vec::new(), problems, skipped: true, notes: Vec::new() };
    }
    let mut names: Vec<(String, bool)> = Vec::new();
    for (answer, _) in answers.iter().flatten() {
        for s in &answer.settings {
            if !names.iter().any(|(n, _)| *n == s.name) {
                names.push((s.name.clone(), s.secret));
            }
        }
    }
    let mut rows: Vec<DriftRow> = names
        .into_iter()
        .map(|(setting, secret)| {
            let values: Vec<Option<String>> = answers
                .iter()
                .map(|a| {
                    let (answer, _) = a.as_ref()?;
                    Some(
                        answer
                            .settings
                            .iter()
                            .find(|s| s.name == setting)
                            .map_or("(absent)".into(), |s| s.value.clone()),
                    )
                })
                .collect();
            DriftRow { odd: odd_ones(&values), setting, secret, values }
        })
        .collect();
    let clock: Vec<Option<String>> = answers
        .iter()
        .map(|a| {
            let (_, offset) = a.as_ref()?;
            Some(if offset.abs() <= CLOCK_BOUND_MS { "in step".into() } else { format!("off by {offset:+} ms") })
        })
        .collect();
    let odd_clock: Vec<usize> = clock
        .iter()
        .enumerate()
        .filter(|(_, v)| v.as_deref().is_some_and(|v| v != "in step"))
        .map(|(i, _)| i)
        .collect();
    rows.push(DriftRow { setting: "clock".into(), secret: false, values: clock, odd: odd_clock });
    problems.sort();
    DriftReport { nodes, rows, problems, skipped: false, notes: Vec::new() }
}

/// The indexes whose value is not the most common one (ties: the first node's value wins);
/// nodes without an answer are not counted.
fn odd_ones(values: &[Option<String>]) -> Vec<usize> {
    let mut counts: Vec<(&str, usize, usize)> = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let Some(value) = value.as_deref() else { continue };
        match counts.iter_mut().find(|(v, _, _)| *v == value) {
            Some(entry) => entry.1 += 1,
            None => counts.push((value, 1, i)),
        }
    }
    let Some(&(majority, _, _)) = counts.iter().max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2))) else {
        return Vec::new();
    };
    values.iter().enumerate().filter(|(_, v)| v.as_deref().is_some_and(|v| v != majority)).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(cookie: &str, secret: &str, offset: i64) -> Option<(Answer, i64)> {
        Some((
            Answer {
                time_ms: 0,
                settings: vec![
                    AnsweredSetting { name: "session.cookie_name".into(), value: cookie.into(), secret: false },
                    AnsweredSetting { name: "oidc.client_secret".into(), value: secret.into(), secret: true },
                ],
            },
            offset,
        ))
    }

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn the_odd_node_and_setting_are_named() {
        let report = compare(
            names(3),
            vec![answer("bff", "aa", 0), answer("other", "aa", 10), answer("bff", "bb", -5)],
            Vec::new(),
        );
        assert!(report.found_drift());
        assert_eq!(report.drifted(), ["session.cookie_name (node-2)", "oidc.client_secret (node-3)"]);
    }

    #[test]
    fn alike_nodes_pass_and_a_clock_off_is_drift() {
        let alike = compare(
            names(3),
            vec![answer("bff", "aa", 0), answer("bff", "aa", 900), answer("bff", "aa", -900)],
            vec![],
        );
        assert!(!alike.found_drift(), "{:?}", alike.drifted());
        let skewed =
            compare(names(3), vec![answer("bff", "aa", 0), answer("bff", "aa", 5_000), answer("bff", "aa", 0)], vec![]);
        assert_eq!(skewed.drifted(), ["clock (node-2)"]);
    }

    #[test]
    fn a_node_without_a_fingerprint_is_drift_unless_none_has_one() {
        let one_missing =
            compare(names(2), vec![answer("bff", "aa", 0), None], vec!["node-2 refused the ops token".into()]);
        assert!(one_missing.found_drift());
        let none = compare(names(2), vec![None, None], vec!["a".into(), "b".into()]);
        assert!(none.skipped && !none.found_drift());
    }

    #[test]
    fn merged_reports_line_up_by_node_and_a_skipped_one_adds_nothing() {
        let fingerprint = compare(names(2), vec![answer("bff", "aa", 0), answer("other", "aa", 0)], Vec::new());
        let observed = DriftReport {
            nodes: vec!["node-2".into(), "node-1".into()],
            rows: vec![DriftRow {
                setting: "anonymous.me.status".into(),
                secret: false,
                values: vec![Some("401".into()), Some("404".into())],
                odd: vec![0],
            }],
            problems: vec!["node-2 is down".into()],
            skipped: false,
            notes: Vec::new(),
        };
        let both = fingerprint.clone().merged(observed.clone());
        assert_eq!(both.nodes, names(2));
        assert_eq!(both.drifted(), ["session.cookie_name (node-2)", "anonymous.me.status (node-2)"]);
        let me = both.rows.iter().find(|r| r.setting == "anonymous.me.status").unwrap();
        assert_eq!(me.values, [Some("404".into()), Some("401".into())]);
        let skipped = compare(names(2), vec![None, None], vec!["no fingerprint".into()]);
        assert_eq!(skipped.merged(observed.clone()).problems, ["node-2 is down"]);
        let none =
            DriftReport { nodes: names(2), rows: Vec::new(), problems: Vec::new(), skipped: true, notes: Vec::new() };
        assert_eq!(fingerprint.clone().merged(none).rows.len(), fingerprint.rows.len());
    }

    fn versioned(version: &str) -> Option<(Answer, i64)> {
        let (mut answer, offset) = answer("bff", "aa", 0).unwrap();
        answer.settings.push(AnsweredSetting { name: "version".into(), value: version.into(), secret: false });
        Some((answer, offset))
    }

    #[test]
    fn a_version_difference_alone_is_a_note_unless_strict() {
        let strict = compare(names(3), vec![versioned("0.1.0"), versioned("0.2.0"), versioned("0.2.0")], vec![]);
        assert_eq!(strict.drifted(), ["version (node-1)"], "strict: the old behaviour");
        let mut rolling = strict.clone();
        rolling.version_as_info();
        assert!(!rolling.found_drift(), "{:?}", rolling.drifted());
        assert_eq!(rolling.notes.len(), 1);
        assert!(rolling.notes[0].contains("node-1 0.1.0, node-2 0.2.0, node-3 0.2.0"), "{}", rolling.notes[0]);
        let mut other = compare(
            names(2),
            vec![
                versioned("0.1.0"),
                Some((
                    Answer {
                        time_ms: 0,
                        settings: vec![
                            AnsweredSetting {
                                name: "session.cookie_name".into(),
                                value: "other".into(),
                                secret: false,
                            },
                            AnsweredSetting { name: "oidc.client_secret".into(), value: "aa".into(), secret: true },
                            AnsweredSetting { name: "version".into(), value: "0.2.0".into(), secret: false },
                        ],
                    },
                    0,
                )),
            ],
            vec![],
        );
        other.version_as_info();
        assert_eq!(other.drifted(), ["session.cookie_name (node-2)"], "another setting still fails");
    }

    #[test]
    fn ties_go_to_the_first_node() {
        assert_eq!(odd_ones(&[Some("a".into()), Some("b".into())]), [1]);
        assert_eq!(odd_ones(&[Some("a".into()), None, Some("b".into()), Some("b".into())]), [0]);
    }
}
