//! One round of the watch: the small verification `bffctl watch` repeats. Every login is a new
//! browser (its own cookie jar and connections, a trace of its own), so a PASS never comes from a
//! cookie, a cache or a pooled connection of an earlier round. Nothing is started, stopped or
//! restarted.
//!
//! - **login** through the load balancer (the target), then **me** through it and on every node
//!   directly: the user's session is known everywhere;
//! - **cross-read** (created on × read on): a login pinned to each node in turn (its callback on
//!   that node, see [`VirtualUser::login_pinned`]), then `me` with that session on every node: a
//!   node whose sessions the others cannot read, or that cannot read theirs, or that cannot log
//!   anyone in (another client secret), is named whatever a load balancer picks;
//! - **drift**: the nodes' must-agree settings (`/ops/fingerprint` with the ops token) and what
//!   any client observes of each node, as `verify-scaling --target` compares them.

use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::client::{ClientError, Reply, RequestTrace, VirtualUser};
use crate::drift::DriftReport;
use crate::scenario::{Action, Deployment, Target, judge};

/// The checks of a round, as the `check` label of the metrics names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Login,
    Me,
    CrossRead,
    Drift,
}

impl Check {
    pub const ALL: [Check; 4] = [Check::Login, Check::Me, Check::CrossRead, Check::Drift];

    pub fn name(self) -> &'static str {
        match self {
            Check::Login => "login",
            Check::Me => "me",
            Check::CrossRead => "cross_read",
            Check::Drift => "drift",
        }
    }
}

/// The node label of a failure that no node can be blamed for (the load balancer's answer
/// without a node header, a transport error to the target).
pub const TARGET_NODE: &str = "target";

/// One thing that went wrong in a round.
#[derive(Debug, Clone, Serialize)]
pub struct WatchFailure {
    pub check: Check,
    /// The node that answered (or was asked, or drifts); [`TARGET_NODE`] when none is known.
    pub node: String,
    /// For a read: the node that created the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub detail: String,
    /// The failed request's `traceparent` and the request id its answer carried.
    #[serde(flatten)]
    pub request: RequestTrace,
}

/// What one round found.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Seconds since the Unix epoch when the round began.
    pub started_at: f64,
    pub duration_s: f64,
    /// Seconds each check took.
    pub checks: Vec<(Check, f64)>,
    pub failures: Vec<WatchFailure>,
    /// The nodes' settings compared, when there are nodes to compare.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReport>,
    /// The node names of the deployment, in order.
    pub nodes: Vec<String>,
}

