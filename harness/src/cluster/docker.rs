//! Docker backend: Redis and the `bff` nodes as containers (testcontainers) from the locally
//! built images ([`crate::images`]), on a user-defined network unique to the run
//! (`bff-run-<id>`). Nodes reach Redis by its container name, which survives its restarts, and the
//! mock issuer by its host name, mapped to the host gateway. The host reaches every container on a
//! host port chosen once and bound explicitly, so a restarted node keeps its address, as a
//! process node does.
//!
//! With `--redis sentinel`, Redis is a primary, a replica and three sentinels instead
//! ([`sentinel`]), and the nodes are given the sentinels' names (`redis+sentinel://`). With
//! `--redis cluster`, a Redis Cluster of three primaries and three replicas ([`redis_cluster`]),
//! and the nodes are given every primary as a seed (`redis+cluster://`).
//!
//! With `redis_fault_links`, each node reaches Redis through a [`FaultProxy`] of its own on the
//! host (listening on all interfaces, as the mock issuer does, and named [`RELAY_HOST`] in the
//! node, mapped to the host gateway), which relays to Redis's published port: the same relays as
//! on the process backend, so link faults, `pause-node` (`docker pause`), `kill-redis`
//! (`docker kill`) and its restart work on containers too.
//!
//! The images are built here when missing or stale ([`images::ensure_images`]). Each node's output
//! is followed (`docker logs --follow`, from each start on) into `<run dir>/node-N.log`.
//!
//! Every container carries the label `bff.run=<id>`. Dropping the backend removes its containers
//! (testcontainers does on drop; the network goes with the last of them); [`Backend::teardown`]
//! also sweeps whatever carries the label, and the network, by name. Both need a multi-threaded
//! tokio runtime (testcontainers blocks in place while it removes).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use testcontainers::core::{Host, IntoContainerPort};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::backend::{Backend, ClusterError, Component};
use super::redis_fault::{FaultDone, RedisFault};
use super::spec::{ClusterSpec, StoreKind, node_name};
use crate::fault::{Fault, FaultProxy};
use crate::images::{self, BFF_PORT, REDIS_PORT};

mod redis_cluster;
mod sentinel;

use redis_cluster::ClusterContainers;
use sentinel::{GroupSpec, SentinelContainers};

/// The label every container of a run carries, with the run id as its value.
pub const RUN_LABEL: &str = "bff.run";
/// The label naming the component (`redis`, `node-1`, …).
pub const COMPONENT_LABEL: &str = "bff.component";

/// The name under which a node reaches its fault relay on the host (with `redis_fault_links`).
pub const RELAY_HOST: &str = "bff-fault-relay";

/// How long Redis may take to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop waits before Docker kills (a node drains within 5 s).
const STOP_TIMEOUT_SECS: i32 = 10;
/// Between two readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

type Container = ContainerAsync<GenericImage>;

/// One node: its container once created (a restart starts the same container again).
struct NodeSlot {
    container_name: String,
    /// The cluster's image, or this node's own.
    image: String,
    /// The build it runs, for reports: the version in the binary its image was built from, or
    /// the image's name.
    build: String,
    env: Vec<(String, String)>,
    /// The host port, the same across restarts.
    host_port: u16,
    log: PathBuf,
    /// `docker logs --follow` into `log`, since the last start.
    follower: Option<tokio::process::Child>,
    container: Option<Container>,
    /// Where the host reaches it while it runs.
    address: Option<SocketAddr>,
    state: &'static str,
}

struct RedisSlot {
    container: Container,
    address: Option<SocketAddr>,
    state: &'static str,
}

/// Redis and the nodes of one run as containers; see the module docs. Node indexes are 0-based,
/// container names stable (`bff-run-<id>-redis`, `bff-run-<id>-node-1`, …).
pub struct DockerBackend {
    run_id: String,
    network: String,
    /// The issuer's host name, mapped to the host gateway in every node (none for an IP).
    issuer_host: Option<String>,
    redis: Option<RedisSlot>,
    /// The host port Redis is published on, the same across its restarts.
    redis_host_port: u16,
    /// With `redis_fault_links`: node i reaches Redis through `redis_links[i]`.
    redis_links: Vec<FaultProxy>,
    /// With `--redis sentinel`, instead of `redis`.
    sentinel: Option<SentinelContainers>,
    /// With `--redis cluster`, instead of `redis`.
    redis_cluster: Option<ClusterContainers>,
    /// The URL of Redis the nodes are given (before any fault relay).
    redis_url: Option<String>,
    nodes: Vec<NodeSlot>,
    ready_timeout: Duration,
    keep_unready: bool,
    http: reqwest::Client,
}

