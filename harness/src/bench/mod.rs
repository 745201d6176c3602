//! The benchmark: the gateway side by side with a direct upstream and nginx, on this machine, in
//! one run, each configuration measured the same way and interleaved (A B C … A B C …), medians
//! reported. Also cold start to ready, idle memory, Redis commands per request and Redis bytes
//! per session. CPU time per proxied request (see [`cpu`]) is measured for every proxy, nginx
//! included, and given as a ratio to nginx's in the same run. A baseline `bff` binary, when
//! given, runs as more configurations in the same interleaved rounds, so a change is compared
//! with what it replaces under the same load on the machine. With a Redis Cluster asked for
//! ([`BenchOptions::cluster`], see [`shards`]), gateways on the cluster run in the same rounds
//! next to those on the single server, and the sessions curve is measured on both. It prints
//! figures; it asserts nothing (targets are read, not tested).

mod cpu;
mod loadgen;
mod otlp_sink;
mod peers;
pub mod plot;
mod sessions;
pub mod shards;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use loadgen::{LoadResult, Target};
/// How many of the curve's sessions are made by full logins (the rest by `bff seed-sessions`).
pub const SESSIONS_BY_LOGIN: usize = sessions::LOGINS;

use crate::client::VirtualUser;
use crate::issuer::MockIssuer;
use crate::process::{BffProcess, RedisCluster, RedisProcess};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub bff_binary: PathBuf,
    /// Length of each closed-loop run.
    pub duration: Duration,
    pub connections: u32,
    /// How many times each configuration runs (interleaved).
    pub rounds: usize,
    /// Cold starts to time (median reported); 0 skips.
    pub cold_starts: usize,
    /// Also run the open-loop latency pass (needs `oha`).
    pub open_loop: bool,
    /// Another `bff` binary (say, the build before a change) measured in the same rounds, as
    /// configurations named `…@baseline`.
    pub baseline_binary: Option<PathBuf>,
    /// Active session counts for the curve of cost against sessions (the first
    /// [`sessions::LOGINS`] made by full logins, the rest by `bff seed-sessions`); empty skips it.
    pub session_counts: Vec<usize>,
    /// How the curve's requests pick their session: one curve per pattern.
    pub session_access: Vec<Access>,
    /// Also start a Redis Cluster ([`shards::PRIMARIES`] primaries) and measure gateways on it
    /// (`bff-auth-cluster`, `bff-auth-cluster-uncached`) and the sessions curve there, next to
    /// the single server's.
    pub cluster: bool,
}

/// How the requests of a point of the sessions curve pick their session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Every session equally often: the worst case for a cache.
    Uniform,
    /// The k-th most used session asked in proportion to 1/k (Zipf, s = 1), as real traffic
    /// is skewed towards few users.
    Zipf,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Uniform => "uniform",
            Access::Zipf => "zipf",
        })
    }
}

/// One point of the curve of cost against active sessions: `bff-auth-redis` (node cache on,
/// default memory budget) with its requests spread over `sessions` sessions as `access` says.
#[derive(Debug, Clone, Serialize)]
pub struct SessionPoint {
    pub sessions: usize,
    pub access: Access,
    pub runs: Vec<LoadResult>,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu_us_per_request: Option<f64>,
    /// Share of session reads the node cache answered (its hit and miss counters).
    pub cache_hit_ratio: Option<f64>,
    pub redis_commands_per_request: f64,
    /// Session reads that reached Redis (`EVALSHA` of the read script) per request.
    pub redis_reads_per_request: f64,
    /// Redis commands that changed data (AOF, replicas) per request.
    pub redis_writes_per_request: f64,
    /// The node cache's estimated memory and entries after the point's runs.
    pub cache_mb: Option<f64>,
    pub cache_entries: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigResult {
    pub name: String,
    pub runs: Vec<LoadResult>,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub vs_direct: f64,
    pub vs_nginx: f64,
    /// Median CPU time per request of the proxy's processes (nginx: master and workers; bff:
    /// the node), in µs; none for the direct upstream (it runs inside the benchmark).
    pub cpu_us_per_request: Option<f64>,
    /// That figure over nginx's in the same run.
    pub cpu_vs_nginx: Option<f64>,
    pub errors: u64,
    /// Redis commands per request (`INFO commandstats` deltas), for the configurations on Redis.
    pub redis_commands_per_request: Option<f64>,
    /// Of those, and of the commands scripts ran, the ones that change data (AOF, replicas).
    pub redis_writes_per_request: Option<f64>,
    /// Open-loop runs at 50 % of this configuration's measured maximum rate.
    pub open_loop: Vec<LoadResult>,
    /// Their median p99, in ms.
    pub open_loop_p99_ms: Option<f64>,
    /// Median p99 of the direct upstream at the same rate, each run right after this one's.
    pub direct_same_rate_p99_ms: Option<f64>,
    /// What this configuration adds to the direct upstream's p99 at the same rate, in ms.
    pub added_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub date: String,
    pub machine: String,
    pub versions: Vec<(String, String)>,
    pub options: String,
    pub configs: Vec<ConfigResult>,
    pub cold_start_ms_median: Option<f64>,
    pub idle_rss_mb: Option<f64>,
    pub loaded_rss_mb: Option<f64>,
    pub nginx_rss_mb: Option<f64>,
    pub redis_session_bytes: Option<u64>,
    pub sealed_blob_bytes: Option<u64>,
    pub sessions_curve: Vec<SessionPoint>,
    /// Redis `used_memory` grown per 100 000 sessions made for the curve, in MB.
    pub redis_mb_per_100k_sessions: Option<f64>,
    /// Logins per second while making them (full logins, concurrent).
    pub logins_per_s: Option<f64>,
    /// The figures only a Redis Cluster has (with [`BenchOptions::cluster`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReport>,
    pub notes: Vec<String>,
}

/// The benchmark on a Redis Cluster: its shape, and the sessions curve measured on it (the
/// requests/s, CPU and commands per request of `bff-auth-cluster*` are in
/// [`BenchReport::configs`], next to the single server's).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub primaries: usize,
    pub replicas_per_primary: usize,
    /// `bff-auth-cluster` against active sessions; Redis figures summed over the primaries.
    pub sessions_curve: Vec<SessionPoint>,
    /// `used_memory` grown over all primaries per 100 000 sessions made for the curve, in MB.
    pub redis_mb_per_100k_sessions: Option<f64>,
    pub logins_per_s: Option<f64>,
    /// Every primary's memory and keys, and their spread, once each count of sessions was made.
    pub shards: Vec<shards::ShardsAt>,
}

