//! [`RedisFault`]: the faults a scenario or a soak does to Redis itself (not to the links to
//! it): a failover, the death of a primary, slots moved between the shards of a Redis Cluster
//! while users work, a primary added. The same value goes to every backend; each says what it
//! did in a [`FaultDone`] line for the report's events.

use std::fmt;

/// Which shard of a Redis Cluster a fault acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardPick {
    /// Shard N, 0-based (reports say `shard N+1`).
    Index(usize),
    /// One of the shards, picked as `draw % shards` (the draw comes from the run's seed, so a
    /// seeded run picks the same shard again).
    Random(u64),
}

impl ShardPick {
    /// The shard this pick names among `shards` shards; an index past the last is an error.
    pub fn resolve(self, shards: usize) -> Result<usize, String> {
        match self {
            _ if shards == 0 => Err("the cluster has no shards".into()),
            ShardPick::Index(i) if i < shards => Ok(i),
            ShardPick::Index(i) => Err(format!("no shard {} (the cluster has shards 1 to {shards})", i + 1)),
            ShardPick::Random(draw) => Ok((draw % shards as u64) as usize),
        }
    }
}

/// A fault done to Redis itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RedisFault {
    /// Sentinel: `SENTINEL FAILOVER`. Cluster: `CLUSTER FAILOVER` on the shard's replica (the
    /// replica takes over the primary's slots; the old primary becomes its replica).
    Failover { shard: ShardPick },
    /// The primary (of the shard, on a cluster) is SIGKILLed; its replica is promoted, and the
    /// killed server comes back as a replica of the new primary.
    KillPrimary { shard: ShardPick },
    /// Cluster only: `share` (0 to 1) of the slots of shard `from` move to shard `to`, live
    /// (keys migrated slot by slot; clients meet `ASK` and `MOVED` meanwhile).
    Reshard { from: ShardPick, to: Option<ShardPick>, share: f64 },
    /// Cluster only: a new primary (with no slots) joins the cluster.
    AddPrimary,
}

impl RedisFault {
    /// The scenario action that names this fault.
    pub fn action(&self) -> &'static str {
        match self {
            RedisFault::Failover { .. } => "failover-redis",
            RedisFault::KillPrimary { .. } => "kill-redis-primary",
            RedisFault::Reshard { .. } => "reshard",
            RedisFault::AddPrimary => "add-redis-node",
        }
    }
}

/// What a backend did for a [`RedisFault`]: `shard 2: 127.0.0.1:7005 promoted`, for the events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultDone(pub String);

impl fmt::Display for FaultDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_pick_names_a_shard_of_the_cluster_or_says_which_exist() {
        assert_eq!(ShardPick::Index(1).resolve(3), Ok(1));
        assert_eq!(ShardPick::Random(7).resolve(3), Ok(1));
        assert_eq!(ShardPick::Index(3).resolve(3), Err("no shard 4 (the cluster has shards 1 to 3)".into()));
        assert!(ShardPick::Random(1).resolve(0).is_err());
    }
}
