//! One shared, self-healing Redis connection for the whole node.
//!
//! A node must start even when Redis is down, stay not-ready, and become ready once Redis
//! appears; and it must ride out a Redis restart without being restarted itself. The redis
//! crate's `ConnectionManager` reconnects after it has connected once, but refuses to be built
//! while Redis is unreachable, so [`RedisLink`] keeps trying to build it in the background and
//! answers [`StoreError::Unavailable`] until it exists. Every command is bounded by
//! `redis_timeout`, so an outage costs a request a 503, never a hang.
//!
//! The shared connection learns that Redis went away (a restart) only when the next command
//! fails on it. That command is sent once more on the fresh connection the manager opens, but
//! only when its caller said, with [`Retry::Safe`], that running it twice does no harm: a
//! "broken pipe" does not tell whether the first attempt reached Redis.
//!
//! Which server answers can change under the link: a restarted Redis (without persistence, an
//! empty one) at the same address, or another master. Whatever this node keeps from the old one
//! (the node cache of sessions) must not outlive it, so the link counts every event after which
//! its connection may reach another server ([`RedisLink::reconnects`]): a command failed in a way
//! that makes the manager reconnect, or the link moved to another master. Those who keep
//! things register with [`RedisLink::on_reconnect`] and are called at once, before the command
//! that noticed is sent again and before its answer is used. [`RedisLink::server_id`] names the
//! server the link talks to now (its `run_id`, new at every start of a Redis process).
//!
//! With Sentinel ([`RedisTarget::Sentinel`]) the master's address is asked of the sentinels,
//! trusted no further than configured (TLS, their own credentials, an allow-list of masters:
//! see `sentinels`), and the server they name must say it is the master. A command that finds the master gone (connection dropped or refused, a timeout,
//! `READONLY` from a master demoted to replica, `MASTERDOWN`, `LOADING`) makes the link ask the
//! sentinels again, once for all the commands that failed together, and move its connection
//! to the new master; a command whose caller allows it is then sent there. Until the sentinels
//! name a master that answers, commands fail with `Unavailable` (a 503), and the next command
//! after that finds the new master by itself.
//!
//! With Redis Cluster ([`RedisTarget::Cluster`], `redis+cluster://`) the commands go through
//! redis-rs's cluster client, which follows the slot map, `MOVED`, `ASK` and `TRYAGAIN` by itself
//! (see `cluster` for how one-time commands keep the [`Retry`] discipline there).
//! [`RedisLink::server_id`] then names every primary at once, so that a failover or a restart of
//! any shard's primary changes it, and a command that finds its connection gone still moves
//! [`RedisLink::reconnects`].
//!
//! `rediss://` (and `rediss+sentinel://`, `rediss+cluster://`) is TLS through rustls (redis-rs's `tokio-rustls-comp`),
//! verified against the system's roots or the CA of `redis_ca_file`. A server whose certificate
//! does not verify (with Sentinel: when no sentinel's does) is a configuration error, not an
//! outage: [`RedisLink::check_tls`] finds it at start-up, and the node exits as for any bad
//! setting instead of waiting for a Redis that will never do.

mod cluster;
mod confirmed_writes;
mod lua_script;
mod sentinels;
mod server_version;
mod target;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Notify;

pub use sentinels::SentinelTrust;
pub use target::{RedisTarget, parse_master_addresses};

use confirmed_writes::ConfirmedWrites;
pub use lua_script::{LuaScript, ScriptCall};
use sentinels::{SentinelTarget, Sentinels};

use crate::store_error::StoreError;
use crate::traces::spans as traces;

/// Whether a command may be sent a second time after its connection dropped. Every caller
/// decides, next to the command, and says why in a comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice has the effect of running it once, and the second answer is as good as
    /// the first (reads, `SET` of the same value, `DEL`, `EXPIRE`, a change notice).
    Safe,
    /// Its effect may have happened although the answer was lost, and a second run would
    /// answer differently in a way that does harm (a read-and-delete of an index whose loss
    /// would leave sessions behind, `SET NX` of a value others could also write).
    Never,
}

