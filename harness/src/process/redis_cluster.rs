//! A Redis Cluster as local `redis-server` processes: N primaries sharing the 16384 slots, each
//! with its replicas, every server's client port AND cluster bus port chosen explicitly (the
//! default bus port, client port + 10000, can land in the kernel's ephemeral range or be
//! taken). And the faults a deployment must survive: a manual failover (`CLUSTER FAILOVER`), a
//! SIGKILLed primary replaced by its replica, a live reshard, a primary added. Every wait polls
//! what the nodes say ([`crate::redis_cluster_admin`]) with a deadline; children are killed on
//! drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::child::{OutputTail, ProcessError, Supervised};
use super::redis::ping;
use crate::redis_cluster_admin::{self as admin, ClusterAdminError, NodeAddress, NodeMemory};
use crate::replication;

/// Redis's `cluster-node-timeout` here unless the builder says otherwise: how long a silent
/// primary takes to be called failed (then its replica takes over within about a second more).
/// Redis's default is 15 s; 2 s rather than 1 s for the reason the Sentinel fixture gives for
/// its `DOWN_AFTER_MS` (a busy server on this loaded 2-core machine was failed over by mistake).
pub const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// Bound on every wait: forming, a failover, a node's return.
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RedisClusterError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Admin(#[from] ClusterAdminError),
    #[error("redis cluster: {0}")]
    Invalid(String),
}

/// One `redis-server --cluster-enabled yes` and its directory (which keeps its `nodes.conf`
/// across a restart, so that it comes back as the same node).
struct ClusterNode {
    port: u16,
    bus_port: u16,
    dir: tempfile::TempDir,
    output: OutputTail,
    child: Option<Supervised>,
    node_timeout: Duration,
}

impl ClusterNode {
    async fn start(node_timeout: Duration) -> Result<Self, ProcessError> {
        let dir = tempfile::tempdir()
            .map_err(|e| ProcessError::Spawn { program: "redis-server".into(), reason: e.to_string() })?;
        let port = super::free_port();
        let mut bus_port = super::free_port();
        while bus_port == port {
            bus_port = super::free_port();
        }
        let mut node = ClusterNode { port, bus_port, dir, output: OutputTail::default(), child: None, node_timeout };
        node.start_again().await?;
        Ok(node)
    }

    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn node_address(&self) -> NodeAddress {
        NodeAddress { client: self.address(), bus_port: self.bus_port }
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &self.dir.path().display().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &self.bus_port.to_string(),
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &self.node_timeout.as_millis().to_string(),
            // A replica's full sync starts at once (Redis waits 5 s for more replicas by default).
            "--repl-diskless-sync-delay",
            "0",
        ]
        .map(String::from)
        .to_vec();
        args.extend(["--loglevel", "notice"].map(String::from));
        args
    }

    async fn start_again(&mut self) -> Result<(), ProcessError> {
        let mut child = Supervised::spawn(&PathBuf::from("redis-server"), &self.args(), &[], self.output.clone())?;
        let port = self.port;
        child
            .wait_until_ready(&self.output, Duration::from_secs(10), || async move {
                if ping(port).await { Ok(()) } else { Err("no PONG yet".to_owned()) }
            })
            .await?;
        self.child = Some(child);
        Ok(())
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await;
        }
    }
}

/// A node of the cluster as a caller sees it: which shard, where.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterMember {
    /// Index of its shard (a primary and its replicas; stable across failovers).
    pub shard: usize,
    pub address: SocketAddr,
    pub bus_port: u16,
}

/// One shard's primary: its memory and keys.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ShardMemory {
    pub shard: usize,
    #[serde(flatten)]
    pub memory: NodeMemory,
}

/// Builder for [`RedisCluster`].
pub struct RedisClusterBuilder {
    primaries: usize,
    replicas_per_primary: usize,
    node_timeout: Duration,
}

impl RedisClusterBuilder {
    pub fn primaries(mut self, primaries: usize) -> Self {
        self.primaries = primaries;
        self
    }

    pub fn replicas_per_primary(mut self, replicas: usize) -> Self {
        self.replicas_per_primary = replicas;
        self
    }

