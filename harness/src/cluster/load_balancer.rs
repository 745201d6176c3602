//! [`LoadBalancer`]: one public URL in front of the live nodes. Each request goes to a node
//! chosen by the policy (random by default, as Kubernetes Services and Azure Container Apps do),
//! and the response says which node served it (`x-bff-node`). The cluster takes a node out of
//! the table before stopping it, so a draining node gets no new requests.
//!
//! With a seed, routing is reproducible: a request that carries [`ROUTE_HEADER`] (the harness's
//! virtual users send `user/sequence number`) goes to the node a hash of the seed and that key
//! picks among the live nodes, whatever order concurrent users arrive in; other requests draw
//! from a generator seeded with it. The header never reaches a node.
//!
//! A WebSocket handshake goes to a node like a request, and the sockets are then joined (see
//! `lb_websocket`). Responses are read whole before they are passed on: an event stream does not
//! stream through this balancer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use tokio::sync::oneshot;

use super::lb_websocket::NodeRefused;
use super::spec::{LbPolicy, node_name};
use crate::route_header::ROUTE_HEADER;

/// Header naming the node that served a response.
pub const NODE_HEADER: &str = "x-bff-node";

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

struct Table {
    /// Address of each node while it is live; `None` while stopped or draining.
    nodes: RwLock<Vec<Option<SocketAddr>>>,
    policy: LbPolicy,
    next: AtomicUsize,
    seed: Option<u64>,
    /// Draws for requests without a route key, seeded when the balancer is.
    rng: std::sync::Mutex<rand::rngs::StdRng>,
    http: reqwest::Client,
}

impl Table {
    fn live(&self) -> Vec<(usize, SocketAddr)> {
        let nodes = self.nodes.read().expect("lb table lock");
        nodes.iter().enumerate().filter_map(|(i, a)| a.map(|a| (i, a))).collect()
    }

    fn pick(
        &self,
        affinity: Option<usize>,
        exclude: Option<usize>,
        route: Option<&str>,
    ) -> Option<(usize, SocketAddr)> {
        let live: Vec<_> = self.live().into_iter().filter(|(i, _)| Some(*i) != exclude).collect();
        if live.is_empty() {
            return None;
        }
        if self.policy == LbPolicy::Sticky
            && let Some(pinned) = live.iter().find(|(i, _)| Some(*i) == affinity)
        {
            return Some(*pinned);
        }
        let at = match (self.policy, self.seed, route) {
            (LbPolicy::RoundRobin, _, _) => self.next.fetch_add(1, Ordering::Relaxed),
            (_, Some(seed), Some(route)) => {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::hash::DefaultHasher::new();
                (seed, route, exclude).hash(&mut hasher);
                hasher.finish() as usize
            }
            _ => self.rng.lock().expect("lb rng lock").random_range(0..live.len()),
        };
        Some(live[at % live.len()])
    }
}

pub struct LoadBalancer {
    addr: SocketAddr,
    table: Arc<Table>,
    stop: Option<oneshot::Sender<()>>,
}

impl LoadBalancer {
    /// Binds `127.0.0.1:port` (0 = any) and starts serving with no live node yet; `seed` makes
    /// the routing reproducible (see the module docs).
    pub async fn start(port: u16, node_count: usize, policy: LbPolicy, seed: Option<u64>) -> std::io::Result<Self> {
        let listener = crate::listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
        let addr = listener.local_addr()?;
        let table = Arc::new(Table {
            nodes: RwLock::new(vec![None; node_count]),
            policy,
            next: AtomicUsize::new(0),
            seed,
            rng: std::sync::Mutex::new(match seed {
                Some(seed) => rand::SeedableRng::seed_from_u64(seed),
                None => rand::SeedableRng::from_os_rng(),
            }),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                // Shorter than the gateway's idle keep-alive bound (server.header_read_timeout, 10 s by
                // default): a pooled connection is never reused just as the node closes it.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
        });
        let app = axum::Router::new().fallback(forward).with_state(table.clone());
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(LoadBalancer { addr, table, stop: Some(stop) })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Puts node `index` in rotation at `addr`.
    pub fn set_live(&self, index: usize, addr: SocketAddr) {
        self.table.nodes.write().expect("lb table lock")[index] = Some(addr);
    }

    /// Takes node `index` out of rotation (before it is stopped).
    pub fn set_down(&self, index: usize) {
        self.table.nodes.write().expect("lb table lock")[index] = None;
    }

    pub fn live_nodes(&self) -> Vec<usize> {
        self.table.live().into_iter().map(|(i, _)| i).collect()
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The sticky policy pins a browser to a node with its own cookie, as cloud load balancers'
/// session affinity does.
const AFFINITY_COOKIE: &str = "bff-lb-affinity";

fn affinity(request: &Request) -> Option<usize> {
    request
        .headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(AFFINITY_COOKIE)?.strip_prefix('=')?.parse().ok())
        .next()
}

fn no_node(message: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, message.to_owned()).into_response()
}

/// `response` with the header naming node `index`.
fn named(mut response: Response, index: usize) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static(NODE_HEADER),
        HeaderValue::from_str(&node_name(index)).expect("node name is a header value"),
    );
    response
}

