//! Process backend: `redis-server` from PATH and `bff` child processes on loopback ports. A
//! restarted node keeps its port; everything is killed when the backend is dropped (children are
//! `kill_on_drop`), also while a panic unwinds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::backend::{Backend, ClusterError, Component};
use super::redis_fault::{FaultDone, RedisFault};
use super::spec::{ClusterSpec, RedisTopology, StoreKind, node_name};
use crate::fault::{Fault, FaultProxy};
pub use crate::process::on_path;
use crate::process::{BffProcess, RedisCluster, RedisProcess, SentinelGroup, ShardMemory, free_port};

struct NodeSlot {
    binary: PathBuf,
    port: u16,
    log: PathBuf,
    env: Vec<(String, String)>,
    process: Option<BffProcess>,
    state: &'static str,
}

/// How long the members of a Redis Cluster may take to agree on a reshard's new owners.
const RESHARD_SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

pub struct ProcessBackend {
    keep_unready: bool,
    ready_timeout: std::time::Duration,
    redis: Option<RedisProcess>,
    /// With `--redis sentinel`, instead of `redis`.
    sentinel: Option<SentinelGroup>,
    /// With `--redis cluster`, instead of `redis`.
    redis_cluster: Option<RedisCluster>,
    /// The cluster's members in the order they were made (a killed one comes back on its
    /// port), for stable names in status tables: `redis-1`, …
    member_names: Vec<SocketAddr>,
    nodes: Vec<NodeSlot>,
    /// With `redis_fault_links`: node i reaches Redis through `redis_links[i]`.
    redis_links: Vec<FaultProxy>,
}

/// Finds the `bff` binary: the spec's, `$BFF_BIN`, next to the running executable (also one
/// level up, for test binaries in `target/debug/deps`), then PATH.
pub fn find_bff_binary(spec: &ClusterSpec) -> Result<PathBuf, ClusterError> {
    if let Some(path) = &spec.bff_binary {
        if !path.is_file() {
            return Err(ClusterError::Unavailable(format!(
                "{}: no such bff binary (the previous release is built by `just previous-release`)",
                path.display()
            )));
        }
        return Ok(path.clone());
    }
    if let Some(path) = std::env::var_os("BFF_BIN") {
        return Ok(PathBuf::from(path));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("bff");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    on_path("bff").ok_or_else(|| {
        ClusterError::Unavailable("bff binary not found: build it with `cargo build -p bff` or set BFF_BIN".into())
    })
}

impl ProcessBackend {
    /// Starts Redis (when the spec uses it); nodes start with [`Backend::start_node`] and write
    /// their output to `<run_dir>/node-N.log`.
    pub async fn start(
        spec: &ClusterSpec,
        issuer_url: &str,
        public_url: &str,
        run_dir: &Path,
    ) -> Result<Self, ClusterError> {
        let binary = find_bff_binary(spec)?;
        if spec.session_store == StoreKind::Redis && on_path("redis-server").is_none() {
            return Err(ClusterError::Unavailable(
                "redis-server not found on PATH: install it (apt-get install redis-server)".into(),
            ));
        }
        let (redis, sentinel) = match (spec.session_store, spec.redis) {
            (StoreKind::Redis, RedisTopology::Single) => (
                Some(RedisProcess::start(spec.redis_persistence).await.map_err(|e| ClusterError::failed("redis", e))?),
                None,
            ),
            (StoreKind::Redis, RedisTopology::Sentinel) => (
                None,
                Some(
                    SentinelGroup::start(spec.redis_persistence)
                        .await
                        .map_err(|e| ClusterError::failed("redis sentinel", e))?,
                ),
            ),
            (StoreKind::Redis, RedisTopology::Cluster) => (None, None),
            (StoreKind::Memory, _) => (None, None),
        };
        let redis_cluster = match (spec.session_store, spec.redis) {
            (StoreKind::Redis, RedisTopology::Cluster) => Some(
                RedisCluster::builder()
                    .primaries(3)
                    .replicas_per_primary(1)
                    .run()
                    .await
                    .map_err(|e| ClusterError::failed("redis cluster", e))?,
            ),
            _ => None,
        };
        let cluster_url = redis_cluster.as_ref().map(RedisCluster::url);
        let member_names = redis_cluster.as_ref().map(RedisCluster::addresses).unwrap_or_default();
        let mut redis_links = Vec::new();
        if let (true, Some(redis)) = (spec.redis_fault_links, &redis) {
            for _ in 0..spec.nodes {
                let link = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], redis.port())))
                    .await
                    .map_err(|e| ClusterError::failed("fault relay", e))?;
                redis_links.push(link);
            }
        }
        let redis_url = |i: usize| match (redis_links.get(i), &redis) {
            (Some(link), _) => Some(format!("redis://{}", link.addr())),
            (None, redis) => redis
                .as_ref()
                .map(RedisProcess::url)
                .or_else(|| sentinel.as_ref().map(SentinelGroup::url))
                .or_else(|| cluster_url.clone()),
        };
        let nodes = (0..spec.nodes)
            .map(|i| NodeSlot {
                binary: spec.node(i).and_then(|n| n.binary.clone()).unwrap_or_else(|| binary.clone()),
                port: free_port(),
                log: crate::run_dir::log_path(run_dir, &node_name(i)),
                env: spec.node_env(i, issuer_url, public_url, redis_url(i).as_deref()),
                process: None,
                state: "stopped",
            })
            .collect();
        Ok(ProcessBackend {
            keep_unready: spec.keep_unready,
            ready_timeout: spec.ready_timeout(),
            redis,
            sentinel,
            redis_cluster,
            member_names,
            nodes,
            redis_links,
        })
    }

    /// The URL of Redis the nodes are given (before any fault relay); none without Redis.
    pub fn redis_url(&self) -> Option<String> {
        self.redis
            .as_ref()
            .map(RedisProcess::url)
            .or_else(|| self.sentinel.as_ref().map(SentinelGroup::url))
            .or_else(|| self.redis_cluster.as_ref().map(RedisCluster::url))
    }

    fn slot(&mut self, index: usize) -> Result<&mut NodeSlot, ClusterError> {
        self.nodes.get_mut(index).ok_or(ClusterError::NoSuchNode(index))
    }
}