impl DockerBackend {
    /// Checks that Docker answers, builds the images when missing or stale (`progress` hears
    /// it), creates the run's network and starts Redis (when the spec uses it); nodes start with
    /// [`Backend::start_node`] and write their output to `<run_dir>/node-N.log`.
    pub async fn start(
        spec: &ClusterSpec,
        issuer_url: &str,
        public_url: &str,
        run_dir: &Path,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Self, ClusterError> {
        if !images::docker_available().await {
            return Err(ClusterError::Unavailable(
                "no Docker daemon answers `docker info`: start Docker, or use --backend process".into(),
            ));
        }
        let uses_redis = spec.session_store == StoreKind::Redis;
        let uses_sentinel = uses_redis && spec.redis == super::spec::RedisTopology::Sentinel;
        let uses_cluster = uses_redis && spec.redis == super::spec::RedisTopology::Cluster;
        let binary = super::process::find_bff_binary(spec).ok();
        images::ensure_images(&spec.images, binary.as_deref(), uses_redis, progress).await?;
        let mut node_images = Vec::new();
        let mut node_builds = Vec::new();
        for i in 0..spec.nodes {
            let settings = spec.node(i).cloned().unwrap_or_default();
            let image = match (&settings.image, &settings.binary) {
                (Some(image), _) => image.clone(),
                // Another build for this node: an image of its own.
                (None, Some(_)) => format!("{}bff-{}:latest", images::LOCAL_PREFIX, node_name(i)),
                (None, None) => spec.images.bff.clone(),
            };
            if settings.image.is_some() || settings.binary.is_some() {
                let own = super::spec::Images { bff: image.clone(), redis: spec.images.redis.clone() };
                images::ensure_images(&own, settings.binary.as_deref(), false, progress).await?;
            }
            node_builds.push(match (&settings.image, &settings.binary, &binary) {
                (None, Some(own), _) => super::build_label::of_binary(own),
                (None, None, Some(binary)) if spec.images.bff.starts_with(images::LOCAL_PREFIX) => {
                    super::build_label::of_binary(binary)
                }
                _ => image.clone(),
            });
            node_images.push(image);
        }
        let issuer_host = match url::Url::parse(issuer_url).map(|u| u.host().map(|h| h.to_owned())) {
            Ok(Some(url::Host::Domain(name))) => Some(name),
            Ok(Some(_)) => None,
            _ => return Err(ClusterError::failed("issuer", format!("no host in {issuer_url}"))),
        };

        let run_id = format!("{:08x}", rand::random::<u32>());
        let network = format!("bff-run-{run_id}");
        let mut redis_url = format!("redis://{network}-redis:{REDIS_PORT}");
        let mut sentinel = None;
        if uses_sentinel {
            let group = GroupSpec {
                image: spec.images.redis.clone(),
                network: network.clone(),
                run_id: run_id.clone(),
                persistent: spec.redis_persistence,
                run_dir: run_dir.to_owned(),
            };
            match SentinelContainers::start(group).await {
                Ok(group) => {
                    redis_url = group.url();
                    sentinel = Some(group);
                }
                Err(error) => {
                    let _ = remove_run(Some(&run_id)).await;
                    return Err(error);
                }
            }
        }
        let mut redis_cluster = None;
        if uses_cluster {
            // Made here rather than with the first container: the members announce its gateway.
            let label = format!("{RUN_LABEL}={run_id}");
            images::docker(&["network", "create", "--label", &label, &network], Duration::from_secs(30))
                .await
                .map_err(|e| ClusterError::failed("docker network", e))?;
            let group = GroupSpec {
                image: spec.images.redis.clone(),
                network: network.clone(),
                run_id: run_id.clone(),
                persistent: false,
                run_dir: run_dir.to_owned(),
            };
            progress("starting the redis cluster (3 primaries, 3 replicas)");
            match ClusterContainers::start(group, 3).await {
                Ok(group) => {
                    redis_url = group.url();
                    redis_cluster = Some(group);
                }
                Err(error) => {
                    let _ = remove_run(Some(&run_id)).await;
                    return Err(error);
                }
            }
        }
        let redis_host_port = crate::process::free_port();
        let mut redis_links = Vec::new();
        if spec.redis_fault_links && uses_redis {
            if uses_sentinel || uses_cluster {
                let _ = remove_run(Some(&run_id)).await;
                return Err(ClusterError::Unavailable(
                    "link faults need a single Redis: with --redis sentinel the nodes follow the master's address"
                        .into(),
                ));
            }
            for _ in 0..spec.nodes {
                let link = FaultProxy::start_on(
                    SocketAddr::from(([0, 0, 0, 0], 0)),
                    SocketAddr::from(([127, 0, 0, 1], redis_host_port)),
                )
                .await
                .map_err(|e| ClusterError::failed("fault relay", e))?;
                redis_links.push(link);
            }
        }
        let node_redis_url = |i: usize| match redis_links.get(i) {
            Some(link) => format!("redis://{RELAY_HOST}:{}", link.addr().port()),
            None => redis_url.clone(),
        };
        let nodes = (0..spec.nodes)
            .map(|i| NodeSlot {
                container_name: format!("{network}-{}", node_name(i)),
                image: node_images[i].clone(),
                build: node_builds[i].clone(),
                env: spec.node_env(i, issuer_url, public_url, uses_redis.then(|| node_redis_url(i)).as_deref()),
                host_port: crate::process::free_port(),
                log: crate::run_dir::log_path(run_dir, &node_name(i)),
                follower: None,
                container: None,
                address: None,
                state: "stopped",
            })
            .collect();
        let mut backend = DockerBackend {
            run_id,
            network,
            issuer_host,
            redis: None,
            redis_host_port,
            redis_links,
            sentinel,
            redis_cluster,
            redis_url: uses_redis.then(|| redis_url.clone()),
            nodes,
            ready_timeout: spec.ready_timeout(),
            keep_unready: spec.keep_unready,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .no_proxy()
                .build()
                .map_err(|e| ClusterError::failed("http client", e))?,
        };
        if uses_redis
            && !uses_sentinel
            && !uses_cluster
            && let Err(error) = backend.create_redis(&spec.images.redis, spec.redis_persistence).await
        {
            let _ = backend.teardown().await;
            return Err(error);
        }
        Ok(backend)
    }

    /// The run's id: the value of the [`RUN_LABEL`] label on its containers.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The URL of Redis the nodes are given (`redis+cluster://…` with `--redis cluster`), before
    /// any fault relay; none without Redis.
    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_deref()
    }

