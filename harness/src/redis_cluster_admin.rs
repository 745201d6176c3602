//! Operations on a Redis Cluster over plain connections to its nodes' addresses: forming it
//! (slots, MEET, replicas), reading what each node says about it (`CLUSTER NODES`), waiting
//! until every node agrees, and moving slots live (`SETSLOT` + `MIGRATE`). The same whether
//! the nodes run as processes ([`crate::process::RedisCluster`]) or as containers: nothing
//! here starts or stops a server. Every wait polls with a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::replication;

/// How many slots a Redis Cluster has.
pub const SLOTS: u16 = 16_384;

/// Keys moved by one `MIGRATE` while resharding: small, so that a slot spends a while half
/// moved and clients see `ASK` as well as `MOVED`.
const MIGRATE_BATCH: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ClusterAdminError {
    #[error("redis cluster node {address}: {source}")]
    Redis { address: SocketAddr, source: redis::RedisError },
    #[error("redis cluster: {0}")]
    Timeout(String),
    #[error("redis cluster: {0}")]
    Invalid(String),
}

/// One node as it is reached: its client address and its cluster bus port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    pub client: SocketAddr,
    pub bus_port: u16,
}

/// One line of `CLUSTER NODES`, reduced to what every node should agree on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeView {
    pub id: String,
    /// `host:port` (without the bus port).
    pub address: String,
    pub primary: bool,
    /// The primary's id, for a replica.
    pub replica_of: Option<String>,
    /// Marked failed by the cluster (`fail`, not one node's `fail?`).
    pub failed: bool,
    /// Still in the MEET handshake.
    pub handshake: bool,
    /// The slots it serves (a slot being migrated stays with its source until `SETSLOT NODE`).
    pub slots: BTreeSet<u16>,
}

/// Parses `CLUSTER NODES`.
pub fn parse_nodes(text: &str) -> Vec<NodeView> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let flags: Vec<&str> = fields[2].split(',').collect();
            let address = fields[1].split('@').next().unwrap_or_default().to_owned();
            let mut slots = BTreeSet::new();
            for range in &fields[8..] {
                if range.starts_with('[') {
                    continue; // `[slot->-id]` / `[slot-<-id]`: this node's own migration marks
                }
                match range.split_once('-') {
                    Some((low, high)) => {
                        if let (Ok(low), Ok(high)) = (low.parse::<u16>(), high.parse::<u16>()) {
                            slots.extend(low..=high);
                        }
                    }
                    None => {
                        if let Ok(slot) = range.parse::<u16>() {
                            slots.insert(slot);
                        }
                    }
                }
            }
            Some(NodeView {
                id: fields[0].to_owned(),
                address,
                primary: flags.contains(&"master"),
                replica_of: (fields[3] != "-").then(|| fields[3].to_owned()),
                failed: flags.contains(&"fail"),
                handshake: flags.contains(&"handshake"),
                slots,
            })
        })
        .collect()
}

/// A connection to the node at `address`: a second to connect, five to answer (a `MIGRATE`
/// of a batch waits for the target, and this machine is often loaded).
async fn connect(address: SocketAddr) -> Result<redis::aio::MultiplexedConnection, ClusterAdminError> {
    let attempt = async {
        let client = redis::Client::open(format!("redis://{address}"))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        client.get_multiplexed_async_connection_with_config(&config).await
    };
    attempt.await.map_err(|source| ClusterAdminError::Redis { address, source })
}

/// Sends one command to the node at `address`.
pub async fn command<T: redis::FromRedisValue>(address: SocketAddr, cmd: &redis::Cmd) -> Result<T, ClusterAdminError> {
    let mut conn = connect(address).await?;
    cmd.query_async(&mut conn).await.map_err(|source| ClusterAdminError::Redis { address, source })
}

fn cluster(args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("CLUSTER");
    for arg in args {
        cmd.arg(*arg);
    }
    cmd
}

/// What the node at `address` says about every node (`None` when it does not answer).
pub async fn nodes_view(address: SocketAddr) -> Option<Vec<NodeView>> {
    let text: String = command(address, &cluster(&["NODES"])).await.ok()?;
    let mut view = parse_nodes(&text);
    view.sort();
    Some(view)
}

/// The node's id (`CLUSTER MYID`).
pub async fn my_id(address: SocketAddr) -> Result<String, ClusterAdminError> {
    command(address, &cluster(&["MYID"])).await
}

/// `CLUSTER INFO` as a map.
pub async fn info(address: SocketAddr) -> Option<BTreeMap<String, String>> {
    let text: String = command(address, &cluster(&["INFO"])).await.ok()?;
    Some(
        text.lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect(),
    )
}

