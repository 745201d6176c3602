//! Configuration: one typed [`Config`] read through one place.
//!
//! Every setting has a dotted key in the TOML file (`session.idle_timeout`) and an environment
//! variable (`BFF_SESSION_IDLE_TIMEOUT`) that overrides it; the list lives in [`keys::KEYS`], which
//! also feeds `bff --help`. Reading never touches the process environment directly: callers pass
//! the variables in, so tests hand over a map. Any problem is a [`ConfigError`] naming the key, and
//! the binary turns it into exit code 64 before the node binds anything.

pub mod fingerprint;
mod keys;
mod routes;
mod source;
mod unknown_env;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::redis_link::{RedisTarget, SentinelTrust, parse_master_addresses};
use base64::Engine;
use url::Url;

pub use keys::{KEYS, Key, help_table, markdown_reference};
pub use routes::{Balance, Route, RouteAuth};
use source::Source;

/// A configuration problem, always naming the key that caused it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{key}: unknown key in the config file")]
    UnknownKey { key: String },
    #[error("unknown environment variable {names}")]
    UnknownEnv { names: String },
    #[error("{key} ({env}): missing; {hint}")]
    Missing { key: &'static str, env: &'static str, hint: &'static str },
    #[error("{key}: {reason}")]
    Route { key: String, reason: String },
    #[error("{key} ({env}): {reason}")]
    Invalid { key: &'static str, env: &'static str, reason: String },
}

/// Where the session data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Node memory: a single node only, lost on restart.
    Memory,
    /// Redis, shared by every node; `ca_pem` (from `redis_ca_file`) is the CA a `rediss://`
    /// server's certificate must chain to, instead of the system's roots; `sentinel`: what the
    /// sentinels are trusted with (their credentials, the masters they may name).
    Redis { url: String, key_prefix: String, ca_pem: Option<Vec<u8>>, sentinel: SentinelTrust },
}

/// Where the keys that seal sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRingMode {
    /// Kept in Redis and shared by every node (the only mode that scales out).
    Redis,
    /// Made at start-up in node memory: other nodes (and this one after a restart) cannot open
    /// what it sealed.
    Local,
}

/// Which kind of identity provider; presets derive the authority and logout from a few fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    Generic,
    /// Auth0: the authority comes from the domain; an optional API audience is sent at login.
    Auth0 {
        domain: String,
        audience: Option<String>,
    },
    /// Microsoft Entra ID: the authority comes from the tenant id.
    Entra {
        tenant_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
}

#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub provider: ProviderKind,
    /// Issuer URL, without a trailing slash unless the issuer itself has one.
    pub authority: Url,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
    /// Where the issuer sends the browser after logout.
    pub post_logout_redirect_uri: Url,
    /// Leeway on `exp`/`iat`/`nbf` when validating tokens.
    pub clock_skew: Duration,
    /// Bound on every call to the issuer.
    pub http_timeout: Duration,
    /// How often the JWKS is fetched again when the issuer sends no `Cache-Control: max-age`.
    pub jwks_refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Cookie name as configured; [`Config::cookie_name`] adds `__Host-` over https.
    pub cookie_name: String,
    pub idle_timeout: Duration,
    /// A read pushes a session's expiry back only when less than `idle_timeout - touch_interval`
    /// remains: at most one store write per session per `touch_interval`.
    pub touch_interval: Duration,
    pub absolute_lifetime: Duration,
    pub same_site: SameSite,
    /// How long a started login may take before its callback is refused.
    pub login_timeout: Duration,
    /// How long a node may serve a session from its memory (Redis store); `None`: never.
    pub cache_max_age: Option<Duration>,
    pub cache_capacity: usize,
}

