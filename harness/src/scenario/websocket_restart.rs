//! The `websocket-restart` step: every user opens a WebSocket through the load balancer to the
//! live API (`/live/echo`, which needs a session) and exchanges a message; then the node the
//! first user's socket is on is restarted. Every socket on that node must be closed by it with
//! 1001 (going away) and reconnect, through the load balancer, to another node, logged in (the
//! handshake of an `auth = "required"` route passed) and echoing; every socket on the other
//! nodes must still echo after the restart. With `node = "all"`, a rolling restart: a round per
//! node, each with every user's socket opened again; with `node = N`, node N.
//!
//! One record per user and phase (`open`, `reconnect` or `kept`), so the report counts them
//! like requests.

use std::time::{Duration, Instant};

use super::model::{Action, NodeSelector, Step};
use super::record::{Outcome, Record};
use super::target::Target;
use crate::client::VirtualUser;
use crate::cluster::ClusterError;
use crate::live_socket::{Ended, LiveSocket};

/// How long a socket may take to be closed by its stopping node (its drain first) and to
/// reconnect; an echo's bound.
const CLOSED_WITHIN: Duration = Duration::from_secs(30);
const RECONNECT_WITHIN: Duration = Duration::from_secs(10);
const ECHO_WITHIN: Duration = Duration::from_secs(5);
/// Sockets opened per node of the cluster, at most, to get one onto the node to restart.
const ON_NODE_TRIES: usize = 20;

/// What the step found, and a line for the run's events.
pub struct Found {
    pub records: Vec<Record>,
    pub event: String,
}

/// The `Cookie` header the user's browser would send to `url`.
fn cookie_header(user: &VirtualUser, url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let jar = user.jar().lock().expect("cookie jar");
    let pairs: Vec<String> = jar.get_request_values(&url).map(|(n, v)| format!("{n}={v}")).collect();
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

struct Phase<'a> {
    step: &'a Step,
    began: Instant,
}

impl Phase<'_> {
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        phase: &str,
        user: &str,
        node: Option<String>,
        started: Instant,
        outcome: Outcome,
        detail: String,
    ) -> Record {
        Record {
            step: format!("{} ({phase})", self.step.label()),
            action: self.step.action,
            user: user.to_owned(),
            identity: None,
            node,
            created_on: None,
            outcome,
            status: (outcome == Outcome::Ok).then_some(101),
            at_ms: started.duration_since(self.began).as_secs_f64() * 1000.0,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            detail,
            harness: false,
        }
    }
}

/// Opens `url` and echoes once; the socket and the node that took it.
async fn open_and_echo(url: &str, origin: &str, cookie: Option<&str>, text: &str) -> Result<LiveSocket, String> {
    let mut socket = LiveSocket::open(url, origin, cookie).await.map_err(|e| e.to_string())?;
    socket.echo(text, ECHO_WITHIN).await.map_err(|e| e.to_string())?;
    Ok(socket)
}

pub async fn run(
    target: &dyn Target,
    users: &[(String, VirtualUser)],
    step: &Step,
    began: Instant,
) -> Result<Found, ClusterError> {
    debug_assert_eq!(step.action, Action::WebsocketRestart);
    let rounds: Vec<Option<usize>> = match step.node {
        Some(NodeSelector::All) => (0..target.node_count()).map(Some).collect(),
        Some(NodeSelector::Index(n)) => vec![Some(n - 1)],
        Some(NodeSelector::Random) | None => vec![None],
    };
    let mut found = Found { records: Vec::new(), event: String::new() };
    let mut events = Vec::new();
    for node in rounds {
        let round = round(target, users, step, began, node).await?;
        found.records.extend(round.records);
        events.push(round.event);
    }
    found.event = events.join("; ");
    Ok(found)
}

