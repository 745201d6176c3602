//! [`AppState`]: what every request handler shares, built once from the [`Config`].

use std::sync::Arc;

use crate::config::{Config, KeyRingMode, StoreConfig};
use crate::keyring::KeyRing;
use crate::oidc::Oidc;
use crate::redis_link::RedisLink;
use crate::session::{MemoryStore, RedisStore, SessionStore, Sessions};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Sealed sessions and pending logins.
    pub sessions: Arc<Sessions>,
    pub oidc: Arc<Oidc>,
    /// The shared Redis connection, when Redis is configured (background tasks connect it).
    pub redis: Option<Arc<RedisLink>>,
}

/// The state could not be built (a Redis URL the client library refuses).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("redis_url: {0}")]
    RedisUrl(#[from] redis::RedisError),
}

impl AppState {
    /// Builds the state without any I/O; [`AppState::start_background_tasks`] connects things.
    pub fn new(config: Config) -> Result<Self, StateError> {
        let redis = match &config.store {
            StoreConfig::Redis { url, .. } => Some(RedisLink::new(url, config.redis_timeout)?),
            StoreConfig::Memory => None,
        };
        let store: Arc<dyn SessionStore> = match (&config.store, &redis) {
            (StoreConfig::Redis { key_prefix, .. }, Some(link)) => {
                Arc::new(RedisStore::new(link.clone(), key_prefix))
            }
            _ => Arc::new(MemoryStore::new()),
        };
        let ring = match (config.key_ring.mode, &config.store, &redis) {
            (KeyRingMode::Redis, StoreConfig::Redis { key_prefix, .. }, Some(link)) => {
                KeyRing::shared(
                    link.clone(),
                    key_prefix,
                    config.key_ring.rotation,
                    config
                        .key_ring
                        .rotation
                        .saturating_add(config.session.absolute_lifetime),
                    config.key_ring.key_encryption_key,
                )
            }
            _ => KeyRing::local(),
        };
        let sessions = Sessions::new(
            store,
            ring,
            config.session.idle_timeout,
            config.session.absolute_lifetime,
            config.session.login_timeout,
        );
        let oidc = Oidc::new(config.oidc.clone(), config.redirect_uri());
        Ok(AppState {
            config: Arc::new(config),
            sessions: Arc::new(sessions),
            oidc,
            redis,
        })
    }

    /// Connects Redis, loads the key ring and the issuer's metadata, each retried until it works.
    pub fn start_background_tasks(&self) {
        if let Some(link) = &self.redis {
            link.connect_in_background();
        }
        self.sessions
            .key_ring()
            .maintain_in_background(self.config.key_ring.refresh);
        self.oidc.discover_in_background();
    }
}