#[derive(Debug, Clone)]
pub struct KeyRingConfig {
    pub mode: KeyRingMode,
    /// A new key becomes current when the newest one is this old.
    pub rotation: Duration,
    /// ... or when this many seals were made under it (counted across nodes).
    pub rotation_seals: u64,
    /// Key-encryption key (32 bytes) that wraps the ring in Redis; required for the shared ring
    /// unless `plaintext_insecure`.
    pub key_encryption_key: Option<[u8; 32]>,
    /// The operator accepts a shared ring in Redis without a key-encryption key.
    pub plaintext_insecure: bool,
    /// How often a node re-reads the shared ring.
    pub refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct CsrfConfig {
    pub enabled: bool,
    pub header: axum::http::HeaderName,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// Refresh when the access token expires within this.
    pub skew: Duration,
    /// Lease of the cross-node lock; renewed while the refresh runs.
    pub lock_lease: Duration,
}

/// Largest `server.header_read_timeout`, `server.body_timeout` and `server.write_timeout`:
/// longer would let slow clients hold connections for as good as ever.
const SERVER_TIMEOUT_MAX: Duration = HOUR;

// Every duration read from configuration has an upper bound (see `docs/src/security.md`): far
// past any sensible setting, well below what would overflow a clock or a Redis expiry. A value
// above it is a configuration error naming the key (exit 64), not a panic or a 503 later.
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Limits that protect a node from slow and flooding clients.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Time a client has to send a request's headers, and that an idle keep-alive connection
    /// stays open.
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body, from the first read of it.
    pub body_timeout: Duration,
    /// Time a write to a client may make no progress before the connection is closed.
    pub write_timeout: Duration,
    /// Open client connections per node at most.
    pub max_connections: usize,
    /// Largest request body in bytes.
    pub max_body_size: usize,
}

/// The whole node configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Proxied routes, longest prefix first.
    pub routes: Vec<Route>,
    pub upstream_timeout: Duration,
    pub csrf: CsrfConfig,
    pub refresh: RefreshConfig,
    pub listen: SocketAddr,
    pub public_url: Url,
    pub store: StoreConfig,
    pub key_ring: KeyRingConfig,
    pub session: SessionConfig,
    pub oidc: OidcConfig,
    /// Path prefix of the account endpoints, e.g. `/account`.
    pub account_prefix: String,
    pub log_format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `bff=debug`.
    pub log_filter: String,
    /// Bound on finishing in-flight requests after SIGTERM.
    pub shutdown_timeout: Duration,
    /// How often an open WebSocket checks that its session still exists.
    pub websocket_session_check: Duration,
    /// Largest WebSocket message, from the browser or the upstream.
    pub websocket_max_message_size: usize,
    /// How often a browser's WebSocket is pinged; silent for two intervals, it is closed.
    pub websocket_ping_interval: Duration,
    pub server: ServerLimits,
    /// Bound on one Redis command.
    pub redis_timeout: Duration,
    /// Replicas that must confirm a session write (`WAIT`) before it is answered; 0 = none.
    pub redis_wait_replicas: u32,
    /// Runtime worker threads; `None` = one per core.
    pub worker_threads: Option<usize>,
    /// Where `/metrics` is served when it has a listener of its own (operators only); `None`:
    /// on the public listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer token that opens `/ops/fingerprint`; `None`: the endpoint does not exist.
    pub ops_token: Option<String>,
    /// Sent as `x-bff-node` on every response, when set.
    pub node_name: Option<String>,
    /// Peers whose forwarding headers (`Forwarded`, `X-Real-IP`, `X-Forwarded-For`) are believed;
    /// from any other peer they are dropped before a request goes upstream.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Session and login-binding cookie names, worked out once: every request reads them.
    cookie_names: (String, String),
    /// `X-Forwarded-Proto` and `X-Forwarded-Host` for upstreams, from `public_url`, worked out
    /// once: every proxied request sends them.
    forwarded: (axum::http::HeaderValue, axum::http::HeaderValue),
}