/// Why the cluster seen through `live` is not settled, or `Ok` when it is: every node says
/// `cluster_state:ok` with all 16384 slots assigned, every node's `CLUSTER NODES` says the same
/// (ids, roles, primaries, slots, failures), no node is in a handshake, every one of `live` is
/// in the view and not failed, and every live replica's link to its primary is up.
pub async fn settled(live: &[SocketAddr]) -> Result<Vec<NodeView>, String> {
    let mut first: Option<(SocketAddr, Vec<NodeView>)> = None;
    for address in live {
        let info = info(*address).await.ok_or_else(|| format!("{address} does not answer CLUSTER INFO"))?;
        let field = |name: &str| info.get(name).map(String::as_str).unwrap_or("?");
        if field("cluster_state") != "ok" || field("cluster_slots_assigned") != "16384" {
            return Err(format!(
                "{address} says cluster_state:{} with {} slots assigned",
                field("cluster_state"),
                field("cluster_slots_assigned")
            ));
        }
        let view = nodes_view(*address).await.ok_or_else(|| format!("{address} does not answer CLUSTER NODES"))?;
        if let Some(node) = view.iter().find(|n| n.handshake) {
            return Err(format!("{address} is still in a handshake with {}", node.address));
        }
        match &first {
            None => first = Some((*address, view)),
            Some((other, seen)) if *seen != view => {
                return Err(format!("{address} and {other} do not agree on the cluster's nodes yet"));
            }
            Some(_) => {}
        }
    }
    let (_, view) = first.ok_or("no live node")?;
    for address in live {
        let text = address.to_string();
        let Some(node) = view.iter().find(|n| n.address == text) else {
            return Err(format!("{address} is not in the cluster's view"));
        };
        if node.failed {
            return Err(format!("{address} is still marked failed"));
        }
        if !node.primary {
            let info = replication::replication_info(*address).await;
            if !info.lines().any(|l| l.trim() == "master_link_status:up") {
                return Err(format!("the replica {address} has no link to its primary yet"));
            }
        }
    }
    Ok(view)
}

