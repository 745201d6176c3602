//! Scenarios: files that describe a cluster, virtual users and steps (log in, `me`, restart
//! nodes, …) with expectations; the runner that replays them; the report that says what broke.

mod history;
pub(crate) mod html;
mod matrix;
mod model;
mod record;
mod remote;
mod report;
mod runner;
mod settle;
mod target;
mod websocket_restart;

use std::time::Instant;

pub use history::{Invariant, check_history};
pub use html::html;
pub use matrix::{Cell, Matrix};
pub use model::{
    Action, ClusterSection, Expect, Load, NodeSelector, Outcome as ExpectedOutcome, Scenario, ScenarioError,
    ShardSelector, Step, Thresholds, Verdict, Via,
};
pub use remote::{DEFAULT_READY_TIMEOUT, Deployment, needs_own_cluster};
pub use report::{FailureGroup, FaultWindow, NodeLog, Outcome, Record, Row, RunReport, junit};
pub use runner::{Execution, Progress, StepError, judge};
pub use target::{OwnedCluster, Target};

use crate::cluster::{Cluster, ClusterError, ClusterSpec, QUOTED_LINES};

/// The tool could not run the scenario (exit code 2), as opposed to the scenario finding
/// failures (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Step(#[from] StepError),
}

/// Runs the scenario against `target`.
pub async fn run_on(scenario: &Scenario, target: &dyn Target, progress: &Progress) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let seed = scenario.load.seed.unwrap_or_else(rand::random);
    let execution = runner::execute(scenario, target, progress, seed).await?;
    let refreshes = target.issuer_calls("refresh").await;
    let load = target.issuer_load().await;
    Ok(report_of(scenario, target, execution, refreshes, started)
        .await
        .with_issuer_load(scenario, load)
        .with_seed(seed))
}

/// The report of an execution, quoting the log of every node that failed.
async fn report_of(
    scenario: &Scenario,
    target: &dyn Target,
    execution: Execution,
    refreshes: Option<u64>,
    started: Instant,
) -> RunReport {
    let names: Vec<String> = (0..target.node_count()).map(|i| target.node_name(i)).collect();
    let mut report = RunReport::build(
        scenario,
        target.backend(),
        &execution.records,
        &names,
        execution.events,
        refreshes,
        started.elapsed(),
    )
    .with_refresh_reuse(scenario, target.refresh_tokens_presented_twice().await);
    report.outages = report::Outage::of(&execution.records, &execution.faults);
    report.faults = execution.faults;
    // The node the diagnosis blames first (its log explains it, even when the failed answers
    // came from the others), then every other node that failed requests.
    let mut quoted: Vec<String> = report.matrix.as_ref().and_then(|m| m.odd_node.clone()).into_iter().collect();
    for node in report.failed_nodes() {
        if !quoted.contains(&node) && quoted.len() < 3 {
            quoted.push(node);
        }
    }
    for node in quoted {
        // `node-2`, or `node-2@0.1.0` in a scenario that rolls builds.
        let number = node.strip_prefix("node-").map(|n| n.split('@').next().unwrap_or(n));
        let Some(index) = number.and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0) else {
            continue;
        };
        let Some(path) = target.node_log(index - 1).await else {
            continue;
        };
        let last_lines = crate::run_dir::quoted_lines(&path, QUOTED_LINES);
        report.node_logs.push(NodeLog { node, reason: None, path: Some(path), last_lines });
    }
    if let Some((step, log)) = execution.stopped {
        report.stopped_at(Some(&step), log);
    }
    report.with_skipped(execution.skipped)
}

/// Starts a fresh cluster from `spec`, runs the scenario, tears the cluster down.
pub async fn run_fresh(
    scenario: &Scenario,
    spec: ClusterSpec,
    progress: &Progress,
    on_step: &(dyn Fn(&str) + Send + Sync),
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let backend = format!("{:?}", crate::cluster::resolve_backend(&spec).await?).to_lowercase();
    // A node that is not ready stays up long enough to give its fingerprint.
    let seed = scenario.load.seed.unwrap_or_else(rand::random);
    let spec = ClusterSpec {
        keep_unready: scenario.cluster.drift_check,
        seed: Some(seed),
        redis_fault_links: spec.redis_fault_links || scenario.faults_redis_links(),
        ..spec
    };
    let mut cluster = match Cluster::start(spec, on_step).await {
        Ok(cluster) => cluster,
        Err(ClusterError::NodeNotReady { node, reason, log, last_lines }) => {
            let mut report = RunReport::build(scenario, backend, &[], &[], Vec::new(), None, started.elapsed());
            report.stopped_at(None, NodeLog { node, reason: Some(reason), path: log, last_lines });
            return Ok(report.with_seed(seed));
        }
        Err(error) => return Err(error.into()),
    };
    let drift = match scenario.cluster.drift_check {
        true => {
            on_step("comparing the nodes' settings");
            let nodes: Vec<(String, Option<String>)> = (0..cluster.node_count())
                .map(|i| (crate::cluster::node_name(i), cluster.node_url_even_unready(i)))
                .collect();
            let mut report = crate::drift::check(&nodes, &cluster.spec().ops_token).await;
            if cluster.spec().redis_fault_links {
                // Each node reaches the same Redis through a fault relay of its own.
                report.accept_differing("redis.address");
            }
            if !scenario.cluster.strict_version {
                report.version_as_info();
            }
            Some(report)
        }
        false => None,
    };
    if let Some(ClusterError::NodeNotReady { node, reason, log, .. }) = cluster.unready().first().cloned() {
        let teardown = cluster.teardown().await;
        // Quoted after the teardown: the node's last words are in its log by then.
        let last_lines = log.as_deref().map(|p| crate::run_dir::quoted_lines(p, QUOTED_LINES)).unwrap_or_default();
        let mut report = RunReport::build(scenario, backend, &[], &[], Vec::new(), None, started.elapsed())
            .with_drift(scenario, drift);
        report.stopped_at(None, NodeLog { node, reason: Some(reason), path: log, last_lines });
        report.caught_unready(scenario);
        teardown?;
        return Ok(report.with_seed(seed));
    }
    let target = OwnedCluster::new(cluster);
    let result = runner::execute(scenario, &target, progress, seed).await;
    let refreshes = target.issuer_calls("refresh").await;
    let load = target.issuer_load().await;
    let report = match result {
        Ok(execution) => Ok(report_of(scenario, &target, execution, refreshes, started)
            .await
            .with_issuer_load(scenario, load)
            .with_drift(scenario, drift)
            .with_seed(seed)),
        Err(error) => Err(error),
    };
    let teardown = target.cluster.lock().await.teardown().await;
    let report = report?;
    teardown?;
    Ok(report)
}
