//! [`Backend`]: what a place that runs nodes and Redis must do. [`super::Cluster`] drives it and
//! keeps the load balancer in step; the backends only start and stop things.

use std::net::SocketAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Serialize;

use super::redis_fault::{FaultDone, RedisFault};
use crate::fault::Fault;
use crate::images::ImageError;

/// Something went wrong bringing up or changing the cluster.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// Docker or redis-server is missing, an image is missing: one line saying what to do.
    #[error("{0}")]
    Unavailable(String),
    #[error("no node {0}")]
    NoSuchNode(usize),
    /// A node did not become ready: the deployment's fault (a verdict), not the tool's.
    #[error("{node} never became ready: {reason}{}", log.as_ref().map(|p| format!(" (its log: {})", p.display())).unwrap_or_default())]
    NodeNotReady {
        node: String,
        /// What the node's `/ready` said last, or how it exited.
        reason: String,
        /// The node's log file.
        log: Option<PathBuf>,
        /// Its last lines.
        last_lines: Vec<String>,
    },
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
}

impl ClusterError {
    pub fn failed(what: impl Into<String>, reason: impl ToString) -> Self {
        ClusterError::Failed { what: what.into(), reason: reason.to_string() }
    }

    /// Node `node` did not become ready for `reason`; quotes the end of its log file.
    pub fn not_ready(node: impl Into<String>, reason: impl Into<String>, log: Option<PathBuf>) -> Self {
        let last_lines = log.as_deref().map(|p| crate::run_dir::quoted_lines(p, QUOTED_LINES)).unwrap_or_default();
        ClusterError::NodeNotReady { node: node.into(), reason: reason.into(), log, last_lines }
    }
}

impl From<ImageError> for ClusterError {
    fn from(error: ImageError) -> Self {
        match error {
            ImageError::DockerUnavailable(_)
            | ImageError::BffMissing(_)
            | ImageError::RedisServerMissing
            | ImageError::NotFound(_) => ClusterError::Unavailable(error.to_string()),
            other => ClusterError::failed("images", other),
        }
    }
}

/// How many of a failed node's last log lines a report quotes.
pub const QUOTED_LINES: usize = 8;

/// The state of one component, for `bffctl status`.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// `redis`, `node-1`, …, `issuer`, `lb`.
    pub name: String,
    /// Where the host reaches it (`127.0.0.1:PORT`), when it runs.
    pub address: Option<String>,
    /// `running`, `stopped`, `killed`.
    pub state: String,
    /// Container id (short) or process id.
    pub id: Option<String>,
}

/// Runs Redis and the `bff` nodes. Node indexes are 0-based.
#[async_trait]
pub trait Backend: Send + Sync {
    /// `docker` or `process`.
    fn name(&self) -> &'static str;

    /// How many nodes the backend manages.
    fn node_count(&self) -> usize;

    /// Starts node `index` (which must not be running) and waits until its `/ready` answers 200.
    /// Returns the address the host reaches it on (it may change across restarts).
    async fn start_node(&mut self, index: usize) -> Result<SocketAddr, ClusterError>;

    /// Stops node `index` gracefully (SIGTERM: it finishes in-flight requests).
    async fn stop_node(&mut self, index: usize) -> Result<(), ClusterError>;

    /// Kills node `index` at once (SIGKILL).
    async fn kill_node(&mut self, index: usize) -> Result<(), ClusterError>;

    /// Restarts Redis (keeping its data when persistence is on) and waits until it answers.
    async fn restart_redis(&mut self) -> Result<(), ClusterError>;

    /// Fails the Redis master over to its replica (Sentinel only): `SENTINEL FAILOVER`, or with
    /// `kill_primary` a SIGKILL of the master. Returns once the sentinels name a new master that
    /// answers, with a replica in sync again.
    async fn failover_redis(&mut self, kill_primary: bool) -> Result<(), ClusterError> {
        let _ = kill_primary;
        Err(ClusterError::failed("failover-redis", "this cluster has no Redis Sentinel (--redis sentinel)"))
    }

    /// Does `fault` to a Redis Cluster (`--redis cluster`); returns once the cluster is whole
    /// again (every slot served, each primary with a replica in sync), not when the nodes have
    /// noticed: the users meet them first.
    async fn redis_cluster_fault(&mut self, fault: RedisFault) -> Result<FaultDone, ClusterError> {
        Err(ClusterError::failed(fault.action(), "this cluster has no Redis Cluster (--redis cluster)"))
    }

    /// `used_memory` and keys of each primary of a Redis Cluster, by shard (empty for any other
    /// Redis).
    async fn redis_memory_per_shard(&self) -> Vec<crate::process::ShardMemory> {
        Vec::new()
    }

    /// Sets `fault` on the link between node `index` (every node when `None`) and Redis.
    fn set_redis_link(&self, _index: Option<usize>, _fault: Fault) -> Result<(), ClusterError> {
        Err(ClusterError::Unavailable(format!("the {} backend cannot fault the link to redis", self.name())))
    }

    /// Freezes node `index` (SIGSTOP) or lets it run again (SIGCONT): it keeps its sockets and
    /// answers nothing meanwhile.
    async fn pause_node(&mut self, _index: usize, _paused: bool) -> Result<(), ClusterError> {
        Err(ClusterError::Unavailable(format!("the {} backend cannot pause a node", self.name())))
    }

    /// Kills Redis at once (SIGKILL); [`Backend::start_redis`] brings it back.
    async fn kill_redis(&mut self) -> Result<(), ClusterError> {
        Err(ClusterError::Unavailable(format!("the {} backend cannot kill redis", self.name())))
    }

    /// Starts Redis again after [`Backend::kill_redis`] and waits until it answers.
    async fn start_redis(&mut self) -> Result<(), ClusterError> {
        Err(ClusterError::Unavailable(format!("the {} backend cannot start redis", self.name())))
    }

    /// Makes node `index` (stopped) run `build` from its next start: a `bff` binary, or an
    /// image (Docker). A rolling upgrade's step.
    async fn set_node_build(&mut self, _index: usize, _build: &str) -> Result<(), ClusterError> {
        Err(ClusterError::Unavailable(format!("the {} backend cannot change a node's build", self.name())))
    }

    /// The build node `index` runs, for reports (`0.1.0`).
    fn node_build(&self, _index: usize) -> Option<String> {
        None
    }

    /// Redis and every node, for status tables.
    fn components(&self) -> Vec<Component>;

    /// The file node `index` writes its output to (the same file across restarts).
    fn node_log(&self, index: usize) -> Option<PathBuf>;

    /// Stops and removes everything the backend created (containers, networks, processes,
    /// temporary files). Idempotent.
    async fn teardown(&mut self) -> Result<(), ClusterError>;
}

/// Sets `fault` on node `index`'s relay to Redis (every node's when `None`): the same for every
/// backend whose nodes reach Redis through [`crate::fault::FaultProxy`]s.
pub(super) fn set_relays(
    relays: &[crate::fault::FaultProxy],
    index: Option<usize>,
    fault: Fault,
) -> Result<(), ClusterError> {
    if relays.is_empty() {
        return Err(ClusterError::Unavailable(
            "the nodes reach redis directly: a scenario with link faults runs them through fault relays".into(),
        ));
    }
    match index {
        Some(i) => relays.get(i).ok_or(ClusterError::NoSuchNode(i))?.set(fault),
        None => relays.iter().for_each(|link| link.set(fault)),
    }
    Ok(())
}
