//! [`AppState`]: what every request handler shares, built once from the [`Config`].

use std::sync::Arc;

use crate::compat::ClusterFormats;
use crate::config::{Config, KeyRingMode, StoreConfig};
use crate::keyring::KeyRing;
use crate::oidc::Oidc;
use crate::redis_link::RedisLink;
use crate::session::{MemoryStore, NodeCache, OpenSockets, RedisStore, Refresher, SessionStore, Sessions};

/// The HTTP client for upstreams: keeps connections alive, streams bodies; an upstream named
/// `*.localhost` is reached on loopback.
pub type UpstreamClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector<crate::localhost::LocalhostAwareGai>,
    axum::body::Body,
>;

/// The most an upstream connection reads ahead (hyper's `max_buf_size`, about 400 KiB by
/// default): the largest chunk of an upstream's response, which a client that does not read
/// keeps in the node's memory until it is cut off, and the largest response head.
pub const UPSTREAM_BUFFER: usize = 64 << 10;

/// The receive buffer of an upstream connection (`SO_RCVBUF`; the kernel books twice this).
/// Left to the kernel's tuning it grew to about 460 KiB while the node read a large response,
/// and stayed full of it for a client that stopped reading: 5 000 such clients held the
/// machine's whole TCP memory (`net.ipv4.tcp_mem`), and every other client's sends waited for
/// it. 64 KiB of window carries more than 50 MB/s from an upstream 1 ms away; an upstream
/// much farther away gets less than the kernel's tuning would give it.
pub const UPSTREAM_RECEIVE_BUFFER: usize = 64 << 10;

thread_local! {
    /// One upstream connection pool per serving thread: a request's upstream connection is
    /// driven by the thread that serves the request, so no other thread has to be woken.
    static UPSTREAM: UpstreamClient = {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(
            crate::localhost::LocalhostAwareGai::default(),
        );
        connector.set_nodelay(true);
        connector.set_recv_buffer_size(Some(UPSTREAM_RECEIVE_BUFFER));
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            // The idle timeout needs a timer: without one, idle connections are never closed
            // and the pool keeps every connection a burst opened (seen as hundreds of open
            // descriptors after a node was paused).
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .http1_max_buf_size(UPSTREAM_BUFFER)
            .build(connector)
    };
}

/// Sends `request` upstream with this thread's connection pool.
pub fn send_upstream(request: axum::http::Request<axum::body::Body>) -> hyper_util::client::legacy::ResponseFuture {
    UPSTREAM.with(|client| client.request(request))
}

/// Shared by every request: cloning it (axum does, per request) is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Arc<Config>,
    /// Sealed sessions and pending logins.
    pub sessions: Arc<Sessions>,
    pub oidc: Arc<Oidc>,
    /// The shared Redis connection, when Redis is configured (background tasks connect it).
    pub redis: Option<Arc<RedisLink>>,
    /// One access-token refresh per session at a time, across nodes.
    pub refresher: Arc<Refresher>,
    /// Round-robin position of each route.
    pub route_counters: Arc<Vec<std::sync::atomic::AtomicUsize>>,
    /// Each route's metrics label (its path), shared by its responses.
    pub route_labels: Arc<Vec<Arc<str>>>,
    /// The WebSockets open on this node, by session: closed when their session ends or the node
    /// stops.
    pub sockets: Arc<OpenSockets>,
    /// The record formats announced in Redis (with Redis): checked at start and again in the
    /// background; a node that finds a format it does not read is not ready.
    pub formats: Option<Arc<ClusterFormats>>,
}

/// The state could not be built (a Redis URL the client library refuses).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("redis_url: {0}")]
    RedisUrl(#[from] redis::RedisError),
}