impl Config {
    /// Reads the optional TOML file, lets `env` override it, validates everything.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let table = match file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::File { path: path.to_owned(), reason: e.to_string() })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::File {
                    path: path.to_owned(),
                    reason: e.to_string().lines().next().unwrap_or_default().to_owned(),
                })?
            }
        };
        Self::from_source(&Source::new(table, env)?)
    }

    /// Convenience for tests and embedders: configuration from variables alone.
    pub fn from_env_map(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::load(None, env)
    }

    fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let listen = src.parse("listen", |s| s.parse::<SocketAddr>().map_err(|e| e.to_string()))?;
        let public_url =
            src.require("public_url", "the URL browsers use, e.g. https://app.example.com", parse_http_url)?;

        let store = match (src.string("redis_url"), src.string("redis_sentinels")) {
            (None, None) => StoreConfig::Memory,
            (Some(url), None) => {
                let target = RedisTarget::parse(&url).map_err(|reason| src.invalid("redis_url", reason))?;
                let scheme = url.split("://").next().unwrap_or_default().to_owned();
                let key_prefix = src.string_or("redis_key_prefix");
                if target.is_cluster() && key_prefix.contains(['{', '}']) {
                    // A hash tag in the prefix would put every key of every session in one slot.
                    return Err(src.invalid(
                        "redis_key_prefix",
                        format!("{key_prefix:?} has a '{{' or '}}': with a redis+cluster:// redis_url that would make it a hash tag and put every key on one shard"),
                    ));
                }
                StoreConfig::Redis {
                    ca_pem: read_redis_ca(src, &scheme)?,
                    sentinel: read_sentinel_trust(src, scheme.ends_with("+sentinel"))?,
                    url,
                    key_prefix,
                }
            }
            (None, Some(sentinels)) => {
                let url = RedisTarget::sentinel_url(&sentinels, &src.string_or("redis_sentinel_master"))
                    .map_err(|reason| src.invalid("redis_sentinels", reason))?;
                StoreConfig::Redis {
                    ca_pem: read_redis_ca(src, "redis+sentinel")?,
                    sentinel: read_sentinel_trust(src, true)?,
                    url,
                    key_prefix: src.string_or("redis_key_prefix"),
                }
            }
            (Some(_), Some(_)) => {
                return Err(src.invalid(
                    "redis_sentinels",
                    "set redis_url or redis_sentinels, not both (redis+sentinel:// in redis_url also takes a password and a database)".into(),
                ));
            }
        };
        if store == StoreConfig::Memory && src.string("redis_ca_file").is_some() {
            return Err(src.invalid("redis_ca_file", "needs a rediss:// redis_url".into()));
        }

        let key_ring = KeyRingConfig {
            mode: match src.string("key_ring").as_deref() {
                None if matches!(store, StoreConfig::Redis { .. }) => KeyRingMode::Redis,
                None => KeyRingMode::Local,
                Some("local") => KeyRingMode::Local,
                Some("redis") if matches!(store, StoreConfig::Redis { .. }) => KeyRingMode::Redis,
                Some("redis") => {
                    return Err(src.invalid("key_ring", "\"redis\" needs redis_url".into()));
                }
                Some(other) => {
                    return Err(src.invalid("key_ring", format!("expected \"redis\" or \"local\", got {other:?}")));
                }
            },
            rotation: src.duration_at_most("key_rotation", YEAR)?,
            rotation_seals: src.parse("key_rotation_seals", |s| match s.parse::<u64>() {
                Ok(n) if (1..=1u64 << 32).contains(&n) => Ok(n),
                _ => Err(format!("expected a number of seals from 1 to 4294967296, got {s:?}")),
            })?,
            key_encryption_key: read_kek(src)?,
            plaintext_insecure: src.parse("key_ring_plaintext_insecure", parse_bool)?,
            refresh: src.duration_at_most("key_ring_refresh", HOUR)?,
        };
        if key_ring.mode == KeyRingMode::Redis && key_ring.key_encryption_key.is_none() && !key_ring.plaintext_insecure
        {
            return Err(src.missing(
                "key_encryption_key",
                "the shared key ring in Redis must be wrapped: set it (openssl rand -base64 32) or key_encryption_key_file, or key_ring_plaintext_insecure = true",
            ));
        }

        let idle_timeout = src.duration_at_most("session.idle_timeout", 30 * DAY)?;
        let session = SessionConfig {
            cookie_name: src.parse("session.cookie_name", |s| {
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    Ok(s.to_owned())
                } else {
                    Err("use letters, digits, '-' and '_' only".to_owned())
                }
            })?,
            idle_timeout,
            touch_interval: match src.string("session.touch_interval") {
                None => crate::session::default_touch_interval(idle_timeout),
                Some(_) => src.duration_at_most("session.touch_interval", HOUR)?,
            },
            absolute_lifetime: src.duration_at_most("session.absolute_lifetime", YEAR)?,
            same_site: src.parse("session.same_site", |s| match s {
                "lax" => Ok(SameSite::Lax),
                "strict" => Ok(SameSite::Strict),
                _ => Err(format!("expected \"lax\" or \"strict\", got {s:?}")),
            })?,
            login_timeout: src.duration_at_most("session.login_timeout", HOUR)?,
            cache_max_age: match src.string_or("session.cache_max_age").as_str() {
                "off" | "0" => None,
                _ => Some(src.duration_at_most("session.cache_max_age", HOUR)?),
            },
            cache_capacity: src.parse("session.cache_capacity", |s| match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("expected a number of sessions greater than zero, got {s:?}")),
            })?,
        };
        if session.cache_max_age.is_some_and(|age| age >= session.idle_timeout) {
            return Err(src.invalid("session.cache_max_age", "must be shorter than session.idle_timeout".into()));
        }
        // A session read from Redis has at least idle_timeout - touch_interval left, and a node
        // serves it from memory for up to cache_max_age: the two together must stay below the
        // idle timeout, or a node could serve a session Redis has already let go.
        if session.touch_interval + session.cache_max_age.unwrap_or_default() >= session.idle_timeout {
            // Named: the key that was set (the touch interval's default follows the idle timeout).
            return Err(match src.string("session.touch_interval") {
                Some(_) => src.invalid(
                    "session.touch_interval",
                    "with session.cache_max_age, must be shorter than session.idle_timeout".into(),
                ),
                None => src.invalid(
                    "session.cache_max_age",
                    "with session.touch_interval (a tenth of idle_timeout), must be shorter than session.idle_timeout"
                        .into(),
                ),
            });
        }
        if session.absolute_lifetime < session.idle_timeout {
            return Err(
                src.invalid("session.absolute_lifetime", "must not be shorter than session.idle_timeout".into())
            );
        }

        let oidc = read_oidc(src, &public_url)?;

        let account_prefix = src.parse("account_prefix", |s| {
            let trimmed = s.trim_end_matches('/');
            if trimmed.starts_with('/') && !trimmed.contains("//") && trimmed.len() > 1 {
                Ok(trimmed.to_owned())
            } else {
                Err("must be a path such as /account".to_owned())
            }
        })?;

        let routes = routes::parse(&src.routes, &account_prefix)?;
        let csrf = CsrfConfig {
            enabled: src.parse("csrf.enabled", parse_bool)?,
            header: src.parse("csrf.header", |s| {
                axum::http::HeaderName::try_from(s).map_err(|_| "not a valid header name".to_owned())
            })?,
            value: src.string_or("csrf.value"),
        };
        let refresh = RefreshConfig {
            skew: src.duration_at_most("refresh.skew", HOUR)?,
            lock_lease: src.duration_at_most("refresh.lock_lease", 5 * MINUTE)?,
        };

        let session_cookie = if public_url.scheme() == "https" {
            format!("__Host-{}", session.cookie_name)
        } else {
            session.cookie_name.clone()
        };
        let cookie_names = (session_cookie.clone(), format!("{session_cookie}-login"));
        let forwarded_host = match public_url.port() {
            Some(port) => format!("{}:{port}", public_url.host_str().unwrap_or_default()),
            None => public_url.host_str().unwrap_or_default().to_owned(),
        };
        let forwarded = (
            axum::http::HeaderValue::from_str(public_url.scheme()).expect("a URL scheme is a header value"),
            axum::http::HeaderValue::from_str(&forwarded_host).expect("a URL host is a header value"),
        );

        let ops_token = match src.string("ops_token") {
            None => None,
            Some(token) if token.len() >= 16 && token.bytes().all(|b| b.is_ascii_graphic()) => Some(token),
            Some(_) => {
                return Err(
                    src.invalid("ops_token", "use at least 16 printable characters (openssl rand -hex 16)".into())
                );
            }
        };

        let node_name = match src.string("node_name") {
            None => None,
            Some(name)
                if name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                Some(name)
            }
            Some(_) => return Err(src.invalid("node_name", "use up to 64 letters, digits, '-', '_' and '.'".into())),
        };
        let trusted_proxies = src.parse("trusted_proxies", parse_networks)?;

        let metrics_listen = match src.string("metrics_listen") {
            None => None,
            Some(_) => Some(src.parse("metrics_listen", |s| s.parse::<SocketAddr>().map_err(|e| e.to_string()))?),
        };

        Ok(Config {
            metrics_listen,
            node_name,
            ops_token,
            trusted_proxies,
            cookie_names,
            forwarded,
            routes,
            upstream_timeout: src.duration_at_most("upstream_timeout", HOUR)?,
            csrf,
            refresh,
            listen,
            public_url,
            store,
            key_ring,
            session,
            oidc,
            account_prefix,
            log_format: src.parse("log_format", |s| match s {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err(format!("expected \"text\" or \"json\", got {s:?}")),
            })?,
            log_filter: src.string_or("log_level"),
            shutdown_timeout: src.duration_at_most("shutdown_timeout", HOUR)?,
            websocket_session_check: src.duration_at_most("websocket.session_check", HOUR)?,
            websocket_max_message_size: src.parse("websocket.max_message_size", |s| match parse_size(s)? {
                n if n <= 64 << 20 => Ok(n),
                _ => Err(format!("expected a size of at most 64MiB, got {s:?}")),
            })?,
            websocket_ping_interval: match src.duration_at_most("websocket.ping_interval", HOUR)? {
                d if d < Duration::from_secs(1) => {
                    return Err(src.invalid("websocket.ping_interval", "must be at least 1s".into()));
                }
                d => d,
            },
            server: ServerLimits {
                header_read_timeout: src.duration_at_most("server.header_read_timeout", SERVER_TIMEOUT_MAX)?,
                body_timeout: src.duration_at_most("server.body_timeout", SERVER_TIMEOUT_MAX)?,
                write_timeout: src.duration_at_most("server.write_timeout", SERVER_TIMEOUT_MAX)?,
                max_connections: src.parse("server.max_connections", |s| match s.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!("expected a number of connections greater than zero, got {s:?}")),
                })?,
                max_body_size: src.parse("server.max_body_size", parse_size)?,
            },
            redis_timeout: src.duration_at_most("redis_timeout", MINUTE)?,
            redis_wait_replicas: src.parse("redis_wait_replicas", |s| match s.parse::<u32>() {
                Ok(n) if n <= 16 => Ok(n),
                _ => Err(format!("expected a number of replicas from 0 to 16, got {s:?}")),
            })?,
            worker_threads: match src.string("worker_threads") {
                None => None,
                Some(_) => Some(src.parse("worker_threads", |s| match s.parse::<usize>() {
                    Ok(n) if (1..=512).contains(&n) => Ok(n),
                    _ => Err(format!("expected a number of threads from 1 to 512, got {s:?}")),
                })?),
            },
        })
    }

    /// True when browsers reach the gateway over https: cookies get `Secure` and `__Host-`.
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The session cookie's name as sent to browsers (`__Host-` prefixed over https).
    pub fn cookie_name(&self) -> &str {
        &self.cookie_names.0
    }

    /// The name of the short-lived cookie that binds a login in progress to its browser.
    pub fn login_cookie_name(&self) -> &str {
        &self.cookie_names.1
    }

    /// `public_url` + `path`, for redirect URIs and the like.
    pub fn public_url_for(&self, path: &str) -> Url {
        join_path(&self.public_url, path)
    }

    /// The OIDC `redirect_uri`: public URL + account prefix + `/login/callback`.
    pub fn redirect_uri(&self) -> Url {
        self.public_url_for(&format!("{}/login/callback", self.account_prefix))
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

/// IP addresses and CIDR blocks, separated by commas or white space (a TOML array arrives as
/// its items joined by spaces).
fn parse_networks(s: &str) -> Result<Vec<ipnet::IpNet>, String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("{item:?} is not an IP address or CIDR block (e.g. 10.0.0.0/8)"))
        })
        .collect()
}