/// How the link finds the server to talk to.
enum Locator {
    /// One fixed address; the connection manager reconnects to it.
    Direct(redis::Client),
    /// Whatever server the sentinels name as master (within what they are trusted with), asked
    /// again after a failure.
    Sentinel(Sentinels),
    /// Every primary of a Redis Cluster, through the cluster client.
    Cluster(Box<cluster::ClusterSeeds>),
}

/// The connection in use, with the server it goes to.
struct Current {
    conn: Conn,
    address: String,
}

// One per link, behind an `Arc`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Conn {
    /// One server (direct, or the master the sentinels name).
    Single {
        manager: ConnectionManager,
        client: redis::Client,
        /// Connections of their own for writes that wait for replicas, to this server.
        confirmed_writes: ConfirmedWrites,
    },
    Cluster(cluster::ClusterConns),
}

impl Current {
    fn new(manager: ConnectionManager, client: redis::Client, address: String, timeout: Duration) -> Self {
        let confirmed_writes = ConfirmedWrites::new(client.clone(), timeout);
        Current { conn: Conn::Single { manager, client, confirmed_writes }, address }
    }

    /// Sends one command (with a cluster, a one-time command on the connection that retries
    /// nothing, sent again only when the cluster refused it, within `bound`).
    async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        retry: Retry,
        bound: Duration,
    ) -> redis::RedisResult<T> {
        match &self.conn {
            Conn::Single { manager, .. } => cmd.query_async(&mut manager.clone()).await,
            Conn::Cluster(conns) if retry == Retry::Never => {
                conns.once_until_accepted(bound, |mut conn| async move { cmd.query_async(&mut conn).await }).await
            }
            Conn::Cluster(conns) => cmd.query_async(&mut conns.safe.clone()).await,
        }
    }

    /// Sends a pipeline (with a cluster: every command in it on one slot, on the connection that
    /// retries nothing by itself, whatever its [`Retry`]).
    async fn pipeline<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        bound: Duration,
    ) -> redis::RedisResult<T> {
        match &self.conn {
            Conn::Single { manager, .. } => pipe.query_async(&mut manager.clone()).await,
            // Every pipeline, one-time or not: a `MOVED` inside a transaction (`MULTI`) makes
            // no cluster client refresh its slot map, and only this path sends it again on a
            // fresh connection (see `cluster`). A pipeline that may run twice is sent again
            // after a dropped connection by [`RedisLink::attempt`].
            Conn::Cluster(conns) => {
                conns.once_until_accepted(bound, |mut conn| async move { pipe.query_async(&mut conn).await }).await
            }
        }
    }

    /// A write and its `WAIT`, on connections that carry nothing else meanwhile.
    async fn confirmed<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        retry: Retry,
        bound: Duration,
    ) -> redis::RedisResult<T> {
        match &self.conn {
            Conn::Single { confirmed_writes, .. } => confirmed_writes.send(pipe).await,
            Conn::Cluster(conns) if retry == Retry::Never => {
                conns.once_until_accepted(bound, |mut conn| async move { pipe.query_async(&mut conn).await }).await
            }
            Conn::Cluster(conns) => conns.confirmed.send(pipe).await,
        }
    }
}

pub struct RedisLink {
    locator: Locator,
    timeout: Duration,
    /// `None` until the first connection; replaced when the master moves.
    current: RwLock<Option<Arc<Current>>>,
    /// One connection attempt or master lookup at a time.
    connecting: tokio::sync::Mutex<()>,
    /// Counts master lookups, so that commands that failed together share one.
    lookups: AtomicU64,
    /// Set when a command failed: Redis may have restarted empty, so what this node keeps in
    /// Redis for everyone (the key ring) must be checked again.
    trouble: AtomicBool,
    trouble_seen: Notify,
    /// Moves every time the connection may have come to reach another server.
    reconnects: AtomicU64,
    /// Called, in order, each time `reconnects` moves.
    reconnect_hooks: RwLock<Vec<ReconnectHook>>,
}

/// Called when the link's connection may reach another server from now on.
type ReconnectHook = Box<dyn Fn() + Send + Sync>;

impl RedisLink {
    /// Parses the URL (`redis://`, `rediss://` or `redis+sentinel://`); connecting happens in
    /// [`RedisLink::connect_in_background`].
    pub fn new(url: &str, timeout: Duration) -> Result<Arc<Self>, redis::RedisError> {
        Self::with_ca(url, timeout, None)
    }