/// The secret that keys the back-channel logout indexes: derived from the key-encryption key
/// when there is one, else from the client secret. Every node of a deployment has both, and
/// neither is in Redis.
fn index_secret(config: &Config) -> Vec<u8> {
    let mut material = b"bff back-channel index\0".to_vec();
    match &config.key_ring.key_encryption_key {
        Some(kek) => material.extend_from_slice(kek),
        None => material.extend_from_slice(config.oidc.client_secret.as_bytes()),
    }
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material).as_ref().to_vec()
}

impl AppState {
    /// Builds the state without any I/O; [`AppState::start_background_tasks`] connects things.
    pub fn new(config: Config) -> Result<Self, StateError> {
        let redis = match &config.store {
            StoreConfig::Redis { url, ca_pem, sentinel, .. } => {
                Some(RedisLink::trusting(url, config.redis_timeout, ca_pem.as_deref(), sentinel)?)
            }
            StoreConfig::Memory => None,
        };
        let store: Arc<dyn SessionStore> = match (&config.store, &redis) {
            (StoreConfig::Redis { key_prefix, .. }, Some(link)) => {
                Arc::new(RedisStore::new(link.clone(), key_prefix).waiting_for(config.redis_wait_replicas))
            }
            _ => Arc::new(MemoryStore::new()),
        };
        let ring = match (config.key_ring.mode, &config.store, &redis) {
            (KeyRingMode::Redis, StoreConfig::Redis { key_prefix, .. }, Some(link)) => KeyRing::shared(
                link.clone(),
                key_prefix,
                config.key_ring.rotation,
                config.key_ring.rotation.saturating_add(config.session.absolute_lifetime),
                config.key_ring.rotation_seals,
                config.key_ring.key_encryption_key,
            ),
            _ => KeyRing::local(config.key_ring.rotation_seals),
        };
        let sessions = Sessions::new(
            store,
            ring,
            config.session.idle_timeout,
            config.session.absolute_lifetime,
            config.session.login_timeout,
            &index_secret(&config),
        )
        .touching_every(config.session.touch_interval);
        let sessions = match (&config.store, &redis, config.session.cache_max_age) {
            (StoreConfig::Redis { key_prefix, .. }, Some(link), Some(max_age)) => {
                sessions.with_cache(NodeCache::new(link.clone(), key_prefix, max_age, config.session.cache_memory))
            }
            _ => sessions,
        };
        let oidc = Oidc::new(config.oidc.clone(), config.redirect_uri());
        let sessions = Arc::new(sessions);
        let refresher =
            Arc::new(Refresher::new(sessions.clone(), oidc.clone(), config.refresh.skew, config.refresh.lock_lease));
        let route_counters = Arc::new(config.routes.iter().map(|_| Default::default()).collect());
        let route_labels = Arc::new(config.routes.iter().map(|route| Arc::from(route.path.as_str())).collect());
        let sockets = OpenSockets::new();
        let formats = match (&config.store, &redis) {
            // Records of a format live as long as a session can, after its last writer stopped.
            (StoreConfig::Redis { key_prefix, .. }, Some(link)) => Some(ClusterFormats::new(
                link.clone(),
                key_prefix,
                config.session.absolute_lifetime.saturating_add(config.key_ring.refresh),
            )),
            _ => None,
        };
        Ok(AppState(Arc::new(Shared {
            config: Arc::new(config),
            sessions,
            oidc,
            redis,
            refresher,
            route_counters,
            route_labels,
            sockets,
            formats,
        })))
    }

    /// Connects Redis, loads the key ring and the issuer's metadata, each retried until it works.
    pub fn start_background_tasks(&self) {
        if let Some(link) = &self.redis {
            link.connect_in_background();
        }
        if let Some(cache) = self.sessions.cache() {
            let sockets = Arc::downgrade(&self.sockets);
            cache.on_change(move |key| {
                if let Some(sockets) = sockets.upgrade() {
                    sockets.session_changed(key);
                }
            });
            cache.listen_in_background();
        }
        self.sessions.key_ring().maintain_in_background(self.config.key_ring.refresh);
        self.oidc.discover_in_background();
    }
}
