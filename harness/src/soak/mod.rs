//! The soak: a cluster under an open-loop arrival rate (requests start on a clock, however slow
//! the answers, as real traffic does) for minutes, with a fault drawn from the catalogue at
//! every interval by a seeded schedule, while each node's memory and file descriptors and the
//! Redis key count are sampled. What it reports: wrong answers (the history's invariants),
//! unavailability inside and outside the fault windows, each fault's recovery time, p50/p99 per
//! minute, and whether the resource curves stay flat after warm-up. On a Redis Cluster the
//! catalogue is the cluster's own faults ([`CLUSTER_CATALOGUE`]).

mod figures;
mod html;
mod sample;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

pub use figures::{Curve, FaultRun, Minute, SoakReport};
pub use html::html;
pub use sample::Sample;

use crate::client::VirtualUser;
use crate::cluster::{Cluster, ClusterError, ClusterSpec, RedisFault, ShardPick};
use crate::fault::Fault;
use crate::issuer::IssuerOutage;
use crate::scenario::{Action, Outcome, Record};

/// What a soak does.
#[derive(Debug, Clone, Serialize)]
pub struct SoakPlan {
    pub duration: Duration,
    /// Requests started per second, whatever the answers take.
    pub rate: f64,
    pub users: usize,
    pub seed: u64,
    /// A fault starts every this often (the first one after one interval).
    pub fault_every: Duration,
    /// How long each fault lasts.
    pub fault_lasts: Duration,
    pub sample_every: Duration,
}

impl SoakPlan {
    /// The nodes' session idle timeout in a soak: short, so that sessions nobody holds any more
    /// (a login whose answer a fault lost, a logout that failed after the browser dropped its
    /// cookie) expire during the run and the key count can settle; long enough that an active
    /// user (one request every `users / rate` seconds on average) never idles out.
    pub fn session_idle_timeout(&self) -> Duration {
        let between_requests = self.users as f64 / self.rate.max(0.1);
        Duration::from_secs_f64((between_requests * 20.0).max(60.0).ceil())
    }

    /// The nodes' login timeout in a soak: the one-time markers of finished logins live this
    /// long, so it bounds how many of them Redis holds.
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// One line for reports: the load, the faults, the seed and the nodes' timeouts.
    pub fn describe(&self) -> String {
        let d = humantime::format_duration;
        format!(
            "{} at {}/s, {} users, a fault every {} for {}, seed {}; session idle timeout {}, login timeout {}",
            d(self.duration),
            self.rate,
            self.users,
            d(self.fault_every),
            d(self.fault_lasts),
            self.seed,
            d(self.session_idle_timeout()),
            d(self.login_timeout()),
        )
    }

    /// How long the run takes to reach its steady state: the first sessions nobody holds must
    /// have had time to expire, and the first markers too. A third of the run at most.
    pub fn warm_up(&self) -> Duration {
        let settle = self.session_idle_timeout().max(self.login_timeout()) + Duration::from_secs(30);
        settle.max(Duration::from_secs(60)).min(self.duration / 3)
    }
}

/// The faults a soak draws from.
pub const CATALOGUE: [&str; 8] = [
    "redis-latency",
    "redis-blackhole",
    "redis-reset",
    "partition-node",
    "pause-node",
    "kill-redis",
    "issuer-latency",
    "issuer-down",
];

/// The faults a soak on a Redis Cluster draws from: the links to a cluster cannot be relayed
/// (the nodes follow the shards' own addresses), Redis itself is faulted instead.
pub const CLUSTER_CATALOGUE: [&str; 6] =
    ["failover-redis", "kill-redis-primary", "reshard", "pause-node", "issuer-latency", "issuer-down"];

/// The share of a shard's slots a soak's `reshard` moves.
pub const SOAK_RESHARD_SHARE: f64 = 0.1;

/// The catalogue for a cluster of `spec`'s Redis.
pub fn catalogue(spec: &ClusterSpec) -> &'static [&'static str] {
    if spec.redis == crate::cluster::RedisTopology::Cluster { &CLUSTER_CATALOGUE } else { &CATALOGUE }
}

/// How far the run has got, for a progress bar.
#[derive(Debug, Clone, Default)]
pub struct SoakProgress {
    pub elapsed_s: f64,
    pub requests: u64,
    pub unavailable: u64,
    pub current_fault: Option<String>,
}