    /// Redis's `cluster-node-timeout` (default [`NODE_TIMEOUT`]).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Starts every server, forms the cluster and returns once every node says
    /// `cluster_state:ok` with all slots assigned and they all agree on who serves what.
    pub async fn run(self) -> Result<RedisCluster, RedisClusterError> {
        if self.primaries == 0 {
            return Err(RedisClusterError::Invalid("a cluster needs at least one primary".into()));
        }
        let total = self.primaries * (1 + self.replicas_per_primary);
        let mut nodes = Vec::with_capacity(total);
        for _ in 0..total {
            nodes.push(ClusterNode::start(self.node_timeout).await?);
        }
        let addresses: Vec<NodeAddress> = nodes.iter().map(ClusterNode::node_address).collect();
        admin::form(&addresses, self.primaries, DEADLINE).await?;
        // Node `primaries + i` replicates primary `i % primaries` (see `admin::form`).
        let shard_of = (0..total).map(|i| if i < self.primaries { i } else { (i - self.primaries) % self.primaries });
        let nodes = nodes
            .into_iter()
            .zip(shard_of)
            .enumerate()
            .map(|(index, (node, shard))| Member { shard, primary: index < self.primaries, node })
            .collect();
        let mut cluster = RedisCluster { nodes, node_timeout: self.node_timeout };
        cluster.settle().await?;
        Ok(cluster)
    }
}

/// A node and what the fixture knows of it.
struct Member {
    shard: usize,
    /// Its role as of the fixture's last look.
    primary: bool,
    node: ClusterNode,
}

/// A running Redis Cluster of local processes. Shards are numbered from 0 in the order they
/// were formed (then added); a shard keeps its number through failovers.
pub struct RedisCluster {
    nodes: Vec<Member>,
    node_timeout: Duration,
}

