//! The scenario file format (TOML): the cluster, the virtual users, the steps with their
//! expectations, and the thresholds of the run.
//!
//! Steps run in lockstep: every user does a user step (`login`, `me`, `get`, `logout`)
//! concurrently, then a cluster step (`restart-node`, `kill-node`, `start-node`,
//! `restart-redis`, `pause`) happens once, then the next step. A user step with `during` keeps
//! every user repeating it while the cluster step runs (rolling restarts under load).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cluster::{BackendKind, ClusterSpec, Images, LbPolicy, NodeSettings, RedisTopology, StoreKind};

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Set from the file name when loaded.
    #[serde(default)]
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub cluster: ClusterSection,
    #[serde(default)]
    pub load: Load,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub thresholds: Thresholds,
    /// What the run must find for the scenario to pass.
    #[serde(default)]
    pub expect: Verdict,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    pub nodes: usize,
    pub backend: BackendKind,
    pub session_store: StoreKind,
    pub lb: LbPolicy,
    pub redis_persistence: bool,
    /// `single` (default), `sentinel` (a primary, a replica and three sentinels) or `cluster`
    /// (Redis Cluster: three primaries, each with a replica).
    pub redis: RedisTopology,
    pub redis_db_per_node: bool,
    /// Extra `BFF_*` settings for every node.
    pub bff: BTreeMap<String, String>,
    /// A mock API behind `/api/` (auth required).
    pub api_upstream: bool,
    /// Lifetime of the issuer's access tokens, in seconds.
    pub access_token_lifetime: Option<u64>,
    /// The build every node starts on: a `bff` binary (processes; on Docker an image is built
    /// from it), relative to the working directory. Default: the current build. A
    /// `rolling-upgrade` step moves the nodes to another.
    pub build: Option<String>,
    /// What one node does differently: `[cluster.node.2]` with `env`, `binary` or `image`.
    pub node: BTreeMap<String, NodeSettings>,
    /// Compare every node's must-agree settings before any user runs (default on).
    pub drift_check: bool,
    /// A `version` that differs between nodes fails the drift check (default: reported as a
    /// note, since a rolling upgrade runs two versions by design).
    pub strict_version: bool,
    /// After a fault that cuts the nodes' links to the store, how long to hold the next reads
    /// back for a gateway that does not say when its node cache is confirmed again (bff says
    /// so in `/ready`, and is waited for without this).
    pub store_fault_settle_ms: Option<u64>,
}

impl Default for ClusterSection {
    fn default() -> Self {
        let spec = ClusterSpec::default();
        ClusterSection {
            nodes: spec.nodes,
            backend: spec.backend,
            session_store: spec.session_store,
            lb: spec.lb,
            redis_persistence: false,
            redis: RedisTopology::Single,
            redis_db_per_node: false,
            bff: BTreeMap::new(),
            api_upstream: false,
            access_token_lifetime: None,
            build: None,
            node: BTreeMap::new(),
            drift_check: true,
            strict_version: false,
            store_fault_settle_ms: None,
        }
    }
}