impl Config {
    /// `X-Forwarded-Proto` and `X-Forwarded-Host` as upstreams get them.
    pub fn forwarded_proto_and_host(&self) -> (&axum::http::HeaderValue, &axum::http::HeaderValue) {
        (&self.forwarded.0, &self.forwarded.1)
    }

    /// Whether a peer's forwarding headers are believed (it is a configured trusted proxy).
    pub fn is_trusted_proxy(&self, peer: std::net::IpAddr) -> bool {
        let peer = match peer {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// A size in bytes: a number, optionally followed by KiB, MiB or GiB (or K, M, G).
fn parse_size(s: &str) -> Result<usize, String> {
    let text = s.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let unit: usize = match text[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => return Err(format!("expected a size such as 1048576 or 10MiB, got {s:?}")),
    };
    match text[..digits].parse::<usize>().ok().and_then(|n| n.checked_mul(unit)) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a size greater than zero such as 10MiB, got {s:?}")),
    }
}

fn join_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an absolute http:// or https:// URL".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    Ok(url)
}

/// What the sentinels are trusted with: `redis_sentinel_username`, `redis_sentinel_password`
/// and `redis_sentinel_masters`, each refused without Sentinel (it would protect nothing).
fn read_sentinel_trust(src: &Source, sentinel: bool) -> Result<SentinelTrust, ConfigError> {
    let trust = SentinelTrust {
        username: src.string("redis_sentinel_username"),
        password: src.string("redis_sentinel_password"),
        masters: match src.string("redis_sentinel_masters") {
            None => Vec::new(),
            Some(list) => {
                parse_master_addresses(&list).map_err(|reason| src.invalid("redis_sentinel_masters", reason))?
            }
        },
    };
    if !sentinel {
        for (key, set) in [
            ("redis_sentinel_username", trust.username.is_some()),
            ("redis_sentinel_password", trust.password.is_some()),
            ("redis_sentinel_masters", !trust.masters.is_empty()),
        ] {
            if set {
                return Err(src
                    .invalid(key, "needs Sentinel (redis+sentinel://, rediss+sentinel:// or redis_sentinels)".into()));
            }
        }
    }
    if trust.username.is_some() && trust.password.is_none() {
        return Err(src.invalid("redis_sentinel_password", "needed with redis_sentinel_username".into()));
    }
    Ok(trust)
}

/// The CA file for `rediss://` or `rediss+sentinel://`, read and checked to hold at least one
/// PEM certificate.
fn read_redis_ca(src: &Source, scheme: &str) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = src.string("redis_ca_file") else { return Ok(None) };
    if !matches!(scheme, "rediss" | "rediss+sentinel" | "rediss+cluster") {
        return Err(
            src.invalid("redis_ca_file", "needs a rediss://, rediss+sentinel:// or rediss+cluster:// redis_url".into())
        );
    }
    let pem = std::fs::read(&path).map_err(|e| src.invalid("redis_ca_file", format!("cannot read {path}: {e}")))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(src.invalid("redis_ca_file", format!("{path} holds no PEM certificate")));
    }
    Ok(Some(pem))
}