    /// [`RedisLink::new`] for a `rediss://` server whose certificate chains to `ca_pem` (PEM)
    /// instead of the system's roots.
    pub fn with_ca(url: &str, timeout: Duration, ca_pem: Option<&[u8]>) -> Result<Arc<Self>, redis::RedisError> {
        Self::trusting(url, timeout, ca_pem, &SentinelTrust::default())
    }

    /// [`RedisLink::with_ca`], and with Sentinel the credentials for the sentinels and the
    /// addresses a master may have (see [`SentinelTrust`]).
    pub fn trusting(
        url: &str,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
        trust: &SentinelTrust,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let invalid =
            |reason: String| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad redis url", reason));
        let locator = match RedisTarget::parse(url).map_err(invalid)? {
            RedisTarget::Direct { url } => Locator::Direct(match ca_pem {
                Some(pem) => redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) },
                )?,
                None => redis::Client::open(url)?,
            }),
            RedisTarget::Sentinel { sentinels, master, db, password, tls } => Locator::Sentinel(Sentinels::new(
                SentinelTarget { sentinels, master, db, password, tls },
                ca_pem,
                trust,
                timeout,
            )?),
            RedisTarget::Cluster { seeds, .. } => {
                Locator::Cluster(Box::new(cluster::ClusterSeeds::new(&seeds, ca_pem, timeout)?))
            }
        };
        Ok(Arc::new(RedisLink {
            locator,
            timeout,
            current: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            lookups: AtomicU64::new(0),
            trouble: AtomicBool::new(false),
            trouble_seen: Notify::new(),
            reconnects: AtomicU64::new(0),
            reconnect_hooks: RwLock::new(Vec::new()),
        }))
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
    }

    /// Tries to connect until it succeeds; returns at once when already connected. Concurrent
    /// callers share one attempt.
    pub async fn connect(&self) {
        let mut delay = Duration::from_millis(100);
        loop {
            if self.current().is_some() {
                return;
            }
            let attempt = {
                let _one_at_a_time = self.connecting.lock().await;
                if self.current().is_some() {
                    return;
                }
                self.open().await
            };
            match attempt {
                Ok(current) => {
                    tracing::info!(address = %current.address, "connected to redis");
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(current));
                    self.reconnected();
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?delay, "redis unreachable");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// For `rediss://` (with `rediss+sentinel://`, each sentinel until one verifies): one
    /// connection attempt, to tell a certificate that does not verify (or a server that does
    /// not speak TLS) from Redis being down. Only the first is an error; an unreachable Redis is
    /// left to the background connection, as for `redis://`.
    pub async fn check_tls(&self) -> Result<(), String> {
        let servers: &[redis::Client] = match &self.locator {
            Locator::Direct(client) => std::slice::from_ref(client),
            Locator::Sentinel(sentinels) => sentinels.clients(),
            Locator::Cluster(seeds) => &seeds.seeds,
        };
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        // With Sentinel (a cluster), one sentinel (seed node) whose certificate verifies is
        // enough to start.
        let mut refused = None;
        for client in servers {
            if !matches!(client.get_connection_info().addr(), redis::ConnectionAddr::TcpTls { .. }) {
                continue;
            }
            match client.get_multiplexed_async_connection_with_config(&config).await {
                Ok(_) => return Ok(()),
                Err(error) => match tls_failure(&error) {
                    Some(reason) => refused = Some(reason),
                    None => tracing::warn!(%error, "redis unreachable at start-up; retrying in the background"),
                },
            }
        }
        refused.map_or(Ok(()), Err)
    }

    fn current(&self) -> Option<Arc<Current>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The server to talk to now: the fixed one, or the master the sentinels name (with a
    /// cluster: the first seed node, for a lone connection).
    async fn locate(&self) -> redis::RedisResult<redis::Client> {
        match &self.locator {
            Locator::Direct(client) => Ok(client.clone()),
            Locator::Sentinel(sentinels) => {
                tokio::time::timeout(self.timeout, sentinels.master()).await.map_err(|_| timed_out())?
            }
            Locator::Cluster(seeds) => seeds
                .seeds
                .first()
                .cloned()
                .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no seed node"))),
        }
    }

    /// A connection to the server [`RedisLink::locate`] names (with a cluster, to every
    /// primary, through the seed nodes).
    async fn open(&self) -> redis::RedisResult<Current> {
        if let Locator::Cluster(seeds) = &self.locator {
            let conns = tokio::time::timeout(self.timeout, seeds.connect()).await.map_err(|_| timed_out())??;
            return Ok(Current { conn: Conn::Cluster(conns), address: "redis cluster".into() });
        }
        let client = self.locate().await?;
        let mut manager = ConnectionManager::new_with_config(client.clone(), self.manager_config()).await?;
        let address = client.get_connection_info().addr().to_string();
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut manager).await?;
        server_version::check(&info, &address)?;
        Ok(Current::new(manager, client, address, self.timeout))
    }

    /// With Sentinel: asks the sentinels for the master again and moves the connection when it
    /// moved. Commands that failed together (`seen` = the lookup count before they ran) share
    /// one lookup. Without Sentinel: nothing (the manager reconnects to its one address).
    async fn follow_master(&self, seen: u64) {
        if !self.is_sentinel() {
            return;
        }
        let _one_at_a_time = self.connecting.lock().await;
        if self.lookups.load(Ordering::Acquire) != seen {
            return;
        }
        let client = match self.locate().await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "redis sentinel: no master answers yet");
                self.lookups.fetch_add(1, Ordering::AcqRel);
                return;
            }
        };
        let address = client.get_connection_info().addr().to_string();
        let moved = self.current().is_none_or(|current| current.address != address);
        if moved {
            let opened = tokio::time::timeout(
                self.timeout,
                ConnectionManager::new_with_config(client.clone(), self.manager_config()),
            )
            .await;
            match opened {
                Ok(Ok(manager)) => {
                    tracing::warn!(%address, "redis master moved: connected to the new master");
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(Arc::new(Current::new(manager, client, address, self.timeout)));
                    self.reconnected();
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, %address, "redis sentinel: the new master does not answer yet")
                }
                Err(_) => tracing::warn!(%address, "redis sentinel: the new master does not answer yet"),
            }
        }
        self.lookups.fetch_add(1, Ordering::AcqRel);
    }

    /// With a cluster: opens new connections to the cluster (through the seed nodes) in place
    /// of the ones in use. Commands that failed together (`seen` = the lookup count before they
    /// ran) share one.
    async fn renew_cluster(&self, seen: u64) {
        let Locator::Cluster(seeds) = &self.locator else { return };
        let _one_at_a_time = self.connecting.lock().await;
        if self.lookups.load(Ordering::Acquire) != seen {
            return;
        }
        match tokio::time::timeout(self.timeout, seeds.connect()).await {
            Ok(Ok(conns)) => {
                tracing::warn!("redis cluster: connection lost; connected again through the seed nodes");
                *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arc::new(Current { conn: Conn::Cluster(conns), address: "redis cluster".into() }));
                self.reconnected();
            }
            Ok(Err(error)) => tracing::warn!(%error, "redis cluster: no seed node answers yet"),
            Err(_) => tracing::warn!("redis cluster: no seed node answers yet"),
        }
        self.lookups.fetch_add(1, Ordering::AcqRel);
    }

    /// A client of the server to subscribe on for `channel` (pub/sub needs a connection of its
    /// own): with Sentinel the master, asked again first, since a subscription breaks when it
    /// moves; with a cluster, the primary that serves `channel`'s slot, where the notices on
    /// `channel` are also published (see [`RedisLink::publish`]).
    pub async fn pubsub_client(&self, channel: &str) -> Result<redis::Client, StoreError> {
        self.follow_master(self.lookups.load(Ordering::Acquire)).await;
        match self.current() {
            Some(current) => match (&current.conn, &self.locator) {
                (Conn::Single { client, .. }, _) => Ok(client.clone()),
                (Conn::Cluster(conns), Locator::Cluster(seeds)) => {
                    let topology =
                        tokio::time::timeout(self.timeout, cluster::topology(&mut conns.safe.clone(), channel))
                            .await
                            .map_err(|_| StoreError::from(timed_out()))??;
                    let (host, port) = &topology.notices;
                    Ok(seeds.client_for(host, *port)?)
                }
                (Conn::Cluster(_), _) => Err(StoreError::Unavailable("redis: no cluster".into())),
            },
            None => Err(StoreError::Unavailable("not connected to redis yet".into())),
        }
    }

    /// Whether the link talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.locator, Locator::Cluster(_))
    }

    /// The bound on every command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn connect_in_background(self: &Arc<Self>) {
        let link = self.clone();
        tokio::spawn(async move { link.connect().await });
        if self.is_sentinel() {
            let link = self.clone();
            tokio::spawn(async move {
                loop {
                    let Err(error) = link.watch_sentinels().await;
                    tracing::debug!(%error, "redis sentinel: announcements lost; listening again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        }
    }

    /// Listens to a sentinel's `+switch-master` announcements and moves to the new master at
    /// once. A master demoted by a failover keeps answering as master for seconds before the
    /// sentinels turn it into a replica, and what it is sent then is lost: waiting for a command
    /// to fail is not enough.
    async fn watch_sentinels(&self) -> redis::RedisResult<std::convert::Infallible> {
        let Locator::Sentinel(sentinels) = &self.locator else {
            return Err(redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "not sentinel")));
        };
        let client = tokio::time::timeout(self.timeout, sentinels.any()).await.map_err(|_| timed_out())??;
        let mut pubsub =
            tokio::time::timeout(self.timeout, client.get_async_pubsub()).await.map_err(|_| timed_out())??;
        pubsub.subscribe("+switch-master").await?;
        // Anything missed while not listening: ask once now.
        self.follow_master(self.lookups.load(Ordering::Acquire)).await;
        let mut announcements = pubsub.on_message();
        while let Some(message) = futures::StreamExt::next(&mut announcements).await {
            let text: String = message.get_payload().unwrap_or_default();
            tracing::warn!(announcement = %text, "redis sentinel: the master moved");
            self.report_trouble();
            self.follow_master(self.lookups.load(Ordering::Acquire)).await;
        }
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
    }

    fn connected(&self) -> Result<Arc<Current>, StoreError> {
        self.current().ok_or_else(|| StoreError::Unavailable("not connected to redis yet".into()))
    }

    /// Runs one command, mapping every failure to `Unavailable`; a [`Retry::Safe`] command whose
    /// connection dropped runs once more on a fresh one (with Sentinel: on the master the
    /// sentinels name now).
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd, retry: Retry) -> Result<T, StoreError> {
        let bound = self.timeout;
        let sent = self.attempt(retry, |current| async move { current.query(cmd, retry, bound).await });
        tracing::Instrument::instrument(sent, traces::redis(|| traces::command_name(cmd))).await
    }

    /// Runs a [`LuaScript`] call: by its digest, and once more with its body when the server
    /// does not know the script yet (`NOSCRIPT`); retried as [`RedisLink::query`] is.
    pub async fn query_script<T: redis::FromRedisValue>(
        &self,
        call: &ScriptCall,
        retry: Retry,
    ) -> Result<T, StoreError> {
        let bound = self.timeout;
        let sent = self.attempt(retry, |current| async move {
            match current.query(&call.by_digest, retry, bound).await {
                Err(error) if lua_script::no_script(&error) => current.query(&call.with_body, retry, bound).await,
                answer => answer,
            }
        });
        tracing::Instrument::instrument(sent, traces::redis(|| "EVALSHA".into())).await
    }

    /// Runs [`LuaScript`] calls in one round trip, each by its digest; when the server answers
    /// `NOSCRIPT` (it has not seen a script yet: new, restarted, just promoted), the pipeline
    /// once more with the bodies, which also loads them. Retried as [`RedisLink::pipeline`] is:
    /// the calls must be safe to run twice.
    pub async fn pipeline_scripts<T: redis::FromRedisValue>(
        &self,
        calls: &[ScriptCall],
        retry: Retry,
    ) -> Result<T, StoreError> {
        let mut by_digest = redis::pipe();
        for call in calls {
            by_digest.add_command(call.by_digest.clone());
        }
        let (by_digest, bound) = (&by_digest, self.timeout);
        let sent = self.attempt(retry, |current| async move {
            match current.pipeline(by_digest, bound).await {
                Err(error) if lua_script::no_script(&error) => {
                    let mut with_body = redis::pipe();
                    for call in calls {
                        with_body.add_command(call.with_body.clone());
                    }
                    current.pipeline(&with_body, bound).await
                }
                answer => answer,
            }
        });
        tracing::Instrument::instrument(sent, traces::redis(|| "PIPELINE EVALSHA".into())).await
    }

    /// Runs a write and then `WAIT` for `replicas` replicas (bounded by `redis_timeout`), in
    /// one round trip on a connection of their own, so that the wait holds up nobody else's
    /// commands. Answers the write's answer and how many replicas confirmed it; fewer than
    /// `replicas` is not an error (the write stands on the master). Retried as
    /// [`RedisLink::query`] is.
    pub async fn write_and_wait<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        replicas: u32,
        retry: Retry,
    ) -> Result<(T, u32), StoreError> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone());
        pipe.cmd("WAIT").arg(replicas).arg(self.timeout.as_millis() as u64);
        let (pipe, bound) = (&pipe, self.timeout);
        let sent =
            self.attempt_within(bound * 2, retry, |current| async move { current.confirmed(pipe, retry, bound).await });
        tracing::Instrument::instrument(sent, traces::redis(|| format!("{} + WAIT", traces::command_name(cmd)))).await
    }

    /// Publishes `messages` (channel, payload) in one round trip and answers, for each, how many
    /// subscribers of the server that took it received it. With a cluster, on the node `at`
    /// (`host:port`) when given, else on the primary of each channel's slot. Retried as
    /// [`RedisLink::query`] is.
    pub async fn publish(
        &self,
        messages: &[(String, String)],
        at: Option<&(String, u16)>,
        retry: Retry,
    ) -> Result<Vec<usize>, StoreError> {
        let mut pipe = redis::pipe();
        for (channel, payload) in messages {
            pipe.cmd("PUBLISH").arg(channel).arg(payload);
        }
        match at {
            Some((host, port)) if self.is_cluster() => {
                let (pipe, bound) = (&pipe, self.timeout);
                let count = messages.len();
                self.attempt(retry, |current| async move {
                    let Conn::Cluster(conns) = &current.conn else {
                        return Err(redis::RedisError::from((redis::ErrorKind::Client, "not a cluster")));
                    };
                    let route =
                        redis::cluster_routing::SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port };
                    let mut conn = if retry == Retry::Never { conns.once() } else { conns.safe.clone() };
                    let answers = tokio::time::timeout(bound, conn.route_pipeline(pipe.clone(), 0, count, route))
                        .await
                        .map_err(|_| timed_out())??;
                    answers.into_iter().map(|v| Ok(redis::from_redis_value::<usize>(v)?)).collect()
                })
                .await
            }
            _ => self.pipeline(&pipe, retry).await,
        }
    }

    /// With a cluster: how many connections are subscribed to `channel` on all its nodes
    /// together (a `PUBLISH` reaches each of them, wherever it was sent), asked of every node at
    /// once, within the link's bound. An error when any node that has not failed does not answer.
    pub async fn subscribers_everywhere(&self, channel: &str) -> Result<usize, StoreError> {
        let (Locator::Cluster(seeds), Some(current)) = (&self.locator, self.current()) else {
            return Err(StoreError::Unavailable("redis: no cluster".into()));
        };
        let Conn::Cluster(conns) = &current.conn else {
            return Err(StoreError::Unavailable("redis: no cluster".into()));
        };
        let bound = self.timeout;
        let mut conn = conns.safe.clone();
        let count = seeds.subscribers(&mut conn, channel, bound);
        Ok(tokio::time::timeout(bound, count).await.map_err(|_| StoreError::from(timed_out()))??)
    }

    fn is_sentinel(&self) -> bool {
        matches!(self.locator, Locator::Sentinel(_))
    }

    /// Runs a pipeline (one round trip), with the same retry as [`RedisLink::query`].
    pub async fn pipeline<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        retry: Retry,
    ) -> Result<T, StoreError> {
        let bound = self.timeout;
        let sent = self.attempt(retry, |current| async move { current.pipeline(pipe, bound).await });
        tracing::Instrument::instrument(sent, traces::redis(|| "PIPELINE".into())).await
    }

    /// One command or pipeline (`send`, to the server the link talks to), and the second
    /// attempt [`Retry`] and the error allow: after the sentinels were asked where the master is
    /// now, or on the manager's fresh connection.
    async fn attempt<T, F, Fut>(&self, retry: Retry, send: F) -> Result<T, StoreError>
    where
        F: Fn(Arc<Current>) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.attempt_within(self.timeout, retry, send).await
    }

    /// [`RedisLink::attempt`], the first attempt on a cluster bounded by `bound` (a write and
    /// its `WAIT`: the `WAIT`'s own bound plus `redis_timeout`, so that the `WAIT` runs out first
    /// and the write stands, as on one server).
    async fn attempt_within<T, F, Fut>(&self, bound: Duration, retry: Retry, send: F) -> Result<T, StoreError>
    where
        F: Fn(Arc<Current>) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let _timer = crate::metrics::redis_commands::CommandTimer::start();
        let seen = self.lookups.load(Ordering::Acquire);
        let conn = self.connected().inspect_err(|_| crate::metrics::redis_commands::failed())?;
        let first = if self.is_cluster() {
            // The cluster client retries by itself (redirections, reconnects): bounded here.
            tokio::time::timeout(bound, send(conn.clone())).await.unwrap_or_else(|_| Err(timed_out()))
        } else {
            send(conn.clone()).await
        };
        if let Err(error) = &first {
            // Before anything is sent again: the next connection may reach another server.
            self.note_reconnect(error);
        }
        match first {
            Err(error) if self.is_sentinel() && master_may_have_moved(&error) => {
                self.report_trouble();
                self.follow_master(seen).await;
                if !may_repeat(retry, &error) {
                    return Err(self.failed(error));
                }
                let conn = self.connected()?;
                self.retry_after(error, send(conn)).await
            }
            Err(error) if self.is_cluster() && connection_dropped(&error) => {
                // The cluster client reconnects to nodes by itself, but a connection whose
                // driver has ended answers every command so forever: open a new one.
                self.renew_cluster(seen).await;
                if retry == Retry::Never {
                    return Err(self.failed(error));
                }
                let conn = self.connected()?;
                self.retry_after(error, send(conn)).await
            }
            Err(error) if retry == Retry::Safe && connection_dropped(&error) => {
                self.retry_after(error, send(conn)).await
            }
            result => result.map_err(|error| self.failed(error)),
        }
    }

    /// The second attempt: the manager has started reconnecting on the first failure, and this
    /// one waits for that connection. Bounded by `redis_timeout` of its own, so a Redis that is
    /// still down costs at most two bounds.
    async fn retry_after<T>(
        &self,
        first: redis::RedisError,
        second: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        // Redis may have restarted empty: whoever keeps things there checks, retry or not.
        self.report_trouble();
        tracing::debug!(error = %first, "redis connection dropped; sending the command again on a fresh connection");
        match tokio::time::timeout(self.timeout, second).await {
            Ok(result) => result.map_err(|error| self.failed(error)),
            Err(_) => Err(self.failed(first)),
        }
    }

    fn failed(&self, error: redis::RedisError) -> StoreError {
        crate::metrics::redis_commands::failed();
        self.note_reconnect(&error);
        self.report_trouble();
        StoreError::from(error)
    }

    /// After `error`, the connection manager opens a new connection, which may reach another
    /// server: says so to whoever registered.
    fn note_reconnect(&self, error: &redis::RedisError) {
        if error.is_unrecoverable_error() || connection_dropped(error) {
            self.reconnected();
        }
    }

    fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::SeqCst);
        for hook in self.reconnect_hooks.read().unwrap_or_else(|e| e.into_inner()).iter() {
            hook();
        }
    }

    /// How many times the connection may have come to reach another server (a new
    /// connection after a failure, another master). Compare two readings: equal means every
    /// command between them went to one server.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::SeqCst)
    }

    /// Calls `hook` every time [`RedisLink::reconnects`] moves, right after it moved and before
    /// the command that noticed is sent again or answers. It must be quick and must not block.
    pub fn on_reconnect(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.reconnect_hooks.write().unwrap_or_else(|e| e.into_inner()).push(Box::new(hook));
    }

    /// The `run_id` of the server the link talks to now: random at every start of a Redis
    /// process, so a restarted Redis (which may have come back without its data) has another.
    /// With a cluster, the `run_id` and role of every primary and the node that carries the
    /// change notices on `notices` (see [`RedisLink::pubsub_client`]): a failover or a restart
    /// of any shard's primary changes it.
    pub async fn server_id(&self, notices: &str) -> Result<String, StoreError> {
        if let Locator::Cluster(seeds) = &self.locator {
            let bound = self.timeout;
            return self
                .attempt(Retry::Safe, |current| async move {
                    let Conn::Cluster(conns) = &current.conn else {
                        return Err(redis::RedisError::from((redis::ErrorKind::Client, "not a cluster")));
                    };
                    let ask = async {
                        let topology = cluster::topology(&mut conns.safe.clone(), notices).await?;
                        seeds.server_id(&topology, bound).await
                    };
                    tokio::time::timeout(bound, ask).await.map_err(|_| timed_out())?
                })
                .await;
        }
        let info: String = self.query(redis::cmd("INFO").arg("server"), Retry::Safe).await?;
        info.lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .ok_or_else(|| StoreError::Unavailable("redis: INFO server has no run_id".into()))
    }

    /// Wakes whoever waits in [`RedisLink::trouble`]: Redis may have lost what this node keeps
    /// there.
    pub fn report_trouble(&self) {
        self.trouble.store(true, Ordering::Relaxed);
        self.trouble_seen.notify_waiters();
    }

    /// Waits until a command fails (returns at once if one failed since the last call), and
    /// clears the flag.
    pub async fn trouble(&self) {
        loop {
            let seen = self.trouble_seen.notified();
            if self.trouble.swap(false, Ordering::Relaxed) {
                return;
            }
            seen.await;
        }
    }
}

