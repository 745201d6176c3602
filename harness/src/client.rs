//! [`VirtualUser`]: a browser-like client. It keeps cookies like a browser (one jar for every
//! `127.0.0.1:PORT`, since cookies are not port-scoped), follows redirects by hand so each hop
//! can be checked, and reports which node answered (the `x-bff-node` header the load balancer
//! adds, or a gateway that names itself). Like a browser it resolves `*.localhost` to loopback
//! by itself, so an issuer named `issuer.localhost` works from the host and, under a network
//! alias, from containers.
//!
//! Every user has its own client (its own cookie jar and connections, as separate browsers have),
//! but they share one certificate verifier: reqwest would otherwise build one per client, and
//! building one reads and parses every system root certificate, milliseconds per user. TLS session
//! resumption stays per user, as it is per browser.
//!
//! The paths and headers of another gateway are [`GatewayPaths`]: login, me (and the header an
//! API-style `me` wants), logout.
//!
//! Every request carries a W3C `traceparent`: one trace per browser (an iteration of a user),
//! a new parent span id per request. The last request's `traceparent` and the `x-request-id`
//! the gateway answered with are kept ([`VirtualUser::last_request`]), so a failure in a report
//! names what to look for in the node's log and in the tracing backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::LOCATION;
use reqwest_cookie_store::CookieStoreMutex;
use url::Url;

/// One response, reduced to what scenarios check.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    /// The node that served it, when a load balancer said.
    pub node: Option<String>,
    /// A login that found the user logged in already: the gateway answered its login path with
    /// a page, and `me` then answered 200 (a browser that kept its cookies).
    pub already_logged_in: bool,
    /// The `x-request-id` the answer carried, if any.
    pub request_id: Option<String>,
    /// The `traceparent` this request was sent with.
    pub traceparent: Option<String>,
}

/// What identifies one request sent: its `traceparent` and the gateway's `x-request-id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestTrace {
    pub traceparent: Option<String>,
    /// `None` when no answer came, or the answer carried no `x-request-id`.
    pub request_id: Option<String>,
}

/// A W3C `traceparent` (version 00, sampled) in `trace_id` with a new random parent span id.
pub fn traceparent(trace_id: &[u8; 16]) -> String {
    let mut span_id: [u8; 8] = rand::random();
    if span_id == [0; 8] {
        span_id[7] = 1;
    }
    format!("00-{}-{}-01", hex::encode(trace_id), hex::encode(span_id))
}

/// A random trace id, never all zeros (an invalid one in W3C trace context).
pub fn new_trace_id() -> [u8; 16] {
    let mut id: [u8; 16] = rand::random();
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

impl Reply {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    #[error("login step {step} answered {status} (expected a redirect): {body}")]
    LoginStep { step: &'static str, status: u16, body: String, node: Option<String> },
}

/// Where a gateway has its account endpoints; bff's by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPaths {
    pub login: String,
    pub me: String,
    /// A header the `me` call sends, e.g. `X-CSRF: 1` for Duende.BFF's `/bff/user`.
    pub me_header: Option<(String, String)>,
    pub logout: String,
    pub logout_method: LogoutMethod,
    /// A header the logout sends: bff's CSRF header `X-CSRF: 1` by default.
    pub logout_header: Option<(String, String)>,
    /// A JSON pointer to the user's identity in `me`'s answer (bff: `/sub`); `None`: the identity
    /// may be any string in it.
    pub identity_pointer: Option<String>,
}

/// How a gateway's logout is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogoutMethod {
    /// A form or fetch POST (bff, Duende.BFF's SPA pattern).
    Post,
    /// A link the browser follows (oauth2-proxy, mod_auth_openidc).
    Get,
}

impl Default for GatewayPaths {
    fn default() -> Self {
        GatewayPaths {
            login: "/account/login".into(),
            me: "/account/me".into(),
            me_header: None,
            logout: "/account/end-session".into(),
            logout_method: LogoutMethod::Post,
            logout_header: Some(("X-CSRF".into(), "1".into())),
            identity_pointer: Some("/sub".into()),
        }
    }
}

