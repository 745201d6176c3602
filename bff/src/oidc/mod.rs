//! The OpenID Connect relying party: discovery, the authorization request (code flow, PKCE
//! S256, `state`, `nonce`), the code exchange (`client_secret_basic`), id_token validation
//! against the issuer's JWKS, and the logout URL.
//!
//! Discovery is fetched in the background at start-up and retried until it succeeds; the node is
//! not ready before. The JWKS is cached, fetched again on a schedule that follows the issuer's
//! `Cache-Control` (a withdrawn key stops being trusted), and once when a token names a `kid` it
//! does not hold (the issuer rotated its keys); see `jwks`.

mod discovery;
mod id_token;
mod jwks;
mod logout_token;
mod pkce;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

pub use discovery::ProviderMetadata;
pub use logout_token::LogoutRequest;
pub use pkce::challenge_s256;

use crate::config::{OidcConfig, ProviderKind};
use jwks::JwksCache;

/// Why an OIDC step failed. The HTTP layer maps each to a status: the issuer refusing something
/// or a bad token is the client's problem (4xx); an issuer we cannot reach is a 502/503.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("identity provider metadata not loaded yet")]
    NotDiscovered,
    #[error("identity provider unreachable: {0}")]
    Unreachable(String),
    #[error("identity provider answered badly: {0}")]
    BadIssuerResponse(String),
    #[error("the identity provider refused the authorization code: {0}")]
    CodeRefused(String),
    #[error("invalid id_token: {0}")]
    InvalidIdToken(String),
    #[error("invalid logout_token: {0}")]
    InvalidLogoutToken(String),
}

/// What the token endpoint answers to a code exchange.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

pub struct Oidc {
    config: OidcConfig,
    redirect_uri: Url,
    http: reqwest::Client,
    metadata: RwLock<Option<Arc<ProviderMetadata>>>,
    jwks: JwksCache,
}

