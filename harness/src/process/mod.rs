//! Local processes for tests and the `process` backend: `redis-server` from PATH and `bff`
//! children on loopback ports. Children are killed when their handle is dropped (also while a
//! panic unwinds), and a restarted child keeps its port.

mod bff;
mod child;
mod redis;
mod redis_cluster;
mod sentinel;

use std::path::{Path, PathBuf};

pub(crate) use bff::probe_ready;
pub use bff::{BffProcess, BffProcessBuilder};
pub use child::ProcessError;
pub use redis::RedisProcess;
pub use redis_cluster::{
    ClusterMember, NODE_TIMEOUT, RedisCluster, RedisClusterBuilder, RedisClusterError, ShardMemory,
};
pub(crate) use sentinel::{DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS};
pub use sentinel::{MASTER_NAME, SentinelError, SentinelGroup};

/// The first file named `program` in a directory of `PATH`.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|p| p.is_file())
}

/// A loopback port that was free a moment ago, for a server that bffctl starts and may start
/// again on the same port (a node's restart, Redis's). It is taken below the kernel's ephemeral
/// range when there is room there: a port from that range can be taken, while its server is
/// down, as the local port of an outgoing connection (one of the many a run opens), and the
/// server's restart would then find it in use.
pub fn free_port() -> u16 {
    let (low, _) = ephemeral_range();
    if low > 10_000 {
        use rand::Rng;
        let mut rng = rand::rng();
        for _ in 0..64 {
            let port = rng.random_range(10_000..low);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// The kernel's range of ports for outgoing connections (Linux's default when unreadable).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32_768, 60_999))
}