/// The cluster a soak needs: nodes reach Redis through fault relays, Redis keeps its data across
/// a SIGKILL (append-only file), access tokens expire every minute (so API calls refresh them)
/// and refresh tokens rotate (so a token presented twice shows); idle and login timeouts are the
/// plan's, unless the spec sets them.
pub fn soak_spec(spec: ClusterSpec, plan: &SoakPlan) -> ClusterSpec {
    let single = spec.redis != crate::cluster::RedisTopology::Cluster;
    let mut bff_env = spec.bff_env.clone();
    for (key, value) in
        [("BFF_SESSION_IDLE_TIMEOUT", plan.session_idle_timeout()), ("BFF_SESSION_LOGIN_TIMEOUT", plan.login_timeout())]
    {
        if !bff_env.iter().any(|(k, _)| k == key) {
            bff_env.push((key.to_owned(), format!("{}s", value.as_secs())));
        }
    }
    ClusterSpec {
        bff_env,
        redis_fault_links: single,
        redis_persistence: single,
        api_upstream: true,
        rotate_refresh_tokens: true,
        access_token_lifetime_secs: Some(spec.access_token_lifetime_secs.unwrap_or(60)),
        ..spec
    }
}

/// Runs the soak on a fresh cluster (processes or containers, as the spec says) and tears it down.
pub async fn run(
    plan: SoakPlan,
    spec: ClusterSpec,
    on_step: &(dyn Fn(&str) + Send + Sync),
    on_progress: &(dyn Fn(&SoakProgress) + Send + Sync),
) -> Result<SoakReport, ClusterError> {
    let cluster = Cluster::start(soak_spec(spec, &plan), on_step).await?;
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let result = drive(&plan, &cluster, on_step, on_progress).await;
    let teardown = cluster.lock().await.teardown().await;
    let report = result?;
    teardown?;
    Ok(report)
}

