//! Redis Cluster as containers: three primaries, each with a replica (`redis-server
//! --cluster-enabled yes` from the Redis image), on the run's network, and the faults of
//! [`RedisFault`] done to them: `CLUSTER FAILOVER` of a shard, `docker kill` of a shard's
//! primary, slots moved live between shards, a primary added.
//!
//! **Addresses.** A cluster member tells its clients where the others are (`CLUSTER SLOTS`,
//! `MOVED`, `ASK`), so every member must announce an address that both the node containers and
//! the host-side harness reach. Each member announces the run network's gateway address (the
//! host, as the containers see it) with a data port and a bus port published on the host, both
//! chosen once (`cluster-announce-ip`, `-port`, `-bus-port`): the node containers reach the host
//! there, the harness reaches its own address, and Docker forwards to the member. Container
//! names were not used (a killed member's name leaves the network's DNS, and each lookup of it
//! then blocks for seconds, as the Sentinel group found), nor network addresses (the host may not
//! route to them, and a member started again gets another). The nodes are given every primary
//! as a seed in that form.
//!
//! **A killed primary** is replaced, once its replica has been promoted, by a new container of
//! the same name and ports with a new identity, which joins as the new primary's replica (the
//! dead identity is forgotten by every member): the old one started again would serve its
//! slots, empty, until the others told it otherwise, and a node that asked it meanwhile would
//! find no sessions.
//!
//! The harness speaks to each member on its published port on loopback. Every wait polls what
//! the members say, with a deadline.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use testcontainers::core::IntoContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};
use tokio::time::Instant;

use super::sentinel::GroupSpec;
use super::{Container, POLL_INTERVAL, ping, split_image};
use crate::cluster::backend::{ClusterError, Component};
use crate::cluster::redis_fault::{FaultDone, RedisFault, ShardPick};
use crate::images::{self, REDIS_PORT};
use crate::process::{ShardMemory, free_port};

/// Where a member's cluster bus listens in its container (the data port + 10000).
const BUS_PORT: u16 = REDIS_PORT + 10_000;
/// How long a member may not answer before the others call it failed (and its replica takes
/// over): short, so that a killed primary's slots come back within seconds.
const NODE_TIMEOUT_MS: u64 = 2000;
/// The slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;
/// Bound on every wait here: a member answering, the cluster agreeing, a failover.
const DEADLINE: Duration = Duration::from_secs(45);

/// One member container.
struct Member {
    /// `redis-1`, … in the order they were made.
    component: String,
    host_port: u16,
    bus_host_port: u16,
    container: Container,
    /// Its cluster node id (a new one for a member made again).
    id: String,
    _follower: Option<tokio::process::Child>,
    state: &'static str,
}

impl Member {
    /// Where the harness reaches it.
    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.host_port))
    }
}

/// Redis Cluster as containers; see the module docs.
pub struct ClusterContainers {
    spec: GroupSpec,
    /// The address every member announces (the run network's gateway).
    announce_ip: String,
    members: Vec<Member>,
    /// Each shard's members (indexes into `members`), the first made as its primary; which one is
    /// the primary now, its members say.
    shards: Vec<Vec<usize>>,
    /// Each shard's primary after the last fault, for status tables.
    primary: Vec<usize>,
}

fn failed(reason: impl ToString) -> ClusterError {
    ClusterError::failed("redis cluster", reason)
}

