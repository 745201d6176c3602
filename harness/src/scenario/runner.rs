//! Runs a [`Scenario`] against a [`Target`]: virtual users do the user steps concurrently, the
//! runner does the cluster steps, and every response is checked and recorded.
//!
//! A request that fails while a fault is in progress (a `during` step: a node restarting, Redis
//! down) with a transport error or a 502/503 is recorded as *unavailable*, apart from wrong
//! answers, as Jepsen records "info": the fault made it legitimately unanswerable. The same
//! outside a fault, or any wrong answer at any time, is a *failure*.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;
use tokio::sync::Mutex;

use super::model::{Action, Expect, NodeSelector, Scenario, ShardSelector, Step, Via};
use super::record::{FaultWindow, HARNESS_BROKE_LOGIN, Outcome, Record};
use super::report::NodeLog;
use super::settle;
use super::target::Target;
use crate::client::{ClientError, GatewayPaths, Reply, VirtualUser};
use crate::cluster::{ClusterError, RedisFault, ShardPick};
use crate::fault::Fault;
use crate::issuer::IssuerOutage;

/// Live counters for a progress display.
#[derive(Default)]
pub struct Progress {
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub unavailable: AtomicU64,
    pub current: std::sync::Mutex<String>,
}

impl Progress {
    fn set_current(&self, what: String) {
        *self.current.lock().expect("progress lock") = what;
    }

    pub fn current(&self) -> String {
        self.current.lock().expect("progress lock").clone()
    }
}

/// The tool could not carry out a cluster step (no such node, Docker failed).
#[derive(Debug, thiserror::Error)]
#[error("cluster step {step} failed: {reason}")]
pub struct StepError {
    pub step: String,
    pub reason: String,
}

/// What a run recorded. A node that did not come back from a cluster step ends the run early: a
/// verdict on the deployment, not a tool error.
pub struct Execution {
    pub records: Vec<Record>,
    pub events: Vec<String>,
    /// When each cluster step ran, on the records' clock.
    pub faults: Vec<FaultWindow>,
    /// Steps the target cannot carry out, and why (`restart-node all: no --restart-cmd given`).
    pub skipped: Vec<String>,
    /// The step, and the node that never became ready in it.
    pub stopped: Option<(String, NodeLog)>,
}

struct Ctx<'a> {
    target: &'a dyn Target,
    progress: &'a Progress,
    records: Mutex<Vec<Record>>,
    /// The node that created each user's current session (answered its login callback).
    created_on: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Users whose last login the harness's own parts broke: their reads have no session to
    /// find, and failing them says nothing about the deployment.
    login_broken_by_harness: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The random nodes of cluster steps, from the run's seed.
    rng: std::sync::Mutex<rand::rngs::StdRng>,
    /// When the run began: records and fault windows are placed on this clock.
    began: Instant,
    /// Each cluster step's span, for the report's timeline.
    faults: std::sync::Mutex<Vec<FaultWindow>>,
    /// Steps the target cannot carry out, once each.
    skipped: std::sync::Mutex<Vec<String>>,
    run_id: String,
    /// Asks the nodes how their caches stand after store faults (no cookies, its own
    /// connections).
    probe: reqwest::Client,
    /// How long to hold reads back after a store fault for nodes that do not say.
    store_fault_settle: Option<Duration>,
    /// Bounds the requests in flight by this process's open-files limit: each holds a client
    /// socket and, through bffctl's load balancer, two more.
    in_flight: tokio::sync::Semaphore,
    /// In a scenario that rolls builds: the build each node runs now (`0.1.0`), so that records
    /// name `node-1@0.1.0` and the created-on × read-on matrix shows versions as well as nodes.
    builds: std::sync::Mutex<Vec<Option<String>>>,
}

impl Ctx<'_> {
    /// `node-N` as records name it: with its build in a scenario that rolls builds.
    fn labelled(&self, node: String) -> String {
        let index = node.strip_prefix("node-").and_then(|n| n.parse::<usize>().ok()).and_then(|n| n.checked_sub(1));
        let builds = self.builds.lock().expect("builds lock");
        match index.and_then(|i| builds.get(i).cloned().flatten()) {
            Some(build) => format!("{node}@{build}"),
            None => node,
        }
    }

    async fn note_builds(&self) {
        let mut builds = Vec::with_capacity(self.target.node_count());
        for index in 0..self.target.node_count() {
            builds.push(self.target.node_build(index).await);
        }
        *self.builds.lock().expect("builds lock") = builds;
    }
}

