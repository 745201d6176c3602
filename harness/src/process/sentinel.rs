//! Redis with Sentinel as local processes: a primary, a replica and three sentinels (each
//! `redis-server --sentinel`) on loopback ports, and the two failovers a deployment must
//! survive: the sentinels' own (`SENTINEL FAILOVER`) and the death of the primary (SIGKILL).
//! Every wait polls what Redis and the sentinels say, with a deadline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::child::{OutputTail, ProcessError, Supervised};
use super::redis::{RedisProcess, ping};
use crate::replication;

/// The master name the sentinels watch.
pub const MASTER_NAME: &str = "mymaster";

/// How long the sentinels wait before they call a silent primary down: Redis's default 30 s
/// would make a test's failover slow; 1 s made the sentinels fail a busy master over a second
/// time (to the replica still syncing) on this loaded 2-core machine.
pub(crate) const DOWN_AFTER_MS: u64 = 2000;

/// Redis's `failover-timeout` (default 3 min): also how long a sentinel whose election failed
/// waits (twice this) before it tries again, which a test should not spend.
pub(crate) const FAILOVER_TIMEOUT_MS: u64 = 3000;

/// Bound on every wait here: the group coming together, a failover completing.
const DEADLINE: Duration = Duration::from_secs(30);

/// One sentinel process: `redis-server sentinel.conf --sentinel` (it rewrites its file).
struct SentinelProcess {
    port: u16,
    _dir: tempfile::TempDir,
    _child: Supervised,
}

impl SentinelProcess {
    async fn start(primary_port: u16) -> Result<Self, ProcessError> {
        let port = super::free_port();
        let spawn_error = |reason: String| ProcessError::Spawn { program: "redis-server --sentinel".into(), reason };
        let dir = tempfile::tempdir().map_err(|e| spawn_error(e.to_string()))?;
        let conf = dir.path().join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.path().display()
        );
        std::fs::write(&conf, text).map_err(|e| spawn_error(e.to_string()))?;
        let output = OutputTail::default();
        let args = vec![conf.display().to_string(), "--sentinel".into()];
        let mut child = Supervised::spawn(&PathBuf::from("redis-server"), &args, &[], output.clone())?;
        child
            .wait_until_ready(&output, Duration::from_secs(10), || async move {
                if ping(port).await { Ok(()) } else { Err("no PONG yet".to_owned()) }
            })
            .await?;
        Ok(SentinelProcess { port, _dir: dir, _child: child })
    }
}

/// A primary, its replica and three sentinels.
pub struct SentinelGroup {
    /// The two data servers; which one is the master changes with every failover.
    servers: Vec<RedisProcess>,
    sentinels: Vec<SentinelProcess>,
}

#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("redis sentinel: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis sentinel: {0}")]
    Timeout(String),
}