impl GatewayPaths {
    /// The identity `me`'s answer names: at the pointer, or bff's `sub`.
    pub fn identity_in(&self, body: &serde_json::Value) -> Option<String> {
        body.pointer(self.identity_pointer.as_deref().unwrap_or("/sub"))?.as_str().map(str::to_owned)
    }
}

/// Resolves `localhost` and `*.localhost` to loopback, as browsers do; everything else through the
/// system.
struct LocalhostResolver;

impl reqwest::dns::Resolve for LocalhostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            if host == "localhost" || host.ends_with(".localhost") {
                let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0))));
                return Ok(addrs);
            }
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// The rustls configuration every virtual user's client starts from: reqwest's own choice (the
/// platform verifier over aws-lc-rs, HTTP/1.1 only), built once so the system roots are read once.
/// `None` when no verifier can be built; each client then builds its own as before.
fn shared_tls() -> Option<rustls::ClientConfig> {
    static TLS: std::sync::OnceLock<Option<rustls::ClientConfig>> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new(provider.clone()).ok()?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(config)
    })
    .clone()
}

pub struct VirtualUser {
    http: reqwest::Client,
    /// Host names resolved to fixed addresses, kept for [`VirtualUser::new_browser`].
    resolve: Vec<(String, SocketAddr)>,
    paths: GatewayPaths,
    jar: Arc<CookieStoreMutex>,
    login_hint: Option<String>,
    /// Username and password for an identity provider's HTML login form (`--login form`).
    credentials: Option<(String, String)>,
    /// Sent as `x-bffctl-route: key/n` on the n-th request, for a seeded load balancer.
    route_key: Option<(String, std::sync::atomic::AtomicU64)>,
    /// Ask for every connection to be closed after its answer (`Connection: close`): thousands
    /// of users on one machine cannot each keep idle connections to every node.
    close_connections: bool,
    /// This browser's trace: every request's `traceparent` names it.
    trace_id: [u8; 16],
    /// The last request sent: its `traceparent` and the answer's request id.
    last: std::sync::Mutex<RequestTrace>,
}

impl VirtualUser {
    /// A user who logs in as `login_hint` at the mock issuer (or its default user).
    pub fn new(login_hint: Option<&str>) -> Self {
        Self::with_resolver(login_hint, &[])
    }

    /// Like `new`, resolving the given host names to fixed addresses (the mock issuer's name
    /// that containers use).
    pub fn with_resolver(login_hint: Option<&str>, resolve: &[(String, SocketAddr)]) -> Self {
        let jar = Arc::new(CookieStoreMutex::default());
        let mut builder = reqwest::Client::builder()
            .dns_resolver(Arc::new(LocalhostResolver))
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            // Shorter than a gateway's idle keep-alive bound (bff: 10 s), as a browser's is.
            .pool_idle_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        if let Some(mut tls) = shared_tls() {
            // The clone would share one session-ticket store among all users.
            tls.resumption = rustls::client::Resumption::default();
            builder = builder.tls_backend_preconfigured(tls);
        }
        for (name, addr) in resolve {
            builder = builder.resolve(name, *addr);
        }
        VirtualUser {
            http: builder.build().expect("http client"),
            resolve: resolve.to_vec(),
            jar,
            login_hint: login_hint.map(str::to_owned),
            route_key: None,
            paths: GatewayPaths::default(),
            credentials: None,
            close_connections: false,
            trace_id: new_trace_id(),
            last: Default::default(),
        }
    }

    /// Logs in through the identity provider's HTML login form as `username` (and approves a
    /// consent form when one appears), instead of the mock issuer's automatic login.
    pub fn with_credentials(mut self, username: &str, password: &str) -> Self {
        self.credentials = Some((username.to_owned(), password.to_owned()));
        self
    }

