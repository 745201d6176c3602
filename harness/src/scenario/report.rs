//! What a run found: raw [`Record`]s folded into a table per step × node, the distinct failures,
//! and the verdict; written as JSON or JUnit for CI.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::history::Invariant;
use super::model::{Outcome as Expected, Scenario};
pub use super::record::{FaultWindow, Outcome, Record};

/// How long users found no service during one cluster step: from the first request sent in
/// its window that was unavailable to the end of the last one.
#[derive(Debug, Clone, Serialize)]
pub struct Outage {
    pub fault: String,
    /// Requests sent in the window that were unavailable.
    pub unavailable: u64,
    /// 0 when none was.
    pub span_ms: f64,
}

impl Outage {
    /// One outage per fault window.
    pub fn of(records: &[Record], faults: &[FaultWindow]) -> Vec<Outage> {
        faults
            .iter()
            .map(|window| {
                let hit: Vec<&Record> = records
                    .iter()
                    .filter(|r| r.outcome == Outcome::Unavailable)
                    .filter(|r| r.at_ms >= window.start_ms && r.at_ms <= window.end_ms)
                    .collect();
                let first = hit.iter().map(|r| r.at_ms).fold(f64::INFINITY, f64::min);
                let last = hit.iter().map(|r| r.at_ms + r.latency_ms).fold(f64::NEG_INFINITY, f64::max);
                Outage {
                    fault: window.label.clone(),
                    unavailable: hit.len() as u64,
                    span_ms: if hit.is_empty() { 0.0 } else { last - first },
                }
            })
            .collect()
    }
}

