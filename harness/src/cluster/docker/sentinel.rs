//! Redis with Sentinel as containers: a primary, a replica and three sentinels (each
//! `redis-server <conf> --sentinel` from the same Redis image) on the run's network, and the two
//! failovers of [`crate::process::SentinelGroup`] for them: `SENTINEL FAILOVER`, and `docker kill`
//! of the primary.
//!
//! The servers are named by their addresses on the run's network, which the node containers
//! reach: the sentinels monitor the primary by its address and learn the replica's from it, so
//! a node asking a sentinel for the master gets `<network ip>:6379`. Host names were tried first
//! (`replica-announce-ip <container name>`, `sentinel resolve-hostnames yes`): once a killed
//! primary's name left the network's DNS, every lookup of it blocked the sentinels for seconds
//! (the embedded DNS forwards unknown names to resolvers this machine cannot reach), they fell
//! into TILT mode and no failover happened. The sentinels themselves, never killed, are given to
//! the nodes by container name. The harness reaches every member on a host port bound once.
//!
//! A killed primary is replaced, once the sentinels have promoted the other server, by a new
//! container of the same name that is a replica of the new master from its first command on
//! (`--replicaof`): the old container started again would be an empty master at its old address
//! until told otherwise, and a node that reconnected there in that moment found no sessions (seen
//! once in 5 runs). Every wait polls what Redis and the sentinels say, with a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use testcontainers::core::IntoContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};
use tokio::time::Instant;

use super::{Container, POLL_INTERVAL, ping, split_image};
use crate::cluster::backend::{ClusterError, Component};
use crate::images::{self, REDIS_PORT};
use crate::process::{DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, MASTER_NAME, free_port};
use crate::replication::{self, replicas_online, replication_flows, role, wait_until_in_sync};

/// Where a sentinel listens in its container.
pub const SENTINEL_PORT: u16 = 26379;
/// Where the sentinel's configuration goes (it rewrites the file, so its folder is writable).
const SENTINEL_CONF: &str = "/data/sentinel.conf";
/// Bound on every wait here: a member answering, the group coming together, a failover.
const DEADLINE: Duration = Duration::from_secs(30);

/// One container of the group.
struct Member {
    /// `redis-1`, `sentinel-2`, …
    component: String,
    /// The container name, which the network resolves.
    name: String,
    /// The address on the run's network (a server's changes when it starts again).
    ip: String,
    host_port: u16,
    container: Container,
    /// `docker logs --follow` appending to `<run dir>/<component>.log`.
    _follower: Option<tokio::process::Child>,
    state: &'static str,
}

impl Member {
    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.host_port))
    }
}

/// Two Redis servers (either may be master) and three sentinels, as containers.
pub struct SentinelContainers {
    spec: GroupSpec,
    servers: Vec<Member>,
    sentinels: Vec<Member>,
}

/// What a member's container is made from.
pub struct GroupSpec {
    pub image: String,
    pub network: String,
    /// The run's id, for the containers' labels.
    pub run_id: String,
    pub persistent: bool,
    /// Where each member's output goes (`redis-1.log`, `sentinel-1.log`, …).
    pub run_dir: std::path::PathBuf,
}

impl SentinelContainers {
    /// Starts both servers, makes the second a replica of the first, starts the sentinels, and
    /// returns once the replica receives the master's writes and every sentinel knows the
    /// replica and its two peers.
    pub async fn start(spec: GroupSpec) -> Result<Self, ClusterError> {
        let mut servers = Vec::new();
        for i in 1..=2 {
            servers.push(start_server(&spec, &format!("redis-{i}"), free_port(), None).await?);
        }
        let mut group = SentinelContainers { spec, servers, sentinels: Vec::new() };
        let primary = group.servers[0].ip.clone();
        replicate(group.servers[1].address(), &primary).await?;
        for i in 1..=3 {
            group.sentinels.push(start_sentinel(&group.spec, &format!("sentinel-{i}"), &primary).await?);
        }
        group.wait_until_settled(0).await?;
        Ok(group)
    }

