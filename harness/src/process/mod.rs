//! Local processes for tests and the `process` backend: `redis-server` from PATH and `bff`
//! children on loopback ports. Children are killed when their handle is dropped (also while a
//! panic unwinds), and a restarted child keeps its port.

mod bff;
mod child;
mod redis;
mod sentinel;

use std::path::{Path, PathBuf};

pub(crate) use bff::probe_ready;
pub use bff::{BffProcess, BffProcessBuilder};
pub use child::ProcessError;
pub use redis::RedisProcess;
pub(crate) use sentinel::{DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS};
pub use sentinel::{MASTER_NAME, SentinelError, SentinelGroup};

/// The first file named `program` in a directory of `PATH`.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|p| p.is_file())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}
