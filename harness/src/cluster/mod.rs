//! A cluster: the mock issuer, Redis, N `bff` nodes (Docker containers or local processes) and a
//! load balancer in front of them, which every node uses as its public URL.
//!
//! [`Cluster`] owns everything it started: dropping it (or [`Cluster::teardown`]) removes it all.
//! Node operations go through the cluster so the load balancer stays in step: a node leaves the
//! rotation before it is stopped and returns once it is ready again.

mod backend;
pub mod build_label;
pub mod control;
pub mod docker;
mod lb_websocket;
mod load_balancer;
pub mod process;
mod redis_fault;
mod reshard;
mod spec;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use backend::{Backend, ClusterError, Component, QUOTED_LINES};
pub use load_balancer::{LoadBalancer, NODE_HEADER};
pub use redis_fault::{FaultDone, RedisFault, ShardPick};
pub use spec::{
    BackendKind, CLIENT_ID, CLIENT_SECRET, ClusterSpec, Images, KEY_ENCRYPTION_KEY, LbPolicy, NodeSettings,
    RedisTopology, StoreKind, cluster_seeds, node_name,
};

use crate::client::VirtualUser;
use crate::issuer::MockIssuer;
pub use crate::route_header::ROUTE_HEADER;

/// The issuer's host name in Docker runs: containers map it to the host gateway, host-side
/// clients to loopback, and browsers resolve `*.localhost` to loopback by themselves.
pub const DOCKER_ISSUER_HOST: &str = "issuer.localhost";

pub struct Cluster {
    spec: ClusterSpec,
    issuer: MockIssuer,
    backend: Box<dyn Backend>,
    lb: LoadBalancer,
    resolve: Vec<(String, SocketAddr)>,
    /// Where this run's files go (each node's log).
    run_dir: PathBuf,
    /// Nodes that did not become ready at start and were kept running (`spec.keep_unready`).
    unready: Vec<ClusterError>,
    /// The mock API behind `/api/`, when the spec asks for one.
    _upstream: Option<wiremock::MockServer>,
    /// The example single-page app behind `/`, when the spec asks for it.
    _spa: Option<crate::demo_app::SpaServer>,
    /// The real-time API behind `/live/` (WebSocket echo, event-stream clock), with the mock API.
    _live: Option<crate::demo_app::LiveUpstream>,
}

/// Picks the backend for `auto`: Docker when a daemon answers, else processes when redis-server
/// is installed (or not needed), else says what to install.
pub async fn resolve_backend(spec: &ClusterSpec) -> Result<BackendKind, ClusterError> {
    match spec.backend {
        // Redis Sentinel and Redis Cluster: processes, which start and fail over faster
        // (`--backend docker` runs them as containers).
        BackendKind::Auto
            if matches!(spec.redis, RedisTopology::Sentinel | RedisTopology::Cluster)
                && spec.session_store == StoreKind::Redis =>
        {
            match process::on_path("redis-server") {
                Some(_) => Ok(BackendKind::Process),
                None => Err(ClusterError::Unavailable(format!(
                    "--redis {} needs redis-server (apt-get install redis-server)",
                    if spec.redis == RedisTopology::Cluster { "cluster" } else { "sentinel" }
                ))),
            }
        }
        BackendKind::Auto => {
            if crate::images::docker_available().await {
                Ok(BackendKind::Docker)
            } else if spec.session_store == StoreKind::Memory || process::on_path("redis-server").is_some() {
                Ok(BackendKind::Process)
            } else {
                Err(ClusterError::Unavailable(
                    "neither a Docker daemon nor redis-server is available: install Docker, or redis-server (apt-get install redis-server) for --backend process".into(),
                ))
            }
        }
        other => Ok(other),
    }
}