    /// The run's Docker network.
    pub fn network(&self) -> &str {
        &self.network
    }

    fn labels(&self, component: &str) -> [(String, String); 2] {
        labels(&self.run_id, component)
    }

    async fn create_redis(&mut self, image: &str, persistent: bool) -> Result<(), ClusterError> {
        let (name, tag) = split_image(image);
        let container = GenericImage::new(name, tag)
            .with_exposed_port(REDIS_PORT.tcp())
            .with_mapped_port(self.redis_host_port, REDIS_PORT.tcp())
            .with_network(&self.network)
            .with_container_name(format!("{}-redis", self.network))
            .with_labels(self.labels("redis"))
            .with_cmd(images::redis_args(persistent))
            .start()
            .await
            .map_err(|e| ClusterError::failed("redis", e))?;
        let mut slot = RedisSlot { container, address: None, state: "starting" };
        let waited = wait_for_redis(&slot.container).await;
        slot.state = if waited.is_ok() { "running" } else { "stopped" };
        slot.address = waited.as_ref().ok().copied();
        self.redis = Some(slot);
        waited.map(drop)
    }

    async fn create_node(&self, index: usize) -> Result<Container, ClusterError> {
        let slot = &self.nodes[index];
        let (name, tag) = split_image(&slot.image);
        let mut request = GenericImage::new(name, tag)
            .with_exposed_port(BFF_PORT.tcp())
            .with_mapped_port(slot.host_port, BFF_PORT.tcp())
            .with_network(&self.network)
            .with_container_name(&slot.container_name)
            .with_labels(self.labels(&node_name(index)));
        if let Some(host) = &self.issuer_host {
            request = request.with_host(host, Host::HostGateway);
        }
        if !self.redis_links.is_empty() {
            request = request.with_host(RELAY_HOST, Host::HostGateway);
        }
        for (key, value) in &slot.env {
            request = request.with_env_var(key, value);
        }
        request.start().await.map_err(|e| ClusterError::failed(node_name(index), e))
    }