    /// Another gateway's account endpoints.
    pub fn with_paths(mut self, paths: GatewayPaths) -> Self {
        self.paths = paths;
        self
    }

    /// Asks a seeded load balancer to route this user's requests reproducibly: each one carries
    /// `key` and its sequence number.
    pub fn with_route_key(mut self, key: &str) -> Self {
        self.route_key = Some((key.to_owned(), std::sync::atomic::AtomicU64::new(0)));
        self
    }

    /// The same user in a new browser: an empty cookie jar and no open connection (as k6 starts
    /// each iteration), the same identity, paths and credentials. A seeded route key goes on
    /// from where this one stopped, so the new browser is routed on, not replayed.
    pub fn new_browser(&self) -> VirtualUser {
        let mut user =
            VirtualUser::with_resolver(self.login_hint.as_deref(), &self.resolve).with_paths(self.paths.clone());
        user.credentials = self.credentials.clone();
        user.close_connections = self.close_connections;
        user.route_key = self.route_key.as_ref().map(|(key, sequence)| {
            (key.clone(), std::sync::atomic::AtomicU64::new(sequence.load(std::sync::atomic::Ordering::Relaxed)))
        });
        user
    }

    /// Closes each connection after its answer instead of keeping it for the next request.
    pub fn closing_connections(mut self) -> Self {
        self.close_connections = true;
        self
    }

    /// The gateway's account endpoints this user calls.
    pub fn paths(&self) -> &GatewayPaths {
        &self.paths
    }

