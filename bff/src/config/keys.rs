//! The list of every configuration key: its TOML path, its environment variable, its default and
//! what it is for. The reader in `source.rs` and `bff --help` both come from this one table.

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Dotted path in the TOML file, e.g. `session.idle_timeout`.
    pub path: &'static str,
    /// Environment variable that overrides it.
    pub env: &'static str,
    /// Default value, when the key is optional.
    pub default: Option<&'static str>,
    pub help: &'static str,
}

const fn key(path: &'static str, env: &'static str, default: Option<&'static str>, help: &'static str) -> Key {
    Key { path, env, default, help }
}

/// Every key the gateway reads.
pub const KEYS: &[Key] = &[
    key("listen", "BFF_LISTEN", Some("0.0.0.0:8080"), "address to bind"),
    key(
        "public_url",
        "BFF_PUBLIC_URL",
        None,
        "required: URL browsers use for this gateway (behind the load balancer); redirect_uri = this + /account/login/callback; https gives Secure and __Host- cookies",
    ),
    key(
        "redis_url",
        "BFF_REDIS_URL",
        None,
        "redis://host:port[/db] (rediss:// for TLS, rustls), or redis+sentinel://[:password@]host[:port],host[:port],…/master-name[/db] (sentinel port 26379 by default; the password is the master's; rediss+sentinel:// for TLS to sentinels and master), or redis+cluster://[user:password@]host:port,host:port,… for a Redis Cluster (any seed nodes; rediss+cluster:// for TLS; database 0 only); unset = in-memory store, one node only",
    ),
    key(
        "redis_sentinels",
        "BFF_REDIS_SENTINELS",
        None,
        "host:port,host:port… of Redis Sentinels (instead of redis_url; both set: exit 64): the master they name is followed through failovers",
    ),
    key(
        "redis_sentinel_master",
        "BFF_REDIS_SENTINEL_MASTER",
        Some("mymaster"),
        "with redis_sentinels: the master name the sentinels watch",
    ),
    key(
        "redis_sentinel_username",
        "BFF_REDIS_SENTINEL_USERNAME",
        None,
        "with Sentinel: the user the gateway logs in to the sentinels as (their ACL); needs redis_sentinel_password",
    ),
    key(
        "redis_sentinel_password",
        "BFF_REDIS_SENTINEL_PASSWORD",
        None,
        "with Sentinel: the sentinels' own password (their requirepass, or the ACL user's); the master's password is in the URL",
    ),
    key(
        "redis_sentinel_masters",
        "BFF_REDIS_SENTINEL_MASTERS",
        None,
        "with Sentinel: host:port,host:port… a master may have; a master a sentinel names outside the list is refused before anything is sent to it; unset = any",
    ),
    key(
        "redis_wait_replicas",
        "BFF_REDIS_WAIT_REPLICAS",
        Some("0"),
        "replicas that must confirm a session write or delete (Redis WAIT, up to redis_timeout) before login, a token refresh or a logout answers; fewer confirmations are logged and the write stands; 0 = none",
    ),
    key(
        "redis_key_prefix",
        "BFF_REDIS_KEY_PREFIX",
        Some("bff"),
        "prefix of every Redis key (with redis+cluster://, no '{' or '}': it would be a hash tag)",
    ),
    key(
        "redis_ca_file",
        "BFF_REDIS_CA_FILE",
        None,
        "rediss://, rediss+sentinel:// and rediss+cluster:// only: PEM file of the CA certificate(s) that sign the TLS certificates of Redis (and of the sentinels, of every cluster node); unset = the system's roots. A certificate that does not verify stops the node at start-up (exit 64 naming this key)",
    ),
    key("redis_timeout", "BFF_REDIS_TIMEOUT", Some("2s"), "bound on one Redis command"),
    key(
        "key_ring",
        "BFF_KEY_RING",
        None,
        "redis (shared; the default with Redis) or local (this node only, does not scale out; the default without Redis)",
    ),
    key("key_rotation", "BFF_KEY_ROTATION", Some("7d"), "age at which a new sealing key becomes current"),
    key(
        "key_rotation_seals",
        "BFF_KEY_ROTATION_SEALS",
        Some("1000000000"),
        "seals (sessions, login cookies) after which a new sealing key becomes current, counted across nodes; AES-GCM with random nonces stays far below its 2^32 bound",
    ),
    key("key_ring_refresh", "BFF_KEY_RING_REFRESH", Some("60s"), "how often a node re-reads the shared key ring"),
    key(
        "key_encryption_key",
        "BFF_KEY_ENCRYPTION_KEY",
        None,
        "base64 of 32 bytes that wrap the key ring in Redis (required with key_ring = redis: exit 64 without it, unless key_ring_plaintext_insecure)",
    ),
    key("key_encryption_key_file", "BFF_KEY_ENCRYPTION_KEY_FILE", None, "file holding key_encryption_key"),
    key(
        "key_ring_plaintext_insecure",
        "BFF_KEY_RING_PLAINTEXT_INSECURE",
        Some("false"),
        "true: let key_ring = redis run without a key-encryption key (whoever reads Redis opens every session; warned at start-up)",
    ),
    key(
        "trusted_proxies",
        "BFF_TRUSTED_PROXIES",
        None,
        "IPs or CIDR blocks (comma-separated, or a TOML array) of the proxies in front of the gateway: from them Forwarded and X-Real-IP pass and X-Forwarded-For is appended to; from anyone else all three (and every X-Forwarded-*) are dropped. X-Forwarded-Proto/-Host always come from public_url",
    ),
    key("account_prefix", "BFF_ACCOUNT_PREFIX", Some("/account"), "path prefix of login, me, end-session"),
    key(
        "node_name",
        "BFF_NODE_NAME",
        None,
        "this node's name, sent in an x-bff-node response header (so a verifier behind any load balancer sees which node answered) and kept in the sessions it creates (created_on in GET /ops/sessions); unset = neither",
    ),
    key(
        "ops_token",
        "BFF_OPS_TOKEN",
        None,
        "bearer token (16+ characters) for the operator endpoints on the public listener: GET /ops/fingerprint (settings every node must share, secrets as keyed digests), the session API (GET and DELETE /ops/sessions: list and end a user's sessions on every node) and /metrics; unset = all 404",
    ),
    key(
        "metrics_listen",
        "BFF_METRICS_LISTEN",
        None,
        "address of an operator-only listener for /metrics (e.g. 127.0.0.1:9464), served there without a token; when set, the public listener answers 404 for /metrics",
    ),
    key(
        "log_format",
        "BFF_LOG_FORMAT",
        Some("text"),
        "text or json; every line has the request id; never tokens, cookies or claims; colours only on a terminal and never with NO_COLOR",
    ),
    key("log_level", "BFF_LOG_LEVEL", Some("info"), "tracing filter, e.g. info or bff=debug"),
    key(
        "server.header_read_timeout",
        "BFF_SERVER_HEADER_READ_TIMEOUT",
        Some("10s"),
        "time a client has to send a request's headers; also how long an idle keep-alive connection stays open (slow-loris defence)",
    ),
    key(
        "server.body_timeout",
        "BFF_SERVER_BODY_TIMEOUT",
        Some("10s"),
        "time a client has to send a whole request body (at most 1h), on the public and the metrics listener; a slower body ends the request and closes the connection, so a trickled body cannot keep a max_connections slot",
    ),
    key(
        "server.write_timeout",
        "BFF_SERVER_WRITE_TIMEOUT",
        Some("30s"),
        "time a response write may wait for a client that does not read (at most 1h); then the connection is closed. A slow stream that is read keeps going",
    ),
    key(
        "server.max_connections",
        "BFF_SERVER_MAX_CONNECTIONS",
        Some("10000"),
        "open client connections per node at most; more wait in the listen backlog",
    ),
    key(
        "server.max_body_size",
        "BFF_SERVER_MAX_BODY_SIZE",
        Some("10MiB"),
        "largest request body (bytes, or with KiB/MiB/GiB); larger is 413. A proxied request's time is bounded by upstream_timeout or the route's timeout (504)",
    ),
    key("shutdown_timeout", "BFF_SHUTDOWN_TIMEOUT", Some("10s"), "bound on finishing in-flight requests at SIGTERM"),
    key(
        "websocket.session_check",
        "BFF_WEBSOCKET_SESSION_CHECK",
        Some("5s"),
        "how often an open WebSocket checks that its session still exists (a logout on any node closes it at once through Redis; this bounds idle and absolute expiry, and the in-memory store)",
    ),
    key(
        "websocket.max_message_size",
        "BFF_WEBSOCKET_MAX_MESSAGE_SIZE",
        Some("1MiB"),
        "largest WebSocket message either way (bytes, or with KiB/MiB; at most 64MiB); a larger one ends the socket",
    ),
    key(
        "websocket.ping_interval",
        "BFF_WEBSOCKET_PING_INTERVAL",
        Some("30s"),
        "how often the gateway pings a browser's WebSocket; one that sends nothing (no pong, no message) for two intervals is closed, so a dead client, or one trickling a message, does not keep its socket",
    ),
    key(
        "session.cookie_name",
        "BFF_SESSION_COOKIE_NAME",
        Some("bff-session"),
        "session cookie name (__Host- added over https)",
    ),
    key("session.idle_timeout", "BFF_SESSION_IDLE_TIMEOUT", Some("20m"), "sliding idle timeout"),
    key(
        "session.touch_interval",
        "BFF_SESSION_TOUCH_INTERVAL",
        None,
        "a read pushes a session's expiry back to idle_timeout only when less than idle_timeout minus this remains: a session is written at most once per touch_interval, and one used at least every idle_timeout - touch_interval (- cache_max_age) is never lost; unset = a tenth of idle_timeout, at most 1m",
    ),
    key(
        "session.absolute_lifetime",
        "BFF_SESSION_ABSOLUTE_LIFETIME",
        Some("12h"),
        "lifetime of a session however active",
    ),
    key(
        "session.cache_max_age",
        "BFF_SESSION_CACHE_MAX_AGE",
        Some("5s"),
        "Redis store: how long a node serves a session from memory before reading Redis again; ends and refreshes reach every node at once (pub/sub); off to read Redis on every request",
    ),
    key(
        "session.cache_capacity",
        "BFF_SESSION_CACHE_CAPACITY",
        Some("10000"),
        "sessions each node keeps in memory at most",
    ),
    key("session.same_site", "BFF_SESSION_SAME_SITE", Some("lax"), "lax or strict"),
    key("session.login_timeout", "BFF_SESSION_LOGIN_TIMEOUT", Some("10m"), "time allowed between login and callback"),
    key(
        "worker_threads",
        "BFF_WORKER_THREADS",
        None,
        "threads serving requests (default: one per CPU core); each has its own runtime and upstream connections, and connections are handed to them in turn",
    ),
    key(
        "routes",
        "BFF_ROUTES",
        None,
        "[[routes]] tables: path, upstreams, auth, rewrite|strip_prefix, balance, timeout (env: an inline TOML array)",
    ),
    key(
        "upstream_timeout",
        "BFF_UPSTREAM_TIMEOUT",
        Some("30s"),
        "routes: time allowed for an upstream's response headers (then 504)",
    ),
    key("csrf.enabled", "BFF_CSRF_ENABLED", Some("true"), "routes with a session require the CSRF header"),
    key("csrf.header", "BFF_CSRF_HEADER", Some("X-CSRF"), "name of the CSRF header"),
    key("csrf.value", "BFF_CSRF_VALUE", Some("1"), "value the CSRF header must have"),
    key("refresh.skew", "BFF_REFRESH_SKEW", Some("30s"), "refresh the access token when it expires within this"),
    key(
        "refresh.lock_lease",
        "BFF_REFRESH_LOCK_LEASE",
        Some("15s"),
        "lease of the cross-node refresh lock (renewed while a refresh runs)",
    ),
    key(
        "oidc.provider",
        "BFF_OIDC_PROVIDER",
        Some("generic"),
        "generic, auth0 (from oidc.domain and oidc.audience; Auth0's logout URL) or entra (from oidc.tenant_id)",
    ),
    key(
        "oidc.authority",
        "BFF_OIDC_AUTHORITY",
        None,
        "issuer URL (discovery at /.well-known/openid-configuration); required for generic",
    ),
    key("oidc.client_id", "BFF_OIDC_CLIENT_ID", None, "required: client id"),
    key("oidc.client_secret", "BFF_OIDC_CLIENT_SECRET", None, "required: client secret (client_secret_basic)"),
    key("oidc.scopes", "BFF_OIDC_SCOPES", Some("openid profile email offline_access"), "scopes requested at login"),
    key("oidc.domain", "BFF_OIDC_DOMAIN", None, "auth0: tenant domain (gives the authority)"),
    key("oidc.audience", "BFF_OIDC_AUDIENCE", None, "auth0: API audience requested at login"),
    key("oidc.tenant_id", "BFF_OIDC_TENANT_ID", None, "entra: directory (tenant) id (gives the authority)"),
    key(
        "oidc.post_logout_redirect_uri",
        "BFF_OIDC_POST_LOGOUT_REDIRECT_URI",
        None,
        "where the issuer returns after logout (default: public_url /)",
    ),
    key("oidc.clock_skew", "BFF_OIDC_CLOCK_SKEW", Some("60s"), "leeway on token times"),
    key("oidc.http_timeout", "BFF_OIDC_HTTP_TIMEOUT", Some("10s"), "bound on each call to the issuer"),
    key(
        "oidc.jwks_refresh",
        "BFF_OIDC_JWKS_REFRESH",
        Some("1h"),
        "how often the issuer's signing keys are fetched again without Cache-Control max-age (a max-age is honoured between min(1m, this) and 24h), so a key the issuer withdraws stops being trusted without a restart; a token with an unknown kid also makes one fetch (at most one a second, shared by concurrent callers)",
    ),
];

/// Looks a key up by its dotted path.
pub fn find(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// The manual's configuration reference (`docs/src/gateway/configuration-keys.md`, written by
/// `bff --config-reference`): the same rows as [`help_table`], as a Markdown table.
pub fn markdown_reference() -> String {
    let mut out = String::from(
        "<!-- Generated by `bff --config-reference` from bff/src/config/keys.rs (`just docs` rewrites it): do not edit. -->\n\n\
         | TOML key | environment | default | meaning |\n|---|---|---|---|\n",
    );
    for k in KEYS {
        let default = k.default.map(|d| format!("`{d}`")).unwrap_or_else(|| "unset".to_owned());
        let help = k.help.replace('|', "\\|");
        out.push_str(&format!("| `{}` | `{}` | {} | {} |\n", k.path, k.env, default, help));
    }
    out
}

/// The table printed at the end of `bff --help`.
pub fn help_table() -> String {
    let mut out = String::from("Configuration (TOML key / environment variable, default):\n");
    for k in KEYS {
        let default = k.default.map(|d| format!(" [default: {d}]")).unwrap_or_default();
        out.push_str(&format!("  {:<32} {:<34} {}{}\n", k.path, k.env, k.help, default));
    }
    out
}
