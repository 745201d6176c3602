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
//! did nothing), after the client refreshed its slot map, within the same bound.
//! Writes that wait for replicas (`WAIT`) go through a third client of their own, so that a
//! `WAIT` holds up no one else's commands on that shard (see `confirmed_writes`); the write and
//! its `WAIT` are one pipeline, sent to the write's shard.
//!
//! Which servers the link talks to changes under it (a failover, a primary restarted empty):
//! [`server_id`] names them all at once (the `run_id` and role of every primary), so a change of
//! any shard's primary changes it. The change notices of the node cache go through one node, the
//! primary that serves the notice channel's slot ([`notice_node`]); see `session/cache.rs`.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};

/// The clients, built from the seed URLs; each connects when the link connects.
pub(super) struct ClusterSeeds {
    safe: ClusterClient,
    once: ClusterClient,
    confirmed: ClusterClient,
    /// One single-server client per seed node: for the TLS check at start-up, and as the
    /// template (credentials, TLS, CA) of a client for any node of the cluster.
    pub(super) seeds: Vec<redis::Client>,
    ca_pem: Option<Vec<u8>>,
}

/// The connections in use (each one multiplexed connection per node).
pub(super) struct ClusterConns {
    pub(super) safe: ClusterConnection,
    pub(super) once: ClusterConnection,
    pub(super) confirmed: ClusterConnection,
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
            seeds: clients,
            ca_pem: ca_pem.map(<[u8]>::to_vec),
        })
    }

    pub(super) async fn connect(&self) -> redis::RedisResult<ClusterConns> {
        Ok(ClusterConns {
            safe: self.safe.get_async_connection().await?,
            once: self.once.get_async_connection().await?,
            confirmed: self.confirmed.get_async_connection().await?,
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

/// Errors with which the cluster refused a command without running it: sent again, it runs
/// once (a one-time command too), once the slot map is right or the slot finished moving.
pub(super) fn refused(error: &redis::RedisError) -> bool {
    matches!(
        error.code(),
        Some("MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "READONLY" | "MASTERDOWN" | "LOADING" | "EXECABORT")
    )
}

/// Sends `send` on the one-time connection; when the cluster refused it (see [`refused`]),
/// sends it again after a short wait (the client refreshes its slot map on `MOVED`), until
/// `bound` runs out.
pub(super) async fn once_until_accepted<T, F, Fut>(bound: Duration, mut send: F) -> redis::RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    let mut wait = Duration::from_millis(5);
    loop {
        match send().await {
            Err(error) if refused(&error) && tokio::time::Instant::now() + wait < deadline => {
                tracing::debug!(%error, "redis cluster refused a one-time command; sending it again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(100));
            }
            answer => return answer,
        }
    }
}

/// Names every primary the cluster client knows now, by address, `run_id` (new at every start
/// of a Redis process) and role (a primary demoted to replica says so): any change of any
/// shard's primary changes the name. Prefixed with the notice node (see [`notice_node`]).
pub(super) async fn server_id(conn: &mut ClusterConnection, notices: &str) -> redis::RedisResult<String> {
    let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::Special)));
    let answer = conn.route_command(redis::cmd("INFO").arg("server").arg("replication").clone(), routing).await?;
    let mut nodes: Vec<String> = Vec::new();
    let pairs: Vec<(String, String)> = match answer {
        redis::Value::Map(pairs) => pairs
            .into_iter()
            .map(|(address, info)| {
                Ok((redis::from_redis_value::<String>(address)?, redis::from_redis_value::<String>(info)?))
            })
            .collect::<redis::RedisResult<_>>()?,
        other => {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "INFO from every primary",
                format!("{other:?}"),
            )));
        }
    };
    for (address, info) in pairs {
        let field = |name: &str| {
            info.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap_or_default()
        };
        nodes.push(format!("{address} {} {}", field("run_id:"), field("role:")));
    }
    nodes.sort();
    Ok(format!("notices at {notices}; {}", nodes.join(", ")))
}

/// The primary that serves the slot of `channel` (`CLUSTER SLOTS`, asked of any node), as
/// `(host, port)`: where every node subscribes to the change notices and where they are
/// published, so that they travel one server, in order (see `session/cache.rs`).
pub(super) async fn notice_node(conn: &mut ClusterConnection, channel: &str) -> redis::RedisResult<(String, u16)> {
    let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(channel).query_async(conn).await?;
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    for range in ranges {
        let redis::Value::Array(fields) = range else { continue };
        let (Some(low), Some(high), Some(primary)) = (fields.first(), fields.get(1), fields.get(2)) else { continue };
        let low: u16 = redis::from_redis_value_ref(low)?;
        let high: u16 = redis::from_redis_value_ref(high)?;
        if !(low..=high).contains(&slot) {
            continue;
        }
        let redis::Value::Array(primary) = primary else { continue };
        if let (Some(host), Some(port)) = (primary.first(), primary.get(1)) {
            return Ok((redis::from_redis_value_ref(host)?, redis::from_redis_value_ref(port)?));
        }
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
        "no primary serves the notice channel's slot",
    )))
}