/// One line of the step × node table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub step: String,
    pub node: String,
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub unavailable: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// One step's latencies over every node: what a user of the gateway waits at that step.
#[derive(Debug, Clone, Serialize)]
pub struct StepLatency {
    pub step: String,
    /// Answered requests (ok or failed; unavailable ones have no latency worth counting).
    pub requests: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// Failures that look alike, counted once.
#[derive(Debug, Clone, Serialize)]
pub struct FailureGroup {
    pub step: String,
    pub node: String,
    pub status: Option<u16>,
    pub detail: String,
    pub count: u64,
    /// The first of these failures' request id (`x-request-id`), to find it in the node's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The first of these failures' `traceparent`, to find its trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A node's log file, quoted in a report because that node failed.
#[derive(Debug, Clone, Serialize)]
pub struct NodeLog {
    pub node: String,
    /// Why it failed when it never became ready (its last `/ready` answer, or how it exited).
    pub reason: Option<String>,
    pub path: Option<std::path::PathBuf>,
    pub last_lines: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub description: String,
    pub backend: String,
    pub nodes: usize,
    pub users: usize,
    pub iterations: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub failed: u64,
    pub unavailable: u64,
    pub rows: Vec<Row>,
    /// Each step over all nodes, in the scenario's order.
    pub steps: Vec<StepLatency>,
    pub failures: Vec<FailureGroup>,
    pub cluster_events: Vec<String>,
    /// Steps the target could not carry out, and why: a PASS holds only for what did run.
    pub skipped: Vec<String>,
    /// Every request (for timelines), in the order they completed; not in JSON reports.
    #[serde(skip)]
    pub records: Vec<Record>,
    /// When each cluster step ran.
    pub faults: Vec<FaultWindow>,
    /// How long each cluster step left users without service.
    pub outages: Vec<Outage>,
    /// The seed of the run: `--seed` with it routes the same way again.
    pub seed: u64,
    /// The drift check's comparison of the nodes' must-agree settings, when it ran.
    pub drift: Option<crate::drift::DriftReport>,
    /// Which node created each session against which nodes could read it, and a diagnosis.
    pub matrix: Option<super::matrix::Matrix>,
    /// The node that never became ready, and the step it was in; the run stopped there.
    pub never_ready: Option<String>,
    /// The log of every node that failed: its file and last lines.
    pub node_logs: Vec<NodeLog>,
    /// refresh_token grants the mock issuer saw (when this process ran it).
    pub token_refreshes: Option<u64>,
    /// The invariants checked over the whole history, each passed or not.
    pub invariants: Vec<Invariant>,
    /// True when the scenario's expectation is met (for a negative control: failures found).
    pub passed: bool,
    /// The harness's own parts failed too often for a verdict on the deployment: neither PASS
    /// nor FAIL (exit 2), and why.
    pub inconclusive: Option<String>,
    /// How bffctl's own mock issuer fared over the run, when it ran one.
    pub issuer_load: Option<String>,
    pub verdict: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl RunReport {
    /// The report of `records`; `nodes` are the node names the matrix is laid out by.
    pub fn build(
        scenario: &Scenario,
        backend: String,
        records: &[Record],
        nodes: &[String],
        events: Vec<String>,
        token_refreshes: Option<u64>,
        duration: Duration,
    ) -> Self {
        let mut cells: BTreeMap<(String, String), Vec<&Record>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for r in records {
            if !order.contains(&r.step) {
                order.push(r.step.clone());
            }
            cells.entry((r.step.clone(), r.node.clone().unwrap_or_else(|| "-".into()))).or_default().push(r);
        }
        let mut rows: Vec<Row> = cells
            .iter()
            .map(|((step, node), rs)| {
                let mut latencies: Vec<f64> =
                    rs.iter().filter(|r| r.outcome != Outcome::Unavailable).map(|r| r.latency_ms).collect();
                latencies.sort_by(f64::total_cmp);
                Row {
                    step: step.clone(),
                    node: node.clone(),
                    requests: rs.len() as u64,
                    ok: rs.iter().filter(|r| r.outcome == Outcome::Ok).count() as u64,
                    failed: rs.iter().filter(|r| r.outcome == Outcome::Failed).count() as u64,
                    unavailable: rs.iter().filter(|r| r.outcome == Outcome::Unavailable).count() as u64,
                    p50_ms: percentile(&latencies, 50.0),
                    p95_ms: percentile(&latencies, 95.0),
                    p99_ms: percentile(&latencies, 99.0),
                }
            })
            .collect();
        rows.sort_by_key(|r| (order.iter().position(|s| *s == r.step), r.node.clone()));
        let steps: Vec<StepLatency> = order
            .iter()
            .map(|step| {
                let mut latencies: Vec<f64> = records
                    .iter()
                    .filter(|r| &r.step == step && r.outcome != Outcome::Unavailable)
                    .map(|r| r.latency_ms)
                    .collect();
                latencies.sort_by(f64::total_cmp);
                StepLatency {
                    step: step.clone(),
                    requests: latencies.len() as u64,
                    p50_ms: percentile(&latencies, 50.0),
                    p95_ms: percentile(&latencies, 95.0),
                    p99_ms: percentile(&latencies, 99.0),
                }
            })
            .collect();

        type Group<'r> = (u64, Option<&'r Record>);
        let mut groups: BTreeMap<(String, String, Option<u16>, String), Group> = BTreeMap::new();
        for r in records.iter().filter(|r| r.outcome == Outcome::Failed) {
            let group = groups
                .entry((r.step.clone(), r.node.clone().unwrap_or_else(|| "-".into()), r.status, r.detail.clone()))
                .or_default();
            group.0 += 1;
            group.1.get_or_insert(r);
        }
        let mut failures: Vec<FailureGroup> = groups
            .into_iter()
            .map(|((step, node, status, detail), (count, first))| FailureGroup {
                step,
                node,
                status,
                detail,
                count,
                request_id: first.and_then(|r| r.request_id.clone()),
                traceparent: first.and_then(|r| r.traceparent.clone()),
            })
            .collect();
        failures.sort_by_key(|f| (order.iter().position(|s| *s == f.step), std::cmp::Reverse(f.count)));

        let requests = records.len() as u64;
        let failed = records.iter().filter(|r| r.outcome == Outcome::Failed).count() as u64;
        let unavailable = records.iter().filter(|r| r.outcome == Outcome::Unavailable).count() as u64;
        let mut report = RunReport {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            backend,
            nodes: scenario.cluster.nodes,
            users: scenario.load.users,
            iterations: scenario.load.iterations,
            duration_s: duration.as_secs_f64(),
            requests,
            failed,
            unavailable,
            rows,
            steps,
            failures,
            cluster_events: events,
            records: records.to_vec(),
            faults: Vec::new(),
            outages: Vec::new(),
            skipped: Vec::new(),
            seed: 0,
            drift: None,
            matrix: super::matrix::Matrix::from_records(records, nodes),
            never_ready: None,
            node_logs: Vec::new(),
            token_refreshes,
            invariants: super::history::check_history(records, None),
            passed: false,
            inconclusive: None,
            issuer_load: None,
            verdict: String::new(),
        };
        report.rejudge(scenario);
        report
    }