/// Sockets each request in flight may hold in this process (the user's, and the load
/// balancer's two), and the files kept for everything else.
const SOCKETS_PER_REQUEST: u64 = 4;
const FILES_KEPT: u64 = 1_000;

/// Runs every iteration of the scenario; returns the raw records and the cluster events. `seed`
/// draws the user names and the random nodes of cluster steps.
pub async fn execute(
    scenario: &Scenario,
    target: &dyn Target,
    progress: &Progress,
    seed: u64,
) -> Result<Execution, StepError> {
    let mut events = Vec::new();
    let ctx = match replay(scenario, target, progress, &mut events, seed).await {
        Ok(ctx) => ctx,
        Err(Stop::Tool(error)) => return Err(error),
        Err(Stop::NotReady { step, log, records, faults, skipped }) => {
            return Ok(Execution { records, events, faults, skipped, stopped: Some((step, log)) });
        }
    };
    let faults = ctx.faults.into_inner().expect("faults lock");
    let skipped = ctx.skipped.into_inner().expect("skipped lock");
    Ok(Execution { records: ctx.records.into_inner(), events, faults, skipped, stopped: None })
}

/// Why a replay ended before its last step.
enum Stop {
    Tool(StepError),
    NotReady { step: String, log: NodeLog, records: Vec<Record>, faults: Vec<FaultWindow>, skipped: Vec<String> },
}

async fn replay<'a>(
    scenario: &Scenario,
    target: &'a dyn Target,
    progress: &'a Progress,
    events: &mut Vec<String>,
    seed: u64,
) -> Result<Ctx<'a>, Stop> {
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(seed);
    let run_id = format!("{:04x}", rng.random::<u16>());
    let ctx = Ctx {
        target,
        progress,
        records: Mutex::new(Vec::new()),
        created_on: Default::default(),
        login_broken_by_harness: Default::default(),
        rng: std::sync::Mutex::new(rng),
        began: Instant::now(),
        faults: Default::default(),
        skipped: Default::default(),
        run_id,
        probe: reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("probe client"),
        store_fault_settle: scenario.cluster.store_fault_settle_ms.map(Duration::from_millis),
        in_flight: tokio::sync::Semaphore::new(
            (crate::open_files::current_limit().saturating_sub(FILES_KEPT) / SOCKETS_PER_REQUEST).max(64) as usize,
        ),
        builds: Default::default(),
    };
    let rolls = scenario
        .steps
        .iter()
        .any(|s| std::iter::once(s).chain(s.during.as_deref()).any(|s| s.action == Action::RollingUpgrade));
    if rolls {
        ctx.note_builds().await;
    }
    // Idle connections to the balancer and to every node, per user, would exceed the limit.
    let close_connections = (scenario.load.users as u64) * (target.node_count() as u64 + 2)
        > crate::open_files::current_limit().saturating_sub(FILES_KEPT);
    let mut users: Vec<(String, VirtualUser)> = (0..scenario.load.users.max(1))
        .map(|i| {
            let name = format!("user-{}-{}", ctx.run_id, i + 1);
            let client = target.user(&name);
            (name, if close_connections { client.closing_connections() } else { client })
        })
        .collect();
    let mut node_urls = target.node_urls().await;
    let ramp_up = Duration::from_millis(scenario.load.ramp_up_ms);
    for iteration in 0..scenario.load.iterations.max(1) {
        if iteration > 0 && !scenario.load.keep_cookies {
            // A new browser: no cookie, no open connection, no session of the last iteration.
            users = users.iter().map(|(name, user)| (name.clone(), user.new_browser())).collect();
            ctx.created_on.lock().expect("created-on lock").clear();
        }
        for (index, step) in scenario.steps.iter().enumerate() {
            // Only the very first user step of the run is ramped up.
            let ramp = if iteration == 0 && index == 0 { ramp_up } else { Duration::ZERO };
            let cannot = std::iter::once(step).chain(step.during.as_deref()).find_map(|s| Some((s, target.cannot(s)?)));
            if let Some((what, why)) = cannot {
                let line = format!("{}: {why}", what.label());
                let mut skipped = ctx.skipped.lock().expect("skipped lock");
                if !skipped.contains(&line) {
                    skipped.push(line);
                }
                continue;
            }
            if step.action == Action::WebsocketRestart {
                progress.set_current(format!("iteration {} · {}", iteration + 1, step.label()));
                let started = Instant::now();
                let result = super::websocket_restart::run(target, &users, step, ctx.began).await;
                let at = |t: Instant| t.duration_since(ctx.began).as_secs_f64() * 1000.0;
                let window = FaultWindow { label: step.label(), start_ms: at(started), end_ms: at(Instant::now()) };
                ctx.faults.lock().expect("faults lock").push(window);
                let result = result.map(|found| {
                    events.push(found.event);
                    found.records
                });
                let records = match result {
                    Ok(records) => records,
                    Err(error) => {
                        stop_on(Err(error), step, &ctx).await?;
                        Vec::new()
                    }
                };
                for record in records {
                    record_of(&ctx, record).await;
                }
                node_urls = target.node_urls().await;
                continue;
            }
            if step.action.is_user_step() {
                match &step.during {
                    None => {
                        progress.set_current(format!("iteration {} · {}", iteration + 1, step.label()));
                        let count = users.len() as u32;
                        let calls = users.iter().enumerate().map(|(i, (name, user))| {
                            let node_urls = &node_urls;
                            let ctx = &ctx;
                            async move {
                                if !ramp.is_zero() {
                                    tokio::time::sleep(ramp * i as u32 / count).await;
                                }
                                user_step(ctx, step, name, user, node_urls, false).await
                            }
                        });
                        futures::future::join_all(calls).await;
                    }
                    Some(fault) => {
                        progress.set_current(format!(
                            "iteration {} · {} (fault: {})",
                            iteration + 1,
                            step.label(),
                            fault.label()
                        ));
                        let done = AtomicBool::new(false);
                        let loops = users.iter().map(|(name, user)| async {
                            while !done.load(Ordering::Relaxed) {
                                user_step(&ctx, step, name, user, &node_urls, true).await;
                            }
                        });
                        let fault_run = async {
                            let result = cluster_step(&ctx, fault, events).await;
                            done.store(true, Ordering::Relaxed);
                            result
                        };
                        let (result, _) = tokio::join!(fault_run, futures::future::join_all(loops));
                        stop_on(result, fault, &ctx).await?;
                        node_urls = target.node_urls().await;
                    }
                }
            } else {
                progress.set_current(format!("iteration {} · {}", iteration + 1, step.label()));
                let result = cluster_step(&ctx, step, events).await;
                stop_on(result, step, &ctx).await?;
                node_urls = target.node_urls().await;
            }
        }
    }
    Ok(ctx)
}

