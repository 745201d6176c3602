//! Scenarios: files that describe a cluster, virtual users and steps (log in, `me`, restart
//! nodes, …) with expectations; the runner that replays them; the report that says what broke.

mod model;
mod report;
mod runner;
mod target;

use std::time::Instant;

pub use model::{
    Action, ClusterSection, Expect, Load, NodeSelector, Outcome as ExpectedOutcome, Scenario, ScenarioError, Step,
    Thresholds, Verdict, Via,
};
pub use report::{FailureGroup, Outcome, Record, Row, RunReport, junit};
pub use runner::{Progress, StepError};
pub use target::{OwnedCluster, Target};

use crate::cluster::{Cluster, ClusterError, ClusterSpec};

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
    let (records, events) = runner::execute(scenario, target, progress).await?;
    let refreshes = target.issuer_calls("refresh").await;
    Ok(RunReport::build(scenario, target.backend(), &records, events, refreshes, started.elapsed()))
}

/// Starts a fresh cluster from `spec`, runs the scenario, tears the cluster down.
pub async fn run_fresh(
    scenario: &Scenario,
    spec: ClusterSpec,
    progress: &Progress,
    on_step: &(dyn Fn(&str) + Send + Sync),
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let cluster = Cluster::start(spec, on_step).await?;
    let target = OwnedCluster::new(cluster);
    let result = runner::execute(scenario, &target, progress).await;
    let refreshes = target.issuer_calls("refresh").await;
    let teardown = target.cluster.lock().await.teardown().await;
    let (records, events) = result?;
    teardown?;
    Ok(RunReport::build(scenario, target.backend(), &records, events, refreshes, started.elapsed()))
}
