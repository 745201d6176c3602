//! `bffctl up`: start a cluster (with the example app of `examples/spa/` at `/` and a mock API
//! behind `/api/`), print where everything is, serve the control API, and stay up
//! until Ctrl-C, SIGTERM or `bffctl down`; then tear everything down.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::cluster::Cluster;
use harness::cluster::control::{self, ControlFile};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{Mutex, Notify};

use crate::cli::UpArgs;
use crate::output;

pub async fn run(args: UpArgs, state: &Path) -> anyhow::Result<ExitCode> {
    if let Ok(existing) = control::ControlClient::open(state)
        && existing.status().await.is_ok()
    {
        anyhow::bail!(
            "a cluster is already up (load balancer {}); stop it with `bffctl down` first",
            existing.file.lb_url
        );
    }
    let mut spec = args.cluster.spec();
    // Something to open in a browser: the example app at `/`, a mock API behind `/api/`.
    spec.spa = true;
    spec.api_upstream = true;
    // Images first: a run that cannot start gets no run directory, and `latest` stays put.
    super::images::ensure_for(&spec).await?;
    spec.run_dir = Some(harness::run_dir::create(&harness::run_dir::runs_root(), "up")?);
    let started = Instant::now();
    let spinner = ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")?);
    spinner.enable_steady_tick(Duration::from_millis(100));
    let progress = {
        let spinner = spinner.clone();
        move |step: &str| spinner.set_message(step.to_owned())
    };
    let cluster = Cluster::start(spec, &progress).await;
    spinner.finish_and_clear();
    let cluster = cluster?;
    let took = started.elapsed();

    let file = ControlFile {
        control_url: String::new(),
        lb_url: cluster.lb_url(),
        issuer_url: cluster.issuer().url().into(),
        backend: cluster.backend_name().into(),
        nodes: cluster.node_count(),
        pid: std::process::id(),
        resolve: cluster.resolve().to_vec(),
        run_dir: Some(cluster.run_dir().to_owned()),
        ops_token: Some(cluster.spec().ops_token.clone()),
    };
    let status = control::status_of(&cluster);
    let cluster = Arc::new(Mutex::new(cluster));
    let down = Arc::new(Notify::new());
    let control_url = control::serve(cluster.clone(), down.clone()).await?;
    let file = ControlFile { control_url, ..file };
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // It holds the nodes' ops token: readable by this user only.
    let mut written = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(written.write(true).create(true).truncate(true), 0o600);
    std::io::Write::write_all(&mut written.open(state)?, serde_json::to_string_pretty(&file)?.as_bytes())?;

    output::status(&status, args.output.json);
    if !args.output.json {
        println!(
            "up in {:.1} s. Open the example app at {}/ (log in, see your claims, call the mock API behind /api/, log out);",
            took.as_secs_f64(),
            file.lb_url
        );
        println!("or log in at {}/account/login, then see yourself at {}/account/me", file.lb_url, file.lb_url);
        if file.backend == "docker" {
            println!("(the issuer is at {}: browsers resolve *.localhost to this machine)", file.issuer_url);
        }
        println!(
            "From another terminal: bffctl status | logs node-2 [--follow] | restart-node 2 | kill-node 2 | start-node 2 | restart-redis | down. Ctrl-C stops everything."
        );
        println!("Node logs: {}", cluster.lock().await.run_dir().display());
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = down.notified() => {}
    }
    eprintln!("tearing down…");
    let result = cluster.lock().await.teardown().await;
    let _ = std::fs::remove_file(state);
    result?;
    eprintln!("everything removed");
    Ok(ExitCode::SUCCESS)
}
