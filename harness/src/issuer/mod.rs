//! [`MockIssuer`]: an OpenID Connect provider good enough that a gateway (`bff`, or one bffctl
//! did not write) cannot tell it from a real one. Discovery, JWKS, `authorize` (logs a user in without a form: the one named by
//! `login_hint`, else the default user; or, in form-login mode, through a real HTML login form and
//! a consent form), `token` (authorization code, with PKCE when the client asked for it, and
//! client authentication; refresh tokens, optionally rotated), `userinfo`, `end_session`, `revoke`.
//!
//! It counts calls per endpoint, reports its own load ([`IssuerLoad`]: a run can tell a
//! saturated harness from a failing gateway), and can be told to misbehave (bad id_tokens, a
//! slow or failing token endpoint, rotated signing keys). Its URL is the same for the host and for containers:
//! bind it to `0.0.0.0` and give it a host name that containers map to the host gateway; host-side
//! clients map the same name to loopback.

mod endpoints;
mod exchange;
mod keys;
mod load;
mod pkce;
mod server;
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use keys::SigningAlg;
pub use load::{EndpointLoad, IssuerLoad};
pub use state::{IdTokenFault, IssuerOutage, TokenFaults, User};

use endpoints::Issuer;
use keys::KeySet;
use state::IssuerState;

/// Builds a [`MockIssuer`]; finish with [`MockIssuerBuilder::run`].
pub struct MockIssuerBuilder {
    bind: SocketAddr,
    host: String,
    client_id: String,
    client_secret: String,
    users: Vec<User>,
    access_token_lifetime: Duration,
    id_token_lifetime: Duration,
    rotate_refresh_tokens: bool,
    alg: SigningAlg,
    redirect_uris: Vec<String>,
    /// `(username, password)` of each user, in form-login mode.
    form_users: Option<Vec<(String, String)>>,
    require_pkce: bool,
}

impl Default for MockIssuerBuilder {
    fn default() -> Self {
        MockIssuerBuilder {
            bind: "127.0.0.1:0".parse().expect("static address"),
            host: "127.0.0.1".into(),
            client_id: "bff-client".into(),
            client_secret: "bff-secret".into(),
            users: vec![User::new("alice").claim("name", "Alice Example")],
            access_token_lifetime: Duration::from_secs(300),
            id_token_lifetime: Duration::from_secs(300),
            rotate_refresh_tokens: false,
            alg: SigningAlg::Rs256,
            redirect_uris: Vec::new(),
            form_users: None,
            require_pkce: false,
        }
    }
}

impl MockIssuerBuilder {
    /// Address to listen on (default `127.0.0.1:0`; use `0.0.0.0:0` for containers).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Host name in the issuer URL (default `127.0.0.1`).
    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_owned();
        self
    }

    /// Form-login mode: `authorize` answers a real HTML login form (username, password), then a
    /// consent form, as a real identity provider does, for these users and passwords; a wrong
    /// password gets the login form again.
    pub fn form_login(mut self, users: Vec<(String, String)>) -> Self {
        self.users = users.iter().map(|(name, _)| User::new(name)).collect();
        self.form_users = Some(users);
        self
    }

    /// Registers the client's redirect URIs: `authorize` refuses any other (400), as a real
    /// provider does. None registered: any is accepted.
    pub fn redirect_uris(mut self, uris: Vec<String>) -> Self {
        self.redirect_uris = uris;
        self
    }

    pub fn client(mut self, id: &str, secret: &str) -> Self {
        self.client_id = id.to_owned();
        self.client_secret = secret.to_owned();
        self
    }

    /// Adds a user; the first one is the default when a login gives no `login_hint`.
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// Replaces the users.
    pub fn users(mut self, users: Vec<User>) -> Self {
        self.users = users;
        self
    }

    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.access_token_lifetime = lifetime;
        self
    }

    pub fn rotate_refresh_tokens(mut self, rotate: bool) -> Self {
        self.rotate_refresh_tokens = rotate;
        self
    }

    /// Refuses an authorization request without a `code_challenge`, as a provider configured to
    /// require PKCE does. Off by default: a confidential client (one that authenticates at the
    /// token endpoint) may omit PKCE, and mod_auth_openidc and oauth2-proxy do by default.
    pub fn require_pkce(mut self, require: bool) -> Self {
        self.require_pkce = require;
        self
    }

    pub fn signing_alg(mut self, alg: SigningAlg) -> Self {
        self.alg = alg;
        self
    }

    pub async fn run(self) -> std::io::Result<MockIssuer> {
        let listener = crate::listener::bind(self.bind)?.into_std()?;
        let local_addr = listener.local_addr()?;
        let port = local_addr.port();
        let url = format!("http://{}:{port}", self.host);
        let default_user = self.users.first().map(|u| u.sub.clone()).unwrap_or_else(|| "alice".into());
        let state = IssuerState {
            keys: KeySet::new(self.alg),
            users: self.users.into_iter().map(|u| (u.sub.clone(), u)).collect(),
            default_user,
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            id_token_fault: None,
            token_faults: TokenFaults::default(),
            outage: IssuerOutage::None,
            refresh_presentations: HashMap::new(),
            calls: HashMap::new(),
            revoked: Vec::new(),
            last_sid: HashMap::new(),
            passwords: self.form_users.clone().unwrap_or_default().into_iter().collect(),
            pending: HashMap::new(),
            access_token_lifetime: self.access_token_lifetime,
        };
        let settings = endpoints::Settings {
            issuer: url.clone(),
            client_id: self.client_id,
            client_secret: self.client_secret,
            id_token_lifetime: self.id_token_lifetime,
            rotate_refresh_tokens: self.rotate_refresh_tokens,
            redirect_uris: self.redirect_uris,
            form_login: self.form_users.is_some(),
            require_pkce: self.require_pkce,
        };
        let issuer = Arc::new(Issuer::new(settings, state));
        let running = server::start(listener, issuer.clone())?;
        Ok(MockIssuer { issuer, _running: running, url, port, local_addr })
    }
}