/// Whether the replay goes on after a cluster step, and if not why (with what it recorded).
async fn stop_on(result: Result<(), ClusterError>, step: &Step, ctx: &Ctx<'_>) -> Result<(), Stop> {
    match result {
        Ok(()) => Ok(()),
        Err(ClusterError::NodeNotReady { node, reason, log, last_lines }) => Err(Stop::NotReady {
            step: step.label(),
            log: NodeLog { node, reason: Some(reason), path: log, last_lines },
            records: std::mem::take(&mut *ctx.records.lock().await),
            faults: std::mem::take(&mut *ctx.faults.lock().expect("faults lock")),
            skipped: std::mem::take(&mut *ctx.skipped.lock().expect("skipped lock")),
        }),
        Err(error) => Err(Stop::Tool(StepError { step: step.label(), reason: error.to_string() })),
    }
}

async fn cluster_step(ctx: &Ctx<'_>, step: &Step, events: &mut Vec<String>) -> Result<(), ClusterError> {
    let count = ctx.target.node_count();
    let indexes: Vec<usize> = match &step.node {
        None if step.action == Action::RollingUpgrade => (0..count).collect(),
        None => vec![],
        Some(NodeSelector::All) => (0..count).collect(),
        Some(NodeSelector::Random) => vec![ctx.rng.lock().expect("rng lock").random_range(0..count)],
        Some(NodeSelector::Index(n)) => vec![n - 1],
    };
    let started = Instant::now();
    let node_urls = if step.action.breaks_store_links() { ctx.target.node_urls().await } else { Vec::new() };
    let before = settle::cache_states(&ctx.probe, &node_urls).await;
    let result = apply(ctx, step, events, &indexes, started).await;
    if result.is_ok() && step.action.breaks_store_links() {
        settle_after(ctx, step, events, &before).await;
    }
    if step.action != Action::Pause {
        let at = |t: Instant| t.duration_since(ctx.began).as_secs_f64() * 1000.0;
        let window = FaultWindow { label: step.label(), start_ms: at(started), end_ms: at(Instant::now()) };
        ctx.faults.lock().expect("faults lock").push(window);
    }
    result
}

