//! [`Deployment`]: a deployment `bffctl` did not build, reached by URL: the team's own replicas,
//! load balancer and issuer. Nothing is started or torn down.
//!
//! - User steps go to the public URL (the team's load balancer); `each-node` and `via = N` steps
//!   go to the nodes given by name and URL, and are skipped (said in the verdict) without them.
//! - A node restart runs the team's own command (`docker restart {node}`, `kubectl delete pod
//!   {node}`), then waits for that node's readiness URL; without a command, restart steps are
//!   skipped. Redis restarts and kills are never done to a deployment bffctl does not own.

use std::time::Duration;

use async_trait::async_trait;

use super::model::{Action, Step, Via};
use super::target::Target;
use crate::client::{GatewayPaths, VirtualUser};
use crate::cluster::ClusterError;

/// How long a node may take to answer its readiness URL (at the start, or after a restart),
/// unless the deployment says otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A deployment reached by URL.
pub struct Deployment {
    pub public_url: String,
    /// `(name, base URL)` of each node, in the order steps number them.
    pub nodes: Vec<(String, String)>,
    /// Restarts a node: `{node}` is replaced by its name; run with `sh -c`.
    pub restart_cmd: Option<String>,
    /// Where a node says it is ready (200).
    pub ready_path: String,
    pub paths: GatewayPaths,
    /// `(username, password)` for the identity provider's login form, handed to the virtual
    /// users in turn; empty: the issuer logs users in by itself (`login_hint`).
    pub form_users: Vec<(String, String)>,
    /// The next entry of `form_users`.
    pub next_user: std::sync::atomic::AtomicUsize,
    /// How long a node may take to answer its readiness URL, at the start or after a restart.
    pub ready_timeout: Duration,
}

impl Deployment {
    /// Waits until every given node (or, without any, the public URL) answers its readiness
    /// path, so the first users meet a deployment that says it is ready. A node that does not
    /// is [`ClusterError::NodeNotReady`].
    pub async fn wait_until_ready(&self) -> Result<(), ClusterError> {
        if self.nodes.is_empty() {
            return self.wait_ready("the deployment", &self.public_url).await;
        }
        for (name, url) in &self.nodes {
            self.wait_ready(name, url).await?;
        }
        Ok(())
    }

    async fn wait_ready(&self, name: &str, url: &str) -> Result<(), ClusterError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3).min(self.ready_timeout))
            .build()
            .expect("http client");
        let probe = format!("{}{}", url.trim_end_matches('/'), self.ready_path);
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        loop {
            let reason = match crate::process::probe_ready(&http, &probe).await {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            };
            if tokio::time::Instant::now() > deadline {
                return Err(ClusterError::not_ready(
                    name,
                    format!("not ready within {:?}: {reason}", self.ready_timeout),
                    None,
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[async_trait]
impl Target for Deployment {
    fn lb_url(&self) -> String {
        self.public_url.clone()
    }

    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn backend(&self) -> String {
        "target".into()
    }

    async fn node_urls(&self) -> Vec<Option<String>> {
        self.nodes.iter().map(|(_, url)| Some(url.clone())).collect()
    }

    fn node_name(&self, index: usize) -> String {
        self.nodes.get(index).map(|(n, _)| n.clone()).unwrap_or_else(|| crate::cluster::node_name(index))
    }

    fn cannot(&self, step: &Step) -> Option<String> {
        match step.action {
            Action::RestartNode | Action::WebsocketRestart if self.restart_cmd.is_none() => {
                Some("no --restart-cmd given".into())
            }
            Action::RestartNode | Action::WebsocketRestart if self.nodes.is_empty() => {
                Some("no --node given to restart".into())
            }
            Action::KillNode | Action::StartNode => Some("bffctl kills and starts only nodes it started".into()),
            Action::RestartRedis => Some("bffctl restarts only a Redis it started".into()),
            Action::RollingUpgrade => Some("bffctl upgrades only nodes it started".into()),
            Action::FailoverRedis | Action::KillRedisPrimary => {
                Some("bffctl fails over only a Redis Sentinel group it started".into())
            }
            _ if step.action.is_user_step() && step.via != Via::Lb && self.nodes.is_empty() => {
                Some("no --node given for direct node requests".into())
            }
            _ => None,
        }
    }

    async fn node(&self, index: usize, action: &str) -> Result<(), ClusterError> {
        let (name, url) = self.nodes.get(index).ok_or(ClusterError::NoSuchNode(index + 1))?;
        let template = self.restart_cmd.as_deref().filter(|_| action == "restart").ok_or_else(|| {
            ClusterError::failed(name.clone(), format!("cannot {action} a node of a deployment bffctl did not build"))
        })?;
        let command = template.replace("{node}", name);
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| ClusterError::failed(name.clone(), format!("cannot run {command:?}: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(ClusterError::failed(
                name.clone(),
                format!("{command:?} failed ({}): {}", output.status, stderr.trim()),
            ));
        }
        self.wait_ready(name, url).await
    }

    async fn restart_redis(&self) -> Result<(), ClusterError> {
        Err(ClusterError::failed("restart-redis", "bffctl restarts only a Redis it started"))
    }

    fn user(&self, login_hint: &str) -> VirtualUser {
        let user = VirtualUser::with_resolver(Some(login_hint), &[]).with_paths(self.paths.clone());
        if self.form_users.is_empty() {
            return user;
        }
        let at = self.next_user.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.form_users.len();
        let (username, password) = &self.form_users[at];
        user.with_credentials(username, password)
    }

    async fn node_log(&self, _index: usize) -> Option<std::path::PathBuf> {
        None
    }

    async fn issuer_calls(&self, _endpoint: &str) -> Option<u64> {
        None
    }
}

/// Why a scenario cannot run against a deployment bffctl did not build: it builds a cluster of
/// its own kind (another store, per-node settings, extra gateway settings, a mock API).
pub fn needs_own_cluster(scenario: &super::Scenario) -> Option<String> {
    let c = &scenario.cluster;
    let mut needs = Vec::new();
    if c.session_store != crate::cluster::StoreKind::Redis {
        needs.push("another session store");
    }
    if c.redis_db_per_node {
        needs.push("a Redis database per node");
    }
    if !c.bff.is_empty() {
        needs.push("its own gateway settings");
    }
    if !c.node.is_empty() {
        needs.push("a node with other settings");
    }
    if c.api_upstream {
        needs.push("a mock API behind /api/");
    }
    if c.access_token_lifetime.is_some() {
        needs.push("its own access-token lifetime at the issuer");
    }
    (!needs.is_empty()).then(|| format!("builds its own cluster ({})", needs.join(", ")))
}