/// A running mock issuer. Dropping it stops the server.
pub struct MockIssuer {
    issuer: Arc<Issuer>,
    _running: server::Running,
    url: String,
    port: u16,
    local_addr: SocketAddr,
}

impl MockIssuer {
    pub fn builder() -> MockIssuerBuilder {
        MockIssuerBuilder::default()
    }

    /// The issuer URL (`iss`), also the authority to configure in `bff`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server really listens (for host-side name resolution).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn state(&self) -> std::sync::MutexGuard<'_, IssuerState> {
        self.issuer.lock()
    }

    /// The issuer's load since it started, overall and per endpoint: requests, 5xx answers,
    /// the time its handlers took (p50, p99, max) and the most requests in them at once.
    pub fn load(&self) -> IssuerLoad {
        self.issuer.load.snapshot()
    }

    /// How many times an endpoint was called: `discovery`, `jwks`, `authorize`, `token`,
    /// `refresh` (the refresh_token grant, also counted in `token`), `userinfo`, `end_session`,
    /// `revoke`.
    pub fn calls(&self, endpoint: &str) -> u64 {
        self.state().calls.get(endpoint).copied().unwrap_or(0)
    }

    /// Makes the next id_tokens wrong in the given way (`None` puts things right).
    pub fn set_id_token_fault(&self, fault: Option<IdTokenFault>) {
        self.state().id_token_fault = fault;
    }

    /// Refresh tokens presented more than once, when refresh tokens rotate (each may be used
    /// once: a second presentation is a replay); `None` when they do not rotate (the same token
    /// then serves every refresh by design).
    pub fn refresh_tokens_presented_twice(&self) -> Option<u64> {
        if !self.issuer.settings.rotate_refresh_tokens {
            return None;
        }
        let state = self.state();
        Some(state.refresh_presentations.values().filter(|n| **n > 1).count() as u64)
    }

    /// Makes every endpoint slow or down until set back to [`IssuerOutage::None`].
    pub fn set_outage(&self, outage: IssuerOutage) {
        self.state().outage = outage;
    }

    pub fn set_token_faults(&self, faults: TokenFaults) {
        self.state().token_faults = faults;
    }

    /// Signs with a new key under a new `kid`; the JWKS shows only the new key.
    pub fn rotate_signing_key(&self) {
        self.state().keys.rotate();
    }

    pub fn add_user(&self, user: User) {
        self.state().users.insert(user.sub.clone(), user);
    }

    /// Every access token issued so far (a test checks none of them is readable in Redis).
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.state().access_tokens.keys().cloned().collect()
    }

    /// Every refresh token issued so far that is still valid.
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.state().refresh_tokens.keys().cloned().collect()
    }

    pub fn revoked_tokens(&self) -> Vec<String> {
        self.state().revoked.clone()
    }

    /// Forgets every refresh token: the next refresh gets `invalid_grant`.
    pub fn revoke_all_refresh_tokens(&self) {
        self.state().refresh_tokens.clear();
    }

    /// Lifetime of the access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.state().access_token_lifetime = lifetime;
    }

    /// The `sid` of the last login of `sub`, as its id_token carried it.
    pub fn last_sid(&self, sub: &str) -> Option<String> {
        self.state().last_sid.get(sub).cloned()
    }

    /// A signed back-channel logout token for `sid` and/or `sub`, for this client.
    pub fn logout_token(&self, sid: Option<&str>, sub: Option<&str>) -> String {
        endpoints::logout_token(&self.issuer.settings, &self.state(), sid, sub)
    }
}
