//! [`ClusterSpec`]: what to bring up. Scenario files and `bffctl` flags both end up here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::images::Images;

/// Where nodes and Redis run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// Docker when a daemon answers, else local processes.
    #[default]
    Auto,
    Docker,
    Process,
}

/// Where the nodes keep sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    #[default]
    Redis,
    /// Each node's own memory: the configuration that does not scale.
    Memory,
}

/// How Redis runs (with `session_store = "redis"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RedisTopology {
    /// One server.
    #[default]
    Single,
    /// A primary, a replica and three sentinels; nodes find the master through the sentinels
    /// (`redis+sentinel://`), and a scenario can fail it over.
    Sentinel,
    /// Redis Cluster: three primaries, each with a replica, the 16384 slots spread over the
    /// primaries; nodes get every primary as a seed (`redis+cluster://h1:p1,h2:p2,h3:p3`), and a
    /// scenario can fail a shard over, kill its primary, move slots between shards live
    /// (`reshard`) and add a primary.
    Cluster,
}

/// How the load balancer picks a node for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LbPolicy {
    /// A random live node per request (Kubernetes Services, Azure Container Apps).
    #[default]
    Random,
    RoundRobin,
    /// The same node for the same session cookie (or client) while it is live.
    Sticky,
}

/// What one node does differently from the others: the one replica with another secret, prefix,
/// timeout or version that a real scale-out bug comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    /// `BFF_*` settings of this node only, over the cluster's; an empty value removes the
    /// variable (a replica that lacks a setting). `{redis_url}`, `{issuer_url}` and
    /// `{public_url}` in a value are the cluster's, as the node reaches them; with
    /// `redis = "cluster"`, `{redis_shard_N}` is the N-th seed of the cluster's URL as a
    /// single-server URL (`redis://host:port`, one shard's primary): a node pointed into one
    /// shard only.
    pub env: BTreeMap<String, String>,
    /// Another `bff` binary for this node (process backend; on Docker an image is built from it).
    pub binary: Option<PathBuf>,
    /// Another image for this node (Docker backend).
    pub image: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSpec {
    pub nodes: usize,
    pub backend: BackendKind,
    pub session_store: StoreKind,
    pub lb: LbPolicy,
    /// Redis keeps its data across its own restarts (append-only file).
    pub redis_persistence: bool,
    /// One Redis, or Redis with Sentinel.
    pub redis: RedisTopology,
    /// Each node uses its own Redis database number: nodes that do not share data (a mistake the
    /// verifier must catch).
    pub redis_db_per_node: bool,
    /// Extra `BFF_*` settings for every node, e.g. `BFF_KEY_RING = "local"`.
    pub bff_env: Vec<(String, String)>,
    /// The `ops_token` every node gets, which opens `/ops/fingerprint` for the drift check (a
    /// random one per spec).
    pub ops_token: String,
    /// Makes the load balancer's choices reproducible.
    pub seed: Option<u64>,
    /// Per-node differences, by 1-based node number.
    pub node_settings: BTreeMap<usize, NodeSettings>,
    /// Start a mock API upstream and route `/api/` to it (auth required), to exercise the
    /// gateway's bearer forwarding and token refresh; and the live API behind `/live/` (auth
    /// required: a WebSocket echo and an event-stream clock).
    pub api_upstream: bool,
    /// Lifetime of the access tokens the mock issuer hands out (default 300 s).
    pub access_token_lifetime_secs: Option<u64>,
    /// Serve the example single-page app (`examples/spa/`) at `/` (an `auth = "none"` route).
    pub spa: bool,
    /// The URL browsers use, when something stands before the load balancer (a TLS front);
    /// every node's `BFF_PUBLIC_URL`. Default: the load balancer's URL.
    pub public_url: Option<String>,
    pub images: Images,
    /// The `bff` binary for the process backend (default: next to the running executable, then PATH).
    pub bff_binary: Option<PathBuf>,
    /// How long a node may take to answer `/ready` with 200 (default 15 s for processes, 30 s for
    /// containers).
    pub ready_timeout_secs: Option<u64>,
    /// Where the run's files go (each node's log); default: a new directory under
    /// [`crate::run_dir::runs_root`].
    #[serde(skip)]
    pub run_dir: Option<PathBuf>,
    /// A node that does not become ready at start keeps running (out of the load balancer) so
    /// that it can be asked why (its fingerprint); [`crate::cluster::Cluster::unready`] lists it.
    /// By default the start fails at the first such node.
    #[serde(skip)]
    pub keep_unready: bool,
    /// Each node reaches Redis through a [`crate::fault::FaultProxy`] of its own, so that a
    /// scenario can slow, silence or cut that link (process backend).
    pub redis_fault_links: bool,
    /// The mock issuer hands out a new refresh token with every refresh and accepts each one
    /// once (so it can tell a refresh token presented twice).
    pub rotate_refresh_tokens: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 3,
            backend: BackendKind::Auto,
            session_store: StoreKind::Redis,
            lb: LbPolicy::Random,
            redis_persistence: false,
            redis: RedisTopology::Single,
            redis_db_per_node: false,
            bff_env: Vec::new(),
            ops_token: hex::encode(rand::random::<[u8; 16]>()),
            node_settings: BTreeMap::new(),
            seed: None,
            api_upstream: false,
            access_token_lifetime_secs: None,
            spa: false,
            public_url: None,
            images: Images::default(),
            bff_binary: None,
            ready_timeout_secs: None,
            run_dir: None,
            keep_unready: false,
            redis_fault_links: false,
            rotate_refresh_tokens: false,
        }
    }
}