#[async_trait]
impl Backend for ProcessBackend {
    fn name(&self) -> &'static str {
        "process"
    }

    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    async fn start_node(&mut self, index: usize) -> Result<SocketAddr, ClusterError> {
        let (ready_timeout, keep_unready) = (self.ready_timeout, self.keep_unready);
        let slot = self.slot(index)?;
        let binary = slot.binary.clone();
        let result = match &mut slot.process {
            Some(process) => process.start().await,
            None => {
                let mut builder =
                    BffProcess::builder(&binary).port(slot.port).log_file(&slot.log).ready_timeout(ready_timeout);
                if keep_unready {
                    builder = builder.keep_when_unready();
                }
                for (k, v) in &slot.env {
                    builder = builder.env(k, v.clone());
                }
                match builder.build() {
                    Ok(process) => slot.process.insert(process).start().await,
                    Err(error) => Err(error),
                }
            }
        };
        if let Err(error) = result {
            let kept = slot.process.as_ref().is_some_and(BffProcess::is_running);
            slot.state = if kept { "not ready" } else { "stopped" };
            return Err(match error.readiness_reason() {
                Some(reason) => ClusterError::not_ready(node_name(index), reason, Some(slot.log.clone())),
                None => ClusterError::failed(node_name(index), error),
            });
        }
        slot.state = "running";
        Ok(SocketAddr::from(([127, 0, 0, 1], slot.port)))
    }

    async fn stop_node(&mut self, index: usize) -> Result<(), ClusterError> {
        let slot = self.slot(index)?;
        if let Some(process) = &mut slot.process {
            process.stop().await;
        }
        slot.state = "stopped";
        Ok(())
    }

    async fn kill_node(&mut self, index: usize) -> Result<(), ClusterError> {
        let slot = self.slot(index)?;
        if let Some(process) = &mut slot.process {
            process.kill().await;
        }
        slot.state = "killed";
        Ok(())
    }

    async fn restart_redis(&mut self) -> Result<(), ClusterError> {
        let redis =
            self.redis.as_mut().ok_or_else(|| ClusterError::failed("restart-redis", "this cluster has no redis"))?;
        redis.restart().await.map_err(|e| ClusterError::failed("redis", e))
    }

    async fn failover_redis(&mut self, kill_primary: bool) -> Result<(), ClusterError> {
        let group = self.sentinel.as_mut().ok_or_else(|| {
            ClusterError::failed("failover-redis", "this cluster has no Redis Sentinel (--redis sentinel)")
        })?;
        group.failover(kill_primary).await.map(|_| ()).map_err(|e| ClusterError::failed("failover-redis", e))
    }

    async fn redis_cluster_fault(&mut self, fault: RedisFault) -> Result<FaultDone, ClusterError> {
        let action = fault.action();
        let cluster = self
            .redis_cluster
            .as_mut()
            .ok_or_else(|| ClusterError::failed(action, "this cluster has no Redis Cluster (--redis cluster)"))?;
        let error = |e: crate::process::RedisClusterError| ClusterError::failed(action, e);
        let shard = |pick: super::ShardPick, cluster: &RedisCluster| {
            pick.resolve(cluster.shards()).map_err(|e| ClusterError::failed(action, e))
        };
        let primary_of = |cluster: &RedisCluster, shard: usize| {
            cluster
                .primaries()
                .into_iter()
                .find(|m| m.shard == shard)
                .map(|m| m.address.to_string())
                .unwrap_or_default()
        };
        let done = match fault {
            RedisFault::Failover { shard: pick } => {
                let shard = shard(pick, cluster)?;
                let old = primary_of(cluster, shard);
                let new = cluster.failover(shard).await.map_err(error)?;
                format!("shard {}: {new} (replica) took over from {old}", shard + 1)
            }
            RedisFault::KillPrimary { shard: pick } => {
                let shard = shard(pick, cluster)?;
                let old = primary_of(cluster, shard);
                let new = cluster.kill_primary(shard).await.map_err(error)?;
                cluster.restart_killed().await.map_err(error)?;
                format!("shard {}: {old} killed, {new} promoted; {old} back as its replica", shard + 1)
            }
            RedisFault::Reshard { from, to, share } => {
                let from = shard(from, cluster)?;
                let to = match to {
                    Some(to) => shard(to, cluster)?,
                    None => (from + 1) % cluster.shards(),
                };
                if from == to {
                    return Err(ClusterError::failed(action, format!("shard {} to itself", from + 1)));
                }
                let primaries = cluster.primaries();
                let address = |shard: usize| {
                    primaries.iter().find(|m| m.shard == shard).map(|m| m.address).ok_or_else(|| {
                        ClusterError::failed(action, format!("shard {} has no running primary", shard + 1))
                    })
                };
                let (source, target) = (address(from)?, address(to)?);
                let plan = super::reshard::Move {
                    source,
                    target,
                    target_from_source: (target.ip().to_string(), target.port()),
                    others: primaries.iter().map(|m| m.address).filter(|a| *a != source && *a != target).collect(),
                    share,
                };
                let (moved, keys) =
                    super::reshard::move_slots(&plan).await.map_err(|e| ClusterError::failed(action, e))?;
                crate::redis_cluster_admin::wait_until_settled(&cluster.addresses(), RESHARD_SETTLE)
                    .await
                    .map_err(|e| ClusterError::failed(action, e))?;
                format!("{moved} slots ({keys} keys) moved from shard {} to shard {}", from + 1, to + 1)
            }
            RedisFault::AddPrimary => {
                let shard = cluster.add_primary().await.map_err(error)?;
                for address in cluster.addresses() {
                    if !self.member_names.contains(&address) {
                        self.member_names.push(address);
                    }
                }
                format!("{} joined as the primary of shard {} (no slots yet)", primary_of(cluster, shard), shard + 1)
            }
        };
        Ok(FaultDone(done))
    }

    async fn redis_memory_per_shard(&self) -> Vec<ShardMemory> {
        match &self.redis_cluster {
            Some(cluster) => cluster.memory_per_shard().await.unwrap_or_default(),
            None => Vec::new(),
        }
    }

    fn set_redis_link(&self, index: Option<usize>, fault: Fault) -> Result<(), ClusterError> {
        super::backend::set_relays(&self.redis_links, index, fault)
    }

    async fn pause_node(&mut self, index: usize, paused: bool) -> Result<(), ClusterError> {
        let slot = self.slot(index)?;
        let pid = slot.process.as_ref().and_then(BffProcess::pid).ok_or(ClusterError::NoSuchNode(index))?;
        let signal = if paused { Signal::SIGSTOP } else { Signal::SIGCONT };
        kill(Pid::from_raw(pid as i32), signal).map_err(|e| ClusterError::failed(node_name(index), e))?;
        slot.state = if paused { "paused" } else { "running" };
        Ok(())
    }

    async fn kill_redis(&mut self) -> Result<(), ClusterError> {
        let redis =
            self.redis.as_mut().ok_or_else(|| ClusterError::failed("kill-redis", "this cluster has no redis"))?;
        redis.kill().await;
        Ok(())
    }

    async fn start_redis(&mut self) -> Result<(), ClusterError> {
        let redis =
            self.redis.as_mut().ok_or_else(|| ClusterError::failed("start-redis", "this cluster has no redis"))?;
        redis.start_again().await.map_err(|e| ClusterError::failed("redis", e))
    }

    async fn set_node_build(&mut self, index: usize, build: &str) -> Result<(), ClusterError> {
        let binary = PathBuf::from(build);
        if !binary.is_file() {
            return Err(ClusterError::Unavailable(format!("{build}: no such bff binary to upgrade node to")));
        }
        let slot = self.slot(index)?;
        slot.binary = binary;
        // The next start makes a process of the new binary (the stopped one is dropped).
        slot.process = None;
        Ok(())
    }

    fn node_build(&self, index: usize) -> Option<String> {
        self.nodes.get(index).map(|slot| super::build_label::of_binary(&slot.binary))
    }

    fn components(&self) -> Vec<Component> {
        let mut out = Vec::new();
        if let Some(group) = &self.sentinel {
            let (servers, sentinels) = group.ports();
            for (i, port) in servers.iter().enumerate() {
                out.push(Component {
                    name: format!("redis-{}", i + 1),
                    address: Some(format!("127.0.0.1:{port}")),
                    state: "running".into(),
                    id: None,
                });
            }
            for (i, port) in sentinels.iter().enumerate() {
                out.push(Component {
                    name: format!("sentinel-{}", i + 1),
                    address: Some(format!("127.0.0.1:{port}")),
                    state: "running".into(),
                    id: None,
                });
            }
        }
        if let Some(cluster) = &self.redis_cluster {
            let roles = [(cluster.primaries(), "primary"), (cluster.replicas(), "replica")];
            let mut members: Vec<Component> = roles
                .iter()
                .flat_map(|(members, role)| {
                    members.iter().map(move |m| Component {
                        name: match self.member_names.iter().position(|a| *a == m.address) {
                            Some(i) => format!("redis-{}", i + 1),
                            None => format!("redis-{}", m.address.port()),
                        },
                        address: Some(m.address.to_string()),
                        state: format!("{role} of shard {}", m.shard + 1),
                        id: None,
                    })
                })
                .collect();
            members.sort_by(|a, b| a.name.len().cmp(&b.name.len()).then_with(|| a.name.cmp(&b.name)));
            out.extend(members);
        }
        if let Some(redis) = &self.redis {
            out.push(Component {
                name: "redis".into(),
                address: Some(format!("127.0.0.1:{}", redis.port())),
                state: if redis.is_running() { "running" } else { "stopped" }.into(),
                id: redis.pid().map(|p| format!("pid {p}")),
            });
        }
        for (i, slot) in self.nodes.iter().enumerate() {
            let running = slot.process.as_ref().is_some_and(BffProcess::is_running);
            out.push(Component {
                name: node_name(i),
                address: Some(format!("127.0.0.1:{}", slot.port)),
                state: if running && !matches!(slot.state, "not ready" | "paused") { "running" } else { slot.state }
                    .into(),
                id: slot.process.as_ref().and_then(BffProcess::pid).map(|p| format!("pid {p}")),
            });
        }
        out
    }

    fn node_log(&self, index: usize) -> Option<PathBuf> {
        self.nodes.get(index).map(|s| s.log.clone())
    }

    async fn teardown(&mut self) -> Result<(), ClusterError> {
        for slot in &mut self.nodes {
            if let Some(mut process) = slot.process.take() {
                process.kill().await;
            }
            slot.state = "stopped";
        }
        if let Some(redis) = &mut self.redis {
            redis.stop().await;
        }
        self.redis = None;
        if let Some(group) = &mut self.sentinel {
            group.stop().await;
        }
        self.sentinel = None;
        // Its processes are killed when it is dropped.
        self.redis_cluster = None;
        Ok(())
    }
}