#[derive(Debug, thiserror::Error)]
#[error("benchmark: {0}")]
pub struct BenchError(pub String);

fn fail(what: &str) -> impl Fn(String) -> BenchError + '_ {
    move |e| BenchError(format!("{what}: {e}"))
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn rss_mb(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn command_output(program: &str, args: &[&str]) -> String {
    tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
        .unwrap_or_default()
}

/// Commands Redis ran, from `INFO commandstats`.
#[derive(Debug, Clone, Copy, Default)]
struct RedisCalls {
    /// Commands clients sent. Redis also counts the commands a Lua script runs; the gateway
    /// sends `GET`, `PTTL`, `PEXPIRE` and `SADD` only from its scripts, so they are left out.
    sent: u64,
    /// Commands that change data (what reaches the AOF and the replicas), scripts' included.
    writes: u64,
    /// Session reads: `EVALSHA` (the gateway runs its read script so; its other scripts by `EVAL`).
    reads: u64,
}

impl RedisCalls {
    fn since(self, before: RedisCalls) -> RedisCalls {
        RedisCalls {
            sent: self.sent.saturating_sub(before.sent),
            writes: self.writes.saturating_sub(before.writes),
            reads: self.reads.saturating_sub(before.reads),
        }
    }
}

/// Commands the Redis servers at `ports` ran, summed (a cluster's primaries: each command of a
/// session reaches one of them).
async fn redis_total_calls(ports: &[u16]) -> RedisCalls {
    let mut total = RedisCalls::default();
    for &port in ports {
        let calls = redis_calls(port).await;
        total.sent += calls.sent;
        total.writes += calls.writes;
        total.reads += calls.reads;
    }
    total
}

async fn redis_calls(port: u16) -> RedisCalls {
    const ONLY_IN_SCRIPTS: &[&str] = &["get", "pttl", "pexpire", "sadd"];
    const WRITES: &[&str] = &["set", "getex", "pexpire", "expire", "del", "sadd", "srem", "hsetnx", "hdel", "incrby"];
    let mut calls = RedisCalls::default();
    for line in command_output("redis-cli", &["-p", &port.to_string(), "INFO", "commandstats"]).await.lines() {
        let Some((name, stats)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else { continue };
        let Some(n) = stats.split("calls=").nth(1).and_then(|v| v.split(',').next()?.parse::<u64>().ok()) else {
            continue;
        };
        if name != "info" && !ONLY_IN_SCRIPTS.contains(&name) {
            calls.sent += n;
        }
        if WRITES.contains(&name) {
            calls.writes += n;
        }
        if name == "evalsha" {
            calls.reads += n;
        }
    }
    calls
}

/// The environment of every gateway the benchmark starts (and of `bff seed-sessions`, which
/// must seal as they do), but for its store and URL.
fn node_env(issuer: &MockIssuer, upstream: &str) -> Vec<(&'static str, String)> {
    let routes = format!(
        r#"[{{ path = "/api/", upstreams = ["{upstream}"], auth = "required" }}, {{ path = "/public/", upstreams = ["{upstream}"], auth = "none" }}]"#
    );
    vec![
        ("BFF_OIDC_AUTHORITY", issuer.url().to_string()),
        ("BFF_OIDC_CLIENT_ID", crate::cluster::CLIENT_ID.into()),
        ("BFF_OIDC_CLIENT_SECRET", crate::cluster::CLIENT_SECRET.into()),
        ("BFF_KEY_ENCRYPTION_KEY", crate::cluster::KEY_ENCRYPTION_KEY.into()),
        ("BFF_ROUTES", routes),
        ("BFF_LOG_LEVEL", "warn".into()),
        // Opens `/metrics` (operators only) for the node cache's counts.
        ("BFF_OPS_TOKEN", BENCH_OPS_TOKEN.into()),
    ]
}

fn bff_env(
    mut builder: crate::process::BffProcessBuilder,
    issuer: &MockIssuer,
    upstream: &str,
) -> crate::process::BffProcessBuilder {
    for (key, value) in node_env(issuer, upstream) {
        builder = builder.env(key, value);
    }
    builder
}

/// Starts a gateway with the benchmark's routes and `env` on a free port; returns it and its URL.
async fn start_gateway(
    binary: &std::path::Path,
    issuer: &MockIssuer,
    upstream: &str,
    env: Vec<(&'static str, String)>,
    what: &'static str,
) -> Result<(BffProcess, String), BenchError> {
    let port = crate::process::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut builder =
        bff_env(BffProcess::builder(binary), issuer, upstream).port(port).env("BFF_PUBLIC_URL", url.clone());
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    let node = builder.run().await.map_err(|e| fail(what)(e.to_string()))?;
    Ok((node, url))
}

/// One measured configuration: what wrk requests, and the process whose CPU time it costs.
struct Config {
    name: String,
    target: Target,
    pid: Option<u32>,
}

async fn logged_in_cookie(base: &str) -> Result<String, BenchError> {
    let user = VirtualUser::new(Some("bench-user"));
    let reply = user.login(base).await.map_err(|e| BenchError(format!("login on {base}: {e}")))?;
    if reply.status != 302 {
        return Err(BenchError(format!("login on {base} answered {}", reply.status)));
    }
    let jar = user.jar().lock().expect("cookie jar");
    let cookie =
        jar.iter_any().find(|c| c.name() == "bff-session").ok_or_else(|| BenchError("no session cookie".into()))?;
    Ok(format!("bff-session={}", cookie.value()))
}

/// Runs the whole benchmark; `progress` hears each step.
pub async fn run(options: &BenchOptions, progress: &(dyn Fn(&str) + Send + Sync)) -> Result<BenchReport, BenchError> {
    progress("starting upstream, nginx, redis, issuer and three gateways");
    let upstream = peers::Upstream::start().await.map_err(|e| fail("upstream")(e.to_string()))?;
    let nginx = peers::Nginx::start(upstream.addr).await.map_err(fail("nginx"))?;
    let redis = RedisProcess::start(false).await.map_err(|e| fail("redis")(e.to_string()))?;
    let issuer = MockIssuer::builder()
        .client(crate::cluster::CLIENT_ID, crate::cluster::CLIENT_SECRET)
        .run()
        .await
        .map_err(|e| fail("issuer")(e.to_string()))?;
    let up_url = format!("http://{}", upstream.addr);

    let gateway = |env: Vec<(&'static str, String)>, what: &'static str| {
        start_gateway(&options.bff_binary, &issuer, &up_url, env, what)
    };
    let (bff_redis, redis_url) = gateway(vec![("BFF_REDIS_URL", redis.url())], "bff (redis)").await?;
    let (bff_uncached, uncached_url) = gateway(
        vec![("BFF_REDIS_URL", redis.url()), ("BFF_SESSION_CACHE_MAX_AGE", "off".into())],
        "bff (redis, no node cache)",
    )
    .await?;
    let (bff_memory, memory_url) = gateway(Vec::new(), "bff (memory)").await?;
    // Tracing on: every span exported over OTLP to a sink that drops it. `bff-auth-redis` is the
    // same gateway with tracing off (the default).
    let sink = otlp_sink::OtlpSink::start().await.map_err(|e| fail("otlp sink")(e.to_string()))?;
    let (bff_traced, traced_url) = gateway(
        vec![("BFF_REDIS_URL", redis.url()), ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.addr))],
        "bff (redis, traces exported)",
    )
    .await?;
    let idle_rss_mb = rss_mb(bff_redis.pid());
    // With a Redis Cluster: the same gateway, node cache on and off, its sessions on the cluster.
    let on_cluster = if options.cluster {
        progress("starting a redis cluster and two gateways on it");
        let cluster = shards::start().await?;
        let (cached, cached_url) = gateway(vec![("BFF_REDIS_URL", cluster.url())], "bff (redis cluster)").await?;
        let (uncached, uncached_url) = gateway(
            vec![("BFF_REDIS_URL", cluster.url()), ("BFF_SESSION_CACHE_MAX_AGE", "off".into())],
            "bff (redis cluster, no node cache)",
        )
        .await?;
        let ports = shards::primary_ports(&cluster);
        Some(OnCluster { cluster, ports, cached, cached_url, uncached, uncached_url })
    } else {
        None
    };

    let redis_cookie = logged_in_cookie(&redis_url).await?;
    let memory_cookie = logged_in_cookie(&memory_url).await?;
    let auth = |cookie: &str| vec![("Cookie".to_owned(), cookie.to_owned()), ("X-CSRF".to_owned(), "1".to_owned())];
    let config = |name: &str, url: String, headers: Vec<(String, String)>, pid: Option<u32>| Config {
        name: name.to_owned(),
        target: Target { url, headers, script: None },
        pid,
    };
    let mut configs: Vec<Config> = vec![
        config("direct", format!("{up_url}/data"), vec![], None),
        config("nginx", format!("http://{}/data", nginx.addr), vec![], nginx.pid()),
        config("bff-anon", format!("{redis_url}/public/data"), vec![], bff_redis.pid()),
        config("bff-auth-redis", format!("{redis_url}/api/data"), auth(&redis_cookie), bff_redis.pid()),
        // The same session (the nodes share Redis), read from Redis on every request.
        config("bff-auth-redis-uncached", format!("{uncached_url}/api/data"), auth(&redis_cookie), bff_uncached.pid()),
        config("bff-auth-memory", format!("{memory_url}/api/data"), auth(&memory_cookie), bff_memory.pid()),
        config("bff-auth-redis-traced", format!("{traced_url}/api/data"), auth(&redis_cookie), bff_traced.pid()),
    ];
    if let Some(on) = &on_cluster {
        // Its own session (another store), read from the cluster's shard that holds it.
        let cookie = logged_in_cookie(&on.cached_url).await?;
        let at = configs.iter().position(|c| c.name == "bff-auth-redis-uncached").map_or(configs.len(), |i| i + 1);
        let cluster_configs = [
            config("bff-auth-cluster", format!("{}/api/data", on.cached_url), auth(&cookie), on.cached.pid()),
            config(
                "bff-auth-cluster-uncached",
                format!("{}/api/data", on.uncached_url),
                auth(&cookie),
                on.uncached.pid(),
            ),
        ];
        configs.splice(at..at, cluster_configs);
    }
    // The baseline binary's nodes share Redis and its key ring: the same session cookie serves.
    let mut baseline_nodes = Vec::new();
    if let Some(binary) = &options.baseline_binary {
        let start =
            |env: Vec<(&'static str, String)>, what: &'static str| start_gateway(binary, &issuer, &up_url, env, what);
        let (cached, cached_url) = start(vec![("BFF_REDIS_URL", redis.url())], "baseline bff (redis)").await?;
        let (uncached, base_uncached_url) = start(
            vec![("BFF_REDIS_URL", redis.url()), ("BFF_SESSION_CACHE_MAX_AGE", "off".into())],
            "baseline bff (redis, no node cache)",
        )
        .await?;
        configs.extend([
            config("bff-anon@baseline", format!("{cached_url}/public/data"), vec![], cached.pid()),
            config("bff-auth-redis@baseline", format!("{cached_url}/api/data"), auth(&redis_cookie), cached.pid()),
            config(
                "bff-auth-redis-uncached@baseline",
                format!("{base_uncached_url}/api/data"),
                auth(&redis_cookie),
                uncached.pid(),
            ),
        ]);
        baseline_nodes.extend([cached, uncached]);
    }

    let single_ports = [redis.port()];
    let mut runs: Vec<Vec<LoadResult>> = vec![Vec::new(); configs.len()];
    let mut redis_per_request: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut redis_writes_per_request: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for round in 0..options.rounds {
        for (i, config) in configs.iter().enumerate() {
            let name = &config.name;
            progress(&format!("round {}/{} · {name}", round + 1, options.rounds));
            let servers: Option<&[u16]> = if name.starts_with("bff-auth-redis") {
                Some(&single_ports)
            } else if name.starts_with("bff-auth-cluster") {
                on_cluster.as_ref().map(|on| on.ports.as_slice())
            } else {
                None
            };
            let before = match servers {
                Some(ports) => Some(redis_total_calls(ports).await),
                None => None,
            };
            let cpu_before = config.pid.and_then(cpu::tree_seconds);
            let mut result = loadgen::wrk(&config.target, options.connections, options.duration)
                .await
                .map_err(|e| BenchError(e.to_string()))?;
            if let (Some(before), Some(after)) = (cpu_before, config.pid.and_then(cpu::tree_seconds)) {
                result.cpu_us_per_request = Some((after - before) * 1e6 / result.requests.max(1) as f64);
            }
            if let (Some(before), Some(ports)) = (before, servers) {
                let calls = redis_total_calls(ports).await.since(before);
                redis_per_request[i].push(calls.sent as f64 / result.requests.max(1) as f64);
                redis_writes_per_request[i].push(calls.writes as f64 / result.requests.max(1) as f64);
            }
            runs[i].push(result);
        }
    }
    let loaded_rss_mb = rss_mb(bff_redis.pid());
    let nginx_rss_mb = peers::process_tree_rss_mb(nginx.pid());

    let mut results: Vec<ConfigResult> = configs
        .iter()
        .zip(runs)
        .zip(redis_per_request)
        .zip(redis_writes_per_request)
        .map(|(((config, runs), redis_per_request), redis_writes_per_request)| ConfigResult {
            name: config.name.clone(),
            cpu_us_per_request: {
                let cpu: Vec<f64> = runs.iter().filter_map(|r| r.cpu_us_per_request).collect();
                (!cpu.is_empty()).then(|| median(cpu))
            },
            cpu_vs_nginx: None,
            requests_per_s: median(runs.iter().map(|r| r.requests_per_s).collect()),
            p50_ms: median(runs.iter().map(|r| r.p50_ms).collect()),
            p99_ms: median(runs.iter().map(|r| r.p99_ms).collect()),
            errors: runs.iter().map(|r| r.errors).sum(),
            redis_commands_per_request: (!redis_per_request.is_empty()).then(|| median(redis_per_request)),
            redis_writes_per_request: (!redis_writes_per_request.is_empty()).then(|| median(redis_writes_per_request)),
            runs,
            vs_direct: 0.0,
            vs_nginx: 0.0,
            open_loop: Vec::new(),
            open_loop_p99_ms: None,
            direct_same_rate_p99_ms: None,
            added_p99_ms: None,
        })
        .collect();
    let direct = results[0].requests_per_s.max(1.0);
    let nginx_rps = results[1].requests_per_s.max(1.0);
    let nginx_cpu = results[1].cpu_us_per_request.filter(|cpu| *cpu > 0.0);
    for r in &mut results {
        r.vs_direct = r.requests_per_s / direct;
        r.vs_nginx = r.requests_per_s / nginx_rps;
        r.cpu_vs_nginx = r.cpu_us_per_request.zip(nginx_cpu).map(|(cpu, nginx)| cpu / nginx);
    }

    let mut notes = vec![format!(
        "tracing: bff-auth-redis-traced is bff-auth-redis with OTEL_EXPORTER_OTLP_ENDPOINT set (spans exported to a \
         sink that drops them; {} exports received); bff-auth-redis has tracing off (the default)",
        sink.exports()
    )];
    if options.open_loop {
        if loadgen::oha_binary().is_some() {
            // Latency without coordinated omission: each configuration at half its own maximum,
            // and the direct upstream at that same rate right after it, so the difference is
            // what the proxy adds at that load (the load generator's own limits cancel out).
            let rounds = options.rounds.clamp(1, 3);
            let mut direct_p99: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
            for round in 0..rounds {
                for (i, Config { name, target, .. }) in configs.iter().enumerate().skip(1) {
                    progress(&format!("open loop at 50 % of max, round {}/{rounds} · {name}", round + 1));
                    let rate = results[i].requests_per_s * 0.5;
                    let measured = loadgen::oha_open_loop(target, rate, options.connections, options.duration).await;
                    let direct =
                        loadgen::oha_open_loop(&configs[0].target, rate, options.connections, options.duration).await;
                    match (measured, direct) {
                        (Ok(measured), Ok(direct)) => {
                            results[i].open_loop.push(measured);
                            direct_p99[i].push(direct.p99_ms);
                        }
                        (Err(e), _) | (_, Err(e)) => notes.push(format!("open loop {name}: {e}")),
                    }
                }
            }
            for (r, direct) in results.iter_mut().zip(direct_p99).skip(1) {
                if r.open_loop.is_empty() || direct.is_empty() {
                    continue;
                }
                let p99 = median(r.open_loop.iter().map(|o| o.p99_ms).collect());
                let direct = median(direct);
                r.open_loop_p99_ms = Some(p99);
                r.direct_same_rate_p99_ms = Some(direct);
                r.added_p99_ms = Some(p99 - direct);
            }
        } else {
            notes.push("open-loop pass skipped: oha not installed (cargo install oha)".into());
        }
    }

    let mut curve = SessionsCurve::default();
    if !options.session_counts.is_empty() {
        let seeding = sessions::Seeding {
            binary: &options.bff_binary,
            env: node_env(&issuer, &up_url)
                .into_iter()
                .chain([("BFF_REDIS_URL", redis.url()), ("BFF_PUBLIC_URL", redis_url.clone())])
                .collect(),
        };
        curve = sessions_curve(options, &single_ports, None, &redis_url, bff_redis.pid(), &seeding, progress).await?;
    }
    let mut cluster_report = None;
    if let Some(on) = &on_cluster {
        notes.push(format!(
            "redis cluster: {} primaries, {} replicas each, redis-server processes on this machine; the redis \
             figures of bff-auth-cluster* are summed over the primaries",
            shards::PRIMARIES,
            shards::REPLICAS_PER_PRIMARY
        ));
        let mut on_curve = SessionsCurve::default();
        if !options.session_counts.is_empty() {
            let seeding = sessions::Seeding {
                binary: &options.bff_binary,
                env: node_env(&issuer, &up_url)
                    .into_iter()
                    .chain([("BFF_REDIS_URL", on.cluster.url()), ("BFF_PUBLIC_URL", on.cached_url.clone())])
                    .collect(),
            };
            let progress = |step: &str| progress(&format!("redis cluster · {step}"));
            on_curve = sessions_curve(
                options,
                &on.ports,
                Some(&on.cluster),
                &on.cached_url,
                on.cached.pid(),
                &seeding,
                &progress,
            )
            .await?;
        }
        cluster_report = Some(ClusterReport {
            primaries: shards::PRIMARIES,
            replicas_per_primary: shards::REPLICAS_PER_PRIMARY,
            sessions_curve: on_curve.points,
            redis_mb_per_100k_sessions: on_curve.redis_mb_per_100k,
            logins_per_s: on_curve.logins_per_s,
            shards: on_curve.shards,
        });
    }

    progress("bytes per session in redis");
    let port = redis.port().to_string();
    let key = command_output("redis-cli", &["-p", &port, "--scan", "--pattern", "bff:s:*"])
        .await
        .lines()
        .next()
        .map(str::to_owned);
    let (redis_session_bytes, sealed_blob_bytes) = match &key {
        Some(key) => (
            command_output("redis-cli", &["-p", &port, "MEMORY", "USAGE", key]).await.trim().parse().ok(),
            command_output("redis-cli", &["-p", &port, "STRLEN", key]).await.trim().parse().ok(),
        ),
        None => (None, None),
    };

    let cold_start_ms_median = if options.cold_starts > 0 {
        let mut times = Vec::new();
        for i in 0..options.cold_starts {
            progress(&format!("cold start {}/{}", i + 1, options.cold_starts));
            let port = crate::process::free_port();
            let started = Instant::now();
            let mut node = bff_env(BffProcess::builder(&options.bff_binary), &issuer, &up_url)
                .port(port)
                .env("BFF_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
                .env("BFF_REDIS_URL", redis.url())
                .run()
                .await
                .map_err(|e| fail("cold start")(e.to_string()))?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            node.kill().await;
        }
        Some(median(times))
    } else {
        None
    };

    let mut versions = Vec::new();
    for (name, program, args) in [
        ("bff", options.bff_binary.to_str().unwrap_or("bff"), &["--version"][..]),
        ("nginx", "nginx", &["-v"][..]),
        ("redis", "redis-server", &["--version"][..]),
        ("wrk", "wrk", &["--version"][..]),
    ] {
        let text = command_output(program, args).await;
        versions.push((name.to_owned(), text.lines().next().unwrap_or("?").trim().to_owned()));
    }
    if let Some(binary) = &options.baseline_binary {
        let text = command_output(binary.to_str().unwrap_or("bff"), &["--version"]).await;
        versions.push(("bff@baseline".to_owned(), text.lines().next().unwrap_or("?").trim().to_owned()));
    }
    if let Some(oha) = loadgen::oha_binary() {
        versions.push((
            "oha".into(),
            command_output(oha.to_str().unwrap_or("oha"), &["--version"]).await.trim().to_owned(),
        ));
    }
    drop((bff_redis, bff_uncached, bff_memory, nginx, baseline_nodes, on_cluster));
    Ok(BenchReport {
        date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).await.trim().to_owned(),
        machine: format!(
            "{} cores, {}",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            command_output("uname", &["-srm"]).await.trim()
        ),
        versions,
        options: format!(
            "wrk -t2 -c{} -d{}s, {} interleaved rounds, medians; loopback; gateway and nginx logging off",
            options.connections,
            options.duration.as_secs(),
            options.rounds
        ),
        configs: results,
        cold_start_ms_median,
        idle_rss_mb,
        loaded_rss_mb,
        nginx_rss_mb,
        redis_session_bytes,
        sealed_blob_bytes,
        sessions_curve: curve.points,
        redis_mb_per_100k_sessions: curve.redis_mb_per_100k,
        logins_per_s: curve.logins_per_s,
        cluster: cluster_report,
        notes,
    })
}

#[derive(Default)]
struct SessionsCurve {
    points: Vec<SessionPoint>,
    redis_mb_per_100k: Option<f64>,
    logins_per_s: Option<f64>,
    /// On a cluster: its shards once each count was made.
    shards: Vec<shards::ShardsAt>,
}

/// The gateways on the Redis Cluster, and the cluster.
struct OnCluster {
    cluster: RedisCluster,
    /// Its primaries' client ports.
    ports: Vec<u16>,
    cached: BffProcess,
    cached_url: String,
    uncached: BffProcess,
    uncached_url: String,
}

/// `used_memory` summed over the Redis servers at `ports`.
async fn redis_used_memory(ports: &[u16]) -> Option<f64> {
    let mut total = 0.0;
    for &port in ports {
        total += used_memory(port).await?;
    }
    Some(total)
}

async fn used_memory(port: u16) -> Option<f64> {
    command_output("redis-cli", &["-p", &port.to_string(), "INFO", "memory"])
        .await
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The `ops_token` of the nodes a benchmark starts: `/metrics` answers only with it.
const BENCH_OPS_TOKEN: &str = "ops-token-of-the-benchmark";

/// The node cache's hit and miss counts, and its memory (bytes) and entries, from the node's
/// `/metrics`.
async fn cache_counts(base: &str) -> Option<((f64, f64), (Option<f64>, Option<f64>))> {
    let response =
        reqwest::Client::new().get(format!("{base}/metrics")).bearer_auth(BENCH_OPS_TOKEN).send().await.ok()?;
    let text = response.text().await.ok()?;
    let value =
        |prefix: &str| text.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|v| v.trim().parse::<f64>().ok());
    let count = |result: &str| value(&format!("bff_session_cache_total{{result=\"{result}\"}} "));
    Some((
        (count("hit").unwrap_or(0.0), count("miss").unwrap_or(0.0)),
        (value("bff_session_cache_bytes "), value("bff_session_cache_entries ")),
    ))
}

/// Requests/s and CPU per request of the gateway at `base` (`bff-auth-redis`, or
/// `bff-auth-cluster`) against the number of sessions its requests are spread over (each count
/// reached by more sessions), for each access pattern, and Redis memory per session over the
/// servers at `ports` (with a `cluster`, each shard's too).
#[allow(clippy::too_many_arguments)]
async fn sessions_curve(
    options: &BenchOptions,
    ports: &[u16],
    cluster: Option<&RedisCluster>,
    base: &str,
    pid: Option<u32>,
    seeding: &sessions::Seeding<'_>,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<SessionsCurve, BenchError> {
    let dir = tempfile::tempdir().map_err(|e| fail("temp dir")(e.to_string()))?;
    let mut counts = options.session_counts.clone();
    counts.sort_unstable();
    let memory_before = redis_used_memory(ports).await;
    let mut cookies: Vec<String> = Vec::new();
    let (mut login_time, mut logins) = (Duration::ZERO, 0usize);
    let mut curve = SessionsCurve::default();
    for count in counts {
        if cookies.len() < count.min(sessions::LOGINS) {
            let more = count.min(sessions::LOGINS) - cookies.len();
            let started = Instant::now();
            let made = sessions::log_in_many(base, more, 64, &|done| {
                progress(&format!("sessions: {done}/{more} logins towards {count}"))
            })
            .await?;
            login_time += started.elapsed();
            logins += made.len();
            cookies.extend(made);
        }
        if cookies.len() < count {
            let more = count - cookies.len();
            progress(&format!("sessions: sealing and storing {more} more with bff seed-sessions"));
            cookies.extend(seeding.seed(more, dir.path()).await?);
        }
        if count > 1 {
            let nodes: Vec<std::net::SocketAddr> = match cluster {
                Some(cluster) => cluster.primaries().into_iter().map(|m| m.address).collect(),
                None => ports.iter().map(|&port| std::net::SocketAddr::from(([127, 0, 0, 1], port))).collect(),
            };
            progress(&format!("sessions: {count} active, their expiries spread over one touch interval"));
            sessions::age_as_in_steady_use(&nodes, &cookies[..count]).await?;
            warm_up(options, base, &cookies[..count], dir.path(), progress).await?;
        }
        for (i, &access) in options.session_access.iter().enumerate() {
            // With one session every pattern asks the same one: measured once.
            if count == 1 && i > 0 {
                continue;
            }
            curve
                .points
                .push(session_point(options, ports, base, pid, &cookies[..count], access, dir.path(), progress).await?);
        }
        if let Some(cluster) = cluster {
            curve.shards.push(shards::shards_at(cluster, count).await?);
        }
    }
    let memory_after = redis_used_memory(ports).await;
    if let (Some(before), Some(after)) = (memory_before, memory_after)
        && !cookies.is_empty()
    {
        curve.redis_mb_per_100k = Some((after - before) / cookies.len() as f64 * 100_000.0 / 1e6);
    }
    if !login_time.is_zero() {
        curve.logins_per_s = Some(logins as f64 / login_time.as_secs_f64());
    }
    Ok(curve)
}

/// Asks every session once in turn, unmeasured, so that a point measures the steady state of a
/// deployment whose sessions are in use (the node cache holds what fits in its budget) rather
/// than the first read of each: a run of at least `options.duration`, longer for many sessions
/// (at 8,000 requests/s, a cold cache's pace on this kind of machine), at most two minutes.
async fn warm_up(
    options: &BenchOptions,
    base: &str,
    cookies: &[String],
    dir: &std::path::Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), BenchError> {
    let seconds = (cookies.len() as u64 / 8000).clamp(options.duration.as_secs(), 120);
    progress(&format!("sessions: {} active, warming up for {seconds} s (every session asked in turn)", cookies.len()));
    let script =
        sessions::wrk_script(dir, cookies, sessions::Pick::InTurn).map_err(|e| fail("wrk script")(e.to_string()))?;
    let target = Target { url: format!("{base}/api/data"), headers: Vec::new(), script: Some(script) };
    loadgen::wrk(&target, options.connections, Duration::from_secs(seconds))
        .await
        .map_err(|e| BenchError(e.to_string()))?;
    Ok(())
}

/// One point of the curve: `options.rounds` wrk runs over `cookies`, picked as `access` says.
#[allow(clippy::too_many_arguments)]
async fn session_point(
    options: &BenchOptions,
    ports: &[u16],
    base: &str,
    pid: Option<u32>,
    cookies: &[String],
    access: Access,
    dir: &std::path::Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<SessionPoint, BenchError> {
    let count = cookies.len();
    let script = sessions::wrk_script(dir, cookies, sessions::Pick::As(access))
        .map_err(|e| fail("wrk script")(e.to_string()))?;
    let target = Target { url: format!("{base}/api/data"), headers: Vec::new(), script: Some(script) };
    let mut runs = Vec::new();
    let (mut redis_calls, mut requests) = (RedisCalls::default(), 0u64);
    let cache_before = cache_counts(base).await;
    for round in 0..options.rounds {
        progress(&format!("sessions: {count} active ({access}), round {}/{}", round + 1, options.rounds));
        let calls_before = redis_total_calls(ports).await;
        let cpu_before = pid.and_then(cpu::tree_seconds);
        let mut result = loadgen::wrk(&target, options.connections, options.duration)
            .await
            .map_err(|e| BenchError(e.to_string()))?;
        if let (Some(before), Some(after)) = (cpu_before, pid.and_then(cpu::tree_seconds)) {
            result.cpu_us_per_request = Some((after - before) * 1e6 / result.requests.max(1) as f64);
        }
        let calls = redis_total_calls(ports).await.since(calls_before);
        redis_calls.sent += calls.sent;
        redis_calls.writes += calls.writes;
        redis_calls.reads += calls.reads;
        requests += result.requests;
        runs.push(result);
    }
    let cache_after = cache_counts(base).await;
    let cache_hit_ratio = cache_before.zip(cache_after).and_then(|(((h0, m0), _), ((h1, m1), _))| {
        let (hits, misses) = (h1 - h0, m1 - m0);
        (hits + misses > 0.0).then(|| hits / (hits + misses))
    });
    let (cache_bytes, cache_entries) = cache_after.map(|(_, size)| size).unwrap_or_default();
    let cpu: Vec<f64> = runs.iter().filter_map(|r| r.cpu_us_per_request).collect();
    let per_request = |n: u64| n as f64 / requests.max(1) as f64;
    Ok(SessionPoint {
        sessions: count,
        access,
        requests_per_s: median(runs.iter().map(|r| r.requests_per_s).collect()),
        p50_ms: median(runs.iter().map(|r| r.p50_ms).collect()),
        p99_ms: median(runs.iter().map(|r| r.p99_ms).collect()),
        cpu_us_per_request: (!cpu.is_empty()).then(|| median(cpu)),
        cache_hit_ratio,
        redis_commands_per_request: per_request(redis_calls.sent),
        redis_reads_per_request: per_request(redis_calls.reads),
        redis_writes_per_request: per_request(redis_calls.writes),
        cache_mb: cache_bytes.map(|b| b / 1e6),
        cache_entries,
        runs,
    })
}