    /// Who this user logs in as: the form login's username, else the `login_hint`.
    pub fn identity(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(u, _)| u.as_str()).or(self.login_hint.as_deref())
    }

    /// The names of the cookies this browser would send (unexpired).
    pub fn cookie_names(&self) -> std::collections::BTreeSet<String> {
        self.jar.lock().expect("cookie jar").iter_unexpired().map(|c| c.name().to_owned()).collect()
    }

    /// The cookie jar (tests read or tamper with the session cookie).
    pub fn jar(&self) -> &Arc<CookieStoreMutex> {
        &self.jar
    }

    pub async fn get(&self, url: &str) -> Result<Reply, ClientError> {
        self.send(self.http.get(url), url).await
    }

    /// A call to an API route, as a single-page app makes it: with the `X-CSRF: 1` header.
    pub async fn api(&self, url: &str) -> Result<Reply, ClientError> {
        self.send(self.http.get(url).header("x-csrf", "1"), url).await
    }

    pub async fn post(&self, url: &str) -> Result<Reply, ClientError> {
        self.send(self.http.post(url), url).await
    }

    /// The last request this browser sent: its `traceparent` and the request id of its answer
    /// (none when it got no answer). Requests of one user go one after the other, so after a
    /// failed call this is the request that failed (the last hop of a login).
    pub fn last_request(&self) -> RequestTrace {
        self.last.lock().expect("last request").clone()
    }

    /// The trace every request of this browser belongs to (32 hex digits).
    pub fn trace_id(&self) -> String {
        hex::encode(self.trace_id)
    }

    async fn send(&self, mut request: reqwest::RequestBuilder, url: &str) -> Result<Reply, ClientError> {
        let traceparent = traceparent(&self.trace_id);
        request = request.header("traceparent", &traceparent);
        *self.last.lock().expect("last request") =
            RequestTrace { traceparent: Some(traceparent.clone()), request_id: None };
        if self.close_connections {
            request = request.header(reqwest::header::CONNECTION, "close");
        }
        if let Some((key, sequence)) = &self.route_key {
            let n = sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            request = request.header(crate::route_header::ROUTE_HEADER, format!("{key}/{n}"));
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: url.to_owned(), reason: error_chain(&e) })?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let location = header(LOCATION.as_str());
        let node = header("x-bff-node");
        let request_id = header("x-request-id");
        self.last.lock().expect("last request").request_id = request_id.clone();
        let body = response
            .text()
            .await
            .map_err(|e| ClientError::Transport { url: url.to_owned(), reason: error_chain(&e) })?;
        Ok(Reply { status, body, location, node, already_logged_in: false, request_id, traceparent: Some(traceparent) })
    }

    /// `GET {base}/account/me` (or the gateway's own `me` path, with its header).
    pub async fn me(&self, base: &str) -> Result<Reply, ClientError> {
        let url = format!("{}{}", base.trim_end_matches('/'), self.paths.me);
        let mut request = self.http.get(&url);
        if let Some((name, value)) = &self.paths.me_header {
            request = request.header(name.as_str(), value.as_str());
        }
        self.send(request, &url).await
    }

    /// `POST {base}/account/end-session` with `X-CSRF: 1`, as a single-page app logs out (or the
    /// gateway's own logout, its method and header), without following the redirect.
    pub async fn logout(&self, base: &str) -> Result<Reply, ClientError> {
        let url = format!("{}{}", base.trim_end_matches('/'), self.paths.logout);
        let mut request = match self.paths.logout_method {
            LogoutMethod::Post => self.http.post(&url),
            LogoutMethod::Get => self.http.get(&url),
        };
        if let Some((name, value)) = &self.paths.logout_header {
            request = request.header(name.as_str(), value.as_str());
        }
        self.send(request, &url).await
    }

    /// Logs out like [`VirtualUser::logout`], then puts the cookies back as they were: a copied
    /// cookie (another tab, a stolen one) must not outlive the session on any node.
    pub async fn logout_keeping_cookie(&self, base: &str) -> Result<Reply, ClientError> {
        let saved = self.jar.lock().expect("cookie jar").clone();
        let reply = self.logout(base).await;
        *self.jar.lock().expect("cookie jar") = saved;
        reply
    }

    /// The whole login: `/account/login` on `base` → issuer `authorize` → `login/callback`.
    /// Returns the callback's reply (a 302 to the landing page when it worked). A gateway that
    /// answers its login path with a page while the browser holds a session (some do, rightly)
    /// gives [`Reply::already_logged_in`] when `me` then answers 200.
    pub async fn login(&self, base: &str) -> Result<Reply, ClientError> {
        self.login_ending_on(base, false).await
    }

    /// The whole login on one node: it starts on `node`, and where the identity provider sends
    /// the browser back to the gateway's `redirect_uri` (the load balancer's URL), the callback
    /// goes to the same path on `node`: the session is created there, whichever node a load
    /// balancer would have picked.
    pub async fn login_pinned(&self, node: &str) -> Result<Reply, ClientError> {
        self.login_ending_on(node, true).await
    }

    async fn login_ending_on(&self, base: &str, pinned: bool) -> Result<Reply, ClientError> {
        let start = self.get(&format!("{}{}", base.trim_end_matches('/'), self.paths.login)).await?;
        if (200..300).contains(&start.status) && self.jar.lock().expect("cookie jar").iter_unexpired().next().is_some()
        {
            let me = self.me(base).await?;
            if me.status == 200 {
                return Ok(Reply { already_logged_in: true, ..me });
            }
        }
        let authorize = redirect_target(&start, "login")?;
        let mut authorize = Url::parse(&authorize)
            .map_err(|e| ClientError::Transport { url: authorize.clone(), reason: e.to_string() })?;
        if let Some(hint) = &self.login_hint {
            authorize.query_pairs_mut().append_pair("login_hint", hint);
        }
        let issued = self.get(authorize.as_str()).await?;
        let callback = match &self.credentials {
            None => redirect_target(&issued, "authorize")?,
            Some((username, password)) => self.through_forms(authorize, issued, username, password).await?,
        };
        let callback = if pinned { on_node(&callback, base)? } else { callback };
        self.get(&callback).await
    }

    /// Follows the identity provider's pages from `reply` (to `url`) until it redirects back to
    /// the gateway: submits the login form with the credentials and any consent form, follows
    /// redirects. Returns the callback URL. A login form shown again after the credentials went
    /// in means they were refused.
    async fn through_forms(
        &self,
        mut url: Url,
        mut reply: Reply,
        username: &str,
        password: &str,
    ) -> Result<String, ClientError> {
        let issuer_origin = url.origin();
        let mut sent_password = false;
        for _ in 0..10 {
            if let Some(location) = reply.location.as_deref().filter(|_| (300..400).contains(&reply.status)) {
                let next = url
                    .join(location)
                    .map_err(|e| ClientError::Transport { url: location.to_owned(), reason: e.to_string() })?;
                if next.origin() != issuer_origin {
                    return Ok(next.to_string());
                }
                reply = self.get(next.as_str()).await?;
                url = next;
                continue;
            }
            let Some(form) =
                crate::login_form::fill(&reply.body, &url, username, password).filter(|_| reply.status == 200)
            else {
                return Err(ClientError::LoginStep {
                    step: "identity provider page",
                    status: reply.status,
                    body: reply.body.chars().take(200).collect(),
                    node: None,
                });
            };
            if form.asks_password && sent_password {
                return Err(ClientError::LoginStep {
                    step: "login form",
                    status: reply.status,
                    body: format!("the identity provider refused the credentials of {username}"),
                    node: None,
                });
            }
            sent_password |= form.asks_password;
            let request = match form.method.as_str() {
                "post" => self.http.post(form.action.as_str()).form(&form.fields),
                _ => self.http.get(form.action.as_str()).query(&form.fields),
            };
            reply = self.send(request, form.action.as_str()).await?;
            url = form.action;
        }
        Err(ClientError::LoginStep {
            step: "identity provider page",
            status: reply.status,
            body: "more than 10 pages".into(),
            node: None,
        })
    }
}

