//! `bffctl logs node-2 [--follow]`: a node's output, read from its log file in the run directory
//! (the cluster `bffctl up` runs, else the latest run of any command), so that nothing a node
//! writes lands in `bffctl`'s own terminal.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use harness::cluster::control::ControlClient;
use harness::run_dir;

use crate::cli::LogsArgs;

/// How often `--follow` looks for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

pub async fn run(args: LogsArgs, state: &Path) -> anyhow::Result<ExitCode> {
    let name = component_name(&args.node)?;
    let dir = run_directory(args.run.clone(), state).await?;
    let path = run_dir::log_path(&dir, &name);
    anyhow::ensure!(path.is_file(), "no log of {name} in {} (it has never started there)", dir.display());
    let mut file = std::fs::File::open(&path)?;
    let mut stdout = std::io::stdout().lock();
    match args.tail {
        Some(n) => {
            for line in run_dir::last_lines(&path, n) {
                writeln!(stdout, "{line}")?;
            }
            file.seek(SeekFrom::End(0))?;
        }
        None => {
            std::io::copy(&mut file, &mut stdout)?;
        }
    }
    stdout.flush()?;
    drop(stdout);
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut buffer = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
        buffer.clear();
        file.read_to_end(&mut buffer)?;
        if !buffer.is_empty() {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&buffer)?;
            stdout.flush()?;
        }
    }
}

/// `node-2`, `2` → `node-2`; `redis` stays.
fn component_name(given: &str) -> anyhow::Result<String> {
    if let Ok(n) = given.parse::<usize>() {
        anyhow::ensure!(n > 0, "nodes are numbered from 1");
        return Ok(harness::cluster::node_name(n - 1));
    }
    anyhow::ensure!(
        given.strip_prefix("node-").and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n > 0) || given == "redis",
        "expected a node such as node-2 (or 2), got {given:?}"
    );
    Ok(given.to_owned())
}

/// `--run`, else the running `up` cluster's, else the latest run.
async fn run_directory(given: Option<PathBuf>, state: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    if let Ok(client) = ControlClient::open(state)
        && client.status().await.is_ok()
        && let Some(dir) = &client.file.run_dir
    {
        return Ok(dir.clone());
    }
    let root = run_dir::runs_root();
    run_dir::latest(&root).ok_or_else(|| anyhow::anyhow!("no run in {} yet: start one with bffctl up", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert_eq!(component_name("2").unwrap(), "node-2");
        assert_eq!(component_name("node-3").unwrap(), "node-3");
        assert_eq!(component_name("redis").unwrap(), "redis");
        assert!(component_name("0").is_err());
        assert!(component_name("node-x").is_err());
        assert!(component_name("../etc/passwd").is_err());
    }
}