impl ClusterSection {
    pub fn spec(&self, images: Images) -> ClusterSpec {
        ClusterSpec {
            nodes: self.nodes,
            backend: self.backend,
            session_store: self.session_store,
            lb: self.lb,
            redis_persistence: self.redis_persistence,
            redis: self.redis,
            redis_db_per_node: self.redis_db_per_node,
            bff_env: self.bff.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            api_upstream: self.api_upstream,
            access_token_lifetime_secs: self.access_token_lifetime,
            seed: None,
            node_settings: self.node.iter().filter_map(|(n, s)| Some((n.parse().ok()?, s.clone()))).collect(),
            images,
            bff_binary: self.build.as_ref().map(std::path::PathBuf::from),
            ..ClusterSpec::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Load {
    /// Virtual users, running concurrently.
    pub users: usize,
    /// How many times each user runs the whole list of steps.
    pub iterations: usize,
    /// Drives the load balancer, the random nodes of cluster steps and the user names: the
    /// same seed on the same cluster routes the same way. Unset: a random one (reported).
    pub seed: Option<u64>,
    /// Each user keeps its cookie jar and connections from one iteration to the next. Off by
    /// default: each iteration starts as a new browser, as k6 does.
    pub keep_cookies: bool,
    /// The users start their first step spread over this many milliseconds instead of all at
    /// once (k6's ramping stage): user `i` of `n` starts after `i / n` of it.
    pub ramp_up_ms: u64,
}

impl Default for Load {
    fn default() -> Self {
        Load { users: 10, iterations: 1, seed: None, keep_cookies: false, ramp_up_ms: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Login,
    Me,
    Get,
    Logout,
    RestartNode,
    KillNode,
    StartNode,
    RestartRedis,
    Pause,
    /// Redis Sentinel's own failover (`SENTINEL FAILOVER`): the replica becomes the master. On a
    /// Redis Cluster, `CLUSTER FAILOVER` on the replica of the `shard` (default: random).
    FailoverRedis,
    /// The Redis master is SIGKILLed; the sentinels notice and promote the replica. On a Redis
    /// Cluster, the primary of the `shard` (default: random), and the cluster promotes its
    /// replica. The killed server comes back as a replica of the new primary.
    KillRedisPrimary,
    /// Redis Cluster: `share` of the slots of `shard` (default: random) move to `to_shard`
    /// (default: the next shard), live, keys and all, while the users go on.
    Reshard,
    /// Redis Cluster: a new primary, with no slots yet, joins the cluster (a `reshard` after it
    /// can give it some: it is the last shard).
    AddRedisNode,
    /// Every node's link to Redis delays each chunk by `latency_ms`, for `millis`.
    RedisLatency,
    /// Every node's link to Redis goes silent (open, nothing passes) for `millis`.
    RedisBlackhole,
    /// Every node's connections to Redis are reset, and new ones too, for `millis`.
    RedisReset,
    /// The `node`'s link to Redis goes silent for `millis`; it still answers the load balancer.
    PartitionNode,
    /// The `node` is frozen (SIGSTOP) for `millis`, then goes on (SIGCONT).
    PauseNode,
    /// Redis is killed (SIGKILL) and started again after `millis`.
    KillRedis,
    /// Every answer of the identity provider comes `latency_ms` later, for `millis`.
    IssuerLatency,
    /// The identity provider answers 503 on every endpoint, for `millis`.
    IssuerDown,
    /// Every user opens a WebSocket through the load balancer (`path`, default `/live/echo`)
    /// and echoes; the node of the first socket (or `node`; `all`: each in turn) is restarted;
    /// its sockets must get 1001 and reconnect, logged in (to another node, or to its new instance
    /// once back in the rotation), and the others must still echo.
    WebsocketRestart,
    /// The `node`s (default: all), one after the other, leave the rotation, drain, and start
    /// again on the build `to` (default: the current build, next to bffctl), each ready before
    /// the next goes.
    RollingUpgrade,
}

impl Action {
    pub fn is_user_step(self) -> bool {
        matches!(self, Action::Login | Action::Me | Action::Get | Action::Logout)
    }

    /// A fault after which every node's links to the store were cut and made again: a node
    /// cache that was filled before it cannot be trusted until the node confirms it again.
    pub fn breaks_store_links(self) -> bool {
        matches!(
            self,
            Action::RestartRedis
                | Action::FailoverRedis
                | Action::KillRedisPrimary
                | Action::RedisReset
                | Action::KillRedis
        )
    }

    /// A fault done to a Redis Cluster's shards (or, for a failover, a Sentinel group).
    pub fn faults_redis_shards(self) -> bool {
        matches!(self, Action::FailoverRedis | Action::KillRedisPrimary | Action::Reshard | Action::AddRedisNode)
    }

    /// A fault that lasts `millis` and then ends by itself.
    pub fn is_bounded_fault(self) -> bool {
        matches!(
            self,
            Action::RedisLatency
                | Action::RedisBlackhole
                | Action::RedisReset
                | Action::PartitionNode
                | Action::PauseNode
                | Action::KillRedis
                | Action::IssuerLatency
                | Action::IssuerDown
        )
    }

    /// A fault on the links between the nodes and Redis (the nodes then reach Redis through
    /// fault relays).
    pub fn faults_redis_links(self) -> bool {
        matches!(self, Action::RedisLatency | Action::RedisBlackhole | Action::RedisReset | Action::PartitionNode)
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Me => "me",
            Action::Get => "get",
            Action::Logout => "logout",
            Action::RestartNode => "restart-node",
            Action::KillNode => "kill-node",
            Action::StartNode => "start-node",
            Action::RestartRedis => "restart-redis",
            Action::Pause => "pause",
            Action::FailoverRedis => "failover-redis",
            Action::KillRedisPrimary => "kill-redis-primary",
            Action::Reshard => "reshard",
            Action::AddRedisNode => "add-redis-node",
            Action::RedisLatency => "redis-latency",
            Action::RedisBlackhole => "redis-blackhole",
            Action::RedisReset => "redis-reset",
            Action::PartitionNode => "partition-node",
            Action::PauseNode => "pause-node",
            Action::KillRedis => "kill-redis",
            Action::IssuerLatency => "issuer-latency",
            Action::IssuerDown => "issuer-down",
            Action::WebsocketRestart => "websocket-restart",
            Action::RollingUpgrade => "rolling-upgrade",
        }
    }
}

/// Where a user step sends its request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// Through the load balancer (a random node).
    #[default]
    Lb,
    /// To every live node directly, one request each.
    EachNode,
    /// To node N (1-based) directly.
    #[serde(untagged)]
    Node(usize),
}

/// Which shard of a Redis Cluster a step acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShardSelector {
    /// One shard picked at random (from the run's seed).
    Random,
    /// Shard N (1-based, in the order the cluster was made; an added primary is the last).
    #[serde(untagged)]
    Index(usize),
}

/// Which node(s) a cluster step acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeSelector {
    /// One node picked at random.
    Random,
    /// Every node, one after the other (a rolling restart).
    All,
    /// Node N (1-based).
    #[serde(untagged)]
    Index(usize),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub action: Action,
    /// A label for reports (default: the action, plus the path or target).
    pub name: Option<String>,
    /// `get`: the path to request.
    pub path: Option<String>,
    /// User steps: where the request goes.
    #[serde(default)]
    pub via: Via,
    /// Cluster steps: which node.
    pub node: Option<NodeSelector>,
    /// `pause`: milliseconds; faults (`redis-blackhole`, `pause-node`, …): how long they last.
    pub millis: Option<u64>,
    /// `redis-latency`, `issuer-latency`: the delay added, in milliseconds.
    pub latency_ms: Option<u64>,
    /// User steps: how many copies of the request each user sends at once (default 1).
    pub parallel: Option<usize>,
    #[serde(default)]
    pub expect: Expect,
    /// User steps: repeat while this cluster step runs.
    pub during: Option<Box<Step>>,
    /// `logout`: the browser keeps a copy of its session cookie (another tab, a stolen copy), so
    /// the steps after it prove the session ended on every node, not only in the browser.
    #[serde(default)]
    pub keep_cookie: bool,
    /// User steps: repeat the request until its expectation holds, for at most this many
    /// milliseconds (how fast a change must reach every node); the latency reported is the time
    /// until it held.
    pub within_ms: Option<u64>,
    /// `rolling-upgrade`: the build the nodes move to, a `bff` binary relative to the working
    /// directory (on Docker also an image); default the current build.
    pub to: Option<String>,
    /// `failover-redis`, `kill-redis-primary`, `reshard` on a Redis Cluster: the shard (1-based)
    /// or `"random"` (the default).
    pub shard: Option<ShardSelector>,
    /// `reshard`: the shard that receives the slots (default: the one after `shard`).
    pub to_shard: Option<usize>,
    /// `reshard`: the share of the source shard's slots that move, above 0 and at most 1.
    pub share: Option<f64>,
}

impl Step {
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let mut label = self.action.name().to_owned();
        if let Some(ShardSelector::Index(n)) = self.shard {
            label.push_str(&format!(" shard {n}"));
        }
        if let Some(share) = self.share {
            label.push_str(&format!(" {:.0}%", share * 100.0));
        }
        if let Some(to) = self.to_shard {
            label.push_str(&format!(" to shard {to}"));
        }
        if let Some(path) = &self.path {
            label.push(' ');
            label.push_str(path);
        }
        match &self.via {
            Via::Lb => {}
            Via::EachNode => label.push_str(" @each-node"),
            Via::Node(n) => label.push_str(&format!(" @node-{n}")),
        }
        if let Some(during) = &self.during {
            label.push_str(&format!(" during {}", during.label()));
        }
        label
    }
}