impl Round {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs one round against `target`; `ops_token` opens the nodes' `/ops/fingerprint`.
pub async fn round(target: &Deployment, ops_token: Option<&str>) -> Round {
    let started_at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let began = Instant::now();
    let mut failures = Vec::new();
    let mut checks = Vec::new();

    let at = Instant::now();
    through_the_load_balancer(target, &mut failures).await;
    checks.push((Check::Login, at.elapsed().as_secs_f64()));

    let at = Instant::now();
    for (name, url) in &target.nodes {
        created_on(target, name, url, &mut failures).await;
    }
    checks.push((Check::CrossRead, at.elapsed().as_secs_f64()));

    let at = Instant::now();
    let drift = match target.nodes.is_empty() {
        true => None,
        false => Some(drift(target, ops_token).await),
    };
    if let Some(report) = &drift {
        failures.extend(drift_failures(report));
    }
    checks.push((Check::Drift, at.elapsed().as_secs_f64()));

    Round {
        started_at,
        duration_s: began.elapsed().as_secs_f64(),
        checks,
        failures,
        drift,
        nodes: target.nodes.iter().map(|(n, _)| n.clone()).collect(),
    }
}

/// What went wrong with `result`, judged as a scenario's step `action` is, if anything.
fn failed(
    check: Check,
    action: Action,
    user: &VirtualUser,
    result: &Result<Reply, ClientError>,
    asked: Option<&str>,
) -> Option<WatchFailure> {
    let who = user.identity().unwrap_or_default();
    let (status, answered, detail) = judge(action, result, who, user.paths()).err()?;
    let node = asked.map(str::to_owned).or(answered).unwrap_or_else(|| TARGET_NODE.to_owned());
    Some(WatchFailure { check, node, created_on: None, status, detail, request: user.last_request() })
}

/// A login through the target, `me` through it and on every node.
async fn through_the_load_balancer(target: &Deployment, failures: &mut Vec<WatchFailure>) {
    let user = target.user("bffctl-watch");
    let login = user.login(&target.public_url).await;
    if let Some(failure) = failed(Check::Login, Action::Login, &user, &login, None) {
        failures.push(failure);
        return;
    }
    let created_on = login.ok().and_then(|reply| reply.node);
    let me = user.me(&target.public_url).await;
    failures.extend(failed(Check::Me, Action::Me, &user, &me, None));
    for (name, url) in &target.nodes {
        let me = user.me(url).await;
        if let Some(mut failure) = failed(Check::Me, Action::Me, &user, &me, Some(name)) {
            failure.created_on = created_on.clone();
            failures.push(failure);
        }
    }
}

/// A login pinned to node `name`, then `me` with its session on every node.
async fn created_on(target: &Deployment, name: &str, url: &str, failures: &mut Vec<WatchFailure>) {
    let user = target.user("bffctl-watch");
    let login = user.login_pinned(url).await;
    if let Some(failure) = failed(Check::Login, Action::Login, &user, &login, Some(name)) {
        failures.push(failure);
        return;
    }
    for (reader, reader_url) in &target.nodes {
        let me = user.me(reader_url).await;
        if let Some(mut failure) = failed(Check::CrossRead, Action::Me, &user, &me, Some(reader)) {
            failure.created_on = Some(name.to_owned());
            failures.push(failure);
        }
    }
}

/// The drift check of `verify-scaling --target`: the fingerprints (with a token) merged with
/// what is observed of each node (a pinned login where the issuer logs users in by itself).
async fn drift(target: &Deployment, ops_token: Option<&str>) -> DriftReport {
    let nodes: Vec<(String, Option<String>)> = target.nodes.iter().map(|(n, u)| (n.clone(), Some(u.clone()))).collect();
    let paths = crate::drift::ObservedPaths::from(&target.paths);
    let login = crate::drift::PinnedLogin::new(&paths, &[]);
    let pinned: Option<&dyn crate::drift::ObserveLogin> =
        if target.form_users.is_empty() { Some(&login) } else { None };
    let observed = crate::drift::observe(&nodes, &paths, pinned).await;
    let mut report = match ops_token {
        Some(token) => crate::drift::check(&nodes, token).await.merged(observed),
        None => observed,
    };
    // Two builds during a rolling upgrade are no failure; the requests decide.
    report.version_as_info();
    report
}

/// One failure per odd node and setting, and one per node that gave no answer.
fn drift_failures(report: &DriftReport) -> Vec<WatchFailure> {
    let mut failures = Vec::new();
    if report.skipped {
        return failures;
    }
    for row in &report.rows {
        for &odd in &row.odd {
            let (shown, _) = row.shown(odd);
            failures.push(WatchFailure {
                check: Check::Drift,
                node: report.nodes.get(odd).cloned().unwrap_or_else(|| TARGET_NODE.to_owned()),
                created_on: None,
                status: None,
                detail: format!("{} differs from the other nodes' ({shown})", row.setting),
                request: RequestTrace::default(),
            });
        }
    }
    for problem in &report.problems {
        // Problems begin with the node's name ("node-2 refused the ops token: …").
        let node = report
            .nodes
            .iter()
            .find(|n| problem.starts_with(&format!("{n} ")) || problem.starts_with(&format!("{n}:")))
            .cloned()
            .unwrap_or_else(|| TARGET_NODE.to_owned());
        failures.push(WatchFailure {
            check: Check::Drift,
            node,
            created_on: None,
            status: None,
            detail: problem.clone(),
            request: RequestTrace::default(),
        });
    }
    failures
}
