//! What a soak samples every few seconds: each node's resident memory and open file
//! descriptors (from `/proc`), and how many keys Redis holds (`DBSIZE`).

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds from the start of the load.
    pub at_s: f64,
    /// Resident memory of each node, KiB (`None`: not running or not readable).
    pub rss_kib: Vec<Option<u64>>,
    /// Open file descriptors of each node.
    pub fds: Vec<Option<u64>>,
    /// Keys in Redis (`None`: Redis did not answer, e.g. killed at that moment).
    pub redis_keys: Option<u64>,
}

/// The host pid of a node from its component id: `pid N` for a process, a container id for a
/// container (its main process, as the host sees it: `docker inspect`).
pub async fn host_pid(id: &str) -> Option<u32> {
    if let Some(pid) = id.strip_prefix("pid ") {
        return pid.parse().ok();
    }
    let pid =
        crate::images::docker(&["inspect", "--format", "{{.State.Pid}}", id], Duration::from_secs(5)).await.ok()?;
    pid.trim().parse().ok().filter(|pid| *pid > 0)
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How many file descriptors a process has open.
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// `DBSIZE` over a plain connection, bounded by one second.
pub async fn redis_keys(addr: &str) -> Option<u64> {
    let ask = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"DBSIZE\r\n").await.ok()?;
        let mut buf = [0u8; 32];
        let n = stream.read(&mut buf).await.ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        text.strip_prefix(':')?.trim_end().parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), ask).await.ok().flatten()
}