fn read_kek(src: &Source) -> Result<Option<[u8; 32]>, ConfigError> {
    let inline = src.string("key_encryption_key").map(|v| ("key_encryption_key", v));
    let from_file = match src.string("key_encryption_key_file") {
        None => None,
        Some(path) => Some((
            "key_encryption_key_file",
            std::fs::read_to_string(&path)
                .map_err(|e| src.invalid("key_encryption_key_file", format!("cannot read {path}: {e}")))?,
        )),
    };
    let (key, text) = match (inline, from_file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(
                src.invalid("key_encryption_key", "set either this or key_encryption_key_file, not both".into())
            );
        }
        (Some(v), None) | (None, Some(v)) => v,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| src.invalid(key, "must be 32 bytes in standard base64 (openssl rand -base64 32)".into()))?;
    let kek: [u8; 32] =
        bytes.try_into().map_err(|v: Vec<u8>| src.invalid(key, format!("must be 32 bytes, got {}", v.len())))?;
    Ok(Some(kek))
}

fn read_oidc(src: &Source, public_url: &Url) -> Result<OidcConfig, ConfigError> {
    let provider = match src.string_or("oidc.provider").as_str() {
        "generic" => ProviderKind::Generic,
        "auth0" => ProviderKind::Auth0 {
            domain: src
                .require("oidc.domain", "the Auth0 tenant domain, e.g. example.eu.auth0.com", |s| Ok(s.to_owned()))?,
            audience: src.string("oidc.audience"),
        },
        "entra" => ProviderKind::Entra {
            tenant_id: src.require("oidc.tenant_id", "the Entra ID directory (tenant) id", |s| Ok(s.to_owned()))?,
        },
        other => {
            return Err(src.invalid("oidc.provider", format!("expected generic, auth0 or entra, got {other:?}")));
        }
    };
    let authority = match (&provider, src.string("oidc.authority")) {
        (_, Some(explicit)) => parse_http_url(&explicit).map_err(|e| src.invalid("oidc.authority", e))?,
        (ProviderKind::Auth0 { domain, .. }, None) => {
            parse_http_url(&format!("https://{domain}/")).map_err(|e| src.invalid("oidc.domain", e))?
        }
        (ProviderKind::Entra { tenant_id }, None) => {
            parse_http_url(&format!("https://login.microsoftonline.com/{tenant_id}/v2.0"))
                .map_err(|e| src.invalid("oidc.tenant_id", e))?
        }
        (ProviderKind::Generic, None) => {
            return Err(src.missing("oidc.authority", "the issuer URL, e.g. https://login.example.com"));
        }
    };
    let scopes: Vec<String> = src.string_or("oidc.scopes").split_whitespace().map(str::to_owned).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(src.invalid("oidc.scopes", "must include openid".into()));
    }
    Ok(OidcConfig {
        provider,
        authority,
        client_id: src.require("oidc.client_id", "the client id registered at the issuer", |s| Ok(s.to_owned()))?,
        client_secret: src
            .require("oidc.client_secret", "the client secret registered at the issuer", |s| Ok(s.to_owned()))?,
        scopes,
        post_logout_redirect_uri: match src.string("oidc.post_logout_redirect_uri") {
            Some(v) => parse_http_url(&v).map_err(|e| src.invalid("oidc.post_logout_redirect_uri", e))?,
            None => join_path(public_url, "/"),
        },
        clock_skew: src.duration_at_most("oidc.clock_skew", HOUR)?,
        http_timeout: src.duration_at_most("oidc.http_timeout", 5 * MINUTE)?,
        jwks_refresh: src.duration_at_most("oidc.jwks_refresh", 7 * DAY)?,
    })
}

#[cfg(test)]
mod tests;
