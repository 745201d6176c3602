//! The checker: invariants that must hold over a run's whole history (every request, with its
//! time, user, node and answer), checked after the run, the way Jepsen checks a history rather
//! than single answers. A step's expectation says what one answer must be; an invariant says
//! what no sequence of answers may ever show, faults or not.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::Action;
use super::record::{Outcome, Record};

/// One invariant and what the history said about it.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    pub name: &'static str,
    /// `None`: not checkable on this run (and why, in `detail`).
    pub passed: Option<bool>,
    /// How many requests (or tokens) it looked at.
    pub checked: u64,
    pub violations: u64,
    /// The first violations, or why it was not checked.
    pub detail: Vec<String>,
}

/// How many violations an invariant quotes.
const QUOTED: usize = 3;

impl Invariant {
    fn new(name: &'static str) -> Self {
        Invariant { name, passed: Some(true), checked: 0, violations: 0, detail: Vec::new() }
    }

    fn violated(&mut self, what: String) {
        self.violations += 1;
        self.passed = Some(false);
        if self.detail.len() < QUOTED {
            self.detail.push(what);
        }
    }
}

/// Checks every invariant over `records`; `refresh_reuse` is the mock issuer's count of refresh
/// tokens presented more than once (`None` when it cannot tell).
pub fn check_history(records: &[Record], refresh_reuse: Option<u64>) -> Vec<Invariant> {
    let mut by_user: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in records {
        by_user.entry(record.user.as_str()).or_default().push(record);
    }
    for history in by_user.values_mut() {
        history.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    }
    let mut after_logout = Invariant::new("no session is served after its logout was acknowledged");
    let mut identity = Invariant::new("no user sees another user's identity");
    let mut live_unknown = Invariant::new("a live session is never answered as unknown");
    for (user, history) in &by_user {
        served_after_logout(user, history, &mut after_logout);
        lost_sessions(user, history, &mut live_unknown);
        for r in history.iter().filter(|r| r.action == Action::Me && r.status == Some(200)) {
            identity.checked += 1;
            if let Some(seen) = r.identity.as_deref().filter(|seen| seen != user) {
                identity.violated(format!("{user} saw {seen} ({} at {:.0} ms, {})", r.step, r.at_ms, node(r)));
            }
        }
    }
    let mut refresh = Invariant::new("no refresh token is used twice");
    match refresh_reuse {
        Some(reused) => {
            refresh.checked = 1;
            if reused > 0 {
                refresh.violations = reused;
                refresh.passed = Some(false);
                refresh.detail.push(format!("the issuer saw {reused} refresh token(s) presented more than once"));
            }
        }
        None => {
            refresh.passed = None;
            refresh.detail.push("not checked: the issuer does not rotate refresh tokens, or runs elsewhere".into());
        }
    }
    let mut invariants = vec![after_logout, identity, refresh, live_unknown];
    for invariant in invariants.iter_mut().filter(|i| i.checked == 0 && i.passed == Some(true)) {
        invariant.passed = None;
        invariant.detail.push(format!("not checked: {}", unchecked_because(invariant.name)));
    }
    invariants
}

/// Why an invariant had nothing to look at.
fn unchecked_because(name: &str) -> &'static str {
    match name {
        "no session is served after its logout was acknowledged" => "no read followed an acknowledged logout",
        "no user sees another user's identity" => "no `me` answered 200",
        _ => "no read of a live session",
    }
}

fn node(r: &Record) -> &str {
    r.node.as_deref().unwrap_or("lb")
}

fn end(r: &Record) -> f64 {
    r.at_ms + r.latency_ms
}

/// A read sent after a logout of the same user had answered (302), and before that user logged
/// in again, must not be served.
fn served_after_logout(user: &str, history: &[&Record], inv: &mut Invariant) {
    let mut ended_at: Option<f64> = None;
    for r in history {
        match r.action {
            Action::Logout if r.outcome == Outcome::Ok => {
                ended_at = Some(ended_at.map_or(end(r), |t: f64| t.min(end(r))));
            }
            Action::Login if r.status == Some(302) => ended_at = None,
            Action::Me | Action::Get => {
                let Some(ended) = ended_at.filter(|t| r.at_ms > *t) else { continue };
                inv.checked += 1;
                if r.status == Some(200) {
                    inv.violated(format!(
                        "{user}: {} answered 200 at {:.0} ms on {}, {:.0} ms after the logout answered",
                        r.step,
                        r.at_ms,
                        node(r),
                        r.at_ms - ended
                    ));
                }
            }
            _ => {}
        }
    }
}

