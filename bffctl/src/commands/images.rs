//! `bffctl images`: build the local Docker images the docker backend runs: `bff` and `redis`,
//! each `FROM scratch` with the binary and the shared libraries it needs, so no registry is
//! needed. [`ensure_for`] does the same on demand before `up`, `verify-scaling` and `run`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use harness::cluster::{BackendKind, ClusterSpec, Images};
use harness::images::ImageAction;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ImagesArgs;

pub async fn run(args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let spec = ClusterSpec { bff_binary: args.bff_binary.clone(), ..ClusterSpec::default() };
    let binary = harness::cluster::process::find_bff_binary(&spec)?;
    let images = Images { bff: args.bff_image, redis: args.redis_image };
    let started = Instant::now();
    harness::images::build_images(&binary, &images, |step: &str| eprintln!("{step}")).await?;
    println!(
        "built {} and {} in {:.1} s (bff binary: {})",
        images.bff,
        images.redis,
        started.elapsed().as_secs_f64(),
        binary.display()
    );
    if args.deploy {
        let bffctl = std::env::current_exe()?;
        eprintln!("building bff-local/bffctl from {}", bffctl.display());
        harness::images::build_bffctl_image(&bffctl, "bff-local/bffctl:latest").await?;
        eprintln!("building bff-local/nginx from the host's nginx");
        harness::images::build_nginx_image("bff-local/nginx:latest").await?;
        println!("built bff-local/bffctl and bff-local/nginx for deploy/compose/");
    }
    Ok(ExitCode::SUCCESS)
}

/// When `spec` runs on Docker, builds its images if they are missing or older than the `bff`
/// binary it runs: a spinner while building, then one line per image built.
pub async fn ensure_for(spec: &ClusterSpec) -> anyhow::Result<()> {
    if harness::cluster::resolve_backend(spec).await? != BackendKind::Docker {
        return Ok(());
    }
    let binary = harness::cluster::process::find_bff_binary(spec).ok();
    let spinner = ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")?);
    spinner.enable_steady_tick(Duration::from_millis(100));
    let notice = {
        let spinner = spinner.clone();
        move |line: &str| spinner.set_message(line.to_owned())
    };
    let started = Instant::now();
    let uses_redis = spec.session_store == harness::cluster::StoreKind::Redis;
    let done = harness::images::ensure_images(&spec.images, binary.as_deref(), uses_redis, &notice).await;
    spinner.finish_and_clear();
    let built: Vec<String> = done?
        .into_iter()
        .filter_map(|(image, action)| match action {
            ImageAction::Built(why) => Some(format!("{image} ({why})")),
            ImageAction::Kept => None,
        })
        .collect();
    if !built.is_empty() {
        eprintln!("built {} in {:.1} s", built.join(" and "), started.elapsed().as_secs_f64());
    }
    Ok(())
}
