//! [`WatchMetrics`]: the rounds' results as Prometheus metrics, through the `metrics` facade
//! and its Prometheus recorder (kept local to the watch: it is no process-wide recorder, so a
//! test or a library user can run several watches in one process).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `bffctl_watch_runs_total{result}` | counter | rounds run, `pass` or `fail` |
//! | `bffctl_watch_failures{node,check}` | gauge | failures of the last round, every node × check (0 when none) |
//! | `bffctl_watch_failures_total{node,check}` | counter | failures since the watch started |
//! | `bffctl_watch_drift{node,setting}` | gauge | 1 when the node's value of the setting differs from the majority's, else 0 |
//! | `bffctl_watch_last_success_timestamp_seconds` | gauge | when the last passing round began (Unix time; absent until one passes) |
//! | `bffctl_watch_last_run_timestamp_seconds` | gauge | when the last round began |
//! | `bffctl_watch_run_duration_seconds` | gauge | how long the last round took |
//! | `bffctl_watch_check_duration_seconds{check}` | gauge | how long each check of the last round took |

use std::collections::BTreeSet;
use std::sync::Mutex;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use super::round::{Check, Round, TARGET_NODE};

pub struct WatchMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// `(node, setting)` pairs a drift gauge was set for: set to 0 when a round no longer shows
    /// them, so an alert on drift clears.
    drift_seen: Mutex<BTreeSet<(String, String)>>,
}

impl Default for WatchMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchMetrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        WatchMetrics { recorder, handle, drift_seen: Mutex::default() }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Counts `round` in.
    pub fn record(&self, round: &Round) {
        let mut seen = self.drift_seen.lock().expect("drift labels");
        metrics::with_local_recorder(&self.recorder, || {
            let result = if round.passed() { "pass" } else { "fail" };
            counter!("bffctl_watch_runs_total", "result" => result).increment(1);
            // Both results exist from the first round on, so a rate over either is defined.
            counter!("bffctl_watch_runs_total", "result" => if round.passed() { "fail" } else { "pass" }).increment(0);
            let mut nodes: Vec<&str> = round.nodes.iter().map(String::as_str).collect();
            nodes.push(TARGET_NODE);
            for failure in &round.failures {
                if !nodes.contains(&failure.node.as_str()) {
                    nodes.push(&failure.node);
                }
            }
            for node in nodes {
                for check in Check::ALL {
                    let count = round.failures.iter().filter(|f| f.node == node && f.check == check).count();
                    let labels = [("node", node.to_owned()), ("check", check.name().to_owned())];
                    gauge!("bffctl_watch_failures", &labels).set(count as f64);
                    counter!("bffctl_watch_failures_total", &labels).increment(count as u64);
                }
            }
            let mut now = BTreeSet::new();
            if let Some(drift) = &round.drift {
                for row in &drift.rows {
                    for (i, node) in drift.nodes.iter().enumerate() {
                        let odd = row.odd.contains(&i);
                        let labels = [("node", node.clone()), ("setting", row.setting.clone())];
                        gauge!("bffctl_watch_drift", &labels).set(if odd { 1.0 } else { 0.0 });
                        now.insert((node.clone(), row.setting.clone()));
                    }
                }
            }
            for (node, setting) in seen.difference(&now) {
                gauge!("bffctl_watch_drift", "node" => node.clone(), "setting" => setting.clone()).set(0.0);
            }
            seen.extend(now);
            if round.passed() {
                gauge!("bffctl_watch_last_success_timestamp_seconds").set(round.started_at);
            }
            gauge!("bffctl_watch_last_run_timestamp_seconds").set(round.started_at);
            gauge!("bffctl_watch_run_duration_seconds").set(round.duration_s);
            for (check, seconds) in &round.checks {
                gauge!("bffctl_watch_check_duration_seconds", "check" => check.name()).set(*seconds);
            }
        });
    }
}