/// `url` with the scheme, host and port of `node` (its path and query kept).
fn on_node(url: &str, node: &str) -> Result<String, ClientError> {
    let bad = |what: &str, e: url::ParseError| ClientError::Transport { url: what.to_owned(), reason: e.to_string() };
    let mut moved = Url::parse(url).map_err(|e| bad(url, e))?;
    let node = Url::parse(node).map_err(|e| bad(node, e))?;
    if moved.origin() == node.origin() {
        return Ok(moved.into());
    }
    let _ = moved.set_scheme(node.scheme());
    moved.set_host(node.host_str()).map_err(|e| bad(url, e))?;
    let _ = moved.set_port(node.port());
    Ok(moved.into())
}

fn redirect_target(reply: &Reply, step: &'static str) -> Result<String, ClientError> {
    match (&reply.location, reply.status) {
        (Some(location), 301..=303 | 307 | 308) => Ok(location.clone()),
        _ => Err(ClientError::LoginStep {
            step,
            status: reply.status,
            body: reply.body.chars().take(200).collect(),
            node: reply.node.clone(),
        }),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    /// The shared TLS configuration still verifies certificates: an https server with a
    /// certificate no system root vouches for is refused, by every user, not just the first.
    #[tokio::test]
    async fn shared_tls_refuses_an_untrusted_certificate() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = handshakes.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move { acceptor.accept(stream).await.map(drop) });
            }
        });
        assert!(super::shared_tls().is_some(), "the shared TLS configuration builds");
        for who in ["first", "second"] {
            let user = super::VirtualUser::new(Some(who));
            match user.get(&format!("https://localhost:{port}/")).await {
                Err(super::ClientError::Transport { reason, .. }) => {
                    assert!(reason.to_lowercase().contains("certificate"), "{who}: {reason}")
                }
                other => panic!("{who}: expected a certificate error, got {other:?}"),
            }
        }
        assert_eq!(handshakes.load(std::sync::atomic::Ordering::SeqCst), 2, "both users reached the server");
    }
}
