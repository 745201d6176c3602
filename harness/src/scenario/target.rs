//! [`Target`]: the cluster a scenario runs against, either one the run started itself
//! ([`OwnedCluster`]) or one a `bffctl up` runs in another process ([`ControlClient`], for
//! `--attach`).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::client::VirtualUser;
use crate::cluster::control::ControlClient;
use crate::cluster::{Cluster, ClusterError, FaultDone, RedisFault, node_name};
use crate::fault::Fault;
use crate::issuer::IssuerOutage;

#[async_trait]
pub trait Target: Send + Sync {
    fn lb_url(&self) -> String;
    fn node_count(&self) -> usize;
    fn backend(&self) -> String;
    /// The direct URL of each node, `None` for nodes that are down.
    async fn node_urls(&self) -> Vec<Option<String>>;
    /// `action` is restart, stop, kill or start; `index` is 0-based. A node that does not come
    /// back is [`ClusterError::NodeNotReady`].
    async fn node(&self, index: usize, action: &str) -> Result<(), ClusterError>;
    async fn restart_redis(&self) -> Result<(), ClusterError>;
    /// Drains node `index`, starts it again on `build` and waits until it is ready (a rolling
    /// upgrade's step); `None`: the current build.
    async fn upgrade_node(&self, _index: usize, _build: Option<&str>) -> Result<(), ClusterError> {
        Err(ClusterError::Unavailable("bffctl upgrades only nodes it started".into()))
    }
    /// The build node `index` runs, when the target knows (`0.1.0`).
    async fn node_build(&self, _index: usize) -> Option<String> {
        None
    }
    /// Fails the Redis master over (`kill_primary`: SIGKILL it), where the target can.
    async fn failover_redis(&self, kill_primary: bool) -> Result<(), ClusterError> {
        let _ = kill_primary;
        Err(ClusterError::failed("failover-redis", "bffctl fails over only a Redis Sentinel group it started"))
    }

    /// Does `fault` to Redis itself, where the target can: a failover or a primary's death
    /// (Sentinel, or a shard of a Redis Cluster), slots moved, a primary added (Redis Cluster).
    async fn redis_fault(&self, fault: RedisFault) -> Result<FaultDone, ClusterError> {
        match fault {
            RedisFault::Failover { .. } | RedisFault::KillPrimary { .. } => {
                let kill = matches!(fault, RedisFault::KillPrimary { .. });
                self.failover_redis(kill).await.map(|()| FaultDone::default())
            }
            _ => Err(ClusterError::failed(fault.action(), "bffctl changes only a Redis Cluster it started")),
        }
    }

    /// Sets `fault` on the link between node `index` (every node when `None`) and Redis.
    async fn set_redis_link(&self, _index: Option<usize>, _fault: Fault) -> Result<(), ClusterError> {
        Err(ClusterError::Unavailable("this target cannot fault the links to redis".into()))
    }
    /// Freezes node `index` (SIGSTOP) or lets it go on.
    async fn pause_node(&self, _index: usize, _paused: bool) -> Result<(), ClusterError> {
        Err(ClusterError::Unavailable("this target cannot pause a node".into()))
    }
    /// Makes the mock issuer slow or down, or well again.
    async fn issuer_outage(&self, _outage: IssuerOutage) -> Result<(), ClusterError> {
        Err(ClusterError::Unavailable("this target does not run the issuer".into()))
    }
    /// Kills Redis (SIGKILL) or starts it again.
    async fn kill_redis(&self, _killed: bool) -> Result<(), ClusterError> {
        Err(ClusterError::Unavailable("this target cannot kill redis".into()))
    }
    /// The name of node `index` (0-based) in reports: `node-1`, … unless the target names them.
    fn node_name(&self, index: usize) -> String {
        node_name(index)
    }
    /// Why the target cannot carry out `step` (it is then skipped, and the report says so).
    fn cannot(&self, _step: &super::model::Step) -> Option<String> {
        None
    }
    /// The log file of node `index`, when this process can read it.
    async fn node_log(&self, index: usize) -> Option<std::path::PathBuf>;
    fn user(&self, login_hint: &str) -> VirtualUser;
    /// How often the mock issuer's endpoint was called, when this process runs the issuer.
    async fn issuer_calls(&self, endpoint: &str) -> Option<u64>;
    /// How bffctl's own mock issuer fared (requests, 5xx, handler latency), when it ran one.
    async fn issuer_load(&self) -> Option<String> {
        None
    }
    /// The origins (`http://host:port`) of the parts that are bffctl's own, its identity provider
    /// and load balancer: a connection they refuse is the harness's failure, not the deployment's.
    fn harness_origins(&self) -> Vec<String> {
        Vec::new()
    }
    /// Refresh tokens the mock issuer saw presented more than once, when it can tell.
    async fn refresh_tokens_presented_twice(&self) -> Option<u64> {
        None
    }
}

/// A cluster this run started and will tear down.
pub struct OwnedCluster {
    pub cluster: Arc<Mutex<Cluster>>,
    lb_url: String,
    /// The load balancer's and the mock issuer's origins.
    harness_origins: Vec<String>,
    nodes: usize,
    backend: String,
    resolve: Vec<(String, std::net::SocketAddr)>,
}

impl OwnedCluster {
    pub fn new(cluster: Cluster) -> Self {
        OwnedCluster {
            lb_url: cluster.lb_url(),
            harness_origins: [cluster.lb_url(), cluster.issuer().url().to_owned()]
                .iter()
                .filter_map(|u| origin_of(u))
                .collect(),
            nodes: cluster.node_count(),
            backend: cluster.backend_name().into(),
            resolve: cluster.resolve().to_vec(),
            cluster: Arc::new(Mutex::new(cluster)),
        }
    }
}

