//! `watch`: the verification of `verify-scaling --target`, small and repeated, against a live
//! deployment; its results as Prometheus metrics on `--listen`, each failure as a log line with
//! the request id and `traceparent` to look for in the node's log and the tracing backend.

use std::process::ExitCode;
use std::sync::Arc;

use harness::watch::{Round, Watch, WatchMetrics, serve_metrics};

use crate::cli::WatchArgs;

pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!args.every.is_zero(), "--every must be more than 0");
    anyhow::ensure!(args.count != Some(0), "--count must be at least 1");
    let target = super::verify::deployment(&args.target_args(), None)?
        .ok_or_else(|| anyhow::anyhow!("--target URL is required"))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", args.listen))?;
    let metrics = Arc::new(WatchMetrics::new());
    let (addr, server) = serve_metrics(listener, metrics.clone())?;
    let rounds = if args.once { Some(1) } else { args.count };
    let watch = Watch { target: Arc::new(target), ops_token: args.ops_token.clone(), every: args.every, rounds };
    // The address first, on its own line: scripts (and the tests) read the port from it.
    println!("bffctl watch: metrics at http://{addr}/metrics");
    eprintln!(
        "bffctl watch: {} every {} ({} node{}){}",
        watch.target.public_url,
        humantime::format_duration(args.every),
        watch.target.nodes.len(),
        if watch.target.nodes.len() == 1 { "" } else { "s" },
        if watch.ops_token.is_some() { "" } else { "; no --ops-token: the drift check compares only what clients see" }
    );
    let json = args.json;
    let work = watch.run(&metrics, |round| show(round, json));
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let code = tokio::select! {
        failed = work => if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) },
        _ = interrupt.recv() => ExitCode::SUCCESS,
        _ = term.recv() => ExitCode::SUCCESS,
    };
    server.abort();
    Ok(code)
}

/// One line per round, and one per failure with what identifies its request.
fn show(round: &Round, json: bool) {
    if json {
        println!("{}", serde_json::to_string(round).unwrap_or_default());
        return;
    }
    let verdict = if round.passed() { "PASS" } else { "FAIL" };
    println!("{verdict} round in {:.2} s: {} failure(s)", round.duration_s, round.failures.len());
    for f in &round.failures {
        let created = f.created_on.as_deref().map(|c| format!(" (session created on {c})")).unwrap_or_default();
        let status = f.status.map(|s| format!(" status {s}")).unwrap_or_default();
        println!(
            "  FAIL {} {}{created}{status}: {} request_id={} traceparent={}",
            f.check.name(),
            f.node,
            f.detail,
            f.request.request_id.as_deref().unwrap_or("-"),
            f.request.traceparent.as_deref().unwrap_or("-"),
        );
    }
}