async fn drive(
    plan: &SoakPlan,
    cluster: &Arc<tokio::sync::Mutex<Cluster>>,
    on_step: &(dyn Fn(&str) + Send + Sync),
    on_progress: &(dyn Fn(&SoakProgress) + Send + Sync),
) -> Result<SoakReport, ClusterError> {
    let (lb, users, nodes, catalogue) = {
        let c = cluster.lock().await;
        let users: Vec<Arc<SoakUser>> = (0..plan.users)
            .map(|i| Arc::new(SoakUser { browser: c.user(Some(&format!("soak-{i}"))), relogin: Default::default() }))
            .collect();
        (c.lb_url(), users, c.node_count(), catalogue(c.spec()))
    };
    on_step(&format!("logging in {} users", users.len()));
    for chunk in users.chunks(10) {
        let logins = chunk.iter().map(|u| u.browser.login(&lb));
        for reply in futures::future::join_all(logins).await {
            match reply {
                Ok(r) if r.status == 302 => {}
                other => return Err(ClusterError::failed("soak login", format!("{other:?}"))),
            }
        }
    }
    let began = Instant::now();
    let records: Arc<Mutex<Vec<Record>>> = Arc::new(Mutex::new(Vec::new()));
    // Logins of the set-up count as the start of each user's history.
    for user in &users {
        let login = record(&user.browser, Action::Login, Some(302), None, 0.0, 0.0, Outcome::Ok);
        records.lock().expect("records").push(login);
    }
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut fault_rng = StdRng::seed_from_u64(plan.seed ^ 0x5eed_fa17);
    let faults: Arc<Mutex<Vec<FaultRun>>> = Arc::new(Mutex::new(Vec::new()));
    let progress = Arc::new(Mutex::new(SoakProgress::default()));

    let schedule = {
        let (cluster, faults, progress, plan) = (cluster.clone(), faults.clone(), progress.clone(), plan.clone());
        tokio::spawn(async move {
            let mut next = plan.fault_every;
            while next + plan.fault_lasts < plan.duration {
                tokio::time::sleep_until((began + next).into()).await;
                let kind = catalogue[fault_rng.random_range(0..catalogue.len())];
                let node = fault_rng.random_range(0..nodes);
                let shard: u64 = fault_rng.random();
                let label = match kind {
                    "partition-node" | "pause-node" => format!("{kind} node-{}", node + 1),
                    _ => kind.to_owned(),
                };
                progress.lock().expect("progress").current_fault = Some(label.clone());
                let start_ms = began.elapsed().as_secs_f64() * 1000.0;
                let on = inject(&cluster, kind, node, shard, true).await;
                tokio::time::sleep(plan.fault_lasts).await;
                let off = inject(&cluster, kind, node, shard, false).await;
                let end_ms = began.elapsed().as_secs_f64() * 1000.0;
                progress.lock().expect("progress").current_fault = None;
                let error = on.err().or(off.err()).map(|e| e.to_string());
                faults.lock().expect("faults").push(FaultRun { label, start_ms, end_ms, recovery_ms: None, error });
                next += plan.fault_every;
            }
        })
    };

    let sampler = {
        let (cluster, plan) = (cluster.clone(), plan.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(plan.sample_every);
            while began.elapsed() < plan.duration {
                tick.tick().await;
                let (ids, redis) = {
                    let c = cluster.lock().await;
                    let components = c.components();
                    let id = |name: &str| components.iter().find(|x| x.name == name).and_then(|x| x.id.clone());
                    let ids: Vec<Option<String>> = (0..nodes).map(|i| id(&crate::cluster::node_name(i))).collect();
                    // One Redis, or every primary of a Redis Cluster (its keys are theirs).
                    let redis: Vec<String> = match components.iter().find(|x| x.name == "redis") {
                        Some(redis) => redis.address.clone().into_iter().collect(),
                        None => components
                            .iter()
                            .filter(|x| x.name.starts_with("redis-") && x.state.starts_with("primary"))
                            .filter_map(|x| x.address.clone())
                            .collect(),
                    };
                    (ids, redis)
                };
                let mut pids = Vec::new();
                for id in &ids {
                    pids.push(match id {
                        Some(id) => sample::host_pid(id).await,
                        None => None,
                    });
                }
                let mut redis_keys = (!redis.is_empty()).then_some(0);
                for addr in &redis {
                    redis_keys = redis_keys.zip(sample::redis_keys(addr).await).map(|(sum, keys)| sum + keys);
                }
                samples.push(Sample {
                    at_s: began.elapsed().as_secs_f64(),
                    rss_kib: pids.iter().map(|p| p.and_then(sample::rss_kib)).collect(),
                    fds: pids.iter().map(|p| p.and_then(sample::open_fds)).collect(),
                    redis_keys,
                });
            }
            samples
        })
    };

    // Open loop: a request starts at every tick, whether or not earlier ones have answered.
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = tokio::task::JoinSet::new();
    let mut last_progress = Instant::now();
    while began.elapsed() < plan.duration {
        tick.tick().await;
        let user = users[rng.random_range(0..users.len())].clone();
        let roll: f64 = rng.random();
        let action = if roll < 0.55 {
            Action::Me
        } else if roll < 0.98 {
            Action::Get
        } else {
            Action::Logout
        };
        let (lb, records, counts) = (lb.clone(), records.clone(), progress.clone());
        inflight.spawn(async move {
            let requests = one_request(&user, &lb, action, began).await;
            let mut p = counts.lock().expect("progress");
            for r in &requests {
                p.requests += 1;
                if r.outcome == Outcome::Unavailable {
                    p.unavailable += 1;
                }
            }
            records.lock().expect("records").extend(requests);
        });
        while inflight.try_join_next().is_some() {}
        if last_progress.elapsed() >= Duration::from_millis(250) {
            last_progress = Instant::now();
            let mut p = progress.lock().expect("progress").clone();
            p.elapsed_s = began.elapsed().as_secs_f64();
            on_progress(&p);
        }
    }
    on_step("waiting for the last answers");
    while inflight.join_next().await.is_some() {}
    let _ = schedule.await;
    let samples = sampler.await.unwrap_or_default();
    let reuse = cluster.lock().await.issuer().refresh_tokens_presented_twice();
    let records = std::mem::take(&mut *records.lock().expect("records"));
    let faults = std::mem::take(&mut *faults.lock().expect("faults"));
    Ok(SoakReport::build(plan, nodes, records, faults, samples, reuse))
}

/// A virtual user of the soak.
struct SoakUser {
    browser: VirtualUser,
    /// Held through a logout and the login after it: one browser does not run two logins at
    /// once (the second would replace the first's login-binding cookie, and the first callback
    /// would rightly be refused).
    relogin: tokio::sync::Mutex<()>,
}