/// What a user step's response must be.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Expected status (login: the callback's status, 302 when it worked).
    pub status: Option<u16>,
    /// JSON fields the body must have; the value `"$user"` means this virtual user's name.
    #[serde(default)]
    pub json: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Most failed requests allowed (default 0).
    pub max_failures: u64,
    /// Largest failure rate allowed, 0.0 to 1.0 (default 0).
    pub max_failure_rate: f64,
    /// Most requests recorded as unavailable (during faults) allowed; unset = any.
    pub max_unavailable: Option<u64>,
    /// p95 latency bound per step label, in milliseconds.
    pub p95_ms: BTreeMap<String, u64>,
    /// Most refresh_token grants the issuer may see in the whole run (one per session per
    /// expiry is the goal).
    pub max_token_refreshes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The run must meet the thresholds.
    #[default]
    Pass,
    /// A negative control: the run must find failures (it passes when it does).
    Fail,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Verdict {
    pub outcome: Outcome,
    /// Negative controls: the step (label prefix) where failures must show up.
    pub failing_step: Option<String>,
    /// Negative controls: settings the drift check must find differing (`session.cookie_name`).
    pub drift: Vec<String>,
    /// Negative controls: words the cross-node diagnosis must contain (`node-2 is an island`).
    pub diagnosis: Option<String>,
    /// Negative controls: the node that must never become ready at start (`node-2`), named by
    /// the run that stops there; with `drift`, the settings that must differ as well.
    pub never_ready: Option<String>,
}