/// A WebSocket handshake: to a live node, another when the first cannot be reached.
async fn forward_websocket(table: &Table, mut parts: axum::http::request::Parts, pinned: Option<usize>) -> Response {
    let mut tried = None;
    for _ in 0..2 {
        let Some((index, addr)) = table.pick(pinned, tried, None) else {
            return no_node("no live node behind the load balancer");
        };
        match super::lb_websocket::forward(&mut parts, addr).await {
            Ok(response) | Err(NodeRefused::Answered(response)) => return named(response, index),
            Err(NodeRefused::Unreachable) => tried = Some(index),
        }
    }
    no_node("no node accepted the connection")
}

fn is_websocket(request: &Request) -> bool {
    request.headers().get("upgrade").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn forward(State(table): State<Arc<Table>>, request: Request) -> Response {
    let pinned = affinity(&request);
    let route = request.headers().get(ROUTE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if is_websocket(&request) {
        return forward_websocket(&table, request.into_parts().0, pinned).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let mut tried = None;
    // A node that refuses the connection (it just died), or drops an idempotent request on a
    // connection it is closing, costs one retry on another node, as nginx and L4 balancers with
    // passive health checks do; a node that answered is never retried.
    for _ in 0..2 {
        let Some((index, addr)) = table.pick(pinned, tried, route.as_deref()) else {
            return no_node("no live node behind the load balancer");
        };
        let mut outgoing = table.http.request(parts.method.clone(), format!("http://{addr}{path}"));
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) && name.as_str() != ROUTE_HEADER {
                outgoing = outgoing.header(name, value);
            }
        }
        if let Some(host) = parts.headers.get("host") {
            outgoing = outgoing.header("x-forwarded-host", host);
        }
        match outgoing.body(body.clone()).send().await {
            Ok(response) => {
                let mut relayed = relay(response, index).await;
                if table.policy == LbPolicy::Sticky && pinned != Some(index) {
                    let cookie = format!("{AFFINITY_COOKIE}={index}; Path=/; HttpOnly");
                    relayed.headers_mut().append("set-cookie", HeaderValue::from_str(&cookie).expect("cookie header"));
                }
                return relayed;
            }
            // Refused, or a kept-alive connection the node closed as it drained or restarted:
            // an idempotent request goes to another node, as nginx's `proxy_next_upstream
            // error` does.
            Err(error) if error.is_connect() || parts.method.is_idempotent() => tried = Some(index),
            Err(error) => {
                let mut r = (StatusCode::BAD_GATEWAY, format!("{} failed: {error}", node_name(index))).into_response();
                r.headers_mut().insert(NODE_HEADER, HeaderValue::from_str(&node_name(index)).expect("node name"));
                return r;
            }
        }
    }
    no_node("no node accepted the connection")
}

async fn relay(response: reqwest::Response, index: usize) -> Response {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out.headers_mut().insert(
        HeaderName::from_static(NODE_HEADER),
        HeaderValue::from_str(&node_name(index)).expect("node name is a header value"),
    );
    out
}