/// One restart: of node `chosen`, or (`None`) of the node the first user's socket is on.
async fn round(
    target: &dyn Target,
    users: &[(String, VirtualUser)],
    step: &Step,
    began: Instant,
    chosen: Option<usize>,
) -> Result<Found, ClusterError> {
    let phase = Phase { step, began };
    let lb = target.lb_url();
    let url = format!("{}{}", lb.trim_end_matches('/'), step.path.as_deref().unwrap_or("/live/echo"));
    let origin = url::Url::parse(&lb).map(|u| u.origin().ascii_serialization()).unwrap_or_else(|_| lb.clone());
    let mut records = Vec::new();

    let opened = futures::future::join_all(users.iter().map(|(name, user)| {
        let (url, origin) = (&url, &origin);
        async move {
            let started = Instant::now();
            let cookie = cookie_header(user, url);
            (name, user, started, open_and_echo(url, origin, cookie.as_deref(), "hello").await)
        }
    }))
    .await;
    let mut sockets = Vec::new();
    for (name, user, started, result) in opened {
        match result {
            Ok(socket) => {
                records.push(phase.record("open", name, socket.node.clone(), started, Outcome::Ok, String::new()));
                sockets.push((name, user, socket));
            }
            Err(error) => records.push(phase.record("open", name, None, started, Outcome::Failed, error)),
        }
    }
    let node = match chosen {
        Some(index) => Some(target.node_name(index)),
        None => sockets.first().and_then(|(_, _, s)| s.node.clone()),
    };
    // The balancer picks nodes at random: with few users none may be on the chosen node, and a
    // restart no socket sees proves nothing. More sockets are opened, the users in turn, until
    // one is there; none after as many tries is a failure, not a pass.
    if let (Some(node), false) = (&node, users.is_empty()) {
        let tries = ON_NODE_TRIES * target.node_count();
        let mut tried = 0;
        while !sockets.iter().any(|(_, _, s)| s.node.as_deref() == Some(node.as_str())) && tried < tries {
            let (name, user) = &users[tried % users.len()];
            tried += 1;
            let started = Instant::now();
            let cookie = cookie_header(user, &url);
            match open_and_echo(&url, &origin, cookie.as_deref(), "hello").await {
                Ok(socket) if socket.node.as_deref() == Some(node.as_str()) => {
                    records.push(phase.record("open", name, socket.node.clone(), started, Outcome::Ok, String::new()));
                    sockets.push((name, user, socket));
                }
                Ok(socket) => socket.close().await,
                Err(error) => records.push(phase.record("open", name, None, started, Outcome::Failed, error)),
            }
        }
        if !sockets.iter().any(|(_, _, s)| s.node.as_deref() == Some(node.as_str())) {
            let (name, _) = &users[0];
            let detail = format!("no socket landed on {node} in {tried} more tries: its restart was not observed");
            records.push(phase.record("reconnect", name, Some(node.clone()), Instant::now(), Outcome::Failed, detail));
        }
    }
    let Some(node) = node else {
        return Ok(Found { records, event: "websocket-restart: no socket opened, no node restarted".into() });
    };
    let Some(index) = (0..target.node_count()).find(|&i| target.node_name(i) == node) else {
        return Err(ClusterError::failed(node.clone(), "a socket's x-bff-node names no node of the cluster"));
    };
    let (on_node, elsewhere): (Vec<_>, Vec<_>) =
        sockets.into_iter().partition(|(_, _, s)| s.node.as_deref() == Some(node.as_str()));
    let moving = on_node.len();

    // Set once the node is back in the rotation (the restart's last act): a reconnect answered
    // by the node's name after that is its new instance, one before it is the stopping one.
    let restarted_at = std::sync::OnceLock::new();
    let restart = async {
        let result = target.node(index, "restart").await;
        let _ = restarted_at.set(Instant::now());
        result
    };
    let reconnects = futures::future::join_all(on_node.into_iter().map(|(name, user, mut socket)| {
        let (url, origin, node, phase, restarted_at) = (&url, &origin, &node, &phase, &restarted_at);
        async move {
            let started = Instant::now();
            match socket.ended(CLOSED_WITHIN).await {
                Some(Ended::Closed(1001, _)) => {}
                other => {
                    let detail = format!("the stopping node ended the socket with {other:?}, not 1001 (going away)");
                    return phase.record("reconnect", name, Some(node.clone()), started, Outcome::Failed, detail);
                }
            }
            // The load balancer takes the node out before it stops: the reconnect lands elsewhere,
            // or on the node's new instance once it is back.
            let deadline = Instant::now() + RECONNECT_WITHIN;
            let cookie = cookie_header(user, url);
            loop {
                let result = open_and_echo(url, origin, cookie.as_deref(), "again").await;
                match result {
                    Ok(socket) if socket.node.as_deref() != Some(node.as_str()) => {
                        let detail = format!("{node} → {}", socket.node.as_deref().unwrap_or("?"));
                        socket.close().await;
                        return phase.record("reconnect", name, None, started, Outcome::Ok, detail);
                    }
                    Ok(socket) if restarted_at.get().is_some() => {
                        let detail = format!("{node} → {node} (its new instance, back in the rotation)");
                        socket.close().await;
                        return phase.record("reconnect", name, None, started, Outcome::Ok, detail);
                    }
                    Ok(socket) => {
                        let detail = format!("the reconnect landed on {node}, the node that was stopping");
                        return phase.record("reconnect", name, socket.node, started, Outcome::Failed, detail);
                    }
                    Err(error) if Instant::now() >= deadline => {
                        return phase.record("reconnect", name, None, started, Outcome::Failed, error);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    }));
    let (restarted, reconnected) = tokio::join!(restart, reconnects);
    restarted?;
    records.extend(reconnected);

    for (name, _, mut socket) in elsewhere {
        let started = Instant::now();
        let result = socket.echo("still here", ECHO_WITHIN).await;
        let (outcome, detail) = match result {
            Ok(()) => (Outcome::Ok, String::new()),
            Err(error) => (Outcome::Failed, format!("a socket on another node broke: {error}")),
        };
        records.push(phase.record("kept", name, socket.node.clone(), started, outcome, detail));
        socket.close().await;
    }
    let event = format!(
        "websocket-restart: restarted {node}, whose {moving} socket(s) reconnected, logged in ({:.1} s)",
        began.elapsed().as_secs_f64()
    );
    Ok(Found { records, event })
}