#[async_trait]
impl Target for OwnedCluster {
    fn lb_url(&self) -> String {
        self.lb_url.clone()
    }

    fn node_count(&self) -> usize {
        self.nodes
    }

    fn backend(&self) -> String {
        self.backend.clone()
    }

    async fn node_urls(&self) -> Vec<Option<String>> {
        let cluster = self.cluster.lock().await;
        (0..self.nodes).map(|i| cluster.node_url(i)).collect()
    }

    async fn node(&self, index: usize, action: &str) -> Result<(), ClusterError> {
        let mut cluster = self.cluster.lock().await;
        match action {
            "restart" => cluster.restart_node(index).await,
            "stop" => cluster.stop_node(index).await,
            "kill" => cluster.kill_node(index).await,
            "start" => cluster.start_node(index).await,
            other => Err(ClusterError::failed("node", format!("unknown node action {other}"))),
        }
    }

    async fn restart_redis(&self) -> Result<(), ClusterError> {
        self.cluster.lock().await.restart_redis().await
    }

    async fn upgrade_node(&self, index: usize, build: Option<&str>) -> Result<(), ClusterError> {
        let build = match build {
            Some(build) => build.to_owned(),
            // The current build: the one bffctl finds when no other is named.
            None => {
                crate::cluster::process::find_bff_binary(&crate::cluster::ClusterSpec::default())?.display().to_string()
            }
        };
        self.cluster.lock().await.upgrade_node(index, &build).await
    }

    async fn node_build(&self, index: usize) -> Option<String> {
        self.cluster.lock().await.node_build(index)
    }

    async fn failover_redis(&self, kill_primary: bool) -> Result<(), ClusterError> {
        self.cluster.lock().await.failover_redis(kill_primary).await
    }

    async fn redis_fault(&self, fault: RedisFault) -> Result<FaultDone, ClusterError> {
        self.cluster.lock().await.redis_fault(fault).await
    }

    async fn set_redis_link(&self, index: Option<usize>, fault: Fault) -> Result<(), ClusterError> {
        self.cluster.lock().await.set_redis_link(index, fault)
    }

    async fn pause_node(&self, index: usize, paused: bool) -> Result<(), ClusterError> {
        self.cluster.lock().await.pause_node(index, paused).await
    }

    async fn issuer_outage(&self, outage: IssuerOutage) -> Result<(), ClusterError> {
        self.cluster.lock().await.issuer().set_outage(outage);
        Ok(())
    }

    async fn kill_redis(&self, killed: bool) -> Result<(), ClusterError> {
        let mut cluster = self.cluster.lock().await;
        if killed { cluster.kill_redis().await } else { cluster.start_redis().await }
    }

    async fn node_log(&self, index: usize) -> Option<std::path::PathBuf> {
        self.cluster.lock().await.node_log(index)
    }

    fn user(&self, login_hint: &str) -> VirtualUser {
        VirtualUser::with_resolver(Some(login_hint), &self.resolve).with_route_key(login_hint)
    }

    async fn issuer_calls(&self, endpoint: &str) -> Option<u64> {
        Some(self.cluster.lock().await.issuer().calls(endpoint))
    }

    fn harness_origins(&self) -> Vec<String> {
        self.harness_origins.clone()
    }

    async fn issuer_load(&self) -> Option<String> {
        Some(self.cluster.lock().await.issuer().load().to_string())
    }

    async fn refresh_tokens_presented_twice(&self) -> Option<u64> {
        self.cluster.lock().await.issuer().refresh_tokens_presented_twice()
    }
}

#[async_trait]
impl Target for ControlClient {
    fn lb_url(&self) -> String {
        self.file.lb_url.clone()
    }

    fn node_count(&self) -> usize {
        self.file.nodes
    }

    fn backend(&self) -> String {
        format!("{} (attached)", self.file.backend)
    }

    async fn node_urls(&self) -> Vec<Option<String>> {
        let status = self.status().await.ok();
        (0..self.file.nodes)
            .map(|i| {
                let c = status.as_ref()?.components.iter().find(|c| c.name == node_name(i))?;
                if c.state != "running" {
                    return None;
                }
                Some(format!("http://{}", c.address.as_deref()?))
            })
            .collect()
    }

    async fn node(&self, index: usize, action: &str) -> Result<(), ClusterError> {
        ControlClient::node(self, index + 1, action).await.map(|_| ()).map_err(|e| ClusterError::failed("control", e))
    }

    async fn restart_redis(&self) -> Result<(), ClusterError> {
        ControlClient::restart_redis(self).await.map(|_| ()).map_err(|e| ClusterError::failed("control", e))
    }

    async fn node_log(&self, index: usize) -> Option<std::path::PathBuf> {
        let dir = self.file.run_dir.as_ref()?;
        Some(crate::run_dir::log_path(dir, &node_name(index)))
    }

    fn user(&self, login_hint: &str) -> VirtualUser {
        VirtualUser::with_resolver(Some(login_hint), &self.file.resolve)
    }

    async fn issuer_calls(&self, _endpoint: &str) -> Option<u64> {
        None
    }

    fn harness_origins(&self) -> Vec<String> {
        origin_of(&self.file.lb_url).into_iter().collect()
    }
}

/// `http://host:port` of a URL.
pub(crate) fn origin_of(url: &str) -> Option<String> {
    Some(url::Url::parse(url).ok()?.origin().ascii_serialization())
}