impl Oidc {
    pub fn new(config: OidcConfig, redirect_uri: Url) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("bff/", env!("CARGO_PKG_VERSION")))
            // `http://issuer.localhost:PORT` works as it does in a browser, on any host.
            .dns_resolver(Arc::new(crate::localhost::LocalhostResolver))
            .build()
            .expect("http client builds");
        let jwks = JwksCache::new(config.jwks_refresh);
        Arc::new(Oidc { config, redirect_uri, http, metadata: RwLock::new(None), jwks })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    pub fn metadata(&self) -> Result<Arc<ProviderMetadata>, OidcError> {
        self.metadata.read().expect("metadata lock").clone().ok_or(OidcError::NotDiscovered)
    }

    pub fn is_discovered(&self) -> bool {
        self.metadata.read().expect("metadata lock").is_some()
    }

    /// Fetches discovery and the JWKS once.
    pub async fn discover(&self) -> Result<(), OidcError> {
        let metadata = discovery::fetch(&self.http, &self.config.authority).await?;
        self.jwks.refresh(&self.http, &metadata.jwks_uri).await?;
        *self.metadata.write().expect("metadata lock") = Some(Arc::new(metadata));
        Ok(())
    }

    /// Retries discovery in the background until it succeeds.
    pub fn discover_in_background(self: &Arc<Self>) {
        let oidc = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            while let Err(error) = oidc.discover().await {
                tracing::warn!(%error, authority = %oidc.config.authority, retry_in = ?delay, "OIDC discovery failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            tracing::info!(authority = %oidc.config.authority, "OIDC discovery loaded");
            if let Ok(metadata) = oidc.metadata() {
                oidc.jwks.refresh_on_schedule(&oidc.http, &metadata.jwks_uri).await;
            }
        });
    }

    /// The URL the browser is sent to for login.
    pub fn authorization_url(&self, state: &str, nonce: &str, verifier: &str) -> Result<Url, OidcError> {
        let metadata = self.metadata()?;
        let mut url = metadata.authorization_endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.config.client_id)
                .append_pair("redirect_uri", self.redirect_uri.as_str())
                .append_pair("scope", &self.config.scopes.join(" "))
                .append_pair("state", state)
                .append_pair("nonce", nonce)
                .append_pair("code_challenge", &challenge_s256(verifier))
                .append_pair("code_challenge_method", "S256");
            if let ProviderKind::Auth0 { audience: Some(audience), .. } = &self.config.provider {
                q.append_pair("audience", audience);
            }
        }
        Ok(url)
    }

    /// Exchanges an authorization code at the token endpoint (`client_secret_basic`).
    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Result<TokenResponse, OidcError> {
        let redirect_uri = self.redirect_uri.to_string();
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// Uses a refresh token. Only `invalid_grant` is [`OidcError::CodeRefused`]; every other
    /// failure is [`OidcError::Unreachable`].
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, OidcError> {
        self.token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenResponse, OidcError> {
        let metadata = self.metadata()?;
        let response = self
            .http
            .post(metadata.token_endpoint.clone())
            .basic_auth(form_encode(&self.config.client_id), Some(form_encode(&self.config.client_secret)))
            .form(form)
            .send();
        let response = tracing::Instrument::instrument(response, crate::traces::spans::issuer("token"))
            .await
            .map_err(|e| OidcError::Unreachable(format!("token endpoint: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let error = body.get("error").and_then(|v| v.as_str()).unwrap_or("unknown error");
            return Err(token_error(status, error));
        }
        response.json().await.map_err(|e| OidcError::BadIssuerResponse(format!("token response: {e}")))
    }

    /// Revokes a refresh token at the issuer's revocation endpoint, when it has one (RFC 7009).
    /// Best effort: a failure is logged, the logout goes on.
    pub async fn revoke(&self, refresh_token: &str) {
        let Ok(metadata) = self.metadata() else { return };
        let Some(endpoint) = metadata.revocation_endpoint.clone() else { return };
        let result = self
            .http
            .post(endpoint)
            .basic_auth(form_encode(&self.config.client_id), Some(form_encode(&self.config.client_secret)))
            .form(&[("token", refresh_token), ("token_type_hint", "refresh_token")])
            .send();
        let result = tracing::Instrument::instrument(result, crate::traces::spans::issuer("revocation")).await;
        match result {
            Ok(r) if r.status().is_success() => tracing::debug!("refresh token revoked"),
            Ok(r) => tracing::warn!(status = %r.status(), "revocation endpoint refused"),
            Err(error) => tracing::warn!(%error, "revocation endpoint unreachable"),
        }
    }

    /// Validates a back-channel logout token.
    pub async fn validate_logout_token(&self, token: &str) -> Result<LogoutRequest, OidcError> {
        let metadata = self.metadata()?;
        logout_token::validate(token, &metadata, &self.config, &self.jwks, &self.http).await
    }

    /// Validates an id_token for this client and the `nonce` of the login it answers; returns
    /// its claims.
    pub async fn validate_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, OidcError> {
        let metadata = self.metadata()?;
        id_token::validate(token, nonce, &metadata, &self.config, &self.jwks, &self.http).await
    }

    /// Where to send the browser after the session is deleted, if the issuer has a logout.
    pub fn logout_url(&self, id_token_hint: Option<&str>) -> Option<Url> {
        let metadata = self.metadata().ok()?;
        let post_logout = self.config.post_logout_redirect_uri.as_str();
        if let Some(endpoint) = &metadata.end_session_endpoint {
            let mut url = endpoint.clone();
            {
                let mut q = url.query_pairs_mut();
                if let Some(hint) = id_token_hint {
                    q.append_pair("id_token_hint", hint);
                }
                q.append_pair("client_id", &self.config.client_id).append_pair("post_logout_redirect_uri", post_logout);
            }
            return Some(url);
        }
        if let ProviderKind::Auth0 { domain, .. } = &self.config.provider {
            let mut url = Url::parse(&format!("https://{domain}/v2/logout")).ok()?;
            url.query_pairs_mut().append_pair("client_id", &self.config.client_id).append_pair("returnTo", post_logout);
            return Some(url);
        }
        None
    }
}

/// What a token endpoint's refusal means. Only `invalid_grant` says the code or refresh token
/// is dead (RFC 6749 §5.2); anything else (429, `invalid_client` while a secret rotates, a 5xx)
/// is the issuer or this client's registration being unavailable, and must not end sessions.
fn token_error(status: reqwest::StatusCode, error: &str) -> OidcError {
    if status == reqwest::StatusCode::BAD_REQUEST && error == "invalid_grant" {
        OidcError::CodeRefused(format!("{status}: {error}"))
    } else {
        OidcError::Unreachable(format!("token endpoint answered {status}: {error:.64}"))
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-urlencoded before basic authentication.
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