    /// Records the steps that were skipped; the verdict says so.
    pub fn with_skipped(mut self, skipped: Vec<String>) -> Self {
        if !skipped.is_empty() {
            self.verdict = format!("{} (skipped: {})", self.verdict, skipped.join("; "));
        }
        self.skipped = skipped;
        self
    }

    /// Records how bffctl's mock issuer fared, and judges again (its figures go with a verdict
    /// that the harness could not keep up).
    pub fn with_issuer_load(mut self, scenario: &Scenario, load: Option<String>) -> Self {
        self.issuer_load = load;
        self.rejudge(scenario);
        let skipped = std::mem::take(&mut self.skipped);
        self.with_skipped(skipped)
    }

    /// Records the run's seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Adds the drift check's findings and judges again.
    /// Checks the invariants again, with the issuer's count of refresh tokens presented twice.
    pub fn with_refresh_reuse(mut self, scenario: &Scenario, refresh_reuse: Option<u64>) -> Self {
        self.invariants = super::history::check_history(&self.records, refresh_reuse);
        self.rejudge(scenario);
        let skipped = std::mem::take(&mut self.skipped);
        self.with_skipped(skipped)
    }

    pub fn with_drift(mut self, scenario: &Scenario, drift: Option<crate::drift::DriftReport>) -> Self {
        self.drift = drift;
        self.rejudge(scenario);
        let skipped = std::mem::take(&mut self.skipped);
        self.with_skipped(skipped)
    }

    /// The run stopped because `log.node` never became ready (at start, or in `step`): a FAIL,
    /// for negative controls too (they test a running cluster, not one that never came up).
    pub fn stopped_at(&mut self, step: Option<&str>, log: NodeLog) {
        let when = step.map(|s| format!(" at step {s}")).unwrap_or_else(|| " at start".into());
        let reason = log.reason.clone().unwrap_or_default();
        self.passed = false;
        let drift = self.drift.as_ref().filter(|d| d.found_drift()).map(|d| format!("; {}", d.summary()));
        self.verdict = format!(
            "FAIL {}: {} never became ready{when}: {reason}{}",
            self.scenario,
            log.node,
            drift.unwrap_or_default()
        );
        self.never_ready = Some(format!("{}{when}", log.node));
        self.node_logs.retain(|l| l.node != log.node);
        self.node_logs.insert(0, log);
    }

    /// A negative control that expects a node never to become ready (`expect.never_ready`), and
    /// settings to differ (`expect.drift`): caught when that node is the one that stopped the
    /// run at start and each of those settings differs on it.
    pub fn caught_unready(&mut self, scenario: &Scenario) {
        let expect = &scenario.expect;
        let (Expected::Fail, Some(node), Some(stopped)) = (expect.outcome, &expect.never_ready, &self.never_ready)
        else {
            return;
        };
        let drifted = self.drift.as_ref().filter(|d| d.found_drift()).map(|d| d.drifted()).unwrap_or_default();
        let mut missed: Vec<String> = expect
            .drift
            .iter()
            .filter(|s| !drifted.iter().any(|d| d.starts_with(&format!("{s} (")) && d.contains(node.as_str())))
            .map(|s| format!("drift in {s} on {node}"))
            .collect();
        if !stopped.starts_with(&format!("{node} at start")) {
            missed.insert(0, format!("{node} never ready at start (found: {stopped} never ready)"));
        }
        if missed.is_empty() {
            self.passed = true;
            let drift = if drifted.is_empty() { String::new() } else { format!("; drift in {}", drifted.join(", ")) };
            self.verdict = format!(
                "PASS {} (negative control): the verifier caught it: {node} never became ready at start{drift}",
                self.scenario
            );
        } else {
            self.verdict = format!(
                "FAIL {} (negative control): expected {} (found: drift in {})",
                self.scenario,
                missed.join("; "),
                list_or_none(&drifted)
            );
        }
    }

    /// The nodes that answered a failed request (by name, `node-N`).
    pub fn failed_nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> =
            self.failures.iter().map(|f| f.node.clone()).filter(|n| n.starts_with("node-")).collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    fn rejudge(&mut self, scenario: &Scenario) {
        // A node that never became ready stopped the run: that FAIL stands whatever is added
        // to the report after it (the drift check, the issuer's load).
        if self.never_ready.is_some() {
            return;
        }
        self.inconclusive = self.harness_saturated();
        (self.passed, self.verdict) = match &self.inconclusive {
            Some(reason) => (false, format!("INCONCLUSIVE {}: {reason}", self.scenario)),
            None => self.judge(scenario),
        };
    }

