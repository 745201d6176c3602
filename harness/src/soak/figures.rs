//! The figures of a soak, worked out once from its history, fault runs and samples.

use serde::Serialize;

use super::{Sample, SoakPlan};
use crate::scenario::{Invariant, Outcome, Record, check_history};

/// After a fault ends, how long service may take to come back (and unavailability still counts
/// as the fault's).
pub const RECOVERY_BOUND_MS: f64 = 2000.0;

/// How far a resource curve may move after warm-up.
pub const FLAT_WITHIN_PCT: f64 = 10.0;

/// Open file descriptors follow the connections the load balancer keeps open to a node (a few
/// dozen), so a handful more or fewer is not a trend: a move this small counts as flat too.
pub const FD_SLACK: f64 = 16.0;

/// Shorter runs have no steady state to judge (a paused node's connections alone take a while
/// to drain): their curves are printed, not judged.
pub const JUDGE_CURVES_FROM: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Clone, Serialize)]
pub struct FaultRun {
    pub label: String,
    pub start_ms: f64,
    pub end_ms: f64,
    /// From the end of the fault to the end of the last unavailable answer sent after it.
    pub recovery_ms: Option<f64>,
    /// The fault could not be started or ended.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Minute {
    pub minute: u64,
    pub requests: u64,
    pub unavailable: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One resource over the run, judged by the level it comes back to between faults: the lowest
/// sample of the first and of the last third after warm-up (outside faults). A leak lifts that
/// floor; what a fault's burst leaves for a while (a connection pool's idle connections, the
/// sessions a lost answer orphaned until they expire) lifts only the samples near it, which the
/// medians show.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    pub what: String,
    /// The floor of the first third after warm-up.
    pub after_warm_up: f64,
    /// The floor of the last third.
    pub at_end: f64,
    /// Floor to floor.
    pub change_pct: f64,
    pub median_after_warm_up: f64,
    pub median_at_end: f64,
    pub flat: bool,
    /// Every sample, for plots.
    pub values: Vec<Option<u64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub plan: SoakPlan,
    pub requests: u64,
    /// Answers that were wrong: failed requests plus every invariant violation.
    pub wrong: u64,
    pub unavailable_in_faults: u64,
    pub unavailable_outside_faults: u64,
    pub faults: Vec<FaultRun>,
    pub minutes: Vec<Minute>,
    pub invariants: Vec<Invariant>,
    pub curves: Vec<Curve>,
    pub samples: Vec<Sample>,
    pub warm_up_s: f64,
    /// Whether the curves count towards the verdict (runs of [`JUDGE_CURVES_FROM`] or longer).
    pub curves_judged: bool,
    #[serde(skip)]
    pub records: Vec<Record>,
    pub passed: bool,
    pub verdict: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

impl SoakReport {
    pub fn build(
        plan: &SoakPlan,
        nodes: usize,
        records: Vec<Record>,
        mut faults: Vec<FaultRun>,
        samples: Vec<Sample>,
        refresh_reuse: Option<u64>,
    ) -> Self {
        let invariants = check_history(&records, refresh_reuse);
        let failed = records.iter().filter(|r| r.outcome == Outcome::Failed).count() as u64;
        let violations: u64 =
            invariants.iter().filter(|i| i.name != "no refresh token is used twice").map(|i| i.violations).sum();
        let windows: Vec<(f64, f64)> = faults.iter().map(|f| (f.start_ms, f.end_ms + RECOVERY_BOUND_MS)).collect();
        let in_fault = |at: f64| windows.iter().any(|(from, to)| at >= *from && at <= *to);
        let unavailable: Vec<&Record> = records.iter().filter(|r| r.outcome == Outcome::Unavailable).collect();
        // A request counts as the fault's when any part of it (sent to answered) overlaps the
        // fault or its recovery bound.
        let overlaps = |r: &Record| windows.iter().any(|(from, to)| r.at_ms <= *to && r.at_ms + r.latency_ms >= *from);
        let unavailable_in = unavailable.iter().filter(|r| overlaps(r)).count() as u64;
        let unavailable_out = unavailable.len() as u64 - unavailable_in;
        let starts: Vec<f64> = faults.iter().map(|f| f.start_ms).collect();
        for (i, fault) in faults.iter_mut().enumerate() {
            let next = starts.get(i + 1).copied().unwrap_or(f64::INFINITY);
            let last = unavailable
                .iter()
                .filter(|r| r.at_ms >= fault.end_ms && r.at_ms + r.latency_ms < next)
                .map(|r| r.at_ms + r.latency_ms)
                .fold(fault.end_ms, f64::max);
            fault.recovery_ms = Some(last - fault.end_ms);
        }

        let mut minutes: Vec<Minute> = Vec::new();
        let last_minute = records.iter().map(|r| (r.at_ms / 60_000.0) as u64).max().unwrap_or(0);
        for minute in 0..=last_minute {
            let of_minute: Vec<&Record> =
                records.iter().filter(|r| (r.at_ms / 60_000.0) as u64 == minute && r.latency_ms > 0.0).collect();
            let mut latencies: Vec<f64> = of_minute.iter().map(|r| r.latency_ms).collect();
            latencies.sort_by(f64::total_cmp);
            minutes.push(Minute {
                minute,
                requests: of_minute.len() as u64,
                unavailable: of_minute.iter().filter(|r| r.outcome == Outcome::Unavailable).count() as u64,
                p50_ms: percentile(&latencies, 50.0),
                p99_ms: percentile(&latencies, 99.0),
            });
        }

        let warm_up_s = plan.warm_up().as_secs_f64();
        let mut curves = Vec::new();
        let mut curve = |what: String, values: Vec<Option<u64>>, slack: f64| {
            // Steady state only: after warm-up, and outside every fault and its recovery.
            let after: Vec<(f64, f64)> = samples
                .iter()
                .zip(&values)
                .filter(|(s, _)| s.at_s >= warm_up_s && !in_fault(s.at_s * 1000.0))
                .filter_map(|(s, v)| v.map(|v| (s.at_s, v as f64)))
                .collect();
            if after.len() < 3 {
                return;
            }
            let third = after.len().div_ceil(3);
            let first: Vec<f64> = after[..third].iter().map(|(_, v)| *v).collect();
            let last: Vec<f64> = after[after.len() - third..].iter().map(|(_, v)| *v).collect();
            let floor = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
            let (a, b) = (floor(&first), floor(&last));
            let change_pct = if a == 0.0 { if b == 0.0 { 0.0 } else { 100.0 } } else { (b - a) / a * 100.0 };
            curves.push(Curve {
                what,
                after_warm_up: a,
                at_end: b,
                change_pct,
                median_after_warm_up: median(&first),
                median_at_end: median(&last),
                flat: change_pct.abs() <= FLAT_WITHIN_PCT || (b - a).abs() <= slack,
                values,
            });
        };
        for node in 0..nodes {
            let name = crate::cluster::node_name(node);
            let rss = samples.iter().map(|s| s.rss_kib.get(node).copied().flatten()).collect();
            curve(format!("{name} RSS KiB"), rss, 0.0);
            let fds = samples.iter().map(|s| s.fds.get(node).copied().flatten()).collect();
            curve(format!("{name} open fds"), fds, FD_SLACK);
        }
        curve("redis keys".into(), samples.iter().map(|s| s.redis_keys).collect(), 0.0);

        let wrong = failed + violations;
        let mut broken = Vec::new();
        if wrong > 0 {
            broken.push(format!("{wrong} wrong answers"));
        }
        if unavailable_out > 0 {
            // Each one named (the first few): when, how long, where, what the client saw.
            let named: Vec<String> = unavailable
                .iter()
                .filter(|r| !overlaps(r))
                .take(5)
                .map(|r| {
                    let what = match r.status {
                        Some(status) => format!("{status}"),
                        None => format!("no answer: {}", r.detail),
                    };
                    let node = r.node.as_deref().unwrap_or("no node");
                    format!("{} at {:.1} s for {:.0} ms on {node}: {what}", r.step, r.at_ms / 1000.0, r.latency_ms)
                })
                .collect();
            broken.push(format!("{unavailable_out} unavailable answers outside fault windows ({})", named.join("; ")));
        }
        for fault in &faults {
            if let Some(error) = &fault.error {
                broken.push(format!("{} could not be run: {error}", fault.label));
            }
            if fault.recovery_ms.is_some_and(|ms| ms > RECOVERY_BOUND_MS) {
                broken.push(format!("{} took {:.0} ms to recover", fault.label, fault.recovery_ms.unwrap_or_default()));
            }
        }
        let curves_judged = plan.duration >= JUDGE_CURVES_FROM;
        for c in curves.iter().filter(|c| curves_judged && !c.flat) {
            broken.push(format!("{} moved {:+.1} % after warm-up", c.what, c.change_pct));
        }
        for i in invariants.iter().filter(|i| i.passed == Some(false)) {
            broken.push(format!("invariant broken: {}", i.name));
        }
        let requests = records.len() as u64;
        let passed = broken.is_empty() && requests > 0;
        let verdict = if passed {
            format!(
                "PASS soak: {requests} requests, 0 wrong, {unavailable_in} unavailable inside fault windows, 0 outside, {} faults",
                faults.len()
            )
        } else {
            format!("FAIL soak: {}", broken.join("; "))
        };
        SoakReport {
            plan: plan.clone(),
            requests,
            wrong,
            unavailable_in_faults: unavailable_in,
            unavailable_outside_faults: unavailable_out,
            faults,
            minutes,
            invariants,
            curves,
            samples,
            warm_up_s,
            curves_judged,
            records,
            passed,
            verdict,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn plan() -> SoakPlan {
        SoakPlan {
            duration: Duration::from_secs(600),
            rate: 200.0,
            users: 100,
            seed: 1,
            fault_every: Duration::from_secs(30),
            fault_lasts: Duration::from_secs(5),
            sample_every: Duration::from_secs(5),
        }
    }

    /// Samples every 5 s of a one-node run whose fds are `fds(t)`.
    fn fds_curve(fds: impl Fn(f64) -> u64) -> Curve {
        let samples = (0..120)
            .map(|i| {
                let at_s = i as f64 * 5.0;
                Sample { at_s, rss_kib: vec![Some(30_000)], fds: vec![Some(fds(at_s))], redis_keys: Some(500) }
            })
            .collect();
        let report = SoakReport::build(&plan(), 1, Vec::new(), Vec::new(), samples, None);
        report.curves.into_iter().find(|c| c.what.contains("fds")).unwrap()
    }

    #[test]
    fn bursts_that_drain_are_flat_and_a_rising_floor_is_not() {
        // A pool that holds 60 more connections for 20 s after every burst, the last one late.
        let bursts = fds_curve(|t| if t % 60.0 < 20.0 || t > 540.0 { 90 } else { 30 });
        assert!(bursts.flat, "{bursts:?}");
        assert!(bursts.median_at_end > bursts.median_after_warm_up, "the medians show the bursts");
        // One descriptor more every 10 s: a leak.
        let leak = fds_curve(|t| 30 + (t / 10.0) as u64);
        assert!(!leak.flat, "{leak:?}");
    }
}
