//! The link's connections to a Redis Cluster (`redis+cluster://`), through redis-rs's async
//! cluster client, which learns the slot map from the seed nodes, sends each command to the
//! primary of its key's slot, and follows `MOVED` and `ASK` (a reshard) and `TRYAGAIN` (a
//! multi-key command on a slot half moved) by itself.
//!
//! The client also sends a command again by itself after a dropped connection, which the
//! [`Retry`](super::Retry) discipline forbids for a one-time command: so there are two clients.
//! Commands that may run twice go through `safe`, which follows redirections, reconnects and
//! retries (with short waits: redis-rs waits 1.3 s and more by default) until `redis_timeout`
//! runs out. One-time commands go through `once`, which retries nothing; the link sends one again
//! only when the cluster refused it (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, ... : the server
//! did nothing), within the same bound; after a `MOVED` or `READONLY` on a fresh connection,
//! since a client without retries does not refresh its slot map when the refusal came inside a
//! transaction (`MULTI`), and would be refused so for ever.
//! Writes that wait for replicas (`WAIT`) go through a third client of their own, one write at a
//! time on each of its connections, so that a `WAIT` holds up no one else's commands on that
//! shard, other writes included (see `confirmed_writes`); the write and its `WAIT` are one
//! pipeline, sent to the write's shard.
//!
//! Which servers the link talks to changes under it (a failover, a primary restarted empty):
//! [`ClusterSeeds::server_id`] names them all at once (the `run_id` and role of every primary,
//! from the slot map any node gives now), so a change of any shard's primary changes it. The
//! change notices of the node cache go through one node, the primary that serves the notice
//! channel's slot ([`Topology::notices`]); see `session/cache.rs`.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;

/// The clients, built from the seed URLs; each connects when the link connects.
pub(super) struct ClusterSeeds {
    safe: ClusterClient,
    once: ClusterClient,
    confirmed: ClusterClient,
    timeout: Duration,
    /// One single-server client per seed node: for the TLS check at start-up, and as the
    /// template (credentials, TLS, CA) of a client for any node of the cluster.
    pub(super) seeds: Vec<redis::Client>,
    ca_pem: Option<Vec<u8>>,
    /// Connections of the link's own to single nodes (their `INFO`), by address.
    nodes: std::sync::Mutex<std::collections::HashMap<(String, u16), redis::aio::MultiplexedConnection>>,
}

/// The connections in use (each one multiplexed connection per node).
pub(super) struct ClusterConns {
    pub(super) safe: ClusterConnection,
    /// Replaced by a fresh one (a fresh slot map) when the cluster answers it `MOVED`: with no
    /// retries, the client does not refresh its slot map on a `MOVED` inside a transaction.
    once: std::sync::Mutex<ClusterConnection>,
    once_client: ClusterClient,
    /// Writes that wait for replicas, one at a time on each of its connections.
    pub(super) confirmed: super::confirmed_writes::ConfirmedClusterWrites,
}

impl ClusterSeeds {
    pub(super) fn new(seeds: &[String], ca_pem: Option<&[u8]>, timeout: Duration) -> redis::RedisResult<Self> {
        let builder = |retries: u32, response: Duration| -> redis::RedisResult<ClusterClient> {
            let mut builder = ClusterClientBuilder::new(seeds.to_vec())
                .connection_timeout(timeout)
                .response_timeout(response)
                .retries(retries)
                .min_retry_wait(5)
                .max_retry_wait(200)
                .retry_wait_formula(10, 2);
            if let Some(pem) = ca_pem {
                builder = builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) });
            }
            builder.build()
        };
        let clients = seeds
            .iter()
            .map(|seed| match ca_pem {
                Some(pem) => redis::Client::build_with_tls(
                    seed.as_str(),
                    redis::TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) },
                ),
                None => redis::Client::open(seed.as_str()),
            })
            .collect::<redis::RedisResult<Vec<_>>>()?;
        Ok(ClusterSeeds {
            // Bounded by `redis_timeout` around every call; retries end there.
            safe: builder(64, timeout)?,
            once: builder(0, timeout)?,
            confirmed: builder(64, timeout * 2)?,
            timeout,
            seeds: clients,
            ca_pem: ca_pem.map(<[u8]>::to_vec),
            nodes: Default::default(),
        })
    }

    pub(super) async fn connect(&self) -> redis::RedisResult<ClusterConns> {
        Ok(ClusterConns {
            safe: self.safe.get_async_connection().await?,
            once: std::sync::Mutex::new(self.once.get_async_connection().await?),
            once_client: self.once.clone(),
            confirmed: super::confirmed_writes::ConfirmedClusterWrites::new(
                self.confirmed.clone(),
                self.confirmed.get_async_connection().await?,
                self.timeout,
            ),
        })
    }

    /// A single-server client for the node at `host:port`, with the seeds' credentials and TLS.
    pub(super) fn client_for(&self, host: &str, port: u16) -> redis::RedisResult<redis::Client> {
        let template = self
            .seeds
            .first()
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no seed node")))?;
        let info = template.get_connection_info().clone();
        let addr = match info.addr().clone() {
            redis::ConnectionAddr::TcpTls { insecure, tls_params, .. } => {
                redis::ConnectionAddr::TcpTls { host: host.to_owned(), port, insecure, tls_params }
            }
            _ => redis::ConnectionAddr::Tcp(host.to_owned(), port),
        };
        let info = info.set_addr(addr);
        match &self.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) },
            ),
            None => redis::Client::open(info),
        }
    }
}