/// Holds the run back until no node can answer from a cache filled before the store fault
/// (see [`settle`]); a node that never settles is a failure of the step, and nodes that do not
/// say are named in the report.
async fn settle_after(ctx: &Ctx<'_>, step: &Step, events: &mut Vec<String>, before: &[Option<settle::CacheState>]) {
    let node_urls = ctx.target.node_urls().await;
    let settled = settle::after_store_fault(&ctx.probe, &node_urls, before, ctx.store_fault_settle).await;
    events.push(format!(
        "{}: node caches confirmed again after {:.0} ms",
        step.label(),
        settled.waited.as_secs_f64() * 1000.0
    ));
    for (index, said) in settled.unsettled {
        let node = ctx.target.node_name(index);
        let record = Record {
            step: format!("{} (node cache)", step.label()),
            action: step.action,
            user: "-".into(),
            identity: None,
            node: Some(node),
            created_on: None,
            outcome: Outcome::Failed,
            status: None,
            at_ms: ctx.began.elapsed().as_secs_f64() * 1000.0,
            latency_ms: settle::SETTLE_TIMEOUT.as_secs_f64() * 1000.0,
            detail: format!(
                "still served sessions from a cache filled before the store fault, {} s after it ({said})",
                settle::SETTLE_TIMEOUT.as_secs()
            ),
            harness: false,
            traceparent: None,
            request_id: None,
        };
        record_of(ctx, record).await;
    }
    if !settled.unknown.is_empty() {
        let nodes: Vec<String> = settled.unknown.iter().map(|&i| ctx.target.node_name(i)).collect();
        let line = format!(
            "after {}: {} do not say when their node cache is confirmed again (/ready session_cache), so reads \
             were not held back and may have come from a cache; give a settle time (--settle-after-store-fault)",
            step.action.name(),
            nodes.join(", ")
        );
        let mut skipped = ctx.skipped.lock().expect("skipped lock");
        if !skipped.contains(&line) {
            skipped.push(line);
        }
    }
}