    /// `redis+sentinel://<net>-sentinel-1:26379,…/mymaster`, as a node on the network reaches it.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("{}:{SENTINEL_PORT}", s.name)).collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// Fails the master over (see [`crate::cluster::Backend::failover_redis`]); with
    /// `kill_primary` the master's container is SIGKILLed, and started again as a replica once
    /// the sentinels have promoted the other server.
    pub async fn failover(&mut self, kill_primary: bool) -> Result<(), ClusterError> {
        let old = self.master().await?;
        // The fault under test is the switch, not replication lag.
        wait_until_in_sync(self.servers[old].address(), DEADLINE).await.map_err(failed)?;
        if kill_primary {
            kill(&self.servers[old].container).await?;
            self.servers[old].state = "killed";
        } else {
            let mut sentinel = connect(self.sentinels[0].address()).await?;
            redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(MASTER_NAME)
                .query_async::<()>(&mut sentinel)
                .await
                .map_err(|e| failed(format!("SENTINEL FAILOVER: {e}")))?;
        }
        let new = self.wait_for_new_master(old).await?;
        if kill_primary {
            // A new container, a replica from its first command on: the same one started
            // again would be an empty master at the old address until told otherwise, and a
            // node reconnecting there would find no sessions.
            let killed = self.servers.remove(old);
            let (component, host_port) = (killed.component.clone(), killed.host_port);
            killed.container.rm().await.map_err(|e| ClusterError::failed(component.clone(), e))?;
            let master = self.servers[if new > old { new - 1 } else { new }].ip.clone();
            let replica = start_server(&self.spec, &component, host_port, Some(&master)).await?;
            self.servers.insert(old, replica);
        }
        self.wait_until_settled(new).await
    }

    /// The index of the master, as the first sentinel that answers names it.
    async fn master(&self) -> Result<usize, ClusterError> {
        let mut last = String::from("no sentinel");
        for sentinel in &self.sentinels {
            match master_by_sentinel(sentinel.address()).await {
                Ok(host) => match self.servers.iter().position(|s| s.ip == host) {
                    Some(index) => return Ok(index),
                    None => last = format!("{} names an unknown master {host}", sentinel.component),
                },
                Err(error) => last = error,
            }
        }
        Err(failed(last))
    }