/// One arrival: `me`, an API call, or a logout followed by a new login (two records).
async fn one_request(soak_user: &SoakUser, lb: &str, action: Action, began: Instant) -> Vec<Record> {
    let user = &soak_user.browser;
    let _relogin = match action {
        Action::Logout => Some(soak_user.relogin.lock().await),
        _ => None,
    };
    let mut out = Vec::new();
    let steps: &[Action] = if action == Action::Logout { &[Action::Logout, Action::Login] } else { &[action] };
    for &step in steps {
        let started = Instant::now();
        let at_ms = started.duration_since(began).as_secs_f64() * 1000.0;
        let result = match step {
            Action::Me => user.me(lb).await,
            Action::Get => user.api(&format!("{}/api/data", lb.trim_end_matches('/'))).await,
            Action::Logout => user.logout(lb).await,
            _ => user.login(lb).await,
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, node, identity, detail) = match &result {
            Ok(reply) => {
                let identity = (step == Action::Me && reply.status == 200)
                    .then(|| reply.json().and_then(|b| b.get("sub").and_then(|s| s.as_str()).map(str::to_owned)))
                    .flatten();
                let detail = if reply.status >= 400 { reply.body.chars().take(120).collect() } else { String::new() };
                (Some(reply.status), reply.node.clone(), identity, detail)
            }
            Err(error @ crate::client::ClientError::LoginStep { status, node, .. }) => {
                (Some(*status), node.clone(), None, error.to_string().chars().take(160).collect())
            }
            Err(error) => (None, None, None, error.to_string()),
        };
        let outcome = match (step, status) {
            (Action::Login | Action::Logout, Some(302)) | (Action::Me | Action::Get, Some(200)) => Outcome::Ok,
            // "No session": judged by the history (after a logout it is right).
            (Action::Me, Some(404)) | (Action::Get, Some(401)) => Outcome::Ok,
            (_, None | Some(502..=504)) => Outcome::Unavailable,
            _ => Outcome::Failed,
        };
        let mut r = record(user, step, status, identity, at_ms, latency_ms, outcome);
        r.node = node;
        r.detail = detail;
        let stop = step == Action::Logout && outcome != Outcome::Ok;
        out.push(r);
        if stop {
            break;
        }
    }
    out
}

fn record(
    user: &VirtualUser,
    action: Action,
    status: Option<u16>,
    identity: Option<String>,
    at_ms: f64,
    latency_ms: f64,
    outcome: Outcome,
) -> Record {
    Record {
        step: action.name().to_owned(),
        action,
        user: user.identity().unwrap_or_default().to_owned(),
        identity,
        node: None,
        created_on: None,
        outcome,
        status,
        at_ms,
        latency_ms,
        detail: String::new(),
        harness: false,
        traceparent: user.last_request().traceparent,
        request_id: user.last_request().request_id,
    }
}

/// Starts (`on`) or ends one fault of the catalogue; `shard` draws the shard of a Redis Cluster
/// fault (which is done whole when it starts: the cluster is whole again before it returns).
async fn inject(
    cluster: &tokio::sync::Mutex<Cluster>,
    kind: &str,
    node: usize,
    shard: u64,
    on: bool,
) -> Result<(), ClusterError> {
    let mut c = cluster.lock().await;
    let shard = ShardPick::Random(shard);
    let link = |fault: Fault| if on { fault } else { Fault::None };
    let outage = |outage: IssuerOutage| if on { outage } else { IssuerOutage::None };
    match kind {
        "redis-latency" => c.set_redis_link(None, link(Fault::Latency(Duration::from_millis(300)))),
        "redis-blackhole" => c.set_redis_link(None, link(Fault::Blackhole)),
        "redis-reset" => c.set_redis_link(None, link(Fault::Reset)),
        "partition-node" => c.set_redis_link(Some(node), link(Fault::Blackhole)),
        "pause-node" => c.pause_node(node, on).await,
        "kill-redis" if on => c.kill_redis().await,
        "kill-redis" => c.start_redis().await,
        "failover-redis" | "kill-redis-primary" | "reshard" if !on => Ok(()),
        "failover-redis" => c.redis_fault(RedisFault::Failover { shard }).await.map(drop),
        "kill-redis-primary" => c.redis_fault(RedisFault::KillPrimary { shard }).await.map(drop),
        "reshard" => {
            c.redis_fault(RedisFault::Reshard { from: shard, to: None, share: SOAK_RESHARD_SHARE }).await.map(drop)
        }
        "issuer-latency" => {
            c.issuer().set_outage(outage(IssuerOutage::Latency(Duration::from_millis(500))));
            Ok(())
        }
        "issuer-down" => {
            c.issuer().set_outage(outage(IssuerOutage::Down));
            Ok(())
        }
        other => Err(ClusterError::failed("soak", format!("unknown fault {other}"))),
    }
}