/// The connection was gone (closed by a restarted Redis, reset, refused): the manager
/// reconnects, so a second attempt can succeed. A timeout is not one of these: Redis may be
/// slow, and a second attempt would only double the wait.
fn connection_dropped(error: &redis::RedisError) -> bool {
    error.is_connection_dropped() || error.is_connection_refusal()
}

/// The TLS handshake's own failure inside a connection error (rustls reports it as an I/O
/// error of kind `InvalidData`), as a sentence; `None` for anything else (refused, timed out).
fn tls_failure(error: &redis::RedisError) -> Option<String> {
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        let inner: &(dyn std::error::Error + 'static) =
            match current.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
                Some(shared) => shared.as_ref(),
                None => current,
            };
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return (io.kind() == std::io::ErrorKind::InvalidData).then(|| {
                format!("TLS to redis failed: {}", io.get_ref().map(|e| e.to_string()).unwrap_or(io.to_string()))
            });
        }
        source = inner.source().filter(|next| !std::ptr::addr_eq(*next, current));
    }
    None
}

/// With Sentinel, signs that the server this link talks to may no longer be the master: it is
/// gone, silent, or says it is a replica (`READONLY`), cut off (`MASTERDOWN`) or loading.
fn master_may_have_moved(error: &redis::RedisError) -> bool {
    connection_dropped(error)
        || error.is_io_error()
        || error.is_timeout()
        || matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

/// Whether a command may be sent again after `error`: a command the server refused
/// (`READONLY`, `MASTERDOWN`, `LOADING`) did nothing, so even a one-time one may; otherwise its
/// caller decides.
fn may_repeat(retry: Retry, error: &redis::RedisError) -> bool {
    retry == Retry::Safe || matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

fn timed_out() -> redis::RedisError {
    std::io::Error::from(std::io::ErrorKind::TimedOut).into()
}

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        StoreError::Unavailable(format!("redis: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn a_dropped_connection_tells_whoever_registered_and_an_answer_from_redis_does_not() {
        let link = RedisLink::new("redis://127.0.0.1:1", Duration::from_secs(1)).unwrap();
        let told = Arc::new(AtomicUsize::new(0));
        let counter = told.clone();
        link.on_reconnect(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let before = link.reconnects();
        link.note_reconnect(&std::io::Error::from(std::io::ErrorKind::ConnectionReset).into());
        assert_eq!(link.reconnects(), before + 1);
        assert_eq!(told.load(Ordering::SeqCst), 1);
        // A command Redis refused (here, a general error) leaves the connection as it was.
        link.note_reconnect(&redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "WRONGTYPE",
        )));
        assert_eq!(link.reconnects(), before + 1);
        assert_eq!(told.load(Ordering::SeqCst), 1);
    }
}