    async fn wait_for_new_master(&self, old: usize) -> Result<usize, ClusterError> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(new) = self.master().await
                && new != old
                && role(self.servers[new].address()).await.as_deref() == Some("master")
            {
                return Ok(new);
            }
            if Instant::now() > deadline {
                return Err(failed(format!("no new master within {DEADLINE:?}")));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Until server `master` answers as master with its replica online and receiving its
    /// writes, and every sentinel names it, knows a replica that is not down and two other
    /// sentinels.
    async fn wait_until_settled(&self, master: usize) -> Result<(), ClusterError> {
        let deadline = Instant::now() + DEADLINE;
        let (name, address) = (&self.servers[master].ip, self.servers[master].address());
        let replicas: Vec<SocketAddr> =
            self.servers.iter().enumerate().filter(|(i, _)| *i != master).map(|(_, s)| s.address()).collect();
        loop {
            let master_ok = role(address).await.as_deref() == Some("master") && replicas_online(address).await >= 1;
            let mut unsettled = Vec::new();
            for sentinel in &self.sentinels {
                if !sentinel_settled(sentinel.address(), name).await {
                    unsettled.push(sentinel.component.clone());
                }
            }
            if master_ok && unsettled.is_empty() && replication_flows(address, &replicas).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "the sentinels did not settle on {name} within {DEADLINE:?} (master with a replica online: {master_ok}; sentinels not agreeing yet: {})",
                    if unsettled.is_empty() { "none".to_owned() } else { unsettled.join(", ") }
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every member, for status tables.
    pub fn components(&self) -> Vec<Component> {
        self.servers
            .iter()
            .chain(&self.sentinels)
            .map(|m| Component {
                name: m.component.clone(),
                address: (m.state == "running").then(|| m.address().to_string()),
                state: m.state.into(),
                id: Some(super::short_id(&m.container)),
            })
            .collect()
    }

    /// Removes every container; the first error, after trying them all.
    pub async fn remove(self) -> Result<(), ClusterError> {
        let mut first_error = None;
        for member in self.sentinels.into_iter().chain(self.servers) {
            if let Err(error) = member.container.rm().await {
                first_error.get_or_insert(ClusterError::failed(member.component, error));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn failed(reason: impl ToString) -> ClusterError {
    ClusterError::failed("redis sentinel", reason)
}

/// A Redis server, which the sentinels know by its network address; a replica of `master` (a
/// network address) from the start when given.
async fn start_server(
    spec: &GroupSpec,
    component: &str,
    host_port: u16,
    master: Option<&str>,
) -> Result<Member, ClusterError> {
    let name = format!("{}-{component}", spec.network);
    let mut args = images::redis_args(spec.persistent);
    if let Some(master) = master {
        args.extend(["--replicaof".to_owned(), master.to_owned(), REDIS_PORT.to_string()]);
    }
    let (image, tag) = split_image(&spec.image);
    let container = GenericImage::new(image, tag)
        .with_exposed_port(REDIS_PORT.tcp())
        .with_mapped_port(host_port, REDIS_PORT.tcp())
        .with_network(&spec.network)
        .with_container_name(&name)
        .with_labels(super::labels(&spec.run_id, component))
        .with_cmd(args)
        .start()
        .await
        .map_err(|e| ClusterError::failed(component.to_owned(), e))?;
    let log = crate::run_dir::log_path(&spec.run_dir, component);
    let follower = super::follow_logs(&container, None, &log).ok();
    let ip = network_ip(&container, component).await?;
    let member =
        Member { component: component.into(), name, ip, host_port, container, _follower: follower, state: "running" };
    wait_for_ping(&member).await?;
    Ok(member)
}

/// A sentinel watching `primary` (a network address). The image's entrypoint starts a plain
/// server, so this one names `redis-server` itself: its configuration file must come first.
async fn start_sentinel(spec: &GroupSpec, component: &str, primary: &str) -> Result<Member, ClusterError> {
    let name = format!("{}-{component}", spec.network);
    let host_port = free_port();
    let conf = format!(
        "port {SENTINEL_PORT}\nbind 0.0.0.0\nprotected-mode no\ndir /data\n\
         sentinel monitor {MASTER_NAME} {primary} {REDIS_PORT} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n"
    );
    let (image, tag) = split_image(&spec.image);
    let container = GenericImage::new(image, tag)
        .with_entrypoint("redis-server")
        .with_exposed_port(SENTINEL_PORT.tcp())
        .with_mapped_port(host_port, SENTINEL_PORT.tcp())
        .with_network(&spec.network)
        .with_container_name(&name)
        .with_labels(super::labels(&spec.run_id, component))
        .with_copy_to(SENTINEL_CONF, conf.into_bytes())
        .with_cmd([SENTINEL_CONF, "--sentinel"])
        .start()
        .await
        .map_err(|e| ClusterError::failed(component.to_owned(), e))?;
    let log = crate::run_dir::log_path(&spec.run_dir, component);
    let follower = super::follow_logs(&container, None, &log).ok();
    let ip = network_ip(&container, component).await?;
    let member =
        Member { component: component.into(), name, ip, host_port, container, _follower: follower, state: "running" };
    wait_for_ping(&member).await?;
    Ok(member)
}

/// Until the member answers PING on its host port.
async fn wait_for_ping(member: &Member) -> Result<(), ClusterError> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if ping(member.address()).await {
            return Ok(());
        }
        if !member.container.is_running().await.unwrap_or(false) {
            return Err(super::exited(&member.container, &member.component).await);
        }
        if Instant::now() > deadline {
            return Err(ClusterError::failed(member.component.clone(), format!("no PONG within {DEADLINE:?}")));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The container's address on the run's network.
async fn network_ip(container: &Container, component: &str) -> Result<String, ClusterError> {
    let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}";
    let out = images::docker(&["inspect", "--format", format, container.id()], Duration::from_secs(10))
        .await
        .map_err(|e| ClusterError::failed(component.to_owned(), e))?;
    out.split_whitespace()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| ClusterError::failed(component.to_owned(), "no address on the run's network"))
}

/// SIGKILL, as `docker kill` sends.
async fn kill(container: &Container) -> Result<(), ClusterError> {
    let docker = testcontainers::core::client::docker_client_instance().await.map_err(failed)?;
    docker.kill_container(container.id(), None).await.map_err(failed)
}

/// `REPLICAOF <master> 6379` on the server at `address`.
async fn replicate(address: SocketAddr, master: &str) -> Result<(), ClusterError> {
    let mut conn = connect(address).await?;
    redis::cmd("REPLICAOF")
        .arg(master)
        .arg(REDIS_PORT)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| failed(format!("REPLICAOF {master}: {e}")))
}

async fn connect(address: SocketAddr) -> Result<redis::aio::MultiplexedConnection, ClusterError> {
    replication::connect(address).await.map_err(|e| failed(format!("{address}: {e}")))
}

/// The master's network address, as the sentinel at `address` says.
async fn master_by_sentinel(address: SocketAddr) -> Result<String, String> {
    let mut sentinel = connect(address).await.map_err(|e| e.to_string())?;
    let (host, _): (String, u16) = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(MASTER_NAME)
        .query_async(&mut sentinel)
        .await
        .map_err(|e| e.to_string())?;
    Ok(host)
}

/// Whether the sentinel at `address` names `master`, knows two other sentinels and a replica
/// it does not consider down, and does not consider the master down.
async fn sentinel_settled(address: SocketAddr, master: &str) -> bool {
    if master_by_sentinel(address).await.ok().as_deref() != Some(master) {
        return false;
    }
    let Ok(mut conn) = connect(address).await else { return false };
    let Ok(fields) =
        redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME).query_async::<HashMap<String, String>>(&mut conn).await
    else {
        return false;
    };
    let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    let down = |fields: &HashMap<String, String>| fields.get("flags").is_some_and(|f| f.contains("down"));
    if number("num-other-sentinels") < 2 || down(&fields) {
        return false;
    }
    let Ok(replicas) = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(MASTER_NAME)
        .query_async::<Vec<HashMap<String, String>>>(&mut conn)
        .await
    else {
        return false;
    };
    replicas.iter().any(|replica| !down(replica))
}