impl RedisCluster {
    pub fn builder() -> RedisClusterBuilder {
        RedisClusterBuilder { primaries: 3, replicas_per_primary: 1, node_timeout: NODE_TIMEOUT }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…`: the current primaries as seed nodes (a
    /// client needs any one of them to learn the rest). It changes with a failover: give every
    /// gateway node the same string (the settings fingerprint compares the seeds).
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.primaries().iter().map(|m| m.address.to_string()).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The addresses of the running nodes.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.running().map(|m| m.node.address()).collect()
    }

    /// How many shards (primaries with their replicas) it has.
    pub fn shards(&self) -> usize {
        self.nodes.iter().map(|m| m.shard + 1).max().unwrap_or(0)
    }

    /// The running primaries, by shard, as of the fixture's last look (after each of its own
    /// operations; [`RedisCluster::view`] asks the nodes).
    pub fn primaries(&self) -> Vec<ClusterMember> {
        self.members(true)
    }

    /// The running replicas, by shard.
    pub fn replicas(&self) -> Vec<ClusterMember> {
        self.members(false)
    }

    fn running(&self) -> impl Iterator<Item = &Member> {
        self.nodes.iter().filter(|m| m.node.child.is_some())
    }

    fn members(&self, primaries: bool) -> Vec<ClusterMember> {
        let mut members: Vec<ClusterMember> = self
            .running()
            .filter(|m| m.primary == primaries)
            .map(|m| ClusterMember { shard: m.shard, address: m.node.address(), bus_port: m.node.bus_port })
            .collect();
        members.sort_by_key(|m| (m.shard, m.address));
        members
    }

    /// What the first running node says about every node (`CLUSTER NODES`).
    pub async fn view(&self) -> Option<Vec<admin::NodeView>> {
        for address in self.addresses() {
            if let Some(view) = admin::nodes_view(address).await {
                return Some(view);
            }
        }
        None
    }

    /// Until every running node says the cluster is ok and they all agree; then records roles.
    async fn settle(&mut self) -> Result<Vec<admin::NodeView>, RedisClusterError> {
        let view = admin::wait_until_settled(&self.addresses(), DEADLINE).await?;
        for member in &mut self.nodes {
            let address = member.node.address().to_string();
            if let Some(node) = view.iter().find(|n| n.address == address) {
                member.primary = node.primary;
            }
        }
        Ok(view)
    }

    fn primary_of(&self, shard: usize) -> Result<SocketAddr, RedisClusterError> {
        self.running()
            .find(|m| m.shard == shard && m.primary)
            .map(|m| m.node.address())
            .ok_or_else(|| RedisClusterError::Invalid(format!("shard {shard} has no running primary")))
    }

    fn replica_of(&self, shard: usize) -> Result<SocketAddr, RedisClusterError> {
        self.running()
            .find(|m| m.shard == shard && !m.primary)
            .map(|m| m.node.address())
            .ok_or_else(|| RedisClusterError::Invalid(format!("shard {shard} has no running replica")))
    }

    /// How many slots the primary of `shard` serves.
    pub async fn slots(&self, shard: usize) -> Result<usize, RedisClusterError> {
        let primary = self.primary_of(shard)?.to_string();
        let view = self.view().await.ok_or_else(|| RedisClusterError::Invalid("no node answers".into()))?;
        Ok(view.iter().find(|n| n.address == primary).map(|n| n.slots.len()).unwrap_or(0))
    }

    /// The shard whose primary serves `key`'s slot now (`CLUSTER KEYSLOT`, then the view).
    pub async fn shard_of(&self, key: &str) -> Result<usize, RedisClusterError> {
        let first = *self.addresses().first().ok_or_else(|| RedisClusterError::Invalid("no running node".into()))?;
        let slot: u16 = admin::command(first, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await?;
        let view = self.view().await.ok_or_else(|| RedisClusterError::Invalid("no node answers".into()))?;
        let owner = view
            .iter()
            .find(|n| n.primary && n.slots.contains(&slot))
            .ok_or_else(|| RedisClusterError::Invalid(format!("no primary serves slot {slot}")))?;
        self.nodes
            .iter()
            .find(|m| m.node.address().to_string() == owner.address)
            .map(|m| m.shard)
            .ok_or_else(|| RedisClusterError::Invalid(format!("{} is not a node of this cluster", owner.address)))
    }

    /// `CLUSTER FAILOVER` on the replica of `shard` (once it has everything its primary
    /// acknowledged): the replica and its primary swap roles without losing a write. Returns the
    /// new primary once it is primary and every node agrees.
    pub async fn failover(&mut self, shard: usize) -> Result<SocketAddr, RedisClusterError> {
        let primary = self.primary_of(shard)?;
        let replica = self.replica_of(shard)?;
        replication::wait_until_in_sync(primary, DEADLINE).await.map_err(ClusterAdminError::Timeout)?;
        admin::command::<()>(replica, redis::cmd("CLUSTER").arg("FAILOVER")).await?;
        self.wait_for_primary(shard, replica).await
    }

    /// SIGKILLs the primary of `shard` (once its replica has everything it acknowledged) and
    /// returns the replica that replaced it, once every running node agrees: a
    /// `cluster-node-timeout` and an election later. [`RedisCluster::restart_killed`] brings
    /// the killed node back, as a replica.
    pub async fn kill_primary(&mut self, shard: usize) -> Result<SocketAddr, RedisClusterError> {
        let primary = self.primary_of(shard)?;
        let replica = self.replica_of(shard)?;
        replication::wait_until_in_sync(primary, DEADLINE).await.map_err(ClusterAdminError::Timeout)?;
        if let Some(member) = self.nodes.iter_mut().find(|m| m.node.address() == primary) {
            member.node.kill().await;
        }
        self.wait_for_primary(shard, replica).await
    }

    async fn wait_for_primary(&mut self, shard: usize, expected: SocketAddr) -> Result<SocketAddr, RedisClusterError> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let view = self.settle().await?;
            let text = expected.to_string();
            if view.iter().any(|n| n.address == text && n.primary) {
                return Ok(expected);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(RedisClusterError::Invalid(format!(
                    "{expected} did not become the primary of shard {shard} within {DEADLINE:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts every killed node again on its ports, with its `nodes.conf`: it rejoins as a
    /// replica of the primary that replaced it. Returns once every node agrees and its link to
    /// its primary is up.
    pub async fn restart_killed(&mut self) -> Result<(), RedisClusterError> {
        for member in &mut self.nodes {
            if member.node.child.is_none() {
                member.node.start_again().await?;
            }
        }
        self.settle().await?;
        Ok(())
    }

    /// Moves `share` (0..=1) of the slots of shard `from`'s primary to shard `to`'s, live
    /// (see [`admin::reshard`]: clients see `ASK` and `MOVED` meanwhile). Returns how many slots
    /// moved, once every node agrees on the new owners.
    pub async fn reshard(&mut self, from: usize, to: usize, share: f64) -> Result<usize, RedisClusterError> {
        let moved = admin::reshard(self.primary_of(from)?, self.primary_of(to)?, share).await?;
        self.settle().await?;
        Ok(moved)
    }

    /// Starts a new node and has it join (`CLUSTER MEET`) as the primary of a new shard, with
    /// no slots until a reshard gives it some. Returns the new shard's number.
    pub async fn add_primary(&mut self) -> Result<usize, RedisClusterError> {
        let node = ClusterNode::start(self.node_timeout).await?;
        let seed = self.primary_of(0).or_else(|_| {
            self.addresses().first().copied().ok_or_else(|| RedisClusterError::Invalid("no running node".into()))
        })?;
        admin::meet(seed, node.node_address()).await?;
        let shard = self.shards();
        self.nodes.push(Member { shard, primary: true, node });
        self.settle().await?;
        Ok(shard)
    }

    /// `used_memory` and the number of keys of every shard's primary.
    pub async fn memory_per_shard(&self) -> Result<Vec<ShardMemory>, RedisClusterError> {
        let mut shards = Vec::new();
        for member in self.primaries() {
            shards.push(ShardMemory { shard: member.shard, memory: admin::memory(member.address).await? });
        }
        Ok(shards)
    }

    /// The last lines every node wrote, for a failing test's message.
    pub fn output(&self) -> String {
        self.nodes
            .iter()
            .map(|m| format!("node {} (shard {}): {}", m.node.address(), m.shard, m.node.output.quote()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
