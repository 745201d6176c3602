//! The benchmark on a Redis Cluster (`bffctl bench --redis cluster`): the cluster it starts next
//! to the single server, and what each of its primaries holds once the sessions curve made its
//! sessions — `used_memory` and keys per shard, and how evenly the keys spread over the shards
//! (the least-loaded shard against the most-loaded one). A cluster is chosen for memory that one
//! primary cannot hold; a spread far from even would give one shard most of it anyway.

use serde::Serialize;

use super::BenchError;
use crate::process::RedisCluster;

/// Primaries of the benchmark's cluster (the slots split evenly among them).
pub const PRIMARIES: usize = 3;
/// Replicas per primary: none, as the single server has none, so that both serve the same
/// commands with the same cores (a replica would take CPU from the gateway on this machine).
pub const REPLICAS_PER_PRIMARY: usize = 0;

/// One primary after the sessions were made.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShardLoad {
    pub shard: usize,
    pub address: String,
    /// `used_memory` (`INFO memory`), in MB.
    pub used_memory_mb: f64,
    /// `DBSIZE`: sessions, their `sub` and `sid` indexes, the key ring and markers.
    pub keys: u64,
}

/// How evenly the keys spread over the shards.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub min_keys: u64,
    pub max_keys: u64,
    /// `min_keys / max_keys`: 1 is an even spread, 0 a shard without keys.
    pub min_over_max: f64,
}

/// The shards of a cluster and their spread, at one point of the sessions curve.
#[derive(Debug, Clone, Serialize)]
pub struct ShardsAt {
    /// Active sessions the gateway had made on the cluster by then.
    pub sessions: usize,
    pub shards: Vec<ShardLoad>,
    pub spread: Option<Spread>,
}

/// The spread of `shards`' keys; none without shards or without a key.
pub fn spread(shards: &[ShardLoad]) -> Option<Spread> {
    let min_keys = shards.iter().map(|s| s.keys).min()?;
    let max_keys = shards.iter().map(|s| s.keys).max()?;
    (max_keys > 0).then(|| Spread { min_keys, max_keys, min_over_max: min_keys as f64 / max_keys as f64 })
}

/// A Redis Cluster of [`PRIMARIES`] primaries with [`REPLICAS_PER_PRIMARY`] replicas each, as
/// `redis-server` processes.
pub async fn start() -> Result<RedisCluster, BenchError> {
    RedisCluster::builder()
        .primaries(PRIMARIES)
        .replicas_per_primary(REPLICAS_PER_PRIMARY)
        .run()
        .await
        .map_err(|e| BenchError(format!("redis cluster: {e}")))
}

/// The client ports of the cluster's primaries: where its commands and memory are counted.
pub fn primary_ports(cluster: &RedisCluster) -> Vec<u16> {
    cluster.primaries().iter().map(|m| m.address.port()).collect()
}

/// What every primary of `cluster` holds now, with `sessions` sessions made.
pub async fn shards_at(cluster: &RedisCluster, sessions: usize) -> Result<ShardsAt, BenchError> {
    let shards: Vec<ShardLoad> = cluster
        .memory_per_shard()
        .await
        .map_err(|e| BenchError(format!("redis cluster memory: {e}")))?
        .into_iter()
        .map(|s| ShardLoad {
            shard: s.shard,
            address: s.memory.address.to_string(),
            used_memory_mb: s.memory.used_memory as f64 / 1e6,
            keys: s.memory.keys,
        })
        .collect();
    let spread = spread(&shards);
    Ok(ShardsAt { sessions, shards, spread })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(shard: usize, keys: u64) -> ShardLoad {
        ShardLoad { shard, address: format!("127.0.0.1:{}", 7000 + shard), used_memory_mb: 1.0, keys }
    }

    #[test]
    fn the_spread_is_the_least_loaded_shard_over_the_most_loaded() {
        let spread = spread(&[shard(0, 3300), shard(1, 3400), shard(2, 3300)]).unwrap();
        assert_eq!((spread.min_keys, spread.max_keys), (3300, 3400));
        assert!((spread.min_over_max - 3300.0 / 3400.0).abs() < 1e-12);
        let lopsided = super::spread(&[shard(0, 0), shard(1, 10), shard(2, 5)]).unwrap();
        assert_eq!((lopsided.min_keys, lopsided.max_keys, lopsided.min_over_max), (0, 10, 0.0));
    }

    #[test]
    fn no_shard_or_no_key_has_no_spread() {
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[shard(0, 0), shard(1, 0)]), None);
    }
}