impl Scenario {
    /// Whether a step (or a step run `during` another) faults the links to Redis.
    pub fn faults_redis_links(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.action.faults_redis_links() || s.during.as_ref().is_some_and(|d| d.action.faults_redis_links()))
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, ScenarioError> {
        let mut scenario: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError::Invalid { path: path.into(), reason: e.to_string() })?;
        if scenario.name.is_empty() {
            scenario.name = Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        }
        scenario.validate().map_err(|reason| ScenarioError::Invalid { path: path.into(), reason })?;
        Ok(scenario)
    }

    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Every `*.toml` in a directory (sorted), or the one file.
    pub fn load_all(path: &Path) -> Result<Vec<Self>, ScenarioError> {
        if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| ScenarioError::Read { path: path.display().to_string(), reason: e.to_string() })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            files.iter().map(|f| Self::load(f)).collect()
        } else {
            Ok(vec![Self::load(path)?])
        }
    }

    /// Every node number the scenario names (`[cluster.node.N]`, `node = N`, `via = "node-N"`)
    /// exists: a scenario error before the run, never "unavailable" during it. Called again when
    /// a command line changes the number of nodes.
    pub fn check_node_numbers(&self) -> Result<(), String> {
        let nodes = self.cluster.nodes;
        let exists = |n: usize| n >= 1 && n <= nodes;
        for key in self.cluster.node.keys() {
            match key.parse::<usize>() {
                Ok(n) if exists(n) => {}
                _ => return Err(format!("[cluster.node.{key}]: no such node (nodes are 1 to {nodes})")),
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            let at = format!("step {} ({})", i + 1, step.action.name());
            for s in std::iter::once(step).chain(step.during.as_deref()) {
                if let Some(NodeSelector::Index(n)) = &s.node
                    && !exists(*n)
                {
                    return Err(format!("{at}: node {n} does not exist (nodes are 1 to {nodes})"));
                }
                if let Via::Node(n) = &s.via
                    && !exists(*n)
                {
                    return Err(format!("{at}: via node-{n}, which does not exist (nodes are 1 to {nodes})"));
                }
            }
        }
        Ok(())
    }

    /// Every step that moves slots or adds a primary runs on a Redis Cluster. Called again when
    /// a command line changes the topology (`run --redis`).
    pub fn check_redis_actions(&self) -> Result<(), String> {
        if self.cluster.redis == RedisTopology::Cluster {
            return Ok(());
        }
        for (i, step) in self.steps.iter().enumerate() {
            for s in std::iter::once(step).chain(step.during.as_deref()) {
                if matches!(s.action, Action::Reshard | Action::AddRedisNode) {
                    return Err(format!(
                        "step {} ({}): needs a Redis Cluster ([cluster] redis = \"cluster\", or --redis cluster)",
                        i + 1,
                        s.action.name()
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("a scenario needs at least one step".into());
        }
        if self.cluster.nodes == 0 {
            return Err("cluster.nodes must be at least 1".into());
        }
        self.check_node_numbers()?;
        self.check_redis_actions()?;
        if self.expect.outcome == Outcome::Fail
            && self.expect.failing_step.is_none()
            && self.expect.drift.is_empty()
            && self.expect.diagnosis.is_none()
            && self.expect.never_ready.is_none()
        {
            return Err(
                "a negative control says what must fail: expect.failing_step, expect.drift, expect.diagnosis or expect.never_ready".into(),
            );
        }
        for (i, step) in self.steps.iter().enumerate() {
            let at = format!("step {} ({})", i + 1, step.action.name());
            if step.action == Action::Get && step.path.is_none() {
                return Err(format!("{at}: get needs a path"));
            }
            if step.action == Action::Pause && step.millis.is_none() {
                return Err(format!("{at}: pause needs millis"));
            }
            if step.action.is_bounded_fault() && step.millis.is_none() {
                return Err(format!("{at}: a fault needs millis (how long it lasts)"));
            }
            if matches!(step.action, Action::RedisLatency | Action::IssuerLatency) && step.latency_ms.is_none() {
                return Err(format!("{at}: {} needs latency_ms", step.action.name()));
            }
            if matches!(step.action, Action::PartitionNode | Action::PauseNode) && step.node.is_none() {
                return Err(format!("{at}: needs node = \"random\", \"all\" or a number"));
            }
            if step.to.is_some() && step.action != Action::RollingUpgrade {
                return Err(format!("{at}: `to` goes with rolling-upgrade"));
            }
            for s in std::iter::once(step).chain(step.during.as_deref()) {
                check_shard_fields(&at, s)?;
            }
            if matches!(step.action, Action::RestartNode | Action::KillNode | Action::StartNode) && step.node.is_none()
            {
                return Err(format!("{at}: needs node = \"random\", \"all\" or a number"));
            }
            if let Some(during) = &step.during {
                if !step.action.is_user_step() {
                    return Err(format!("{at}: only user steps can run during another step"));
                }
                if during.action.is_user_step() {
                    return Err(format!("{at}: `during` takes a cluster step"));
                }
            }
        }
        Ok(())
    }
}

/// The shard fields of a step: only on the steps that take them, shards from 1, a reshard's
/// share above 0 and at most 1.
fn check_shard_fields(at: &str, s: &Step) -> Result<(), String> {
    if s.shard.is_some() && !matches!(s.action, Action::FailoverRedis | Action::KillRedisPrimary | Action::Reshard) {
        return Err(format!("{at}: `shard` goes with failover-redis, kill-redis-primary and reshard"));
    }
    if (s.to_shard.is_some() || s.share.is_some()) && s.action != Action::Reshard {
        return Err(format!("{at}: `to_shard` and `share` go with reshard"));
    }
    if s.shard == Some(ShardSelector::Index(0)) || s.to_shard == Some(0) {
        return Err(format!("{at}: shards are numbered from 1"));
    }
    if s.action == Action::Reshard {
        match s.share {
            Some(share) if share > 0.0 && share <= 1.0 => {}
            Some(share) => {
                return Err(format!(
                    "{at}: share {share} is not above 0 and at most 1 (0.25: a quarter of the shard's slots)"
                ));
            }
            None => return Err(format!("{at}: reshard needs share (0.25: a quarter of the shard's slots)")),
        }
        if let (Some(ShardSelector::Index(from)), Some(to)) = (s.shard, s.to_shard)
            && from == to
        {
            return Err(format!("{at}: shard and to_shard are both {to}"));
        }
    }
    Ok(())
}
