//! `bffctl images`: build the local Docker images the docker backend runs: `bff` and `redis`,
//! each `FROM scratch` with the binary and the shared libraries it needs, so no registry is
//! needed.

use std::process::ExitCode;
use std::time::Instant;

use harness::cluster::{ClusterSpec, Images};

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
    Ok(ExitCode::SUCCESS)
}
