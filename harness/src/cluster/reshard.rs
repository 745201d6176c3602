//! Live resharding as a scenario's `reshard` step does it, for both backends: a share of one
//! primary's slots moves to another while the users go on, one slot after the other as
//! `redis-cli --cluster reshard` does (the target imports, the source migrates, the slot's keys
//! go over by `MIGRATE` in small batches, so that clients meet `ASK` as well as `MOVED`, then
//! every primary learns the new owner).
//!
//! The slots that hold keys move first: a scenario has a few hundred keys in 16384 slots, and a
//! move of empty slots would prove nothing about the sessions. Every node is spoken to over one
//! connection for the whole move (a connection per command made a move of a thousand slots take
//! minutes on a loaded machine).

use std::net::SocketAddr;

use crate::redis_cluster_admin::{self as admin, ClusterAdminError};

/// Keys per `MIGRATE`: small, so that a slot spends a while half moved.
const MIGRATE_BATCH: usize = 20;

/// The two primaries of a move, as the harness reaches them, and where the source reaches the
/// target for `MIGRATE` (the same address on processes; the announced one on containers).
pub struct Move {
    pub source: SocketAddr,
    pub target: SocketAddr,
    pub target_from_source: (String, u16),
    /// Every other primary, told the new owners too (gossip would tell them later).
    pub others: Vec<SocketAddr>,
    /// The share of the source's slots that move, above 0 and at most 1 (at least one slot).
    pub share: f64,
}

async fn connect(address: SocketAddr) -> Result<redis::aio::MultiplexedConnection, ClusterAdminError> {
    crate::replication::connect(address).await.map_err(|source| ClusterAdminError::Redis { address, source })
}

/// Moves the slots; returns how many moved and how many keys went with them.
pub async fn move_slots(plan: &Move) -> Result<(usize, u64), ClusterAdminError> {
    let error = |address: SocketAddr| move |source: redis::RedisError| ClusterAdminError::Redis { address, source };
    let source_id = admin::my_id(plan.source).await?;
    let target_id = admin::my_id(plan.target).await?;
    let view = admin::nodes_view(plan.source)
        .await
        .ok_or_else(|| ClusterAdminError::Invalid(format!("{} does not answer CLUSTER NODES", plan.source)))?;
    let owned: Vec<u16> =
        view.iter().find(|n| n.id == source_id).map(|n| n.slots.iter().copied().collect()).unwrap_or_default();
    if owned.is_empty() {
        return Err(ClusterAdminError::Invalid(format!("{} serves no slot to move", plan.source)));
    }
    let mut src = connect(plan.source).await?;
    let mut dst = connect(plan.target).await?;
    let mut others = Vec::new();
    for other in &plan.others {
        others.push((*other, connect(*other).await?));
    }
    // Keys per slot, in one round trip.
    let mut counts = redis::pipe();
    for slot in &owned {
        counts.cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(*slot);
    }
    let counts: Vec<u64> = counts.query_async(&mut src).await.map_err(error(plan.source))?;
    let mut order: Vec<(u16, u64)> = owned.iter().copied().zip(counts).collect();
    // Slots with keys first (most keys first), then the source's last slots.
    order.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let count = ((owned.len() as f64 * plan.share).round() as usize).clamp(1, owned.len());
    let mut keys_moved = 0;
    for &(slot, _) in &order[..count] {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&source_id)
            .query_async::<()>(&mut dst)
            .await
            .map_err(error(plan.target))?;
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&target_id)
            .query_async::<()>(&mut src)
            .await
            .map_err(error(plan.source))?;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(MIGRATE_BATCH)
                .query_async(&mut src)
                .await
                .map_err(error(plan.source))?;
            if keys.is_empty() {
                break;
            }
            keys_moved += keys.len() as u64;
            redis::cmd("MIGRATE")
                .arg(&plan.target_from_source.0)
                .arg(plan.target_from_source.1)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("REPLACE")
                .arg("KEYS")
                .arg(&keys)
                .query_async::<()>(&mut src)
                .await
                .map_err(error(plan.source))?;
        }
        // The target first, then the source (which stops answering ASK), then the others.
        let node = |conn: &mut redis::aio::MultiplexedConnection| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg("NODE").arg(&target_id);
            let mut conn = conn.clone();
            async move { cmd.query_async::<()>(&mut conn).await }
        };
        node(&mut dst).await.map_err(error(plan.target))?;
        node(&mut src).await.map_err(error(plan.source))?;
        for (address, conn) in &mut others {
            node(conn).await.map_err(error(*address))?;
        }
    }
    Ok((count, keys_moved))
}
