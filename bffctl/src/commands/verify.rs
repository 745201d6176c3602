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

use crate::cli::{ReportArgs, RunArgs, ScenariosArgs, TargetArgs, UsersArg, VerifyArgs};
use crate::output;

/// The restart-survival scenario, shipped in `scenarios/` and built in here for `verify-scaling`.
const SEED_SCENARIO: &str = include_str!("../../../scenarios/login-me-restart.toml");

pub async fn verify_scaling(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut scenario = Scenario::parse(SEED_SCENARIO, "login-me-restart.toml")?;
    scenario.name = "verify-scaling".into();
    let mut deployment_args = args.deployment.clone();
    match &args.users {
        UsersArg::Count(n) => scenario.load.users = *n,
        UsersArg::File(file) => {
            deployment_args.users_file.get_or_insert_with(|| file.clone());
            scenario.load.users = users_in(file)?;
        }
    }
    scenario.load.iterations = args.iterations;
    args.users_behave.apply(&mut scenario.load);
    scenario.cluster.nodes = args.cluster.nodes;
    scenario.cluster.drift_check = !args.no_drift_check;
    scenario.cluster.strict_version |= args.strict_version;
    if let Some(build) = &args.upgrade_to {
        roll_instead_of_restart(&mut scenario, build);
    }
    scenario.load.seed = args.seed;
    let mode = match deployment(&deployment_args, args.cluster.ready_timeout)? {
        Some(target) => for_target(&mut scenario, Arc::new(target), &deployment_args),
        None => {
            let mut spec = args.cluster.spec();
            spec.redis_db_per_node = args.redis_db_per_node;
            RunMode::Fresh(Box::new(spec))
        }
    };
    let report = run_one(&scenario, mode, args.report.json).await?;
    finish(&[report], &args.report, started)
}

/// The seed scenario with its rolling restart made a rolling upgrade to `build`, while the users
/// call `me`: `me` during `rolling-upgrade`, then `me` on every node as before.
fn roll_instead_of_restart(scenario: &mut Scenario, build: &str) {
    let me = scenario.steps.iter().find(|s| s.action == scenario::Action::Me && s.via == scenario::Via::Lb).cloned();
    for step in &mut scenario.steps {
        if step.action != scenario::Action::RestartNode {
            continue;
        }
        let mut roll = step.clone();
        roll.action = scenario::Action::RollingUpgrade;
        roll.to = Some(build.to_owned());
        *step = match me.clone() {
            Some(mut me) => {
                me.name = Some("me during rolling-upgrade".into());
                me.during = Some(Box::new(roll));
                me
            }
            None => roll,
        };
    }
}

enum RunMode {
    Fresh(Box<harness::cluster::ClusterSpec>),
    Attached(Arc<ControlClient>),
    /// A deployment bffctl did not build, and the ops token for its drift check.
    Target(Arc<scenario::Deployment>, Option<String>),
}