/// The client registration every node and the mock issuer share.
pub const CLIENT_ID: &str = "bff-client";
pub const CLIENT_SECRET: &str = "bff-secret";
/// The key-encryption key every test node shares (a shared key ring in Redis needs one).
pub const KEY_ENCRYPTION_KEY: &str = "YmZmLXRlc3Qta2V5LWVuY3J5cHRpb24ta2V5LTAwMDA=";

impl ClusterSpec {
    /// How long a node may take to become ready on this spec's backend.
    pub fn ready_timeout(&self) -> std::time::Duration {
        let default = if self.backend == BackendKind::Docker { 30 } else { 15 };
        std::time::Duration::from_secs(self.ready_timeout_secs.unwrap_or(default))
    }

    /// The environment of node `index` (0-based), given where Redis and the issuer are as the
    /// node sees them.
    pub fn node_env(
        &self,
        index: usize,
        issuer_url: &str,
        public_url: &str,
        redis_url: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("BFF_PUBLIC_URL".into(), public_url.into()),
            ("BFF_OIDC_AUTHORITY".into(), issuer_url.into()),
            ("BFF_OIDC_CLIENT_ID".into(), CLIENT_ID.into()),
            ("BFF_OIDC_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("BFF_SHUTDOWN_TIMEOUT".into(), "5s".into()),
            ("BFF_OPS_TOKEN".into(), self.ops_token.clone()),
            // Named as the load balancer names it: the session API shows where a session began.
            ("BFF_NODE_NAME".into(), node_name(index)),
            ("BFF_KEY_ENCRYPTION_KEY".into(), KEY_ENCRYPTION_KEY.into()),
        ];
        if let (StoreKind::Redis, Some(url)) = (self.session_store, redis_url) {
            let url = if self.redis_db_per_node { format!("{url}/{}", index % 16) } else { url.to_owned() };
            env.push(("BFF_REDIS_URL".into(), url));
        }
        env.extend(self.bff_env.iter().cloned());
        if let Some(node) = self.node_settings.get(&(index + 1)) {
            for (key, value) in &node.env {
                env.retain(|(k, _)| k != key);
                if !value.is_empty() {
                    // Addresses only the cluster knows: `{redis_url}/5` is another database.
                    let mut value = value.clone();
                    for (n, seed) in cluster_seeds(redis_url.unwrap_or_default()).iter().enumerate() {
                        value = value.replace(&format!("{{redis_shard_{}}}", n + 1), &format!("redis://{seed}"));
                    }
                    let value = value
                        .replace("{redis_url}", redis_url.unwrap_or_default())
                        .replace("{issuer_url}", issuer_url)
                        .replace("{public_url}", public_url);
                    env.push((key.clone(), value));
                }
            }
        }
        env
    }

    /// The settings of node `index` (0-based) that differ from the cluster's.
    pub fn node(&self, index: usize) -> Option<&NodeSettings> {
        self.node_settings.get(&(index + 1))
    }

    /// Checks that every per-node setting names a node of the cluster.
    pub fn check_nodes(&self) -> Result<(), String> {
        match self.node_settings.keys().find(|n| **n == 0 || **n > self.nodes) {
            Some(n) => Err(format!("node {n} does not exist (nodes are 1 to {})", self.nodes)),
            None => Ok(()),
        }
    }
}

/// The `host:port` seeds of a `redis+cluster://h1:p1,h2:p2/…` URL, in order (none for any
/// other URL); credentials and a path are left out.
pub fn cluster_seeds(url: &str) -> Vec<String> {
    let Some(rest) = url.strip_prefix("redis+cluster://").or_else(|| url.strip_prefix("rediss+cluster://")) else {
        return Vec::new();
    };
    let hosts = rest.split(['/', '?']).next().unwrap_or_default();
    let hosts = hosts.rsplit_once('@').map_or(hosts, |(_, hosts)| hosts);
    hosts.split(',').filter(|h| !h.is_empty()).map(str::to_owned).collect()
}

/// `node-1`, `node-2`, … for node index 0, 1, …
pub fn node_name(index: usize) -> String {
    format!("node-{}", index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_of_a_cluster_url_are_its_hosts_in_order() {
        assert_eq!(
            cluster_seeds("redis+cluster://127.0.0.1:7001,127.0.0.1:7002"),
            ["127.0.0.1:7001", "127.0.0.1:7002"]
        );
        assert_eq!(cluster_seeds("rediss+cluster://:pw@a:1,b:2/?x=1"), ["a:1", "b:2"]);
        assert!(cluster_seeds("redis://127.0.0.1:6379").is_empty());
    }

    #[test]
    fn a_node_can_be_pointed_into_one_shard_of_the_cluster() {
        let mut spec = ClusterSpec { redis: RedisTopology::Cluster, ..ClusterSpec::default() };
        let settings = NodeSettings {
            env: [("BFF_REDIS_URL".to_owned(), "{redis_shard_2}".to_owned())].into(),
            ..NodeSettings::default()
        };
        spec.node_settings.insert(2, settings);
        let url = "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";
        let redis_of = |index: usize| {
            spec.node_env(index, "http://issuer", "http://lb", Some(url))
                .into_iter()
                .find(|(k, _)| k == "BFF_REDIS_URL")
                .map(|(_, v)| v)
        };
        assert_eq!(redis_of(0).as_deref(), Some(url));
        assert_eq!(redis_of(1).as_deref(), Some("redis://127.0.0.1:7002"));
    }
}
