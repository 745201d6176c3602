//! `verify-scaling`, `run` and `scenarios`: replay scenarios against a cluster, show the result
//! as tables (or JSON), write reports, and map the verdict to the exit code (0 pass, 1 failures
//! found, 2 the tool could not run the scenario).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use harness::cluster::control::ControlClient;
use harness::scenario::{self, Progress, RunReport, Scenario};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{ReportArgs, RunArgs, ScenariosArgs, VerifyArgs};
use crate::output;

/// The seed's scenario, shipped in `scenarios/` and built in here for `verify-scaling`.
const SEED_SCENARIO: &str = include_str!("../../../scenarios/login-me-restart.toml");

pub async fn verify_scaling(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut scenario = Scenario::parse(SEED_SCENARIO, "login-me-restart.toml")?;
    scenario.name = "verify-scaling".into();
    scenario.load.users = args.users;
    scenario.load.iterations = args.iterations;
    scenario.cluster.nodes = args.cluster.nodes;
    scenario.cluster.drift_check = !args.no_drift_check;
    scenario.load.seed = args.seed;
    let mut spec = args.cluster.spec();
    spec.redis_db_per_node = args.redis_db_per_node;
    let report = run_one(&scenario, RunMode::Fresh(Box::new(spec)), args.report.json).await?;
    finish(&[report], &args.report)
}

enum RunMode {
    Fresh(Box<harness::cluster::ClusterSpec>),
    Attached(Arc<ControlClient>),
}

pub async fn run(args: RunArgs, state: &Path) -> anyhow::Result<ExitCode> {
    let scenarios = Scenario::load_all(&args.path)?;
    anyhow::ensure!(!scenarios.is_empty(), "no scenario in {}", args.path.display());
    let attached = if args.attach { Some(Arc::new(ControlClient::open(state)?)) } else { None };
    let mut reports = Vec::new();
    for mut scenario in scenarios {
        if let Some(users) = args.users {
            scenario.load.users = users;
        }
        if let Some(iterations) = args.iterations {
            scenario.load.iterations = iterations;
        }
        if args.seed.is_some() {
            scenario.load.seed = args.seed;
        }
        if let Some(backend) = args.backend {
            scenario.cluster.backend = backend.kind();
        }
        let mode = match &attached {
            Some(client) => RunMode::Attached(client.clone()),
            None => {
                let mut spec = scenario
                    .cluster
                    .spec(harness::cluster::Images { bff: args.bff_image.clone(), redis: args.redis_image.clone() });
                if let Some(bound) = args.ready_timeout {
                    spec.ready_timeout_secs = Some(bound.as_secs().max(1));
                }
                RunMode::Fresh(Box::new(spec))
            }
        };
        reports.push(run_one(&scenario, mode, args.report.json).await?);
    }
    finish(&reports, &args.report)
}

pub fn list(args: ScenariosArgs) -> anyhow::Result<ExitCode> {
    let scenarios = Scenario::load_all(&args.path)?;
    output::scenarios(&scenarios, args.output.json);
    Ok(ExitCode::SUCCESS)
}

async fn run_one(scenario: &Scenario, mode: RunMode, json: bool) -> anyhow::Result<RunReport> {
    let mode = match mode {
        RunMode::Fresh(mut spec) => {
            spec.run_dir = Some(harness::run_dir::create(&harness::run_dir::runs_root(), &scenario.name)?);
            super::images::ensure_for(&spec).await?;
            RunMode::Fresh(spec)
        }
        attached => attached,
    };
    let progress = Arc::new(Progress::default());
    let bar =
        ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")?);
    bar.set_prefix(scenario.name.clone());
    bar.enable_steady_tick(Duration::from_millis(100));
    let ticker = {
        let (bar, progress) = (bar.clone(), progress.clone());
        tokio::spawn(async move {
            loop {
                bar.set_message(format!(
                    "{} requests, {} failed, {} unavailable · {}",
                    progress.requests.load(Ordering::Relaxed),
                    progress.failures.load(Ordering::Relaxed),
                    progress.unavailable.load(Ordering::Relaxed),
                    progress.current()
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let on_step = {
        let progress = progress.clone();
        move |step: &str| *progress.current.lock().expect("progress lock") = step.to_owned()
    };
    let result = match mode {
        RunMode::Fresh(spec) => scenario::run_fresh(scenario, *spec, &progress, &on_step).await,
        RunMode::Attached(client) => scenario::run_on(scenario, client.as_ref(), &progress).await,
    };
    ticker.abort();
    bar.finish_and_clear();
    let report = result?;
    if !json {
        output::report(&report);
    }
    Ok(report)
}

fn finish(reports: &[RunReport], args: &ReportArgs) -> anyhow::Result<ExitCode> {
    for pair in args.report.chunks(2) {
        let [format, file] = pair else { anyhow::bail!("--report takes a format and a file") };
        let text = match format.as_str() {
            "json" => serde_json::to_string_pretty(reports)?,
            "junit" => scenario::junit(reports),
            "html" => scenario::html(reports),
            other => anyhow::bail!("unknown report format {other:?}: use json, junit or html"),
        };
        if let Some(dir) = Path::new(file).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(file, text)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(reports)?);
    }
    if reports.len() > 1 && !args.json {
        println!();
        for r in reports {
            println!("{}", r.verdict);
        }
    }
    Ok(if reports.iter().all(|r| r.passed) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