impl ClusterConns {
    /// The one-time connection in use.
    pub(super) fn once(&self) -> ClusterConnection {
        self.once.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends `send` on the one-time connection; when the cluster refused it (see [`refused`]),
    /// sends it again after a short wait, on a fresh connection when the slot map was stale
    /// (`MOVED`, `READONLY`), until `bound` runs out.
    pub(super) async fn once_until_accepted<T, F, Fut>(&self, bound: Duration, send: F) -> redis::RedisResult<T>
    where
        F: Fn(ClusterConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + bound;
        let mut wait = Duration::from_millis(5);
        loop {
            match send(self.once()).await {
                Err(error) if refused(&error) && tokio::time::Instant::now() + wait < deadline => {
                    tracing::debug!(%error, "redis cluster refused a one-time command; sending it again");
                    if stale_slot_map(&error) {
                        let fresh = tokio::time::timeout(
                            deadline.saturating_duration_since(tokio::time::Instant::now()),
                            self.once_client.get_async_connection(),
                        )
                        .await;
                        if let Ok(Ok(fresh)) = fresh {
                            *self.once.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
                        }
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(100));
                }
                answer => return answer,
            }
        }
    }
}

/// A refusal that says the client's slot map is out of date (on its own or inside an aborted
/// transaction).
fn stale_slot_map(error: &redis::RedisError) -> bool {
    let stale = |code: &str| matches!(code, "MOVED" | "READONLY");
    error.code().is_some_and(stale)
        || error.clone().into_server_errors().is_some_and(|errors| errors.iter().any(|(_, e)| stale(e.code())))
}

/// Errors with which the cluster refused a command without running it (on its own or inside an
/// aborted transaction): sent again, it runs once (a one-time command too), once the slot map
/// is right or the slot finished moving.
pub(super) fn refused(error: &redis::RedisError) -> bool {
    let refusal = |code: &str| {
        matches!(
            code,
            "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "READONLY" | "MASTERDOWN" | "LOADING" | "EXECABORT"
        )
    };
    error.code().is_some_and(refusal)
        || error.clone().into_server_errors().is_some_and(|errors| errors.iter().all(|(_, e)| refusal(e.code())))
}

/// What `CLUSTER SLOTS` (asked of any node) says now: the primary of every slot range.
pub(super) struct Topology {
    /// The primary that serves the notice channel's slot: where every node subscribes to the
    /// change notices and where they are published, so that they travel one server, in order
    /// (see `session/cache.rs`).
    pub(super) notices: (String, u16),
    /// Every primary that serves slots, sorted.
    pub(super) primaries: Vec<(String, u16)>,
}

/// Asks any node for the slot map (not the client's own, which learns of a failover only when
/// a command meets it) and finds the primary of `channel`'s slot.
pub(super) async fn topology(conn: &mut ClusterConnection, channel: &str) -> redis::RedisResult<Topology> {
    let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(channel).query_async(conn).await?;
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut notices = None;
    let mut primaries = Vec::new();
    for range in ranges {
        let redis::Value::Array(fields) = range else { continue };
        let (Some(low), Some(high), Some(redis::Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let (Some(host), Some(port)) = (primary.first(), primary.get(1)) else { continue };
        let node: (String, u16) = (redis::from_redis_value_ref(host)?, redis::from_redis_value_ref(port)?);
        let (low, high): (u16, u16) = (redis::from_redis_value_ref(low)?, redis::from_redis_value_ref(high)?);
        if (low..=high).contains(&slot) {
            notices = Some(node.clone());
        }
        primaries.push(node);
    }
    primaries.sort();
    primaries.dedup();
    let notices = notices.ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
            "no primary serves the notice channel's slot",
        ))
    })?;
    Ok(Topology { notices, primaries })
}