impl SentinelGroup {
    /// Starts everything and returns once the replica is in sync and every sentinel knows the
    /// replica and the two other sentinels (a sentinel that does not know its peers cannot
    /// agree on a failover).
    pub async fn start(persistent: bool) -> Result<Self, SentinelError> {
        let primary = RedisProcess::start(persistent).await?;
        let replicaof = vec!["--replicaof".into(), "127.0.0.1".into(), primary.port().to_string()];
        let replica = RedisProcess::start_with(super::free_port(), persistent, replicaof).await?;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(SentinelProcess::start(primary.port()).await?);
        }
        let group = SentinelGroup { servers: vec![primary, replica], sentinels };
        group.wait_until_settled(group.servers[0].port()).await?;
        Ok(group)
    }

    /// `redis+sentinel://127.0.0.1:P1,…/mymaster`, as a node reaches the sentinels.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The ports of the data servers and the sentinels, for status tables.
    pub fn ports(&self) -> (Vec<u16>, Vec<u16>) {
        (self.servers.iter().map(RedisProcess::port).collect(), self.sentinels.iter().map(|s| s.port).collect())
    }

    /// The master's port, as the first sentinel that answers says.
    pub async fn master_port(&self) -> Result<u16, SentinelError> {
        let mut last = None;
        for sentinel in &self.sentinels {
            match master_by_sentinel(sentinel.port).await {
                Ok(port) => return Ok(port),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| SentinelError::Timeout("no sentinel".into())))
    }

    /// Fails over: with `kill_primary`, SIGKILLs the master and lets the sentinels notice
    /// (then starts it again as a replica of the new master, so that the group has a replica
    /// again); otherwise asks a sentinel for `SENTINEL FAILOVER`. Returns the new master's port
    /// once it answers as master, its replica is in sync and every sentinel names it.
    pub async fn failover(&mut self, kill_primary: bool) -> Result<u16, SentinelError> {
        self.fail_over(kill_primary, true).await
    }

    /// [`SentinelGroup::failover`] without first waiting for the replica to have what the
    /// master acknowledged: what a real failure does to writes still in flight to the replica.
    pub async fn failover_at_once(&mut self, kill_primary: bool) -> Result<u16, SentinelError> {
        self.fail_over(kill_primary, false).await
    }

    async fn fail_over(&mut self, kill_primary: bool, replica_in_sync: bool) -> Result<u16, SentinelError> {
        let old = self.master_port().await?;
        let old_index = self
            .servers
            .iter()
            .position(|s| s.port() == old)
            .ok_or_else(|| SentinelError::Timeout(format!("the sentinels name an unknown master on port {old}")))?;
        // The fault under test is the switch, not replication lag: the replica has everything
        // the master acknowledged before the fault starts.
        if replica_in_sync {
            replication::wait_until_in_sync(local(old), DEADLINE).await.map_err(SentinelError::Timeout)?;
        }
        if kill_primary {
            self.servers[old_index].kill().await;
        } else {
            let mut sentinel = connect(self.sentinels[0].port).await?;
            redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER_NAME).query_async::<()>(&mut sentinel).await?;
        }
        let new = self.wait_for_new_master(old).await?;
        if kill_primary {
            let extra = vec!["--replicaof".into(), "127.0.0.1".into(), new.to_string()];
            let persistent = false;
            let port = self.servers[old_index].port();
            self.servers[old_index] = RedisProcess::start_with(port, persistent, extra).await?;
        }
        self.wait_until_settled(new).await?;
        Ok(new)
    }

    async fn wait_for_new_master(&self, old: u16) -> Result<u16, SentinelError> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(port) = self.master_port().await
                && port != old
                && replication::role(local(port)).await.as_deref() == Some("master")
            {
                return Ok(port);
            }
            if Instant::now() > deadline {
                return Err(SentinelError::Timeout(format!("no new master within {DEADLINE:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Until `master` answers as master with a replica online that receives its writes, and
    /// every sentinel names it and knows one replica and two other sentinels.
    async fn wait_until_settled(&self, master: u16) -> Result<(), SentinelError> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let master_ok = replication::role(local(master)).await.as_deref() == Some("master")
                && replication::replicas_online(local(master)).await >= 1;
            let mut unsettled = Vec::new();
            for sentinel in &self.sentinels {
                if !sentinel_settled(sentinel.port, master).await {
                    unsettled.push(sentinel.port.to_string());
                }
            }
            if master_ok && unsettled.is_empty() && replication_flows(master).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SentinelError::Timeout(format!(
                    "the sentinels did not settle on the master on port {master} within {DEADLINE:?} (master with a replica online: {master_ok}; sentinels not agreeing yet: {})",
                    if unsettled.is_empty() { "none".to_owned() } else { unsettled.join(", ") }
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every process.
    pub async fn stop(&mut self) {
        self.sentinels.clear();
        for server in &mut self.servers {
            server.stop().await;
        }
    }
}

/// The address of a server of the group (every one listens on loopback).
fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn connect(port: u16) -> Result<redis::aio::MultiplexedConnection, SentinelError> {
    Ok(replication::connect(local(port)).await?)
}

async fn master_by_sentinel(port: u16) -> Result<u16, SentinelError> {
    let mut sentinel = connect(port).await?;
    let (_, master_port): (String, u16) =
        redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(MASTER_NAME).query_async(&mut sentinel).await?;
    Ok(master_port)
}

/// Whether a write on the master on `port` reaches every replica it calls online.
async fn replication_flows(port: u16) -> bool {
    let info = replication::replication_info(local(port)).await;
    let replicas: Vec<SocketAddr> = replication::online_replicas(&info)
        .filter_map(|line| line.split(',').find_map(|kv| kv.strip_prefix("port="))?.parse().ok())
        .map(local)
        .collect();
    replication::replication_flows(local(port), &replicas).await
}

async fn sentinel_settled(port: u16, master: u16) -> bool {
    if master_by_sentinel(port).await.ok() != Some(master) {
        return false;
    }
    let Ok(mut conn) = connect(port).await else { return false };
    let fields: std::collections::HashMap<String, String> =
        match redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME).query_async(&mut conn).await {
            Ok(fields) => fields,
            Err(_) => return false,
        };
    let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    number("num-slaves") >= 1
        && number("num-other-sentinels") >= 2
        && !fields.get("flags").is_some_and(|flags| flags.contains("down"))
}
