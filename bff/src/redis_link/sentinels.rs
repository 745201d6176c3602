//! Finding the master through Redis Sentinel without trusting the sentinels blindly.
//!
//! A sentinel names the master, and whatever it names is sent the master's password and then
//! every session. So the link trusts the sentinels no further than it is told to:
//! - `rediss+sentinel://` speaks TLS to the sentinels and to the master, each verified against
//!   the system's roots or the CA of `redis_ca_file` (a rogue server needs a certificate of that
//!   CA for the address it claims);
//! - `redis_sentinel_username` / `redis_sentinel_password` authenticate the link to the
//!   sentinels (Sentinel's own `requirepass` or ACL user), so that only sentinels that know the
//!   link's credentials are spoken to with them;
//! - `redis_sentinel_masters` lists the addresses a master may have: a master named outside it
//!   is refused before anything is sent to it (logged, and the next sentinel is asked; with none
//!   naming an allowed master, commands answer `Unavailable`, a 503);
//! - the master named must say it is one (`ROLE`), as redis-rs's own sentinel client checks.
//!
//! The lookup is done here rather than by redis-rs's `SentinelClient`, which connects to the
//! master it is told of (with the password) before a caller could look at its address.

use std::time::Duration;

use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult};

/// What the operator trusts the sentinels with, besides the URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentinelTrust {
    /// The link's user on the sentinels (`redis_sentinel_username`).
    pub username: Option<String>,
    /// The link's password on the sentinels (`redis_sentinel_password`).
    pub password: Option<String>,
    /// The addresses a master may have (`redis_sentinel_masters`); empty = any.
    pub masters: Vec<(String, u16)>,
}

/// How to reach the sentinels and the master they name.
pub(super) struct Sentinels {
    /// One client per sentinel, in the configured order.
    sentinels: Vec<redis::Client>,
    master_name: String,
    tls: bool,
    ca_pem: Option<Vec<u8>>,
    db: i64,
    /// The master's password (from the URL).
    master_password: Option<String>,
    allowed: Vec<(String, u16)>,
    timeout: Duration,
}

/// Where a master is, the fields of a [`super::RedisTarget::Sentinel`].
pub(super) struct SentinelTarget {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub db: i64,
    pub password: Option<String>,
    pub tls: bool,
}

impl Sentinels {
    pub(super) fn new(
        target: SentinelTarget,
        ca_pem: Option<&[u8]>,
        trust: &SentinelTrust,
        timeout: Duration,
    ) -> RedisResult<Self> {
        let sentinels = target
            .sentinels
            .iter()
            .map(|(host, port)| {
                client(target.tls, host, *port, trust.username.as_deref(), trust.password.as_deref(), 0, ca_pem)
            })
            .collect::<RedisResult<Vec<_>>>()?;
        Ok(Sentinels {
            sentinels,
            master_name: target.master,
            tls: target.tls,
            ca_pem: ca_pem.map(<[u8]>::to_vec),
            db: target.db,
            master_password: target.password,
            allowed: trust.masters.clone(),
            timeout,
        })
    }

    fn connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new().set_connection_timeout(Some(self.timeout)).set_response_timeout(Some(self.timeout))
    }

    /// A client of the master: asks every sentinel at once and takes the first that names a
    /// master that is allowed and says it is the master. At once, not in turn: a sentinel whose
    /// host drops packets takes the whole of `redis_timeout` to fail, and the caller's bound is
    /// that same `redis_timeout`, so the sentinels after it would never be asked.
    pub(super) async fn master(&self) -> RedisResult<redis::Client> {
        let asked = self.sentinels.iter().map(|sentinel| {
            Box::pin(async move {
                self.master_named_by(sentinel).await.inspect_err(|error| {
                    tracing::debug!(%error, sentinel = %sentinel.get_connection_info().addr(), "redis sentinel: no usable master from this sentinel");
                })
            })
        });
        first_ok(asked).await
    }

    async fn master_named_by(&self, sentinel: &redis::Client) -> RedisResult<redis::Client> {
        let mut conn = sentinel.get_multiplexed_async_connection_with_config(&self.connection_config()).await?;
        let named: Option<(String, u16)> =
            redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(&self.master_name).query_async(&mut conn).await?;
        let (host, port) = named.ok_or_else(|| {
            RedisError::from((ErrorKind::MasterNameNotFoundBySentinel, "the sentinel does not know the master name"))
        })?;
        if !self.allows(&host, port) {
            tracing::error!(
                %host,
                port,
                sentinel = %sentinel.get_connection_info().addr(),
                "redis sentinel named a master outside redis_sentinel_masters: refused, nothing sent to it"
            );
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "master outside redis_sentinel_masters",
                format!("{host}:{port}"),
            )));
        }
        let client =
            client(self.tls, &host, port, None, self.master_password.as_deref(), self.db, self.ca_pem.as_deref())?;
        let mut master = client.get_multiplexed_async_connection_with_config(&self.connection_config()).await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut master).await?;
        match role.first() {
            Some(redis::Value::BulkString(role)) if role == b"master" => Ok(client),
            _ => Err(RedisError::from((ErrorKind::Server(redis::ServerErrorKind::ReadOnly), "not the master yet"))),
        }
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|(h, p)| h == host && *p == port)
    }

    /// A client of each sentinel, in the configured order.
    pub(super) fn clients(&self) -> &[redis::Client] {
        &self.sentinels
    }

    /// A client of the first sentinel that answers, for its announcements (all asked at once,
    /// as in [`Sentinels::master`]).
    pub(super) async fn any(&self) -> RedisResult<redis::Client> {
        let asked = self.sentinels.iter().map(|sentinel| {
            Box::pin(async move {
                let mut conn = sentinel.get_multiplexed_async_connection_with_config(&self.connection_config()).await?;
                redis::cmd("PING").query_async::<()>(&mut conn).await?;
                Ok(sentinel.clone())
            })
        });
        first_ok(asked).await
    }
}

/// The first of `asked` to succeed, or the last error when none does.
async fn first_ok<F>(asked: impl Iterator<Item = F>) -> RedisResult<redis::Client>
where
    F: std::future::Future<Output = RedisResult<redis::Client>> + Unpin,
{
    let asked: Vec<F> = asked.collect();
    if asked.is_empty() {
        return Err(RedisError::from((ErrorKind::EmptySentinelList, "no sentinel configured")));
    }
    futures::future::select_ok(asked).await.map(|(client, _)| client)
}

/// A client of `host:port` (plain or TLS, verified against `ca_pem` or the system's roots),
/// authenticated as given.
fn client(
    tls: bool,
    host: &str,
    port: u16,
    username: Option<&str>,
    password: Option<&str>,
    db: i64,
    ca_pem: Option<&[u8]>,
) -> RedisResult<redis::Client> {
    let scheme = if tls { "rediss" } else { "redis" };
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    let invalid = |reason: String| RedisError::from((ErrorKind::InvalidClientConfig, "bad redis address", reason));
    let mut url = url::Url::parse(&format!("{scheme}://{host}:{port}/{db}")).map_err(|e| invalid(e.to_string()))?;
    if let Some(username) = username {
        url.set_username(username).map_err(|()| invalid("bad user name".into()))?;
    }
    if let Some(password) = password {
        url.set_password(Some(password)).map_err(|()| invalid("bad password".into()))?;
    }
    match ca_pem {
        Some(pem) if tls => redis::Client::build_with_tls(
            url.as_str(),
            redis::TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) },
        ),
        _ => redis::Client::open(url.as_str()),
    }
}