impl Cluster {
    /// Starts the issuer, the load balancer, Redis and every node; `progress` hears each step.
    pub async fn start(mut spec: ClusterSpec, progress: &(dyn Fn(&str) + Send + Sync)) -> Result<Self, ClusterError> {
        if spec.nodes == 0 {
            return Err(ClusterError::failed("cluster", "needs at least one node"));
        }
        spec.check_nodes().map_err(|e| ClusterError::failed("cluster", e))?;
        if spec.redis == RedisTopology::Cluster && spec.session_store == StoreKind::Redis {
            if spec.redis_db_per_node {
                return Err(ClusterError::Unavailable(
                    "a database per node needs --redis single or sentinel: a Redis Cluster has database 0 only".into(),
                ));
            }
            if spec.redis_fault_links {
                return Err(ClusterError::Unavailable(
                    "link faults need a single Redis: on a Redis Cluster the nodes follow the shards' own addresses"
                        .into(),
                ));
            }
        }
        spec.backend = resolve_backend(&spec).await?;
        let docker = spec.backend == BackendKind::Docker;
        let run_dir = match &spec.run_dir {
            Some(dir) => std::fs::create_dir_all(dir).map(|()| dir.clone()),
            None => crate::run_dir::create(&crate::run_dir::runs_root(), "cluster"),
        }
        .map_err(|e| ClusterError::failed("run directory", e))?;

        progress("starting the mock issuer");
        let issuer = if docker {
            MockIssuer::builder().bind(([0, 0, 0, 0], 0).into()).host(DOCKER_ISSUER_HOST)
        } else {
            MockIssuer::builder()
        }
        .client(CLIENT_ID, CLIENT_SECRET)
        .access_token_lifetime(std::time::Duration::from_secs(spec.access_token_lifetime_secs.unwrap_or(300)))
        .rotate_refresh_tokens(spec.rotate_refresh_tokens)
        .run()
        .await
        .map_err(|e| ClusterError::failed("mock issuer", e))?;
        let resolve = if docker {
            vec![(DOCKER_ISSUER_HOST.to_owned(), SocketAddr::from(([127, 0, 0, 1], issuer.port())))]
        } else {
            vec![]
        };

        // Routes to what the cluster serves itself, as the nodes reach it.
        let (bind, host) = if docker { ("0.0.0.0:0", DOCKER_ISSUER_HOST) } else { ("127.0.0.1:0", "127.0.0.1") };
        let mut routes = Vec::new();
        let upstream = if spec.api_upstream {
            progress("starting the API upstream");
            let up = crate::demo_app::api_upstream(bind).await.map_err(|e| ClusterError::failed("api upstream", e))?;
            let port = up.address().port();
            routes.push(format!(r#"{{ path = "/api/", upstreams = ["http://{host}:{port}"], auth = "required" }}"#));
            Some(up)
        } else {
            None
        };
        let live = if spec.api_upstream {
            let live = crate::demo_app::LiveUpstream::start(bind)
                .await
                .map_err(|e| ClusterError::failed("live api upstream", e))?;
            let port = live.addr().port();
            routes.push(format!(r#"{{ path = "/live/", upstreams = ["http://{host}:{port}"], auth = "required" }}"#));
            Some(live)
        } else {
            None
        };
        let spa = if spec.spa {
            progress("starting the example app");
            let spa =
                crate::demo_app::SpaServer::start(bind).await.map_err(|e| ClusterError::failed("example app", e))?;
            let port = spa.addr().port();
            routes.push(format!(r#"{{ path = "/", upstreams = ["http://{host}:{port}"], auth = "none" }}"#));
            Some(spa)
        } else {
            None
        };
        if !routes.is_empty() {
            spec.bff_env.push(("BFF_ROUTES".into(), format!("[{}]", routes.join(", "))));
        }

        progress("starting the load balancer");
        let lb = LoadBalancer::start(0, spec.nodes, spec.lb, spec.seed)
            .await
            .map_err(|e| ClusterError::failed("load balancer", e))?;

        progress(if spec.session_store == StoreKind::Redis { "starting redis" } else { "preparing nodes" });
        let public_url = spec.public_url.clone().unwrap_or_else(|| lb.url());
        let backend: Box<dyn Backend> = if docker {
            Box::new(docker::DockerBackend::start(&spec, issuer.url(), &public_url, &run_dir, progress).await?)
        } else {
            Box::new(process::ProcessBackend::start(&spec, issuer.url(), &public_url, &run_dir).await?)
        };
        let mut cluster = Cluster {
            spec,
            issuer,
            backend,
            lb,
            resolve,
            run_dir,
            unready: Vec::new(),
            _upstream: upstream,
            _live: live,
            _spa: spa,
        };
        for i in 0..cluster.spec.nodes {
            progress(&format!("starting {}", node_name(i)));
            match cluster.start_node(i).await {
                Ok(()) => {}
                Err(error @ ClusterError::NodeNotReady { .. }) if cluster.spec.keep_unready => {
                    cluster.unready.push(error)
                }
                Err(error) => {
                    let _ = cluster.teardown().await;
                    return Err(error);
                }
            }
        }
        Ok(cluster)
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn issuer(&self) -> &MockIssuer {
        &self.issuer
    }

    /// The load balancer's URL (the public URL unless the spec sets another).
    pub fn lb_url(&self) -> String {
        self.lb.url()
    }

    /// The URL browsers use: the spec's `public_url` (a TLS front, say) or the load balancer's.
    pub fn public_url(&self) -> String {
        self.spec.public_url.clone().unwrap_or_else(|| self.lb.url())
    }

    /// Node `index` directly, while it is live.
    pub fn node_url(&self, index: usize) -> Option<String> {
        self.components()
            .into_iter()
            .find(|c| c.name == node_name(index) && c.state == "running")
            .and_then(|c| c.address)
            .map(|a| format!("http://{a}"))
    }

    pub fn node_count(&self) -> usize {
        self.spec.nodes
    }

    /// Nodes that did not become ready at start but still run (with `spec.keep_unready`).
    pub fn unready(&self) -> &[ClusterError] {
        &self.unready
    }

    /// Node `index` directly, while its process or container runs, ready or not.
    pub fn node_url_even_unready(&self, index: usize) -> Option<String> {
        self.components()
            .into_iter()
            .find(|c| c.name == node_name(index) && (c.state == "running" || c.state == "not ready"))
            .and_then(|c| c.address)
            .map(|a| format!("http://{a}"))
    }

    /// A virtual user that logs in as `login_hint` and resolves the issuer's host name.
    pub fn user(&self, login_hint: Option<&str>) -> VirtualUser {
        VirtualUser::with_resolver(login_hint, &self.resolve)
    }

    /// Host names a client must map to reach the issuer (`issuer.localhost` in Docker runs).
    pub fn resolve(&self) -> &[(String, SocketAddr)] {
        &self.resolve
    }

    fn check(&self, index: usize) -> Result<(), ClusterError> {
        if index < self.spec.nodes { Ok(()) } else { Err(ClusterError::NoSuchNode(index)) }
    }

    pub async fn start_node(&mut self, index: usize) -> Result<(), ClusterError> {
        self.check(index)?;
        let addr = self.backend.start_node(index).await?;
        self.lb.set_live(index, addr);
        Ok(())
    }

    /// Out of the rotation first, then a graceful stop.
    pub async fn stop_node(&mut self, index: usize) -> Result<(), ClusterError> {
        self.check(index)?;
        self.lb.set_down(index);
        self.backend.stop_node(index).await
    }

    pub async fn kill_node(&mut self, index: usize) -> Result<(), ClusterError> {
        self.check(index)?;
        self.lb.set_down(index);
        self.backend.kill_node(index).await
    }

    pub async fn restart_node(&mut self, index: usize) -> Result<(), ClusterError> {
        self.stop_node(index).await?;
        self.start_node(index).await
    }

    /// One step of a rolling upgrade: node `index` leaves the rotation and drains (a graceful
    /// stop), is started again on `build` (a `bff` binary, or an image on Docker) and rejoins
    /// once ready. A node that does not become ready on the new build is
    /// [`ClusterError::NodeNotReady`], with its log.
    pub async fn upgrade_node(&mut self, index: usize, build: &str) -> Result<(), ClusterError> {
        self.stop_node(index).await?;
        self.backend.set_node_build(index, build).await?;
        self.start_node(index).await
    }

    /// The build node `index` runs (or will run when started), for reports.
    pub fn node_build(&self, index: usize) -> Option<String> {
        self.backend.node_build(index)
    }

    /// Restarts Redis and returns once Redis itself answers `PING` (with its data loaded), not
    /// when the nodes are ready again: a node notices the lost connection only on its next
    /// command, and a scenario's users must be the ones to send it, or a fault the users would
    /// meet (a first command failing on the dead connection) stays hidden.
    pub async fn restart_redis(&mut self) -> Result<(), ClusterError> {
        self.backend.restart_redis().await
    }

    /// Fails the Redis master over (see [`Backend::failover_redis`]); like
    /// [`Cluster::restart_redis`] it does not wait for the nodes: the users meet them first.
    pub async fn failover_redis(&mut self, kill_primary: bool) -> Result<(), ClusterError> {
        self.backend.failover_redis(kill_primary).await
    }

    /// Does `fault` to Redis: on a Redis Cluster any [`RedisFault`], on Sentinel a failover or
    /// the primary's death (the group is one shard); like [`Cluster::restart_redis`] it does
    /// not wait for the nodes. Returns what was done, for the report.
    pub async fn redis_fault(&mut self, fault: RedisFault) -> Result<FaultDone, ClusterError> {
        let action = fault.action();
        match (self.spec.session_store, self.spec.redis, fault) {
            (StoreKind::Redis, RedisTopology::Cluster, fault) => self.backend.redis_cluster_fault(fault).await,
            (
                StoreKind::Redis,
                RedisTopology::Sentinel,
                RedisFault::Failover { shard } | RedisFault::KillPrimary { shard },
            ) => {
                shard.resolve(1).map_err(|e| ClusterError::failed(action, format!("{e}: Sentinel is one shard")))?;
                let kill = matches!(fault, RedisFault::KillPrimary { .. });
                self.backend.failover_redis(kill).await?;
                Ok(FaultDone(
                    if kill { "the primary killed, its replica promoted" } else { "SENTINEL FAILOVER" }.into(),
                ))
            }
            (StoreKind::Redis, RedisTopology::Sentinel, _) => {
                Err(ClusterError::failed(action, "needs a Redis Cluster (--redis cluster); this is Redis Sentinel"))
            }
            _ => Err(ClusterError::failed(
                action,
                "this cluster has no Redis Sentinel or Redis Cluster (--redis sentinel or --redis cluster)",
            )),
        }
    }

    /// `used_memory` and keys of each primary of a Redis Cluster, by shard (empty for any other
    /// Redis).
    pub async fn redis_memory_per_shard(&self) -> Vec<crate::process::ShardMemory> {
        self.backend.redis_memory_per_shard().await
    }

    /// Sets `fault` on the link between node `index` (every node when `None`) and Redis.
    pub fn set_redis_link(&self, index: Option<usize>, fault: crate::fault::Fault) -> Result<(), ClusterError> {
        if let Some(index) = index {
            self.check(index)?;
        }
        self.backend.set_redis_link(index, fault)
    }

    /// Freezes node `index` (SIGSTOP) or lets it go on (SIGCONT); it stays in the load balancer,
    /// as a stalled machine would.
    pub async fn pause_node(&mut self, index: usize, paused: bool) -> Result<(), ClusterError> {
        self.check(index)?;
        self.backend.pause_node(index, paused).await
    }

    /// Kills Redis (SIGKILL); [`Cluster::start_redis`] brings it back.
    pub async fn kill_redis(&mut self) -> Result<(), ClusterError> {
        self.backend.kill_redis().await
    }

    pub async fn start_redis(&mut self) -> Result<(), ClusterError> {
        self.backend.start_redis().await
    }

    /// Where this run's files go.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The file node `index` writes its output to.
    pub fn node_log(&self, index: usize) -> Option<PathBuf> {
        self.backend.node_log(index)
    }

    /// The last `n` lines node `index` logged.
    pub fn node_log_tail(&self, index: usize, n: usize) -> Vec<String> {
        self.node_log(index).map(|p| crate::run_dir::last_lines(&p, n)).unwrap_or_default()
    }

    /// Every component: issuer, load balancer, Redis, nodes.
    pub fn components(&self) -> Vec<Component> {
        let mut out = vec![
            Component {
                name: "issuer".into(),
                address: Some(self.issuer.url().trim_start_matches("http://").to_owned()),
                state: "running".into(),
                id: Some(format!("pid {}", std::process::id())),
            },
            Component {
                name: "lb".into(),
                address: Some(self.lb.addr().to_string()),
                state: format!("running ({:?}, {} live)", self.spec.lb, self.lb.live_nodes().len()).to_lowercase(),
                id: Some(format!("pid {}", std::process::id())),
            },
        ];
        out.extend(self.backend.components());
        out
    }

    /// Removes everything the cluster started.
    pub async fn teardown(&mut self) -> Result<(), ClusterError> {
        for i in 0..self.spec.nodes {
            self.lb.set_down(i);
        }
        self.backend.teardown().await
    }
}