/// How many users a users file has.
fn users_in(file: &Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let users = harness::login_form::read_users(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok(users.len())
}

/// The deployment `--target` names, if any.
pub(super) fn deployment(
    args: &TargetArgs,
    ready_timeout: Option<Duration>,
) -> anyhow::Result<Option<scenario::Deployment>> {
    let Some(url) = &args.target else {
        anyhow::ensure!(
            args.node_urls.is_empty() && args.restart_cmd.is_none(),
            "--node and --restart-cmd go with --target URL"
        );
        anyhow::ensure!(
            args.login == crate::cli::LoginArg::Mock && args.users_file.is_none(),
            "--login form and a users file go with --target URL (bffctl's own clusters log in through its mock issuer)"
        );
        return Ok(None);
    };
    let check = |what: &str, value: &str| -> anyhow::Result<()> {
        let parsed = url::Url::parse(value).map_err(|e| anyhow::anyhow!("{what} {value:?}: {e}"))?;
        anyhow::ensure!(matches!(parsed.scheme(), "http" | "https"), "{what} {value:?}: not an http(s) URL");
        Ok(())
    };
    check("--target", url)?;
    for (name, node) in &args.node_urls {
        check(&format!("--node {name}"), node)?;
    }
    let paths = gateway_paths(args)?;
    let form_users = match (args.login, &args.users_file) {
        (crate::cli::LoginArg::Mock, None) => Vec::new(),
        (crate::cli::LoginArg::Mock, Some(_)) => anyhow::bail!("a users file (--users FILE) goes with --login form"),
        (crate::cli::LoginArg::Form, None) => anyhow::bail!("--login form needs --users FILE"),
        (crate::cli::LoginArg::Form, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            harness::login_form::read_users(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        }
    };
    Ok(Some(scenario::Deployment {
        form_users,
        next_user: Default::default(),
        public_url: url.trim_end_matches('/').to_owned(),
        nodes: args.node_urls.iter().map(|(n, u)| (n.clone(), u.trim_end_matches('/').to_owned())).collect(),
        restart_cmd: args.restart_cmd.clone(),
        ready_path: args.ready_path.clone(),
        paths,
        ready_timeout: ready_timeout.unwrap_or(scenario::DEFAULT_READY_TIMEOUT),
    }))
}

/// The gateway's paths: its preset (bff's by default), with each option given over it.
fn gateway_paths(args: &TargetArgs) -> anyhow::Result<harness::GatewayPaths> {
    let preset = match &args.gateway {
        Some(name) => Some(harness::preset::GatewayPreset::find(name)?),
        None => None,
    };
    let mut paths = match &preset {
        Some(preset) => preset.paths()?,
        // No preset: bff's paths, and the user's name anywhere in `me` (as before presets).
        None => harness::GatewayPaths { identity_pointer: None, ..Default::default() },
    };
    if let Some(path) = &args.login_path {
        paths.login = path.clone();
    }
    if let Some(path) = &args.me_path {
        paths.me = path.clone();
    }
    if let Some(header) = &args.me_header {
        paths.me_header = Some(harness::preset::header(header).map_err(|e| anyhow::anyhow!("--me-header {e}"))?);
    }
    if let Some(path) = &args.logout_path {
        paths.logout = path.clone();
    }
    if let Some(pointer) = &args.identity_pointer {
        anyhow::ensure!(
            pointer.is_empty() || pointer.starts_with('/'),
            "--identity-pointer {pointer:?}: a JSON pointer starts with / (e.g. /sub)"
        );
        paths.identity_pointer = Some(pointer.clone());
    }
    Ok(paths)
}

/// What the gateway's `me` answers without a session: the option, else its preset's, else bff's.
fn anonymous_status(args: &TargetArgs) -> u16 {
    args.anonymous_status
        .or_else(|| {
            let preset = harness::preset::GatewayPreset::find(args.gateway.as_deref()?).ok()?;
            Some(preset.anonymous_status)
        })
        .unwrap_or(404)
}

/// Runs `scenario` against `target`: its nodes are the target's, and another gateway may answer
/// `me` without a session with another status than bff's 404.
fn for_target(scenario: &mut Scenario, target: Arc<scenario::Deployment>, args: &TargetArgs) -> RunMode {
    scenario.cluster.nodes = target.nodes.len();
    scenario.cluster.store_fault_settle_ms = args.settle_after_store_fault.map(|d| d.as_millis() as u64);
    let status = anonymous_status(args);
    if status != 404 {
        for step in &mut scenario.steps {
            if step.action == scenario::Action::Me && step.expect.status == Some(404) {
                step.expect.status = Some(status);
            }
        }
    }
    RunMode::Target(target, args.ops_token.clone())
}

pub async fn run(args: RunArgs, state: &Path) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let scenarios = Scenario::load_all(&args.path)?;
    anyhow::ensure!(!scenarios.is_empty(), "no scenario in {}", args.path.display());
    anyhow::ensure!(!(args.attach && args.deployment.target.is_some()), "--attach and --target exclude each other");
    let attached = if args.attach { Some(Arc::new(ControlClient::open(state)?)) } else { None };
    let mut deployment_args = args.deployment.clone();
    if let Some(UsersArg::File(file)) = &args.users {
        deployment_args.users_file.get_or_insert_with(|| file.clone());
    }
    let target = deployment(&deployment_args, args.ready_timeout)?.map(Arc::new);
    let mut reports = Vec::new();
    for mut scenario in scenarios {
        if target.is_some()
            && let Some(why) = scenario::needs_own_cluster(&scenario)
        {
            println!("SKIP {}: {why}; it cannot run against a deployment bffctl did not build", scenario.name);
            continue;
        }
        match &args.users {
            Some(UsersArg::Count(n)) => scenario.load.users = *n,
            Some(UsersArg::File(file)) => scenario.load.users = users_in(file)?,
            None => {}
        }
        if let Some(iterations) = args.iterations {
            scenario.load.iterations = iterations;
        }
        args.users_behave.apply(&mut scenario.load);
        if args.seed.is_some() {
            scenario.load.seed = args.seed;
        }
        if let Some(backend) = args.backend {
            scenario.cluster.backend = backend.kind();
        }
        if let Some(redis) = args.redis {
            scenario.cluster.redis = redis.topology();
            scenario.check_redis_actions().map_err(|e| anyhow::anyhow!("{} with --redis: {e}", scenario.name))?;
        }
        let mode = match (&attached, &target) {
            (_, Some(target)) => for_target(&mut scenario, target.clone(), &deployment_args),
            (Some(client), None) => RunMode::Attached(client.clone()),
            (None, None) => {
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
    finish(&reports, &args.report, started)
}

pub fn list(args: ScenariosArgs) -> anyhow::Result<ExitCode> {
    let scenarios = Scenario::load_all(&args.path)?;
    output::scenarios(&scenarios, args.output.json);
    Ok(ExitCode::SUCCESS)
}

async fn run_one(scenario: &Scenario, mode: RunMode, json: bool) -> anyhow::Result<RunReport> {
    let mode = match mode {
        RunMode::Fresh(mut spec) => {
            // Images first: a run that cannot start gets no run directory, and `latest` stays put.
            super::images::ensure_for(&spec).await?;
            spec.run_dir = Some(harness::run_dir::create(&harness::run_dir::runs_root(), &scenario.name)?);
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
        RunMode::Target(target, ops_token) => {
            on_step("waiting until the deployment is ready");
            if let Err(harness::cluster::ClusterError::NodeNotReady { node, reason, .. }) =
                target.wait_until_ready().await
            {
                let mut report =
                    RunReport::build(scenario, "target".into(), &[], &[], Vec::new(), None, Duration::ZERO);
                let log = scenario::NodeLog { node, reason: Some(reason), path: None, last_lines: Vec::new() };
                report.stopped_at(None, log);
                ticker.abort();
                bar.finish_and_clear();
                if !json {
                    output::report(&report);
                }
                return Ok(report);
            }
            let drift = match (target.nodes.is_empty(), scenario.cluster.drift_check) {
                (false, true) => {
                    on_step("comparing the nodes' settings");
                    let nodes: Vec<(String, Option<String>)> =
                        target.nodes.iter().map(|(n, u)| (n.clone(), Some(u.clone()))).collect();
                    // What any client sees of each node (its authorization request, cookies,
                    // anonymous answers), and bff's own fingerprint when there is a token.
                    let paths = harness::drift::ObservedPaths::from(&target.paths);
                    let login = harness::drift::PinnedLogin::new(&paths, &[]);
                    let pinned: Option<&dyn harness::drift::ObserveLogin> =
                        if target.form_users.is_empty() { Some(&login) } else { None };
                    let observed = harness::drift::observe(&nodes, &paths, pinned).await;
                    let mut report = match &ops_token {
                        Some(token) => harness::drift::check(&nodes, token).await.merged(observed),
                        None => observed,
                    };
                    if !scenario.cluster.strict_version {
                        report.version_as_info();
                    }
                    Some(report)
                }
                _ => None,
            };
            scenario::run_on(scenario, target.as_ref(), &progress).await.map(|r| r.with_drift(scenario, drift))
        }
    };
    ticker.abort();
    bar.finish_and_clear();
    let report = result?;
    if !json {
        output::report(&report);
    }
    Ok(report)
}

fn finish(reports: &[RunReport], args: &ReportArgs, started: std::time::Instant) -> anyhow::Result<ExitCode> {
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
        let passed = reports.iter().filter(|r| r.passed).count();
        let inconclusive = reports.iter().filter(|r| !r.passed && r.inconclusive.is_some()).count();
        let failed = reports.len() - passed - inconclusive;
        println!(
            "\n{} scenarios: {passed} passed, {failed} failed, {inconclusive} inconclusive, in {:.1} s",
            reports.len(),
            started.elapsed().as_secs_f64()
        );
    }
    // A FAIL anywhere is a FAIL; otherwise a run the harness could not judge is the tool's exit.
    Ok(if reports.iter().all(|r| r.passed) {
        ExitCode::SUCCESS
    } else if reports.iter().all(|r| r.passed || r.inconclusive.is_some()) {
        ExitCode::from(crate::EXIT_TOOL)
    } else {
        ExitCode::from(1)
    })
}
