//! `bffctl bench`: the gateway next to a direct upstream and nginx, as a table and a JSON file
//! under `bench/results/`; with `--redis cluster`, the gateway on a Redis Cluster next to the
//! gateway on one server, and each shard's memory and keys.

use std::process::ExitCode;
use std::time::Duration;

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use harness::bench::{self, BenchOptions, BenchReport, SessionPoint};
use harness::cluster::ClusterSpec;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{BenchArgs, BenchRedisArg};

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let cluster = args.redis == BenchRedisArg::Cluster;
    let spec = ClusterSpec { bff_binary: args.bff_binary.clone(), ..ClusterSpec::default() };
    let bff_binary = harness::cluster::process::find_bff_binary(&spec)?;
    let options = if args.smoke {
        BenchOptions {
            bff_binary,
            duration: Duration::from_secs(1),
            connections: 16,
            rounds: 1,
            cold_starts: 3,
            open_loop: false,
            baseline_binary: args.baseline.clone(),
            session_counts: vec![1, 50],
            session_access: vec![bench::Access::Uniform, bench::Access::Zipf],
            cluster,
        }
    } else {
        BenchOptions {
            bff_binary,
            duration: Duration::from_secs(args.duration),
            connections: args.connections,
            rounds: args.rounds,
            cold_starts: args.cold_starts,
            open_loop: !args.no_open_loop,
            baseline_binary: args.baseline.clone(),
            session_counts: args.sessions.0.clone(),
            session_access: args.access.iter().map(|&a| a.into()).collect(),
            cluster,
        }
    };
    let spinner = ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")?);
    spinner.enable_steady_tick(Duration::from_millis(100));
    let progress = {
        let spinner = spinner.clone();
        move |step: &str| spinner.set_message(step.to_owned())
    };
    let report = bench::run(&options, &progress).await;
    spinner.finish_and_clear();
    let report = report?;

    std::fs::create_dir_all(&args.out)?;
    let file =
        args.out.join(format!("{}{}.json", report.date.replace(':', ""), if args.smoke { "-smoke" } else { "" }));
    std::fs::write(&file, serde_json::to_string_pretty(&report)?)?;
    let plotted = if args.plot {
        let svg = file.with_extension("svg");
        match bench::plot::svg(&report) {
            Ok(drawing) => {
                std::fs::write(&svg, drawing)?;
                Some(format!("curves drawn in {}", svg.display()))
            }
            Err(reason) => Some(format!("no plot: {reason}")),
        }
    } else {
        None
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
        println!("written to {}", file.display());
        if let Some(plotted) = plotted {
            println!("{plotted}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map(|v| format!("{v:.1}{unit}")).unwrap_or_else(|| "-".into())
}

fn print(report: &BenchReport) {
    println!("{} · {} · {}", report.date, report.machine, report.options);
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "configuration",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "× direct",
        "× nginx",
        "CPU µs/req",
        "CPU × nginx",
        "errors",
        "open-loop p99 ms",
        "direct p99 same rate",
        "added p99 ms",
        "redis cmd/req",
        "redis writes/req",
    ]);
    for c in &report.configs {
        table.add_row(vec![
            c.name.clone(),
            format!("{:.0}", c.requests_per_s),
            format!("{:.2}", c.p50_ms),
            format!("{:.2}", c.p99_ms),
            format!("{:.2}", c.vs_direct),
            format!("{:.2}", c.vs_nginx),
            c.cpu_us_per_request.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
            c.cpu_vs_nginx.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            c.errors.to_string(),
            c.open_loop_p99_ms.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            c.direct_same_rate_p99_ms.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            c.added_p99_ms.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            c.redis_commands_per_request.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            c.redis_writes_per_request.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{table}");
    println!(
        "cold start to ready (median): {} · gateway RSS idle {} / loaded {} · nginx RSS {}",
        opt(report.cold_start_ms_median, " ms"),
        opt(report.idle_rss_mb, " MB"),
        opt(report.loaded_rss_mb, " MB"),
        opt(report.nginx_rss_mb, " MB"),
    );
    if let (Some(total), Some(blob)) = (report.redis_session_bytes, report.sealed_blob_bytes) {
        println!("redis bytes per session: {total} (sealed blob {blob} + {} overhead)", total.saturating_sub(blob));
    }
    if !report.sessions_curve.is_empty() {
        let curve = curve_table(&report.sessions_curve);
        println!("bff-auth-redis against active sessions (node cache on, default memory budget):\n{curve}");
        println!(
            "redis memory per 100k sessions: {} · logins/s while making the first {}: {}",
            opt(report.redis_mb_per_100k_sessions, " MB"),
            harness::bench::SESSIONS_BY_LOGIN,
            opt(report.logins_per_s, ""),
        );
    }
    if let Some(cluster) = &report.cluster {
        print_cluster(cluster);
    }
    for note in &report.notes {
        println!("note: {note}");
    }
}

/// The curve of cost against active sessions, each point compared with one session.
fn curve_table(points: &[SessionPoint]) -> Table {
    let mut curve = Table::new();
    curve.load_preset(UTF8_FULL_CONDENSED).set_header([
        "active sessions",
        "access",
        "requests/s",
        "vs 1 session",
        "p50 ms",
        "p99 ms",
        "CPU µs/req",
        "node-cache hits",
        "cache MB",
        "redis cmd/req",
        "redis reads/req",
        "redis writes/req",
    ]);
    // The bars compare every point with one session (uniform: the same cache entry).
    let one = points.iter().find(|o| o.sessions == 1);
    for p in points {
        curve.add_row(vec![
            p.sessions.to_string(),
            p.access.to_string(),
            format!("{:.0}", p.requests_per_s),
            one.map(|o| format!("{:.2}×", p.requests_per_s / o.requests_per_s.max(1.0))).unwrap_or_else(|| "-".into()),
            format!("{:.2}", p.p50_ms),
            format!("{:.2}", p.p99_ms),
            p.cpu_us_per_request.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
            p.cache_hit_ratio.map(|v| format!("{:.0} %", v * 100.0)).unwrap_or_else(|| "-".into()),
            p.cache_mb.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into()),
            format!("{:.2}", p.redis_commands_per_request),
            format!("{:.3}", p.redis_reads_per_request),
            format!("{:.3}", p.redis_writes_per_request),
        ]);
    }
    curve
}

/// The sessions curve on the cluster, and each primary's memory and keys at each count.
fn print_cluster(cluster: &bench::ClusterReport) {
    let shape = format!("{} primaries, {} replicas each", cluster.primaries, cluster.replicas_per_primary);
    if cluster.sessions_curve.is_empty() {
        return;
    }
    println!(
        "bff-auth-cluster against active sessions ({shape}; node cache on, default memory budget; redis figures \
         summed over the primaries):\n{}",
        curve_table(&cluster.sessions_curve)
    );
    println!(
        "redis cluster memory per 100k sessions (all primaries): {} · logins/s while making the first {}: {}",
        opt(cluster.redis_mb_per_100k_sessions, " MB"),
        harness::bench::SESSIONS_BY_LOGIN,
        opt(cluster.logins_per_s, ""),
    );
    let mut shards = Table::new();
    shards.load_preset(UTF8_FULL_CONDENSED).set_header([
        "active sessions",
        "shard",
        "primary",
        "used_memory MB",
        "keys",
        "keys min/max",
    ]);
    for at in &cluster.shards {
        for shard in &at.shards {
            shards.add_row(vec![
                at.sessions.to_string(),
                shard.shard.to_string(),
                shard.address.clone(),
                format!("{:.1}", shard.used_memory_mb),
                shard.keys.to_string(),
                at.spread
                    .map(|s| format!("{} / {} ({:.3})", s.min_keys, s.max_keys, s.min_over_max))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    println!("redis cluster shards once the sessions were made:\n{shards}");
}