impl ClusterSeeds {
    /// `INFO server replication` of the node at `host:port`.
    async fn info(&self, host: &str, port: u16, timeout: Duration) -> redis::RedisResult<String> {
        self.on_node(host, port, redis::cmd("INFO").arg("server").arg("replication"), timeout).await
    }

    /// Sends `cmd` to the node at `host:port`, on a connection of the link's own to that node
    /// (kept for the next call; dropped when it fails).
    async fn on_node<T: redis::FromRedisValue>(
        &self,
        host: &str,
        port: u16,
        cmd: &redis::Cmd,
        timeout: Duration,
    ) -> redis::RedisResult<T> {
        let key = (host.to_owned(), port);
        let kept = self.nodes.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
        let mut conn = match kept {
            Some(conn) => conn,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let conn = self.client_for(host, port)?.get_multiplexed_async_connection_with_config(&config).await?;
                self.nodes.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), conn.clone());
                conn
            }
        };
        let answer = cmd.query_async(&mut conn).await;
        if answer.is_err() {
            self.nodes.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        }
        answer
    }

    /// Names every primary that serves slots now, by address, `run_id` (new at every start of a
    /// Redis process) and role (a primary demoted to replica says so), and the notice node: any
    /// change of any shard's primary, or of the node that carries the notices, changes the name.
    pub(super) async fn server_id(&self, topology: &Topology, timeout: Duration) -> redis::RedisResult<String> {
        let mut nodes = Vec::new();
        for (host, port) in &topology.primaries {
            let info = self.info(host, *port, timeout).await?;
            let field = |name: &str| {
                info.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap_or_default()
            };
            nodes.push(format!("{host}:{port} {} {}", field("run_id:"), field("role:")));
        }
        let (host, port) = &topology.notices;
        Ok(format!("notices at {host}:{port}; {}", nodes.join(", ")))
    }

    /// How many connections are subscribed to `channel` on every node of the cluster together
    /// (`PUBSUB NUMSUB` on each, primaries and replicas, asked at once): a `PUBLISH` reaches each
    /// of them, over the cluster bus, wherever it was sent. `conn` asks any node which nodes
    /// there are (`CLUSTER NODES`); a node the cluster agreed has failed (`fail`) is left out:
    /// a subscriber there lost its lease long before the cluster agreed. An error when any other
    /// node does not answer: the count is then not known.
    pub(super) async fn subscribers(
        &self,
        conn: &mut ClusterConnection,
        channel: &str,
        timeout: Duration,
    ) -> redis::RedisResult<usize> {
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
        let mut numsub = redis::cmd("PUBSUB");
        numsub.arg("NUMSUB").arg(channel);
        let counts = cluster_nodes(&nodes).into_iter().map(|(host, port)| {
            let numsub = &numsub;
            async move {
                let answer: Vec<(String, usize)> = self.on_node(&host, port, numsub, timeout).await?;
                Ok::<_, redis::RedisError>(answer.iter().map(|(_, count)| count).sum::<usize>())
            }
        });
        futures::future::try_join_all(counts).await.map(|counts| counts.into_iter().sum())
    }
}

/// The address of every node `CLUSTER NODES` lists, but those the cluster agreed have failed,
/// have no address, or are still being met.
fn cluster_nodes(answer: &str) -> Vec<(String, u16)> {
    answer
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_id, address, flags) = (fields.next()?, fields.next()?, fields.next()?);
            if flags.split(',').any(|flag| matches!(flag, "fail" | "noaddr" | "handshake")) {
                return None;
            }
            // `ip:port@cport[,hostname]`.
            let (host, port) = address.split('@').next()?.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::cluster_nodes;

    #[test]
    fn every_node_with_an_address_is_listed_but_failed_ones() {
        let answer = "\
07c3 127.0.0.1:30004@40004 myself,master - 0 0 1 connected 0-5460
67ed 127.0.0.1:30002@40002,redis-2 slave 07c3 0 1426238317239 2 connected
292f 127.0.0.1:30003@40003 master,fail - 1426238316232 1426238313232 3 disconnected
824f 127.0.0.1:30005@40005 master,fail? - 1426238316232 1426238313232 5 connected 5461-10922
e7d1 :0@0 master,noaddr - 0 0 0 disconnected
6ec2 127.0.0.1:30006@40006 handshake - 0 0 0 disconnected
";
        assert_eq!(
            cluster_nodes(answer),
            vec![("127.0.0.1".to_owned(), 30004), ("127.0.0.1".to_owned(), 30002), ("127.0.0.1".to_owned(), 30005)]
        );
    }
}