/// Polls [`settled`] until it passes or `bound` passes.
pub async fn wait_until_settled(live: &[SocketAddr], bound: Duration) -> Result<Vec<NodeView>, ClusterAdminError> {
    let deadline = Instant::now() + bound;
    loop {
        match settled(live).await {
            Ok(view) => return Ok(view),
            Err(reason) if Instant::now() > deadline => {
                return Err(ClusterAdminError::Timeout(format!("not settled within {bound:?}: {reason}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Forms a cluster of fresh nodes (cluster mode on, no slots, knowing nobody): the first
/// `primaries` of `nodes` share the 16384 slots evenly, the rest replicate them in turn
/// (node `primaries + i` replicates primary `i % primaries`). Returns once it is settled.
pub async fn form(nodes: &[NodeAddress], primaries: usize, bound: Duration) -> Result<(), ClusterAdminError> {
    if primaries == 0 || primaries > nodes.len() {
        return Err(ClusterAdminError::Invalid(format!("{primaries} primaries out of {} nodes", nodes.len())));
    }
    let mut ids = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        ids.push(my_id(node.client).await?);
        // Distinct epochs from the start, as `redis-cli --cluster create` does: no collisions to
        // resolve before the slots are agreed.
        let epoch = (index + 1).to_string();
        command::<()>(node.client, &cluster(&["SET-CONFIG-EPOCH", &epoch])).await?;
    }
    for (index, node) in nodes.iter().take(primaries).enumerate() {
        let (low, high) = slot_share(index, primaries);
        command::<()>(node.client, &cluster(&["ADDSLOTSRANGE", &low.to_string(), &high.to_string()])).await?;
    }
    for node in &nodes[1..] {
        meet(nodes[0].client, *node).await?;
    }
    let deadline = Instant::now() + bound;
    // A replica can replicate a primary only once it knows it.
    for (index, node) in nodes.iter().enumerate().skip(primaries) {
        let primary = &ids[(index - primaries) % primaries];
        loop {
            let knows =
                nodes_view(node.client).await.is_some_and(|v| v.iter().any(|n| &n.id == primary && !n.handshake));
            if knows {
                break;
            }
            if Instant::now() > deadline {
                return Err(ClusterAdminError::Timeout(format!("{} never learned of the node {primary}", node.client)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        command::<()>(node.client, &cluster(&["REPLICATE", primary])).await?;
    }
    let live: Vec<SocketAddr> = nodes.iter().map(|n| n.client).collect();
    wait_until_settled(&live, deadline.saturating_duration_since(Instant::now())).await?;
    Ok(())
}

/// `CLUSTER MEET` from `from` to `node`, naming its bus port (Redis 7): never assumed to be
/// the client port + 10000.
pub async fn meet(from: SocketAddr, node: NodeAddress) -> Result<(), ClusterAdminError> {
    let cmd =
        cluster(&["MEET", &node.client.ip().to_string(), &node.client.port().to_string(), &node.bus_port.to_string()]);
    command(from, &cmd).await
}

/// The `index`-th of `parts` even shares of the slots, as an inclusive range.
fn slot_share(index: usize, parts: usize) -> (u16, u16) {
    let low = (usize::from(SLOTS) * index / parts) as u16;
    let high = (usize::from(SLOTS) * (index + 1) / parts) as u16 - 1;
    (low, high)
}

/// The view of the node at `address`, and in it the node at `address` itself.
async fn node_and_view(address: SocketAddr) -> Result<(NodeView, Vec<NodeView>), ClusterAdminError> {
    let view = nodes_view(address)
        .await
        .ok_or_else(|| ClusterAdminError::Invalid(format!("{address} does not answer CLUSTER NODES")))?;
    let text = address.to_string();
    let node = view
        .iter()
        .find(|n| n.address == text)
        .cloned()
        .ok_or_else(|| ClusterAdminError::Invalid(format!("{address} is not in its own view")))?;
    Ok((node, view))
}

/// Moves `share` (0..=1) of the slots of the primary at `from` to the primary at `to`, live and
/// one slot at a time as `redis-cli --cluster reshard` does: `SETSLOT IMPORTING` on the target,
/// `SETSLOT MIGRATING` on the source, the slot's keys moved by `MIGRATE` in small batches (so
/// clients meanwhile get `ASK` for the keys already moved), then `SETSLOT NODE` on the target,
/// the source and every other primary (clients then get `MOVED`). Returns how many slots moved.
pub async fn reshard(from: SocketAddr, to: SocketAddr, share: f64) -> Result<usize, ClusterAdminError> {
    if !(0.0..=1.0).contains(&share) {
        return Err(ClusterAdminError::Invalid(format!("share {share} is not between 0 and 1")));
    }
    let (source, view) = node_and_view(from).await?;
    let (target, _) = node_and_view(to).await?;
    if !source.primary || !target.primary {
        return Err(ClusterAdminError::Invalid(format!("{from} and {to} must both be primaries")));
    }
    let count = (source.slots.len() as f64 * share).round() as usize;
    // The last slots of the source: with even shares, a contiguous range next to the target's.
    let moving: Vec<u16> = source.slots.iter().rev().take(count).rev().copied().collect();
    let others: Vec<SocketAddr> = view
        .iter()
        .filter(|n| n.primary && !n.failed && n.id != source.id && n.id != target.id)
        .filter_map(|n| n.address.parse().ok())
        .collect();
    for slot in &moving {
        let slot_text = slot.to_string();
        command::<()>(to, &cluster(&["SETSLOT", &slot_text, "IMPORTING", &source.id])).await?;
        command::<()>(from, &cluster(&["SETSLOT", &slot_text, "MIGRATING", &target.id])).await?;
        loop {
            let keys: Vec<String> =
                command(from, &cluster(&["GETKEYSINSLOT", &slot_text, &MIGRATE_BATCH.to_string()])).await?;
            if keys.is_empty() {
                break;
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate.arg(to.ip().to_string()).arg(to.port()).arg("").arg(0).arg(5000).arg("REPLACE").arg("KEYS");
            for key in &keys {
                migrate.arg(key);
            }
            command::<()>(from, &migrate).await?;
        }
        command::<()>(to, &cluster(&["SETSLOT", &slot_text, "NODE", &target.id])).await?;
        command::<()>(from, &cluster(&["SETSLOT", &slot_text, "NODE", &target.id])).await?;
        for other in &others {
            // Best effort, as redis-cli does: the others learn it from gossip anyway.
            let _ = command::<()>(*other, &cluster(&["SETSLOT", &slot_text, "NODE", &target.id])).await;
        }
    }
    Ok(moving.len())
}

/// The memory a primary uses and how many keys it holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeMemory {
    pub address: SocketAddr,
    pub used_memory: u64,
    pub keys: u64,
}

/// `used_memory` (INFO memory) and `DBSIZE` of the node at `address`.
pub async fn memory(address: SocketAddr) -> Result<NodeMemory, ClusterAdminError> {
    let info: String = command(address, redis::cmd("INFO").arg("memory")).await?;
    let used_memory = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ClusterAdminError::Invalid(format!("{address}: no used_memory in INFO memory")))?;
    let keys: u64 = command(address, &redis::cmd("DBSIZE")).await?;
    Ok(NodeMemory { address, used_memory, keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_line_gives_role_primary_and_slots_without_migration_marks() {
        let text = "\
aaa 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-2 5 [6->-bbb]\n\
bbb 127.0.0.1:7001@17001 slave aaa 0 1700000000 1 connected\n\
ccc 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected\n";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3);
        assert!(nodes[0].primary && nodes[0].slots == BTreeSet::from([0, 1, 2, 5]));
        assert_eq!(nodes[0].address, "127.0.0.1:7000");
        assert_eq!(nodes[1].replica_of.as_deref(), Some("aaa"));
        assert!(!nodes[1].primary);
        assert!(nodes[2].failed);
    }

    #[test]
    fn the_shares_cover_every_slot_once() {
        let mut next = 0u32;
        for index in 0..3 {
            let (low, high) = slot_share(index, 3);
            assert_eq!(u32::from(low), next);
            next = u32::from(high) + 1;
        }
        assert_eq!(next, u32::from(SLOTS));
    }
}
