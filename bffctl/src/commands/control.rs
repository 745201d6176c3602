//! `status`, `restart-node`, `kill-node`, `stop-node`, `start-node`, `restart-redis`, `down`:
//! requests to the control API of a running `bffctl up`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use harness::cluster::control::{ControlClient, ControlError};

use crate::output;

pub async fn status(state: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let client = ControlClient::open(state)?;
    output::status(&client.status().await?, json);
    Ok(ExitCode::SUCCESS)
}

pub async fn node(state: &Path, number: usize, action: &str, json: bool) -> anyhow::Result<ExitCode> {
    let client = ControlClient::open(state)?;
    let status = client.node(number, action).await?;
    if !json {
        println!("node-{number}: {action} done");
    }
    output::status(&status, json);
    Ok(ExitCode::SUCCESS)
}

pub async fn restart_redis(state: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let client = ControlClient::open(state)?;
    let status = client.restart_redis().await?;
    output::status(&status, json);
    Ok(ExitCode::SUCCESS)
}

/// With nothing up, `down` has nothing to do and succeeds (clean-up scripts run it blindly, as
/// other tools treat "already down").
pub async fn down(state: &Path) -> anyhow::Result<ExitCode> {
    let client = match ControlClient::open(state) {
        Ok(client) => client,
        Err(ControlError::NoCluster(_)) => {
            println!("no cluster is up: nothing to stop");
            return Ok(ExitCode::SUCCESS);
        }
        Err(error) => return Err(error.into()),
    };
    client.down().await?;
    // `up` removes the state file once everything is torn down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while state.exists() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the cluster did not finish tearing down within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("cluster down");
    Ok(ExitCode::SUCCESS)
}