async fn apply(
    ctx: &Ctx<'_>,
    step: &Step,
    events: &mut Vec<String>,
    indexes: &[usize],
    started: Instant,
) -> Result<(), ClusterError> {
    match step.action {
        Action::RestartNode | Action::KillNode | Action::StartNode => {
            let action = match step.action {
                Action::RestartNode => "restart",
                Action::KillNode => "kill",
                _ => "start",
            };
            for &index in indexes {
                ctx.progress.set_current(format!("{action} {}", ctx.target.node_name(index)));
                ctx.target.node(index, action).await?;
                events.push(format!(
                    "{action} {} ({:.1} s)",
                    ctx.target.node_name(index),
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        Action::RollingUpgrade => {
            for &index in indexes {
                let node = ctx.target.node_name(index);
                let from = ctx.target.node_build(index).await.unwrap_or_else(|| "?".into());
                ctx.progress.set_current(format!("upgrade {node} from {from}"));
                let result = ctx.target.upgrade_node(index, step.to.as_deref()).await;
                ctx.note_builds().await;
                let to = ctx.target.node_build(index).await.unwrap_or_else(|| "?".into());
                let took = started.elapsed().as_secs_f64();
                match result {
                    Ok(()) => events.push(format!("upgrade {node} from {from} to {to} ({took:.1} s)")),
                    // The verdict names the pair of builds as well as the node and the step.
                    Err(ClusterError::NodeNotReady { node, reason, log, last_lines }) => {
                        let reason = format!("{reason}, upgraded from {from} to {to}");
                        return Err(ClusterError::NodeNotReady { node, reason, log, last_lines });
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Action::RestartRedis => {
            ctx.progress.set_current("restart redis".into());
            ctx.target.restart_redis().await?;
            events.push(format!("restart redis ({:.1} s)", started.elapsed().as_secs_f64()));
        }
        Action::FailoverRedis | Action::KillRedisPrimary | Action::Reshard | Action::AddRedisNode => {
            let fault = redis_fault_of(ctx, step);
            ctx.progress.set_current(step.label());
            let done = ctx.target.redis_fault(fault).await?;
            let done = if done.0.is_empty() { String::new() } else { format!(": {done}") };
            events.push(format!("{}{done} ({:.1} s)", step.label(), started.elapsed().as_secs_f64()));
        }
        Action::Pause => tokio::time::sleep(Duration::from_millis(step.millis.unwrap_or(0))).await,
        action if action.is_bounded_fault() => {
            let lasts = Duration::from_millis(step.millis.unwrap_or(0));
            ctx.progress.set_current(step.label());
            let began = inject(ctx, step, indexes, true).await;
            if began.is_ok() {
                tokio::time::sleep(lasts).await;
            }
            // Lifted whatever happened, so that no fault outlives its step.
            let ended = inject(ctx, step, indexes, false).await;
            began?;
            ended?;
            events.push(format!(
                "{} for {} ms (ended at {:.1} s)",
                step.label(),
                lasts.as_millis(),
                started.elapsed().as_secs_f64()
            ));
        }
        _ => unreachable!("user steps are not cluster steps"),
    }
    Ok(())
}

/// The [`RedisFault`] of a shard step; a random shard is drawn from the run's seed.
fn redis_fault_of(ctx: &Ctx<'_>, step: &Step) -> RedisFault {
    let draw: u64 = ctx.rng.lock().expect("rng lock").random();
    let shard = match step.shard {
        Some(ShardSelector::Index(n)) => ShardPick::Index(n.saturating_sub(1)),
        Some(ShardSelector::Random) | None => ShardPick::Random(draw),
    };
    match step.action {
        Action::FailoverRedis => RedisFault::Failover { shard },
        Action::KillRedisPrimary => RedisFault::KillPrimary { shard },
        Action::Reshard => RedisFault::Reshard {
            from: shard,
            to: step.to_shard.map(|n| ShardPick::Index(n.saturating_sub(1))),
            share: step.share.unwrap_or(0.0),
        },
        _ => RedisFault::AddPrimary,
    }
}

/// Starts (`on`) or ends a bounded fault.
async fn inject(ctx: &Ctx<'_>, step: &Step, indexes: &[usize], on: bool) -> Result<(), ClusterError> {
    let link = |fault: Fault| if on { fault } else { Fault::None };
    match step.action {
        Action::RedisLatency => {
            let delay = Duration::from_millis(step.latency_ms.unwrap_or(0));
            ctx.target.set_redis_link(None, link(Fault::Latency(delay))).await
        }
        Action::RedisBlackhole => ctx.target.set_redis_link(None, link(Fault::Blackhole)).await,
        Action::RedisReset => ctx.target.set_redis_link(None, link(Fault::Reset)).await,
        Action::PartitionNode => {
            for &index in indexes {
                ctx.target.set_redis_link(Some(index), link(Fault::Blackhole)).await?;
            }
            Ok(())
        }
        Action::PauseNode => {
            for &index in indexes {
                ctx.target.pause_node(index, on).await?;
            }
            Ok(())
        }
        Action::KillRedis => ctx.target.kill_redis(on).await,
        Action::IssuerLatency => {
            let delay = Duration::from_millis(step.latency_ms.unwrap_or(0));
            ctx.target.issuer_outage(if on { IssuerOutage::Latency(delay) } else { IssuerOutage::None }).await
        }
        Action::IssuerDown => ctx.target.issuer_outage(if on { IssuerOutage::Down } else { IssuerOutage::None }).await,
        other => unreachable!("{} is not a bounded fault", other.name()),
    }
}

async fn user_step(
    ctx: &Ctx<'_>,
    step: &Step,
    name: &str,
    user: &VirtualUser,
    node_urls: &[Option<String>],
    fault: bool,
) {
    let label = step.label();
    let targets: Vec<(String, Option<String>)> = match &step.via {
        Via::Lb => vec![(ctx.target.lb_url(), None)],
        Via::EachNode => node_urls
            .iter()
            .enumerate()
            .filter_map(|(i, url)| url.clone().map(|u| (u, Some(ctx.target.node_name(i)))))
            .collect(),
        Via::Node(n) => match node_urls.get(n - 1).cloned().flatten() {
            Some(u) => vec![(u, Some(ctx.target.node_name(n - 1)))],
            None => {
                let down = Record {
                    step: label.clone(),
                    action: step.action,
                    user: user.identity().unwrap_or(name).to_owned(),
                    identity: None,
                    node: Some(ctx.target.node_name(n - 1)),
                    created_on: None,
                    outcome: Outcome::Unavailable,
                    status: None,
                    at_ms: ctx.began.elapsed().as_secs_f64() * 1000.0,
                    latency_ms: 0.0,
                    detail: "node is down".into(),
                    harness: false,
                    traceparent: None,
                    request_id: None,
                };
                record_of(ctx, down).await;
                return;
            }
        },
    };
    let copies = step.parallel.unwrap_or(1).max(1);
    for (base, direct_node) in targets {
        let one = |base: String, direct_node: Option<String>| {
            let label = &label;
            async move {
                let _slot = ctx.in_flight.acquire().await.expect("the semaphore is never closed");
                let started = Instant::now();
                let deadline = started + Duration::from_millis(step.within_ms.unwrap_or(0));
                loop {
                    let cookies_before = matches!(step.action, Action::Me | Action::Get).then(|| user.cookie_names());
                    let result = match step.action {
                        Action::Login => user.login(&base).await,
                        Action::Me => user.me(&base).await,
                        Action::Logout if step.keep_cookie => user.logout_keeping_cookie(&base).await,
                        Action::Logout => user.logout(&base).await,
                        Action::Get => {
                            let url = format!("{}{}", base.trim_end_matches('/'), step.path.as_deref().unwrap_or("/"));
                            user.api(&url).await
                        }
                        _ => unreachable!("cluster steps are not user steps"),
                    };
                    let (outcome, status, node, mut detail) =
                        classify(step, &result, user.identity().unwrap_or(name), user.paths(), fault);
                    let mut harness =
                        outcome == Outcome::Failed && harness_failed(&result, &ctx.target.harness_origins());
                    {
                        let mut broken = ctx.login_broken_by_harness.lock().expect("broken-logins lock");
                        match step.action {
                            Action::Login if harness => {
                                broken.insert(name.to_owned());
                            }
                            Action::Login => {
                                broken.remove(name);
                            }
                            _ if outcome == Outcome::Failed && !harness && broken.contains(name) => {
                                harness = true;
                                detail = format!("{HARNESS_BROKE_LOGIN}: {detail}");
                            }
                            _ => {}
                        }
                    }
                    if outcome != Outcome::Ok && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                    let at_ms = started.duration_since(ctx.began).as_secs_f64() * 1000.0;
                    let node = direct_node.or(node).map(|node| ctx.labelled(node));
                    let already_logged_in = matches!(&result, Ok(reply) if reply.already_logged_in);
                    let created_on = match step.action {
                        // The session of an earlier login goes on: its creator stays.
                        Action::Login if already_logged_in && outcome == Outcome::Ok => None,
                        Action::Login => {
                            let mut created = ctx.created_on.lock().expect("created-on lock");
                            match (outcome, &node) {
                                (Outcome::Ok, Some(node)) => created.insert(name.to_owned(), node.clone()),
                                _ => created.remove(name),
                            };
                            None
                        }
                        Action::Me | Action::Get => ctx.created_on.lock().expect("created-on lock").get(name).cloned(),
                        _ => None,
                    };
                    let identity = match (&result, step.action) {
                        (Ok(reply), Action::Me) if reply.status == 200 => {
                            reply.json().and_then(|body| user.paths().identity_in(&body))
                        }
                        _ => None,
                    };
                    // A gateway that did not know the session may clear its cookie: this browser
                    // holds no session any more, and its later reads say nothing about the node
                    // that created it.
                    if outcome == Outcome::Failed
                        && cookies_before.is_some_and(|before| !before.is_subset(&user.cookie_names()))
                    {
                        ctx.created_on.lock().expect("created-on lock").remove(name);
                    }
                    let sent = user.last_request();
                    let user = user.identity().unwrap_or(name).to_owned();
                    let action = step.action;
                    let step = label.clone();
                    record_of(
                        ctx,
                        Record {
                            step,
                            action,
                            user,
                            identity,
                            node,
                            created_on,
                            outcome,
                            status,
                            at_ms,
                            latency_ms,
                            detail,
                            harness,
                            traceparent: sent.traceparent,
                            request_id: sent.request_id,
                        },
                    )
                    .await;
                    return;
                }
            }
        };
        futures::future::join_all((0..copies).map(|_| one(base.clone(), direct_node.clone()))).await;
    }
}

async fn record_of(ctx: &Ctx<'_>, record: Record) {
    ctx.progress.requests.fetch_add(1, Ordering::Relaxed);
    match record.outcome {
        Outcome::Failed => ctx.progress.failures.fetch_add(1, Ordering::Relaxed),
        Outcome::Unavailable => ctx.progress.unavailable.fetch_add(1, Ordering::Relaxed),
        Outcome::Ok => 0,
    };
    ctx.records.lock().await.push(record);
}

fn default_status(action: Action) -> u16 {
    match action {
        Action::Login | Action::Logout => 302,
        _ => 200,
    }
}

/// A failure of the harness's own parts: its virtual users ran out of sockets, or (when they
/// are bffctl's: `harness_origins`) its issuer or load balancer refused or dropped a connection;
/// a URL the gateway sent the browser to that refuses is the deployment's failure. A gateway's own
/// answer about its identity provider is not one: an issuer that refuses a misconfigured
/// node's client is the deployment's failure, and looks the same from here as a slow one.
fn harness_failed(result: &Result<Reply, ClientError>, harness_origins: &[String]) -> bool {
    match result {
        Ok(_) | Err(ClientError::LoginStep { .. }) => false,
        Err(ClientError::Transport { url, reason }) => {
            let ours = super::target::origin_of(url).is_some_and(|origin| harness_origins.contains(&origin));
            // The virtual users are always bffctl's: out of sockets is its own limit.
            let own_limit = ["Too many open files", "Cannot assign requested address"];
            let refused = ["Connection refused", "connection closed before message completed", "Connection reset"];
            own_limit.iter().any(|sign| reason.contains(sign))
                || (ours && refused.iter().any(|sign| reason.contains(sign)))
        }
    }
}

/// Outcome, status, node that answered, and what was wrong.
fn classify(
    step: &Step,
    result: &Result<Reply, ClientError>,
    user: &str,
    paths: &GatewayPaths,
    fault: bool,
) -> (Outcome, Option<u16>, Option<String>, String) {
    let reply = match result {
        Ok(reply) => reply,
        Err(ClientError::LoginStep { step: at, status, body, node }) => {
            let outcome = if fault && matches!(status, 502 | 503) { Outcome::Unavailable } else { Outcome::Failed };
            return (outcome, Some(*status), node.clone(), format!("login stopped at {at}: {}", excerpt(body)));
        }
        Err(error) => {
            let outcome = if fault { Outcome::Unavailable } else { Outcome::Failed };
            return (outcome, None, None, without_queries(&error.to_string()));
        }
    };
    if fault && matches!(reply.status, 502 | 503) {
        return (Outcome::Unavailable, Some(reply.status), reply.node.clone(), excerpt(&reply.body));
    }
    if reply.already_logged_in && step.action == Action::Login {
        // The user's `me` answered 200 through this gateway: the login step's goal holds.
        return match check(Action::Me, &Expect::default(), reply, user, paths) {
            Ok(()) => (Outcome::Ok, Some(200), reply.node.clone(), "already logged in".into()),
            Err(reason) => (Outcome::Failed, Some(200), reply.node.clone(), format!("already logged in, but {reason}")),
        };
    }
    match check(step.action, &step.expect, reply, user, paths) {
        Ok(()) => (Outcome::Ok, Some(reply.status), reply.node.clone(), String::new()),
        Err(reason) => (Outcome::Failed, Some(reply.status), reply.node.clone(), reason),
    }
}

/// A user step's result judged as a scenario step without an expectation of its own is
/// (`login`: the callback's redirect; `me`: 200 naming `user`): `Ok(())`, or the status, the node
/// that answered and what was wrong. For checks outside a scenario (`bffctl watch`).
pub fn judge(
    action: Action,
    result: &Result<Reply, ClientError>,
    user: &str,
    paths: &GatewayPaths,
) -> Result<(), (Option<u16>, Option<String>, String)> {
    let step: Step = toml::from_str(&format!("action = {:?}", action.name())).expect("a step of one action parses");
    match classify(&step, result, user, paths, false) {
        (Outcome::Ok, ..) => Ok(()),
        (_, status, node, detail) => Err((status, node, detail)),
    }
}

fn check(action: Action, expect: &Expect, reply: &Reply, user: &str, paths: &GatewayPaths) -> Result<(), String> {
    let want = expect.status.unwrap_or_else(|| default_status(action));
    if reply.status != want {
        return Err(format!("expected {want}, got {}: {}", reply.status, excerpt(&reply.body)));
    }
    let fields = expect.json.clone();
    if action == Action::Me && expect.status.is_none() && fields.is_empty() {
        // Who am I: this user and nobody else, at the gateway's identity pointer (bff's `sub`);
        // a gateway whose answer has no fixed place for it (Duende's claim list) may name the
        // user anywhere in its JSON.
        let body = reply.json().ok_or_else(|| format!("expected JSON, got: {}", excerpt(&reply.body)))?;
        let pointer = paths.identity_pointer.as_deref().unwrap_or("/sub");
        return match body.pointer(pointer) {
            Some(sub) if sub == user => Ok(()),
            Some(sub) => Err(format!("{pointer}: expected \"{user}\", got {sub}")),
            None if paths.identity_pointer.is_none() && mentions(&body, user) => Ok(()),
            None => Err(format!("expected the user \"{user}\" at {pointer} in: {}", excerpt(&reply.body))),
        };
    }
    if fields.is_empty() {
        return Ok(());
    }
    let body = reply.json().ok_or_else(|| format!("expected JSON, got: {}", excerpt(&reply.body)))?;
    for (field, wanted) in fields {
        let wanted: Value = match wanted {
            toml::Value::String(s) if s == "$user" => Value::String(user.to_owned()),
            toml::Value::String(s) => Value::String(s),
            toml::Value::Integer(i) => Value::from(i),
            toml::Value::Boolean(b) => Value::Bool(b),
            other => Value::String(other.to_string()),
        };
        let got = body.get(&field).cloned().unwrap_or(Value::Null);
        if got != wanted {
            return Err(format!("{field}: expected {wanted}, got {got}"));
        }
    }
    Ok(())
}

/// True when `text` is one of the strings anywhere in `value`.
fn mentions(value: &Value, text: &str) -> bool {
    match value {
        Value::String(s) => s == text,
        Value::Array(items) => items.iter().any(|v| mentions(v, text)),
        Value::Object(map) => map.values().any(|v| mentions(v, text)),
        _ => false,
    }
}

/// `text` with every URL's query left out (`…/authorize?…`), and each URL said once, so that
/// failures of one kind group as one however many users met them.
fn without_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('?') {
        out.push_str(&rest[..at]);
        out.push_str("?…");
        let end = rest[at..].find([' ', ')']).map_or(rest.len(), |e| at + e);
        rest = &rest[end..];
    }
    out.push_str(rest);
    // reqwest repeats the URL in parentheses after "error sending request for url".
    match (out.find(" for url ("), out.find("): ")) {
        (Some(from), Some(to)) if from < to => format!("{}{}", &out[..from], &out[to + 1..]),
        _ => out,
    }
}

fn excerpt(body: &str) -> String {
    let flat: String = body.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() > 120 { format!("{}…", flat.chars().take(120).collect::<String>()) } else { flat }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_of_one_kind_read_alike() {
        let one = "request to http://127.0.0.1:1/authorize?state=a&x=1 failed: error sending request for url \
                   (http://127.0.0.1:1/authorize?state=a&x=1): client error (Connect): tcp connect error: Connection refused";
        let two = one.replace("state=a", "state=b");
        assert_eq!(without_queries(one), without_queries(&two));
        assert_eq!(
            without_queries(one),
            "request to http://127.0.0.1:1/authorize?… failed: error sending request: client error (Connect): tcp connect \
             error: Connection refused"
        );
    }

    #[test]
    fn the_harness_is_blamed_only_for_its_own_parts() {
        let ours = vec!["http://127.0.0.1:1".to_owned()];
        let refused_at = |url: &str| {
            Err(ClientError::Transport { url: url.into(), reason: "tcp connect error: Connection refused".into() })
        };
        assert!(harness_failed(&refused_at("http://127.0.0.1:1/authorize?x=1"), &ours));
        assert!(!harness_failed(&refused_at("http://127.0.0.1:9/callback"), &ours), "where the gateway sent it");
        assert!(!harness_failed(&refused_at("http://127.0.0.1:1/x"), &[]), "a deployment's own load balancer");
        let fds = Err(ClientError::Transport { url: "u".into(), reason: "tcp open error: Too many open files".into() });
        assert!(harness_failed(&fds, &[]), "bffctl's own sockets");
        let timeout =
            Err(ClientError::Transport { url: "http://127.0.0.1:1/".into(), reason: "operation timed out".into() });
        assert!(!harness_failed(&timeout, &ours), "a gateway that hangs is the gateway's failure");
        let issuer = Err(ClientError::LoginStep {
            step: "callback",
            status: 502,
            body: r#"{"error":"identity provider unavailable"}"#.into(),
            node: None,
        });
        assert!(!harness_failed(&issuer, &ours), "the gateway's answer about its issuer is the deployment's");
        let unknown = Ok(Reply {
            status: 404,
            body: "{}".into(),
            location: None,
            node: None,
            already_logged_in: false,
            request_id: None,
            traceparent: None,
        });
        assert!(!harness_failed(&unknown, &ours));
    }
}
