//! Control of a running cluster from another process: `bffctl up` serves this small HTTP API on
//! loopback and writes where it is into a state file; `bffctl status`, `restart-node`, … and
//! `run --attach` are its clients ([`ControlClient`]).
//!
//! Node numbers in URLs are 1-based, as users see them (`node-1`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};

use super::{Cluster, ClusterError, Component};

/// What `bffctl up` writes so other invocations can find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlFile {
    pub control_url: String,
    pub lb_url: String,
    pub issuer_url: String,
    pub backend: String,
    pub nodes: usize,
    pub pid: u32,
    /// Host names the issuer URL needs mapped on the host (`issuer.localhost` → loopback).
    pub resolve: Vec<(String, std::net::SocketAddr)>,
    /// The run directory: each node's log (`bffctl logs node-2`).
    #[serde(default)]
    pub run_dir: Option<PathBuf>,
    /// The nodes' `ops_token` (`bffctl sessions` uses it); absent in files of older bffctl.
    #[serde(default)]
    pub ops_token: Option<String>,
}

/// Where the state file lives: `$BFFCTL_STATE`, else `<tmp>/bffctl/cluster.json`.
pub fn default_state_path() -> PathBuf {
    std::env::var_os("BFFCTL_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("bffctl").join("cluster.json"))
}

/// The cluster status as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub backend: String,
    pub lb_url: String,
    pub issuer_url: String,
    pub nodes: usize,
    pub components: Vec<ComponentStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub name: String,
    pub address: Option<String>,
    pub state: String,
    pub id: Option<String>,
}

impl From<Component> for ComponentStatus {
    fn from(c: Component) -> Self {
        ComponentStatus { name: c.name, address: c.address, state: c.state, id: c.id }
    }
}

pub fn status_of(cluster: &Cluster) -> Status {
    Status {
        backend: cluster.backend_name().into(),
        lb_url: cluster.lb_url(),
        issuer_url: cluster.issuer().url().into(),
        nodes: cluster.node_count(),
        components: cluster.components().into_iter().map(Into::into).collect(),
    }
}

#[derive(Clone)]
struct ControlState {
    cluster: Arc<Mutex<Cluster>>,
    down: Arc<Notify>,
}

type ApiResult = Result<Json<Status>, (StatusCode, String)>;

fn api_error(error: ClusterError) -> (StatusCode, String) {
    match error {
        ClusterError::NoSuchNode(i) => (StatusCode::NOT_FOUND, format!("no node {}", i + 1)),
        other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

async fn status(State(s): State<ControlState>) -> Json<Status> {
    Json(status_of(&*s.cluster.lock().await))
}

async fn node_action(State(s): State<ControlState>, UrlPath((number, action)): UrlPath<(usize, String)>) -> ApiResult {
    let mut cluster = s.cluster.lock().await;
    if number == 0 || number > cluster.node_count() {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no node {number}: this cluster has nodes 1 to {}", cluster.node_count()),
        ));
    }
    let index = number - 1;
    let result = match action.as_str() {
        "restart" => cluster.restart_node(index).await,
        "stop" => cluster.stop_node(index).await,
        "kill" => cluster.kill_node(index).await,
        "start" => cluster.start_node(index).await,
        other => return Err((StatusCode::NOT_FOUND, format!("unknown action {other}"))),
    };
    result.map_err(api_error)?;
    Ok(Json(status_of(&cluster)))
}

async fn restart_redis(State(s): State<ControlState>) -> ApiResult {
    let mut cluster = s.cluster.lock().await;
    cluster.restart_redis().await.map_err(api_error)?;
    Ok(Json(status_of(&cluster)))
}

async fn down(State(s): State<ControlState>) -> StatusCode {
    s.down.notify_one();
    StatusCode::ACCEPTED
}

/// Serves the control API on a loopback port; `down` is notified when a client asks for
/// `bffctl down`. Returns the API's URL.
pub async fn serve(cluster: Arc<Mutex<Cluster>>, down_signal: Arc<Notify>) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/status", get(status))
        .route("/nodes/{number}/{action}", post(node_action))
        .route("/redis/restart", post(restart_redis))
        .route("/down", post(down))
        .with_state(ControlState { cluster, down: down_signal });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no cluster is up (no state file at {0}); start one with `bffctl up`")]
    NoCluster(PathBuf),
    #[error("the cluster recorded in {0} does not answer (was `bffctl up` stopped?)")]
    Unreachable(PathBuf),
    #[error("{0}")]
    Refused(String),
}

/// A client of a running `bffctl up`.
pub struct ControlClient {
    pub file: ControlFile,
    path: PathBuf,
    http: reqwest::Client,
}

impl ControlClient {
    pub fn open(path: &Path) -> Result<Self, ControlError> {
        let text = std::fs::read_to_string(path).map_err(|_| ControlError::NoCluster(path.to_owned()))?;
        let file: ControlFile = serde_json::from_str(&text).map_err(|_| ControlError::NoCluster(path.to_owned()))?;
        Ok(ControlClient { file, path: path.to_owned(), http: reqwest::Client::new() })
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Status, ControlError> {
        let response = request.send().await.map_err(|_| ControlError::Unreachable(self.path.clone()))?;
        if response.status().is_success() {
            response.json().await.map_err(|e| ControlError::Refused(e.to_string()))
        } else {
            Err(ControlError::Refused(response.text().await.unwrap_or_default()))
        }
    }

    pub async fn status(&self) -> Result<Status, ControlError> {
        self.call(self.http.get(format!("{}/status", self.file.control_url))).await
    }

    /// `action` is restart, stop, kill or start; `number` is 1-based.
    pub async fn node(&self, number: usize, action: &str) -> Result<Status, ControlError> {
        self.call(self.http.post(format!("{}/nodes/{number}/{action}", self.file.control_url))).await
    }

    pub async fn restart_redis(&self) -> Result<Status, ControlError> {
        self.call(self.http.post(format!("{}/redis/restart", self.file.control_url))).await
    }

    pub async fn down(&self) -> Result<(), ControlError> {
        let response = self
            .http
            .post(format!("{}/down", self.file.control_url))
            .send()
            .await
            .map_err(|_| ControlError::Unreachable(self.path.clone()))?;
        if response.status().is_success() { Ok(()) } else { Err(ControlError::Refused(response.status().to_string())) }
    }
}