    fn slot(&mut self, index: usize) -> Result<&mut NodeSlot, ClusterError> {
        self.nodes.get_mut(index).ok_or(ClusterError::NoSuchNode(index))
    }
}

/// The labels of a run's container.
fn labels(run_id: &str, component: &str) -> [(String, String); 2] {
    [(RUN_LABEL.into(), run_id.to_owned()), (COMPONENT_LABEL.into(), component.into())]
}

/// Appends the container's output from `since` on (all of it for `None`) to `log`, until the
/// container stops; the child is killed when dropped.
fn follow_logs(container: &Container, since: Option<SystemTime>, log: &Path) -> std::io::Result<tokio::process::Child> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut command = tokio::process::Command::new("docker");
    command.arg("logs").arg("--follow");
    if let Some(since) = since.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        command.arg("--since").arg(format!("{}.{:09}", since.as_secs(), since.subsec_nanos()));
    }
    command
        .arg(container.id())
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .kill_on_drop(true)
        .spawn()
}

/// Removes every container labelled with the run id (any run's, for `None`) and the run's
/// network(s). For teardown and for cleaning up after a process that never got to it.
pub async fn remove_run(run_id: Option<&str>) -> Result<(), ClusterError> {
    let bound = Duration::from_secs(60);
    let filter = match run_id {
        Some(id) => format!("label={RUN_LABEL}={id}"),
        None => format!("label={RUN_LABEL}"),
    };
    let cli = |e: String| ClusterError::failed("docker", e);
    let ids = images::docker(&["ps", "--all", "--quiet", "--filter", &filter], bound).await.map_err(cli)?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "--force", "--volumes"];
        args.extend(&ids);
        images::docker(&args, bound).await.map_err(cli)?;
    }
    let name = format!("bff-run-{}", run_id.unwrap_or(""));
    let networks =
        images::docker(&["network", "ls", "--filter", &format!("name={name}"), "--format", "{{.Name}}"], bound)
            .await
            .map_err(cli)?;
    // The name filter matches substrings: keep this run's network exactly, or every run's.
    let ours = |n: &&str| if run_id.is_some() { *n == name } else { n.starts_with(&name) };
    for network in networks.split_whitespace().filter(ours) {
        images::docker(&["network", "rm", network], bound).await.map_err(cli)?;
    }
    Ok(())
}

/// `bff-local/bff:latest` → (`bff-local/bff`, `latest`); a registry port is not a tag.
fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
        _ => (image.to_owned(), "latest".to_owned()),
    }
}

/// The Docker API client testcontainers uses, for what it has no method of its own for (kill,
/// pause).
async fn docker_api() -> Result<testcontainers::bollard::Docker, ClusterError> {
    testcontainers::core::client::docker_client_instance().await.map_err(|e| ClusterError::failed("docker", e))
}

fn short_id(container: &Container) -> String {
    container.id().chars().take(12).collect()
}

/// The loopback address the host reaches `port` of the container on. A container that exited has
/// no ports: then the error says so, with its last log lines.
async fn host_address(container: &Container, port: u16, what: &str) -> Result<SocketAddr, ClusterError> {
    match container.get_host_port_ipv4(port.tcp()).await {
        Ok(host_port) => Ok(SocketAddr::from(([127, 0, 0, 1], host_port))),
        Err(error) if container.is_running().await.unwrap_or(true) => Err(ClusterError::failed(what.to_owned(), error)),
        Err(_) => Err(exited(container, what).await),
    }
}