    /// Why no verdict can be given: the harness's own parts (issuer, load balancer) failed for
    /// at least half of the failed requests, or for one request in ten.
    fn harness_saturated(&self) -> Option<String> {
        let own: Vec<&Record> = self.records.iter().filter(|r| r.harness).collect();
        let count = own.len() as u64;
        if count == 0 || (count * 2 < self.failed && count * 10 < self.requests) {
            return None;
        }
        let after = own.iter().filter(|r| r.detail.starts_with(super::record::HARNESS_BROKE_LOGIN)).count();
        let refused = own.len() - after;
        Some(format!(
            "the harness could not keep up: {count} of {} failed requests were its own parts failing: {refused} \
             connections its issuer or load balancer refused or dropped or it had no socket for, and {after} reads \
             of users whose login that broke; nothing is concluded about the deployment: run fewer users, or \
             spread them with --ramp-up{}",
            self.failed,
            self.issuer_load.as_deref().map(|load| format!(" ({load})")).unwrap_or_default()
        ))
    }

    fn judge(&self, scenario: &Scenario) -> (bool, String) {
        let t = &scenario.thresholds;
        let mut broken = Vec::new();
        if self.failed > t.max_failures {
            broken.push(format!("{} failed requests (at most {} allowed)", self.failed, t.max_failures));
        }
        let rate = if self.requests == 0 { 0.0 } else { self.failed as f64 / self.requests as f64 };
        if self.failed > 0 && rate > t.max_failure_rate {
            broken.push(format!(
                "failure rate {:.1} % (at most {:.1} % allowed)",
                rate * 100.0,
                t.max_failure_rate * 100.0
            ));
        }
        if let Some(max) = t.max_unavailable
            && self.unavailable > max
        {
            broken.push(format!("{} unavailable requests (at most {max} allowed)", self.unavailable));
        }
        for (step, bound) in &t.p95_ms {
            for row in self.rows.iter().filter(|r| &r.step == step && r.p95_ms > *bound as f64) {
                broken.push(format!("{step} on {}: p95 {:.1} ms > {bound} ms", row.node, row.p95_ms));
            }
        }
        if let (Some(max), Some(seen)) = (t.max_token_refreshes, self.token_refreshes)
            && seen > max
        {
            broken.push(format!("{seen} token refreshes at the issuer (at most {max} allowed)"));
        }
        if self.requests == 0 {
            broken.push("no request was made".into());
        }
        for invariant in self.invariants.iter().filter(|i| i.passed == Some(false)) {
            broken.push(format!("invariant broken: {} ({} times)", invariant.name, invariant.violations));
        }
        let drift = self.drift.as_ref().filter(|d| d.found_drift());
        if let Some(drift) = drift {
            broken.push(drift.summary());
        }
        let diagnosis = self.matrix.as_ref().and_then(|m| m.diagnosis.clone());
        if let Some(diagnosis) = &diagnosis
            && !broken.is_empty()
        {
            broken.push(format!("diagnosis: {diagnosis}"));
        }
        let first_failing = self.failures.first().map(|f| f.step.clone());
        match scenario.expect.outcome {
            Expected::Pass if broken.is_empty() => (
                true,
                format!(
                    "PASS {}: {} requests, 0 failed, {} unavailable during faults",
                    self.scenario, self.requests, self.unavailable
                ),
            ),
            Expected::Pass => (
                false,
                format!(
                    "FAIL {}: {}{}",
                    self.scenario,
                    broken.join("; "),
                    first_failing.map(|s| format!("; first failing step: {s}")).unwrap_or_default()
                ),
            ),
            Expected::Fail => {
                let expect = &scenario.expect;
                let mut missed = Vec::new();
                if let Some(step) = &expect.failing_step
                    && !self.failures.iter().any(|f| f.step.starts_with(step.as_str()))
                {
                    missed.push(format!("failures at step {step} (found {})", self.failed));
                }
                let drifted = drift.map(|d| d.drifted()).unwrap_or_default();
                for setting in &expect.drift {
                    if !drifted.iter().any(|d| d.starts_with(&format!("{setting} ("))) {
                        missed.push(format!("drift in {setting} (found: {})", list_or_none(&drifted)));
                    }
                }
                if let Some(words) = &expect.diagnosis
                    && !diagnosis.as_deref().is_some_and(|d| d.contains(words.as_str()))
                {
                    missed.push(format!("the diagnosis {words:?} (found: {})", diagnosis.as_deref().unwrap_or("none")));
                }
                if missed.is_empty() {
                    let mut caught = Vec::new();
                    if self.failed > 0 {
                        caught.push(format!(
                            "{} failed requests, first at step {}",
                            self.failed,
                            first_failing.unwrap_or_default()
                        ));
                    }
                    if !drifted.is_empty() {
                        caught.push(format!("drift in {}", drifted.join(", ")));
                    }
                    if let Some(diagnosis) = &diagnosis {
                        caught.push(diagnosis.clone());
                    }
                    (
                        true,
                        format!(
                            "PASS {} (negative control): the verifier caught it: {}",
                            self.scenario,
                            caught.join("; ")
                        ),
                    )
                } else {
                    (false, format!("FAIL {} (negative control): expected {}", self.scenario, missed.join("; ")))
                }
            }
        }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

/// A JUnit XML document: one test suite per scenario, one test case per step.
pub fn junit(reports: &[RunReport]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("bffctl");
    for run in reports {
        let mut suite = TestSuite::new(run.scenario.as_str());
        suite.set_time(Duration::from_secs_f64(run.duration_s));
        let mut steps: Vec<&str> = Vec::new();
        for row in &run.rows {
            if !steps.contains(&row.step.as_str()) {
                steps.push(&row.step);
            }
        }
        for step in steps {
            let failures: Vec<_> = run.failures.iter().filter(|f| f.step == step).collect();
            // In a negative control, failures are the expected result.
            let failed = !failures.is_empty() && run.passed == failures.is_empty();
            let status = if failed {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(format!("{} failed requests", failures.iter().map(|f| f.count).sum::<u64>()));
                s.set_description(
                    failures
                        .iter()
                        .map(|f| {
                            format!(
                                "{} × {} status {:?}: {} (request id {}, traceparent {})",
                                f.count,
                                f.node,
                                f.status,
                                f.detail,
                                f.request_id.as_deref().unwrap_or("-"),
                                f.traceparent.as_deref().unwrap_or("-")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
                s
            } else {
                TestCaseStatus::success()
            };
            suite.add_test_case(TestCase::new(step, status));
        }
        let verdict_status = if run.passed {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(run.verdict.clone());
            s
        };
        suite.add_test_case(TestCase::new("verdict", verdict_status));
        report.add_test_suite(suite);
    }
    report.to_string().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{Outcome, Record, RunReport};
    use crate::scenario::Scenario;
    use crate::scenario::model::Action;

    fn record(step: &str, node: &str, latency_ms: f64, outcome: Outcome) -> Record {
        Record {
            step: step.into(),
            action: Action::Me,
            user: "u".into(),
            identity: None,
            node: Some(node.into()),
            created_on: None,
            outcome,
            status: Some(200),
            at_ms: 0.0,
            latency_ms,
            detail: String::new(),
            harness: false,
            traceparent: None,
            request_id: None,
        }
    }

    /// A step's figures are taken over every node's requests (a slow tail on one node shows in
    /// the step's p99), skip unavailable ones, and keep the scenario's step order.
    #[test]
    fn step_latencies_span_every_node() {
        let scenario =
            Scenario::parse(include_str!("../../../scenarios/login-me-restart.toml"), "seed.toml").expect("scenario");
        let mut records: Vec<Record> = (1..=99).map(|i| record("me", "node-1", i as f64, Outcome::Ok)).collect();
        records.push(record("me", "node-2", 1000.0, Outcome::Ok));
        records.push(record("me", "node-2", 5000.0, Outcome::Unavailable));
        records.insert(0, record("login", "node-2", 7.0, Outcome::Ok));
        let nodes = vec!["node-1".to_owned(), "node-2".to_owned()];
        let report =
            RunReport::build(&scenario, "test".into(), &records, &nodes, Vec::new(), None, std::time::Duration::ZERO);
        let steps: Vec<&str> = report.steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(steps, ["login", "me"]);
        let me = &report.steps[1];
        assert_eq!(me.requests, 100);
        assert_eq!(me.p50_ms, 50.0);
        assert_eq!(me.p99_ms, 99.0);
        let node2 = report.rows.iter().find(|r| r.step == "me" && r.node == "node-2").expect("row");
        assert_eq!(node2.p99_ms, 1000.0);
        records.push(record("me", "node-2", 2000.0, Outcome::Ok));
        let report =
            RunReport::build(&scenario, "test".into(), &records, &nodes, Vec::new(), None, std::time::Duration::ZERO);
        assert_eq!(report.steps[1].p99_ms, 1000.0, "the tail of node-2 shows in the step's p99");
    }
}