/// A read of a live session must never be told "no session" (404 from `me`, 401 from an API),
/// whatever fault is going on. Live: a login of the user answered 302 before the read was sent,
/// and no logout of the user overlaps the time from that login's start to the read's answer
/// (even a logout that answered 503 may have ended the session, and one that answers late
/// clears the cookie of a login that overlapped it).
fn lost_sessions(user: &str, history: &[&Record], inv: &mut Invariant) {
    let logouts: Vec<(f64, f64)> =
        history.iter().filter(|r| r.action == Action::Logout).map(|r| (r.at_ms, end(r))).collect();
    let mut login: Option<&Record> = None;
    for r in history {
        match r.action {
            Action::Login if r.status == Some(302) => {
                login = Some(r);
            }
            Action::Me | Action::Get => {
                let Some(l) = login.filter(|l| end(l) < r.at_ms) else { continue };
                if logouts.iter().any(|(from, to)| *from < end(r) && *to > l.at_ms) {
                    continue;
                }
                inv.checked += 1;
                let no_session = match r.action {
                    Action::Me => r.status == Some(404),
                    _ => r.status == Some(401),
                };
                if no_session {
                    inv.violated(format!(
                        "{user}: {} answered {} at {:.0} ms on {} for a live session",
                        r.step,
                        r.status.unwrap_or_default(),
                        r.at_ms,
                        node(r)
                    ));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(user: &str, action: Action, status: u16, at_ms: f64) -> Record {
        Record {
            step: action.name().into(),
            action,
            user: user.into(),
            identity: (action == Action::Me && status == 200).then(|| user.to_owned()),
            node: Some("node-1".into()),
            created_on: None,
            outcome: if matches!(status, 200 | 302) { Outcome::Ok } else { Outcome::Failed },
            status: Some(status),
            at_ms,
            latency_ms: 1.0,
            detail: String::new(),
            harness: false,
            traceparent: None,
            request_id: None,
        }
    }

    fn passed(invariants: &[Invariant], name: &str) -> Option<bool> {
        invariants.iter().find(|i| i.name == name).unwrap().passed
    }

    #[test]
    fn a_clean_history_passes_every_checkable_invariant() {
        let history = vec![
            rec("a", Action::Login, 302, 0.0),
            rec("a", Action::Me, 200, 10.0),
            rec("a", Action::Me, 503, 20.0),
            rec("a", Action::Logout, 302, 30.0),
            rec("a", Action::Me, 404, 40.0),
            rec("a", Action::Login, 302, 50.0),
            rec("a", Action::Me, 200, 60.0),
        ];
        let inv = check_history(&history, Some(0));
        assert!(inv.iter().all(|i| i.passed == Some(true)), "{inv:#?}");
        let nothing = check_history(&history[..2], Some(0));
        assert_eq!(passed(&nothing, "no session is served after its logout was acknowledged"), None);
        assert!(nothing[0].detail[0].starts_with("not checked"), "{nothing:#?}");
        assert_eq!(passed(&check_history(&history, None), "no refresh token is used twice"), None);
    }

    #[test]
    fn each_violation_is_caught() {
        let served = vec![
            rec("a", Action::Login, 302, 0.0),
            rec("a", Action::Logout, 302, 10.0),
            rec("a", Action::Me, 200, 20.0),
        ];
        assert_eq!(
            passed(&check_history(&served, None), "no session is served after its logout was acknowledged"),
            Some(false)
        );

        let mut other = rec("a", Action::Me, 200, 10.0);
        other.identity = Some("b".into());
        let history = vec![rec("a", Action::Login, 302, 0.0), other];
        assert_eq!(passed(&check_history(&history, None), "no user sees another user's identity"), Some(false));

        let lost = vec![rec("a", Action::Login, 302, 0.0), rec("a", Action::Me, 404, 10.0)];
        assert_eq!(passed(&check_history(&lost, None), "a live session is never answered as unknown"), Some(false));

        assert_eq!(passed(&check_history(&[], Some(2)), "no refresh token is used twice"), Some(false));
    }

    #[test]
    fn a_read_answered_after_a_later_logout_began_is_not_a_lost_session() {
        // Sent at 10, held by a paused node until 50; meanwhile a logout at 20 ended the session.
        let mut slow = rec("a", Action::Me, 404, 10.0);
        slow.latency_ms = 40.0;
        let history = vec![rec("a", Action::Login, 302, 0.0), slow, rec("a", Action::Logout, 302, 20.0)];
        // Not a violation, and nothing else to check: "not checked".
        assert_eq!(passed(&check_history(&history, None), "a live session is never answered as unknown"), None);
    }

    #[test]
    fn a_request_that_overlaps_the_logout_is_not_judged() {
        // Sent before the logout answered: it may be served.
        let history = vec![
            rec("a", Action::Login, 302, 0.0),
            rec("a", Action::Logout, 302, 10.0),
            rec("a", Action::Me, 200, 10.5),
        ];
        assert_eq!(
            passed(&check_history(&history, None), "no session is served after its logout was acknowledged"),
            None,
            "not a violation, and nothing else to check"
        );
    }
}