async fn exited(container: &Container, what: &str) -> ClusterError {
    let logs = tail(container, 5).await;
    ClusterError::failed(what.to_owned(), format!("exited before it was ready; last log lines: {logs}"))
}

/// Waits until Redis answers PING on its published port; returns that address.
async fn wait_for_redis(container: &Container) -> Result<SocketAddr, ClusterError> {
    let address = host_address(container, REDIS_PORT, "redis").await?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if ping(address).await {
            return Ok(address);
        }
        if !container.is_running().await.unwrap_or(false) {
            return Err(exited(container, "redis").await);
        }
        if Instant::now() > deadline {
            return Err(ClusterError::failed("redis", format!("no PONG within {READY_TIMEOUT:?}")));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// True when `address` answers a RESP `PING` with `+PONG` (Docker's port proxy accepts
/// connections before Redis listens, so a connection alone proves nothing).
async fn ping(address: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(address).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_millis(500), attempt).await.ok().flatten().unwrap_or(false)
}

/// Waits until the node answers `/ready` with 200 on its host port (testcontainers does not re-run
/// ready conditions when a container starts again, so this polls itself). A node that exits or
/// stays unready is [`ClusterError::NodeNotReady`], with its last `/ready` answer and log file.
async fn wait_for_node(
    http: &reqwest::Client,
    container: &Container,
    index: usize,
    address: SocketAddr,
    bound: Duration,
    log: &Path,
) -> Result<(), ClusterError> {
    let url = format!("http://{address}/ready");
    let deadline = Instant::now() + bound;
    loop {
        let reason = match crate::process::probe_ready(http, &url).await {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        };
        if !container.is_running().await.unwrap_or(false) {
            return Err(ClusterError::not_ready(
                node_name(index),
                "its container exited before it was ready",
                Some(log.to_owned()),
            ));
        }
        if Instant::now() > deadline {
            return Err(ClusterError::not_ready(
                node_name(index),
                format!("not ready within {bound:?}: {reason}"),
                Some(log.to_owned()),
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The container's log lines (stdout, then stderr), the last `n`.
async fn logs(container: &Container, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for bytes in [container.stdout_to_vec().await, container.stderr_to_vec().await].into_iter().flatten() {
        lines.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_owned));
    }
    let skip = lines.len().saturating_sub(n);
    lines.split_off(skip)
}

async fn tail(container: &Container, n: usize) -> String {
    logs(container, n).await.join(" | ")
}

#[async_trait]
impl Backend for DockerBackend {
    async fn set_node_build(&mut self, index: usize, build: &str) -> Result<(), ClusterError> {
        let binary = Path::new(build);
        let (image, label) = if binary.is_file() {
            // An image of its own per build, named by the version it carries.
            let label = super::build_label::of_binary(binary);
            let tag: String =
                label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
            let image = format!("{}bff-build:{tag}", images::LOCAL_PREFIX);
            let own = super::spec::Images { bff: image.clone(), redis: String::new() };
            images::ensure_images(&own, Some(binary), false, &|_| {}).await?;
            (image, label)
        } else {
            (build.to_owned(), build.to_owned())
        };
        let slot = self.slot(index)?;
        // The stopped container goes (its name and host port are the node's); the next start
        // creates one of the new image.
        if let Some(container) = slot.container.take() {
            container.rm().await.map_err(|e| ClusterError::failed(node_name(index), e))?;
        }
        slot.follower = None;
        slot.image = image;
        slot.build = label;
        Ok(())
    }

    fn node_build(&self, index: usize) -> Option<String> {
        self.nodes.get(index).map(|slot| slot.build.clone())
    }

    fn name(&self) -> &'static str {
        "docker"
    }

    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    async fn start_node(&mut self, index: usize) -> Result<SocketAddr, ClusterError> {
        let since = SystemTime::now();
        let restart = self.slot(index)?.container.is_some();
        if !restart {
            let container = self.create_node(index).await?;
            self.nodes[index].container = Some(container);
        } else if let Some(container) = &self.nodes[index].container {
            container.start().await.map_err(|e| ClusterError::failed(node_name(index), e))?;
        }
        let slot = &mut self.nodes[index];
        let container = slot.container.as_ref().expect("created above");
        // The output of this start on: a restart's follower would repeat the earlier ones.
        slot.follower = follow_logs(container, restart.then_some(since), &slot.log)
            .map_err(|e| ClusterError::failed(node_name(index), format!("log file {}: {e}", slot.log.display())))
            .map(Some)?;
        let address = SocketAddr::from(([127, 0, 0, 1], slot.host_port));
        match wait_for_node(&self.http, container, index, address, self.ready_timeout, &slot.log).await {
            Ok(()) => {
                slot.address = Some(address);
                slot.state = "running";
                Ok(address)
            }
            Err(error) if self.keep_unready && container.is_running().await.unwrap_or(false) => {
                // Kept running, out of the load balancer, to be asked why.
                slot.address = Some(address);
                slot.state = "not ready";
                Err(error)
            }
            Err(error) => {
                // Not half-running: stopped, so a later start begins from a clean state.
                let _ = container.stop_with_timeout(Some(0)).await;
                if let Some(follower) = &mut slot.follower {
                    let _ = tokio::time::timeout(Duration::from_secs(2), follower.wait()).await;
                }
                slot.address = None;
                slot.state = "stopped";
                Err(match error {
                    // Quoted once the follower has written what the container printed last.
                    ClusterError::NodeNotReady { node, reason, log, .. } => ClusterError::not_ready(node, reason, log),
                    other => other,
                })
            }
        }
    }

    async fn stop_node(&mut self, index: usize) -> Result<(), ClusterError> {
        let slot = self.slot(index)?;
        if let Some(container) = &slot.container {
            container
                .stop_with_timeout(Some(STOP_TIMEOUT_SECS))
                .await
                .map_err(|e| ClusterError::failed(node_name(index), e))?;
        }
        slot.address = None;
        slot.state = "stopped";
        Ok(())
    }

    async fn kill_node(&mut self, index: usize) -> Result<(), ClusterError> {
        let slot = self.slot(index)?;
        if let Some(container) = &slot.container {
            let docker = docker_api().await?;
            // SIGKILL (the default signal); a container that already exited is fine.
            if let Err(error) = docker.kill_container(container.id(), None).await
                && container.is_running().await.unwrap_or(true)
            {
                return Err(ClusterError::failed(node_name(index), error));
            }
        }
        slot.address = None;
        slot.state = "killed";
        Ok(())
    }

    async fn restart_redis(&mut self) -> Result<(), ClusterError> {
        let redis =
            self.redis.as_mut().ok_or_else(|| ClusterError::failed("restart-redis", "this cluster has no redis"))?;
        redis.address = None;
        redis.state = "stopped";
        let container = &redis.container;
        container.stop_with_timeout(Some(STOP_TIMEOUT_SECS)).await.map_err(|e| ClusterError::failed("redis", e))?;
        container.start().await.map_err(|e| ClusterError::failed("redis", e))?;
        let address = wait_for_redis(container).await?;
        redis.address = Some(address);
        redis.state = "running";
        Ok(())
    }

    async fn failover_redis(&mut self, kill_primary: bool) -> Result<(), ClusterError> {
        let group = self.sentinel.as_mut().ok_or_else(|| {
            ClusterError::failed("failover-redis", "this cluster has no Redis Sentinel (--redis sentinel)")
        })?;
        group.failover(kill_primary).await
    }

    async fn redis_cluster_fault(&mut self, fault: RedisFault) -> Result<FaultDone, ClusterError> {
        let group = self.redis_cluster.as_mut().ok_or_else(|| {
            ClusterError::failed(fault.action(), "this cluster has no Redis Cluster (--redis cluster)")
        })?;
        group.fault(fault).await
    }

    async fn redis_memory_per_shard(&self) -> Vec<crate::process::ShardMemory> {
        match &self.redis_cluster {
            Some(group) => group.memory_per_shard().await,
            None => Vec::new(),
        }
    }

    fn set_redis_link(&self, index: Option<usize>, fault: Fault) -> Result<(), ClusterError> {
        super::backend::set_relays(&self.redis_links, index, fault)
    }

    async fn pause_node(&mut self, index: usize, paused: bool) -> Result<(), ClusterError> {
        let slot = self.slot(index)?;
        let container = slot.container.as_ref().ok_or(ClusterError::NoSuchNode(index))?;
        let docker = docker_api().await?;
        // `docker pause`: the cgroup freezer stops every process of the container at once.
        let done = match paused {
            true => docker.pause_container(container.id()).await,
            false => docker.unpause_container(container.id()).await,
        };
        done.map_err(|e| ClusterError::failed(node_name(index), e))?;
        slot.state = if paused { "paused" } else { "running" };
        Ok(())
    }

    async fn kill_redis(&mut self) -> Result<(), ClusterError> {
        let redis =
            self.redis.as_mut().ok_or_else(|| ClusterError::failed("kill-redis", "this cluster has no redis"))?;
        let docker = docker_api().await?;
        // SIGKILL: no shutdown save; what survives is what the append-only file already holds.
        docker.kill_container(redis.container.id(), None).await.map_err(|e| ClusterError::failed("redis", e))?;
        redis.address = None;
        redis.state = "killed";
        Ok(())
    }

    async fn start_redis(&mut self) -> Result<(), ClusterError> {
        let redis =
            self.redis.as_mut().ok_or_else(|| ClusterError::failed("start-redis", "this cluster has no redis"))?;
        // The same container again: its files (the append-only file) and its published port.
        redis.container.start().await.map_err(|e| ClusterError::failed("redis", e))?;
        let address = wait_for_redis(&redis.container).await?;
        redis.address = Some(address);
        redis.state = "running";
        Ok(())
    }

    fn components(&self) -> Vec<Component> {
        let mut out = self.sentinel.as_ref().map(SentinelContainers::components).unwrap_or_default();
        out.extend(self.redis_cluster.as_ref().map(ClusterContainers::components).unwrap_or_default());
        if let Some(redis) = &self.redis {
            out.push(Component {
                name: "redis".into(),
                address: redis.address.map(|a| a.to_string()),
                state: redis.state.into(),
                id: Some(short_id(&redis.container)),
            });
        }
        for (i, slot) in self.nodes.iter().enumerate() {
            out.push(Component {
                name: node_name(i),
                address: slot.address.map(|a| a.to_string()),
                state: slot.state.into(),
                id: slot.container.as_ref().map(short_id),
            });
        }
        out
    }

    fn node_log(&self, index: usize) -> Option<PathBuf> {
        self.nodes.get(index).map(|s| s.log.clone())
    }

    async fn teardown(&mut self) -> Result<(), ClusterError> {
        let mut first_error = None;
        for slot in &mut self.nodes {
            if let Some(container) = slot.container.take()
                && let Err(error) = container.rm().await
            {
                first_error.get_or_insert(ClusterError::failed(slot.container_name.clone(), error));
            }
            slot.address = None;
            slot.state = "stopped";
        }
        if let Some(redis) = self.redis.take()
            && let Err(error) = redis.container.rm().await
        {
            first_error.get_or_insert(ClusterError::failed("redis", error));
        }
        if let Some(group) = self.sentinel.take()
            && let Err(error) = group.remove().await
        {
            first_error.get_or_insert(error);
        }
        if let Some(group) = self.redis_cluster.take()
            && let Err(error) = group.remove().await
        {
            first_error.get_or_insert(error);
        }
        // testcontainers removed the network with its last container; this catches anything a
        // failed start left behind.
        if let Err(error) = remove_run(Some(&self.run_id)).await {
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_into_name_and_tag() {
        assert_eq!(split_image("bff-local/bff:latest"), ("bff-local/bff".into(), "latest".into()));
        assert_eq!(split_image("redis:7"), ("redis".into(), "7".into()));
        assert_eq!(split_image("redis"), ("redis".into(), "latest".into()));
        assert_eq!(split_image("localhost:5000/bff"), ("localhost:5000/bff".into(), "latest".into()));
    }
}