impl ClusterContainers {
    /// Starts `primaries` primaries with a replica each, gives the primaries the slots in equal
    /// ranges, and returns once every member says the cluster is ok and every replica receives
    /// its primary's writes. The run's network must exist (its gateway is what members announce).
    pub async fn start(spec: GroupSpec, primaries: usize) -> Result<Self, ClusterError> {
        let announce_ip = network_gateway(&spec.network).await?;
        let mut group =
            ClusterContainers { spec, announce_ip, members: Vec::new(), shards: Vec::new(), primary: Vec::new() };
        for _ in 0..primaries {
            let primary = group.add_member().await?;
            let replica = group.add_member().await?;
            group.shards.push(vec![primary, replica]);
            group.primary.push(primary);
        }
        let first = group.members[0].address();
        for member in &group.members[1..] {
            meet(first, &group.announce_ip, member).await?;
        }
        group.wait_until_all_known().await?;
        for (shard, members) in group.shards.iter().enumerate() {
            let from = shard * SLOTS as usize / primaries;
            let to = (shard + 1) * SLOTS as usize / primaries - 1;
            let mut conn = connect(group.members[members[0]].address()).await?;
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(from)
                .arg(to)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| failed(format!("CLUSTER ADDSLOTSRANGE {from} {to}: {e}")))?;
        }
        for members in &group.shards {
            let primary_id = group.members[members[0]].id.clone();
            replicate(group.members[members[1]].address(), &primary_id).await?;
        }
        group.wait_until_whole().await?;
        Ok(group)
    }

    /// `redis+cluster://<gateway>:<port>,…` with every primary, as a node container reaches
    /// them (the host-side harness reaches the same addresses).
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .shards
            .iter()
            .map(|members| format!("{}:{}", self.announce_ip, self.members[members[0]].host_port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Does `fault`; returns once the cluster is whole again (see [`Self::wait_until_whole`]).
    pub async fn fault(&mut self, fault: RedisFault) -> Result<FaultDone, ClusterError> {
        let done = match fault {
            RedisFault::Failover { shard } => {
                let shard = self.shard(shard)?;
                let (primary, replica) = self.roles(shard).await?;
                wait_until_in_sync(self.members[primary].address(), self.members[replica].address()).await?;
                let mut conn = connect(self.members[replica].address()).await?;
                redis::cmd("CLUSTER")
                    .arg("FAILOVER")
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| failed(format!("CLUSTER FAILOVER on {}: {e}", self.members[replica].component)))?;
                self.wait_for_primary(shard, replica).await?;
                self.primary[shard] = replica;
                format!(
                    "shard {}: {} (replica) took over from {}",
                    shard + 1,
                    self.members[replica].component,
                    self.members[primary].component
                )
            }
            RedisFault::KillPrimary { shard } => {
                let shard = self.shard(shard)?;
                let (primary, replica) = self.roles(shard).await?;
                // The fault under test is the switch, not replication lag.
                wait_until_in_sync(self.members[primary].address(), self.members[replica].address()).await?;
                let killed_id = self.members[primary].id.clone();
                kill(&self.members[primary].container).await?;
                self.members[primary].state = "killed";
                self.wait_for_primary(shard, replica).await?;
                self.primary[shard] = replica;
                self.replace_killed(primary, &killed_id, replica).await?;
                format!(
                    "shard {}: {} killed, {} promoted; {} back as its replica",
                    shard + 1,
                    self.members[primary].component,
                    self.members[replica].component,
                    self.members[primary].component
                )
            }
            RedisFault::Reshard { from, to, share } => {
                let from = self.shard(from)?;
                let to = match to {
                    Some(to) => self.shard(to)?,
                    None => (from + 1) % self.shards.len(),
                };
                if from == to {
                    return Err(failed(format!("reshard from shard {} to itself", from + 1)));
                }
                let (moved, keys) = self.reshard(from, to, share).await?;
                format!("{moved} slots ({keys} keys) moved from shard {} to shard {}", from + 1, to + 1)
            }
            RedisFault::AddPrimary => {
                let index = self.add_member().await?;
                let first = self.members[self.primary_of(0).await?].address();
                meet(first, &self.announce_ip, &self.members[index]).await?;
                self.shards.push(vec![index]);
                self.primary.push(index);
                self.wait_until_all_known().await?;
                format!(
                    "{} joined as the primary of shard {} (no slots yet)",
                    self.members[index].component,
                    self.shards.len()
                )
            }
        };
        self.wait_until_whole().await?;
        Ok(FaultDone(done))
    }

    /// `used_memory` and keys of each shard's primary.
    pub async fn memory_per_shard(&self) -> Vec<ShardMemory> {
        let mut out = Vec::new();
        for shard in 0..self.shards.len() {
            let Ok(primary) = self.primary_of(shard).await else { continue };
            if let Ok(memory) = crate::redis_cluster_admin::memory(self.members[primary].address()).await {
                out.push(ShardMemory { shard, memory });
            }
        }
        out
    }

    /// Every member, for status tables: `primary of shard 1`, `replica of shard 1`, `killed`.
    pub fn components(&self) -> Vec<Component> {
        let mut out = Vec::new();
        for (shard, members) in self.shards.iter().enumerate() {
            for &m in members {
                let member = &self.members[m];
                let state = match member.state {
                    "running" if self.primary[shard] == m => format!("primary of shard {}", shard + 1),
                    "running" => format!("replica of shard {}", shard + 1),
                    state => state.to_owned(),
                };
                out.push(Component {
                    name: member.component.clone(),
                    address: (member.state == "running").then(|| member.address().to_string()),
                    state,
                    id: Some(super::short_id(&member.container)),
                });
            }
        }
        out
    }

    /// Removes every container; the first error, after trying them all.
    pub async fn remove(self) -> Result<(), ClusterError> {
        let mut first_error = None;
        for member in self.members {
            if let Err(error) = member.container.rm().await {
                first_error.get_or_insert(ClusterError::failed(member.component, error));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn shard(&self, pick: ShardPick) -> Result<usize, ClusterError> {
        pick.resolve(self.shards.len()).map_err(failed)
    }

    /// A new member container (no slots, not yet met); returns its index.
    async fn add_member(&mut self) -> Result<usize, ClusterError> {
        let component = format!("redis-{}", self.members.len() + 1);
        let member = start_member(&self.spec, &self.announce_ip, &component, free_port(), free_port()).await?;
        self.members.push(member);
        Ok(self.members.len() - 1)
    }

    /// The shard's primary and its replica, as the running members say.
    async fn roles(&self, shard: usize) -> Result<(usize, usize), ClusterError> {
        let primary = self.primary_of(shard).await?;
        let replica = self.shards[shard]
            .iter()
            .copied()
            .find(|&m| m != primary && self.members[m].state == "running")
            .ok_or_else(|| failed(format!("shard {} has no replica to take over", shard + 1)))?;
        Ok((primary, replica))
    }

    /// The member of `shard` that answers as a primary.
    async fn primary_of(&self, shard: usize) -> Result<usize, ClusterError> {
        for &m in &self.shards[shard] {
            if self.members[m].state == "running"
                && crate::replication::role(self.members[m].address()).await.as_deref() == Some("master")
            {
                return Ok(m);
            }
        }
        Err(failed(format!("shard {} has no primary that answers", shard + 1)))
    }

    /// Until `member` answers as the primary of `shard` and every running member names it the
    /// owner of the shard's slots.
    async fn wait_for_primary(&self, shard: usize, member: usize) -> Result<(), ClusterError> {
        let deadline = Instant::now() + DEADLINE;
        let id = self.members[member].id.clone();
        loop {
            let promoted = crate::replication::role(self.members[member].address()).await.as_deref() == Some("master");
            let mut agreed = promoted;
            for other in self.running() {
                if !agreed {
                    break;
                }
                agreed = slot_owners(other.address()).await.is_ok_and(|owners| owners.values().any(|o| *o == id));
            }
            if agreed {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "{} did not take over shard {} within {DEADLINE:?}",
                    self.members[member].component,
                    shard + 1
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Replaces the killed member `index` (identity `killed_id`) by a new container of the same
    /// name and ports that joins as the replica of `primary`.
    async fn replace_killed(&mut self, index: usize, killed_id: &str, primary: usize) -> Result<(), ClusterError> {
        let (component, host_port, bus_host_port) = {
            let m = &self.members[index];
            (m.component.clone(), m.host_port, m.bus_host_port)
        };
        // Every member forgets the dead identity (a forgotten node is not learnt again from
        // gossip for a minute, and by then no member remembers it).
        for other in self.running() {
            let mut conn = connect(other.address()).await?;
            let _: redis::RedisResult<()> =
                redis::cmd("CLUSTER").arg("FORGET").arg(killed_id).query_async(&mut conn).await;
        }
        // Its name and ports go to the new one. A failure here ends the run: the teardown
        // sweeps the run's containers by their label.
        let old = self.members.remove(index);
        old.container.rm().await.map_err(|e| ClusterError::failed(component.clone(), e))?;
        let new = start_member(&self.spec, &self.announce_ip, &component, host_port, bus_host_port).await?;
        self.members.insert(index, new);
        let first = self.members[primary].address();
        meet(first, &self.announce_ip, &self.members[index]).await?;
        self.wait_until_all_known().await?;
        let primary_id = self.members[primary].id.clone();
        replicate(self.members[index].address(), &primary_id).await
    }

    /// Moves `share` of shard `from`'s slots to shard `to` (see [`crate::cluster::reshard`]; the
    /// source reaches the target at its announced address); returns how many slots and keys
    /// moved.
    async fn reshard(&self, from: usize, to: usize, share: f64) -> Result<(usize, u64), ClusterError> {
        let source = self.primary_of(from).await?;
        let target = self.primary_of(to).await?;
        let mut others = Vec::new();
        for shard in (0..self.shards.len()).filter(|s| *s != from && *s != to) {
            others.push(self.members[self.primary_of(shard).await?].address());
        }
        let plan = crate::cluster::reshard::Move {
            source: self.members[source].address(),
            target: self.members[target].address(),
            target_from_source: (self.announce_ip.clone(), self.members[target].host_port),
            others,
            share,
        };
        crate::cluster::reshard::move_slots(&plan).await.map_err(failed)
    }

    fn running(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.state == "running")
    }

    /// Until every running member knows every other one (`CLUSTER NODES` lists them all,
    /// connected, none in handshake).
    async fn wait_until_all_known(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + DEADLINE;
        let ids: BTreeSet<String> = self.running().map(|m| m.id.clone()).collect();
        loop {
            let mut all = true;
            for member in self.running() {
                let nodes = cluster_nodes(member.address()).await.unwrap_or_default();
                let known: BTreeSet<String> = nodes
                    .lines()
                    .filter(|l| !l.contains("handshake") && !l.contains("noaddr"))
                    .filter_map(|l| l.split(' ').next().map(str::to_owned))
                    .collect();
                all &= ids.is_subset(&known);
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failed(format!("the members did not all meet within {DEADLINE:?}")));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Until the cluster is whole: every running member says `cluster_state:ok` and names the
    /// same owner for every one of the 16384 slots, no slot is migrating or importing, and every
    /// shard with two members has a primary whose replica's link is up and receives its writes.
    pub async fn wait_until_whole(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let why = self.not_whole().await;
            let Some(why) = why else { return Ok(()) };
            if Instant::now() > deadline {
                return Err(failed(format!("the cluster was not whole within {DEADLINE:?}: {why}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Why the cluster is not whole yet, or `None`.
    async fn not_whole(&self) -> Option<String> {
        let mut agreed = None;
        for member in self.running() {
            let info = cluster_info(member.address()).await;
            if field(&info, "cluster_state") != Some("ok") {
                return Some(format!("{} says cluster_state {:?}", member.component, field(&info, "cluster_state")));
            }
            let owners = match slot_owners(member.address()).await {
                Ok(owners) if owners.len() == SLOTS as usize => owners,
                Ok(owners) => return Some(format!("{} knows owners of {} slots", member.component, owners.len())),
                Err(error) => return Some(error.to_string()),
            };
            match &agreed {
                None => agreed = Some(owners),
                Some(first) if *first != owners => {
                    return Some(format!("{} names other slot owners than its peers", member.component));
                }
                Some(_) => {}
            }
            let nodes = cluster_nodes(member.address()).await.unwrap_or_default();
            if nodes.contains("->-") || nodes.contains("-<-") {
                return Some(format!("{} has slots migrating", member.component));
            }
        }
        for (shard, members) in self.shards.iter().enumerate() {
            if members.len() < 2 {
                continue;
            }
            let Ok((primary, replica)) = self.roles(shard).await else {
                return Some(format!("shard {} has no primary with a replica", shard + 1));
            };
            let replication = info(self.members[replica].address(), "replication").await;
            if field(&replication, "master_link_status") != Some("up")
                || field(&replication, "master_port").and_then(|p| p.parse::<u16>().ok())
                    != Some(self.members[primary].host_port)
            {
                return Some(format!("shard {}: the replica's link to its primary is not up", shard + 1));
            }
            if !replication_flows(self.members[primary].address(), self.members[replica].address()).await {
                return Some(format!("shard {}: the primary's writes do not reach its replica yet", shard + 1));
            }
        }
        None
    }
}

/// A member: the Redis image with the cluster enabled, announcing `announce_ip` and the given
/// published ports.
async fn start_member(
    spec: &GroupSpec,
    announce_ip: &str,
    component: &str,
    host_port: u16,
    bus_host_port: u16,
) -> Result<Member, ClusterError> {
    let mut args = images::redis_args(false);
    args.extend(
        [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &NODE_TIMEOUT_MS.to_string(),
            "--cluster-announce-ip",
            announce_ip,
            "--cluster-announce-port",
            &host_port.to_string(),
            "--cluster-announce-bus-port",
            &bus_host_port.to_string(),
        ]
        .map(str::to_owned),
    );
    let (image, tag) = split_image(&spec.image);
    let container = GenericImage::new(image, tag)
        .with_exposed_port(REDIS_PORT.tcp())
        .with_exposed_port(BUS_PORT.tcp())
        .with_mapped_port(host_port, REDIS_PORT.tcp())
        .with_mapped_port(bus_host_port, BUS_PORT.tcp())
        .with_network(&spec.network)
        .with_container_name(format!("{}-{component}", spec.network))
        .with_labels(super::labels(&spec.run_id, component))
        .with_cmd(args)
        .start()
        .await
        .map_err(|e| ClusterError::failed(component.to_owned(), e))?;
    let log = crate::run_dir::log_path(&spec.run_dir, component);
    let follower = super::follow_logs(&container, None, &log).ok();
    let address = SocketAddr::from(([127, 0, 0, 1], host_port));
    let deadline = Instant::now() + DEADLINE;
    while !ping(address).await {
        if !container.is_running().await.unwrap_or(false) {
            return Err(super::exited(&container, component).await);
        }
        if Instant::now() > deadline {
            return Err(ClusterError::failed(component.to_owned(), format!("no PONG within {DEADLINE:?}")));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let mut conn = connect(address).await?;
    let id: String = redis::cmd("CLUSTER").arg("MYID").query_async(&mut conn).await.map_err(failed)?;
    Ok(Member {
        component: component.into(),
        host_port,
        bus_host_port,
        container,
        id,
        _follower: follower,
        state: "running",
    })
}

/// The gateway address of the run's network: the host, as its containers reach it.
async fn network_gateway(network: &str) -> Result<String, ClusterError> {
    let format = "{{range .IPAM.Config}}{{.Gateway}} {{end}}";
    let out = images::docker(&["network", "inspect", "--format", format, network], Duration::from_secs(10))
        .await
        .map_err(|e| failed(format!("network {network}: {e}")))?;
    out.split_whitespace()
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_owned)
        .ok_or_else(|| failed(format!("network {network} has no IPv4 gateway")))
}

/// `CLUSTER MEET` of `member` (at its announced address) from the member at `from`.
async fn meet(from: SocketAddr, announce_ip: &str, member: &Member) -> Result<(), ClusterError> {
    let mut conn = connect(from).await?;
    redis::cmd("CLUSTER")
        .arg("MEET")
        .arg(announce_ip)
        .arg(member.host_port)
        .arg(member.bus_host_port)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| failed(format!("CLUSTER MEET {}: {e}", member.component)))
}

/// `CLUSTER REPLICATE <primary_id>` on the member at `address`, once it knows the primary.
async fn replicate(address: SocketAddr, primary_id: &str) -> Result<(), ClusterError> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut conn = connect(address).await?;
        match redis::cmd("CLUSTER").arg("REPLICATE").arg(primary_id).query_async::<()>(&mut conn).await {
            Ok(()) => return Ok(()),
            // "Unknown node": the meeting has not reached it yet.
            Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL_INTERVAL).await,
            Err(error) => return Err(failed(format!("CLUSTER REPLICATE {primary_id}: {error}"))),
        }
    }
}

/// SIGKILL, as `docker kill` sends.
async fn kill(container: &Container) -> Result<(), ClusterError> {
    let docker = super::docker_api().await?;
    docker.kill_container(container.id(), None).await.map_err(failed)
}

async fn connect(address: SocketAddr) -> Result<redis::aio::MultiplexedConnection, ClusterError> {
    crate::replication::connect(address).await.map_err(|e| failed(format!("{address}: {e}")))
}

async fn info(address: SocketAddr, section: &str) -> String {
    let Ok(mut conn) = connect(address).await else { return String::new() };
    redis::cmd("INFO").arg(section).query_async(&mut conn).await.unwrap_or_default()
}

async fn cluster_info(address: SocketAddr) -> String {
    let Ok(mut conn) = connect(address).await else { return String::new() };
    redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn).await.unwrap_or_default()
}

async fn cluster_nodes(address: SocketAddr) -> Result<String, ClusterError> {
    let mut conn = connect(address).await?;
    redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn).await.map_err(failed)
}

/// `name:value` of an `INFO`-style answer.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

/// The owner (node id) of every slot the member at `address` knows an owner of, from its
/// `CLUSTER NODES` (primaries' slot ranges; `[…]` migration markers left out).
async fn slot_owners(address: SocketAddr) -> Result<std::collections::BTreeMap<u16, String>, ClusterError> {
    Ok(owners_in(&cluster_nodes(address).await?))
}

fn owners_in(nodes: &str) -> std::collections::BTreeMap<u16, String> {
    let mut owners = std::collections::BTreeMap::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
            continue;
        }
        for range in &fields[8..] {
            if range.starts_with('[') {
                continue;
            }
            let (from, to) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(from), Ok(to)) = (from.parse::<u16>(), to.parse::<u16>()) {
                for slot in from..=to {
                    owners.insert(slot, fields[0].to_owned());
                }
            }
        }
    }
    owners
}

/// Until the replica at `replica` has acknowledged everything the primary at `primary` had
/// written when this was called.
async fn wait_until_in_sync(primary: SocketAddr, replica: SocketAddr) -> Result<(), ClusterError> {
    let deadline = Instant::now() + DEADLINE;
    let target = field(&info(primary, "replication").await, "master_repl_offset").and_then(|v| v.parse::<u64>().ok());
    let Some(target) = target else { return Err(failed(format!("{primary} says no replication offset"))) };
    loop {
        let offset =
            field(&info(replica, "replication").await, "slave_repl_offset").and_then(|v| v.parse::<u64>().ok());
        if offset.is_some_and(|o| o >= target) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(failed(format!(
                "the replica at {replica} did not catch up with {primary} within {DEADLINE:?}"
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Whether a write on the primary (a marker key in a slot it owns, by its hash tag) reaches its
/// replica within 200 ms.
async fn replication_flows(primary: SocketAddr, replica: SocketAddr) -> bool {
    let Ok(nodes) = cluster_nodes(primary).await else { return false };
    let Some(me) = nodes.lines().find(|l| l.contains("myself")).and_then(|l| l.split(' ').next()) else {
        return false;
    };
    let owners = owners_in(&nodes);
    let Some(slot) = owners.iter().find(|(_, o)| o.as_str() == me).map(|(s, _)| *s) else {
        // A primary with no slots has nothing to replicate.
        return true;
    };
    let Some(tag) = tag_for_slot(slot) else { return false };
    let marker = format!("harness:replication-check:{{{tag}}}:{:016x}", rand::random::<u64>());
    let Ok(mut conn) = connect(primary).await else { return false };
    if redis::cmd("SET").arg(&marker).arg(1).arg("PX").arg(60_000).query_async::<()>(&mut conn).await.is_err() {
        return false;
    }
    let Ok(mut replica_conn) = connect(replica).await else { return false };
    for _ in 0..10 {
        // A replica answers reads of its primary's slots after READONLY.
        let _: redis::RedisResult<()> = redis::cmd("READONLY").query_async(&mut replica_conn).await;
        if redis::cmd("EXISTS").arg(&marker).query_async::<u32>(&mut replica_conn).await.unwrap_or(0) == 1 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A short hash tag whose key slot is `slot` (searched; every slot has one within a few
/// thousand candidates).
fn tag_for_slot(slot: u16) -> Option<String> {
    (0u32..200_000).map(|n| format!("s{n}")).find(|tag| key_slot(tag.as_bytes()) == slot)
}

/// The cluster key slot of a key with no hash tag: CRC16 (XMODEM) mod 16384.
fn key_slot(key: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in key {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_are_redis_cluster_s() {
        // From the Redis Cluster specification: CRC16 of "123456789" is 0x31C3.
        assert_eq!(key_slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(key_slot(b"foo"), 12182);
        let tag = tag_for_slot(42).expect("a tag for slot 42");
        assert_eq!(key_slot(tag.as_bytes()), 42);
    }

    #[test]
    fn slot_owners_come_from_the_primaries_ranges() {
        let nodes = "a 1.2.3.4:1@2 myself,master - 0 0 1 connected 0-2 5 [6->-b]\n\
                     b 1.2.3.4:3@4 master - 0 0 2 connected 3-4 6\n\
                     c 1.2.3.4:5@6 slave a 0 0 1 connected\n";
        let owners = owners_in(nodes);
        assert_eq!(owners.len(), 7);
        assert_eq!(owners[&0], "a");
        assert_eq!(owners[&4], "b");
        assert_eq!(owners[&6], "b");
    }
}
