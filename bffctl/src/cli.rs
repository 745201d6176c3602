//! The command line: every subcommand and flag of `bffctl`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use harness::cluster::{BackendKind, ClusterSpec, LbPolicy, StoreKind};

/// Shown after `bffctl --help`'s commands.
const EXAMPLES: &str = "\
Examples:
  bffctl verify-scaling --nodes 3 --users 20 --backend process   # does a 3-node cluster scale?
  bffctl verify-scaling --target https://app.example.com --node node-1=http://10.0.0.5:8080 \\
      --restart-cmd 'kubectl delete pod {node}'                  # a deployment bffctl did not build
  bffctl up --nodes 3 & bffctl restart-node 2; bffctl down       # a cluster to try things on
  bffctl run scenarios/ --report html report.html               # every scenario, one page

Exit codes: 0 pass, 1 the deployment failed, 2 bffctl could not do its job (bad arguments, a bad
scenario, no Docker and no redis-server, no cluster up), 128+N stopped by signal N.
The manual: docs/src/ (just docs builds it).";

const UP_EXAMPLES: &str = "\
Examples:
  bffctl up --nodes 3 --backend process     # then open the URL it prints
  bffctl up --nodes 2 --session-store memory --lb sticky
  bffctl up --redis cluster --backend process # Redis Cluster: 3 primaries, 3 replicas

Exit codes: 0 after `bffctl down` or Ctrl-C, 2 a cluster that could not start (or is already up).";

const VERIFY_EXAMPLES: &str = "\
Examples:
  bffctl verify-scaling                                         # 3 nodes, 20 users, 2 iterations
  bffctl verify-scaling --backend process --nodes 3 --users 100 --seed 42
  bffctl verify-scaling --node-env 2:BFF_REDIS_KEY_PREFIX=other  # one odd node: must FAIL naming node-2
  bffctl verify-scaling --redis cluster                         # sessions on a Redis Cluster
  bffctl verify-scaling --target http://127.0.0.1:18080 --node node-1=http://127.0.0.1:18081 \\
      --restart-cmd 'docker restart {node}' --gateway mod-auth-openidc

Exit codes: 0 pass, 1 the deployment failed (failed requests, a node never ready, drift),
2 bffctl could not do its job (bad arguments, no Docker and no redis-server, inconclusive).";

const SESSIONS_EXAMPLES: &str = "\
Examples:
  bffctl sessions list --sub alice                    # the cluster `bffctl up` runs
  bffctl sessions end --sub alice                     # every session of alice, on every node
  bffctl sessions list --target https://app.example.com --sub 2482897 --ops-token \"$T\" --json
  bffctl sessions end --target https://app.example.com --sub 2482897 --id 3f1c…  # one session

The gateway must have an ops_token (else its session API answers 404). An end is effective on
every node (node caches included) when it returns, and ending again ends 0.
Exit codes: 0 done, 2 the gateway could not be asked (unreachable, refused the token, no API).";

const RUN_EXAMPLES: &str = "\
Examples:
  bffctl run scenarios/                                         # every scenario, a cluster each
  bffctl run scenarios/rolling-restart.toml --attach            # on the cluster of `bffctl up`
  bffctl run scenarios/redis-cluster-reshard.toml --backend docker
  bffctl run scenarios/login-me-restart.toml --redis cluster    # any scenario on a Redis Cluster
  bffctl run scenarios/ --target http://127.0.0.1:18080 --report junit out.xml

Exit codes: 0 every scenario passed, 1 one failed, 2 a bad scenario or bad arguments.";

const SOAK_EXAMPLES: &str = "\
Examples:
  bffctl soak --duration 10m --rate 200/s --users 100 --seed 42 --html soak.html
  bffctl soak --redis cluster --duration 2m --fault-every 20s   # shard failovers, kills, reshards

Exit codes: 0 every invariant and bound held, 1 not, 2 the soak could not run.";

const WATCH_EXAMPLES: &str = "\
Examples:
  bffctl watch --target https://app.example.com --node node-1=http://10.0.0.5:8080 \\
      --node node-2=http://10.0.0.6:8080 --ops-token \"$OPS_TOKEN\" --every 30s --listen 0.0.0.0:9464
  bffctl watch --target http://127.0.0.1:18080 --node node-1=http://127.0.0.1:18081 --once

Metrics at http://LISTEN/metrics:
  bffctl_watch_runs_total{result}                rounds run, pass or fail
  bffctl_watch_failures{node,check}              failures of the last round (check: login, me,
                                                 cross_read, drift; 0 where none)
  bffctl_watch_failures_total{node,check}        failures since the start
  bffctl_watch_drift{node,setting}               1: the node's value differs from the others'
  bffctl_watch_last_success_timestamp_seconds    when the last passing round began
  bffctl_watch_run_duration_seconds, bffctl_watch_check_duration_seconds{check},
  bffctl_watch_last_run_timestamp_seconds

Exit codes: 0 stopped by Ctrl-C or SIGTERM (a watch's normal end), or with --once / --count N
every round passed; 1 a round of --once / --count N failed; 2 bad arguments, --listen in use.";

/// Where `up` records the running cluster, for the commands that talk to it.
#[derive(Args, Clone, Default)]
pub struct StateArgs {
    /// Where `bffctl up` records the running cluster for the other commands.
    #[arg(long, env = "BFFCTL_STATE", value_name = "FILE")]
    pub state_file: Option<PathBuf>,
}

#[derive(Parser)]
#[command(
    name = "bffctl",
    version,
    about = "Bring up a bff cluster and prove that it scales.",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start Redis, N gateway nodes, a mock issuer and a load balancer; stay up until Ctrl-C or `bffctl down`.
    #[command(after_help = UP_EXAMPLES)]
    Up(UpArgs),
    /// Show the running cluster.
    Status(ControlArgs),
    /// Restart node I (1-based) gracefully: out of the load balancer, SIGTERM, start, ready, back in.
    RestartNode(NodeArgs),
    /// Kill node I at once (SIGKILL).
    KillNode(NodeArgs),
    /// Stop node I gracefully.
    StopNode(NodeArgs),
    /// Start node I again.
    StartNode(NodeArgs),
    /// Restart Redis.
    RestartRedis(ControlArgs),
    /// Stop the running cluster and remove everything it started (nothing up: nothing to do, exit 0).
    Down(StateArgs),
    /// Build the local Docker images (bff and redis, FROM scratch; no registry needed) ahead of time
    /// (the docker backend builds them itself when they are missing or older than the bff binary).
    Images(ImagesArgs),
    /// Run the mock OpenID Connect issuer alone (for a deployment bffctl did not build, e.g. a
    /// staging gateway pointed at it); users are logged in and consented automatically.
    Issuer(IssuerArgs),
    /// Show a node's output (its log file in the run directory): of the cluster `up` runs, else of
    /// the latest run.
    Logs(LogsArgs),
    /// List or end a user's sessions on every node, through a gateway's session API for operators.
    #[command(after_help = SESSIONS_EXAMPLES)]
    Sessions(SessionsArgs),
    /// Run the restart-survival test (log in, me, restart every node, me again) on a fresh cluster and tear it down.
    #[command(after_help = VERIFY_EXAMPLES)]
    VerifyScaling(VerifyArgs),
    /// Run scenario files (a file or every *.toml in a directory).
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// List the scenarios in a directory with their descriptions.
    Scenarios(ScenariosArgs),
    /// List the gateway presets for --gateway (paths, anonymous answer, identity, logout) and
    /// whether CI runs each against the real gateway.
    Gateways(OutputArgs),
    /// Benchmark the gateway next to a direct upstream and nginx (needs wrk and nginx; oha for the open-loop pass).
    Bench(BenchArgs),
    /// Soak a fresh process cluster: an open-loop request rate for a duration, a seeded fault from
    /// the catalogue at every interval, memory, file descriptors and Redis keys sampled; reports
    /// wrong answers, unavailability in and out of faults, recovery times and p50/p99 per minute.
    #[command(after_help = SOAK_EXAMPLES)]
    Soak(SoakArgs),
    /// Watch a live deployment: every interval a login through its load balancer, me on every
    /// node, the created-on × read-on check and the drift check; results served as Prometheus
    /// metrics, each failure logged with its request id and traceparent. Never starts, stops or
    /// restarts anything; runs until Ctrl-C (or --once, --count N).
    #[command(after_help = WATCH_EXAMPLES)]
    Watch(WatchArgs),
    /// Print a shell completion script: `source <(bffctl completions bash)`.
    Completions(CompletionsArgs),
    /// Write a man page per command (bffctl.1, bffctl-up.1, …) into a directory.
    Man(ManArgs),
}

impl Command {
    /// Whether the command only reads and prints (no cluster, no child process): it may end when
    /// the reader of its output does.
    pub fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Status(_)
                | Command::Sessions(_)
                | Command::Logs(_)
                | Command::Scenarios(_)
                | Command::Gateways(_)
                | Command::Completions(_)
                | Command::Man(_)
        )
    }
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh or fish (also elvish, powershell).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// The directory to write the pages into (made when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The commands that talk to a running `bffctl up`: where to find it, and the output format.
#[derive(Args, Clone)]
pub struct ControlArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct SoakArgs {
    /// How long the load runs (`60s`, `10m`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Requests started per second, whatever the answers take (`200/s` or `200`).
    #[arg(long, default_value = "200/s", value_parser = parse_rate)]
    pub rate: f64,
    /// Virtual users (each logged in once at the start).
    #[arg(long, default_value_t = 100, value_parser = parse_user_count, allow_negative_numbers = true)]
    pub users: usize,
    /// Seeds the fault schedule and the requests' users and kinds.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of gateway nodes (1 or more).
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    pub nodes: usize,
    /// Nodes and Redis as processes, or as containers (sampled through `docker inspect`'s pid).
    #[arg(long, value_enum, default_value_t = BackendArg::Process)]
    pub backend: BackendArg,
    /// How Redis runs: one server (faults on the links to it, and its death), or a Redis Cluster
    /// (3 primaries, 3 replicas; faults: a shard failed over, a primary killed, slots moved).
    #[arg(long, value_enum, default_value_t = SoakRedisArg::Single)]
    pub redis: SoakRedisArg,
    /// A fault starts this often.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub fault_every: std::time::Duration,
    /// How long each fault lasts.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub fault_lasts: std::time::Duration,
    /// How often RSS, open fds and the Redis key count are sampled.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub sample_every: std::time::Duration,
    /// The bff binary (default: next to bffctl).
    #[arg(long)]
    pub bff_binary: Option<PathBuf>,
    /// Write every request of the run (time, user, node, answer) to this file, one JSON object a line.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Write the report as one self-contained HTML page (verdict, invariants, faults, latency
    /// per minute, resource curves drawn over the run).
    #[arg(long)]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("{text:?} is not a rate: write e.g. 200/s")),
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// Seconds per closed-loop run.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Interleaved rounds per configuration (medians reported).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Cold starts to time.
    #[arg(long, default_value_t = 20)]
    pub cold_starts: usize,
    /// A one-second smoke run (1 round, no open loop, 3 cold starts): proves the benchmark works, measures nothing.
    #[arg(long)]
    pub smoke: bool,
    /// Skip the open-loop latency pass.
    #[arg(long)]
    pub no_open_loop: bool,
    /// Directory for the JSON result.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// The `bff` binary (default: next to bffctl, then PATH).
    #[arg(long, env = "BFF_BIN")]
    pub bff_binary: Option<PathBuf>,
    /// Another `bff` binary (say, a build from before a change) measured in the same interleaved
    /// rounds, as the configurations `…@baseline`.
    #[arg(long, value_name = "BINARY")]
    pub baseline: Option<PathBuf>,
    /// Active session counts for the curve of cost against sessions, comma-separated, up to
    /// 1000000 (the first 1000 sessions made by full logins, the rest sealed and stored by the
    /// gateway binary's `bff seed-sessions`); `--sessions ""` skips the curve.
    #[arg(long, default_value = "1,10000,200000", value_parser = parse_counts)]
    pub sessions: SessionCounts,
    /// How the curve's requests pick their session, comma-separated: uniform (every session
    /// equally often, the worst case for the node cache) and zipf (the k-th session in
    /// proportion to 1/k, as real traffic is skewed); one curve each.
    #[arg(long, default_value = "uniform,zipf", value_delimiter = ',')]
    pub access: Vec<AccessArg>,
    /// Where the measured gateways keep sessions: single (one redis-server), or cluster (also
    /// a Redis Cluster of three primaries, no replicas: bff-auth-cluster and
    /// bff-auth-cluster-uncached in the same rounds, and the sessions curve on the cluster too,
    /// with each primary's memory and keys).
    #[arg(long, value_enum, default_value_t = BenchRedisArg::Single)]
    pub redis: BenchRedisArg,
    /// Also draw the curves as an SVG next to the JSON result.
    #[arg(long)]
    pub plot: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Virtual users, running concurrently; or, with --login form, a users file (one
    /// `username:password` a line), and then as many virtual users as it has lines.
    #[arg(long, default_value = "20", value_name = "N|FILE", value_parser = parse_users, allow_negative_numbers = true)]
    pub users: UsersArg,
    /// Times each user runs the steps.
    #[arg(long, default_value_t = 2)]
    pub iterations: usize,
    /// Give each node its own Redis database (nodes that do not share data; must be caught).
    #[arg(long)]
    pub redis_db_per_node: bool,
    /// Reproducible run: drives the load balancer, the random nodes and the user names (every
    /// report prints the seed it used).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip comparing the nodes' must-agree settings (/ops/fingerprint) before the users run:
    /// what behaviour alone catches.
    #[arg(long)]
    pub no_drift_check: bool,
    /// Fail the drift check when nodes run different versions (default: a version difference
    /// is reported as a note, since a rolling upgrade runs two versions by design).
    #[arg(long)]
    pub strict_version: bool,
    /// Roll the cluster to another build while the users run: the nodes start on --bff-binary
    /// (default: the current build) and are replaced one by one (drain, stop, start on BUILD,
    /// ready) during `me`; the matrix then shows each node on each build. BUILD: a `bff` binary
    /// (on Docker also an image).
    #[arg(long, value_name = "BUILD")]
    pub upgrade_to: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub users_behave: BrowserArgs,
    #[command(flatten)]
    pub deployment: TargetArgs,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// How the virtual users behave as browsers.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Virtual users")]
pub struct BrowserArgs {
    /// Each user keeps its cookies and connections from one iteration to the next (default: each
    /// iteration starts as a new browser, as k6 does).
    #[arg(long)]
    pub keep_cookies: bool,
    /// Start the users spread over this time instead of all at once (as k6's ramping stages).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ramp_up: Option<std::time::Duration>,
}

impl BrowserArgs {
    /// Applies these to a scenario's load.
    pub fn apply(&self, load: &mut harness::scenario::Load) {
        load.keep_cookies |= self.keep_cookies;
        if let Some(ramp) = self.ramp_up {
            load.ramp_up_ms = ramp.as_millis() as u64;
        }
    }
}

/// A deployment bffctl did not build, reached by URL (`--target`).
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "A deployment bffctl did not build (--target)")]
pub struct TargetArgs {
    /// Verify a deployment reached at this URL (its load balancer) instead of building one:
    /// nothing is started or torn down.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// A node's direct address, for the each-node steps and restarts: --node node-1=http://10.0.0.5:8080
    /// (repeatable, in order). Without any, those steps are skipped and the verdict says so.
    #[arg(long = "node", id = "node_url", value_name = "NAME=URL", value_parser = parse_pair)]
    pub node_urls: Vec<(String, String)>,
    /// Restarts a node; {node} is its name: 'docker restart {node}', 'kubectl delete pod {node}'.
    /// Without it restart steps are skipped and the verdict says so.
    #[arg(long, value_name = "TEMPLATE")]
    pub restart_cmd: Option<String>,
    /// Where a node answers 200 when it is ready again after a restart.
    #[arg(long, default_value = "/ready")]
    pub ready_path: String,
    /// The gateways' ops_token, for the drift check (/ops/fingerprint) on the --node addresses.
    #[arg(long, env = "BFFCTL_OPS_TOKEN", hide_env_values = true)]
    pub ops_token: Option<String>,
    /// The kind of gateway: its login, me and logout paths, what me answers without a session,
    /// where me names the user: bff, mod-auth-openidc, oauth2-proxy, oidcproxy, duende, or a
    /// preset file (.toml). `bffctl gateways` lists them. The options below override it.
    #[arg(long, value_name = "NAME|FILE")]
    pub gateway: Option<String>,
    /// The gateway's login path (e.g. /bff/login for Duende.BFF, /oauth2/start for oauth2-proxy).
    #[arg(long, value_name = "PATH")]
    pub login_path: Option<String>,
    /// The gateway's "who am I" path (e.g. /bff/user, /oauth2/userinfo).
    #[arg(long, value_name = "PATH")]
    pub me_path: Option<String>,
    /// A header the me call needs, e.g. --me-header 'X-CSRF: 1' (Duende.BFF).
    #[arg(long, value_name = "NAME: VALUE")]
    pub me_header: Option<String>,
    /// The status the gateway's me answers without a session (bff: 404; many others: 401).
    #[arg(long, value_name = "STATUS")]
    pub anonymous_status: Option<u16>,
    /// A JSON pointer to the user's identity in me's answer (bff: /sub); without one (and no
    /// preset), the user's name anywhere in the answer will do.
    #[arg(long, value_name = "POINTER")]
    pub identity_pointer: Option<String>,
    /// The gateway's logout path (bff: POST with the CSRF header).
    #[arg(long, value_name = "PATH")]
    pub logout_path: Option<String>,
    /// After a fault that cuts the nodes' links to the store, hold the next reads back this long,
    /// for a gateway whose /ready does not say when its node cache is confirmed again (bff's
    /// does, and is waited for without this).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub settle_after_store_fault: Option<std::time::Duration>,
    /// How the virtual users log in at the issuer: `mock` (it logs them in by itself) or `form`
    /// (fill its HTML login form, and a consent form when one appears, from --users).
    #[arg(long, value_enum, default_value_t = LoginArg::Mock)]
    pub login: LoginArg,
    /// The users for --login form: one `username:password` a line. Passwords appear in no report.
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
}

/// `bffctl watch`: a deployment bffctl did not build, watched; nothing is restarted, so there is
/// no restart command.
#[derive(Args, Clone)]
pub struct WatchArgs {
    /// The deployment's public URL (its load balancer): each round's first login goes there.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// A node's direct address: --node node-1=http://10.0.0.5:8080 (repeatable, in order). Each
    /// node gets me, a login pinned to it with reads on all the others, and the drift check.
    #[arg(long = "node", id = "node_url", value_name = "NAME=URL", value_parser = parse_pair)]
    pub node_urls: Vec<(String, String)>,
    /// The time from one round's start to the next's (a longer round delays the next).
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub every: std::time::Duration,
    /// Where the metrics are served (`/metrics`); port 0 picks a free one (printed at start).
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Run one round and exit (0 pass, 1 fail).
    #[arg(long, conflicts_with = "count")]
    pub once: bool,
    /// Run N rounds and exit (0 every round passed, 1 one failed).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// The gateways' ops_token, for the drift check (/ops/fingerprint) on the --node addresses.
    #[arg(long, env = "BFFCTL_OPS_TOKEN", hide_env_values = true)]
    pub ops_token: Option<String>,
    /// The kind of gateway (bff, mod-auth-openidc, oauth2-proxy, oidcproxy, duende, or a preset
    /// file): its login and me paths and where me names the user.
    #[arg(long, value_name = "NAME|FILE")]
    pub gateway: Option<String>,
    /// The gateway's login path.
    #[arg(long, value_name = "PATH")]
    pub login_path: Option<String>,
    /// The gateway's "who am I" path.
    #[arg(long, value_name = "PATH")]
    pub me_path: Option<String>,
    /// A header the me call needs, e.g. --me-header 'X-CSRF: 1' (Duende.BFF).
    #[arg(long, value_name = "NAME: VALUE")]
    pub me_header: Option<String>,
    /// A JSON pointer to the user's identity in me's answer (bff: /sub).
    #[arg(long, value_name = "POINTER")]
    pub identity_pointer: Option<String>,
    /// How the test user logs in at the issuer: `mock` (it logs users in by itself: bffctl's
    /// issuer) or `form` (fill the identity provider's login form with a user of --users-file).
    #[arg(long, value_enum, default_value_t = LoginArg::Mock)]
    pub login: LoginArg,
    /// The test users for --login form: one `username:password` a line; used in turn.
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Print each round as one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

impl WatchArgs {
    /// The deployment options `verify-scaling --target` reads, without a restart command.
    pub fn target_args(&self) -> TargetArgs {
        TargetArgs {
            target: Some(self.target.clone()),
            node_urls: self.node_urls.clone(),
            restart_cmd: None,
            ready_path: "/ready".into(),
            ops_token: self.ops_token.clone(),
            gateway: self.gateway.clone(),
            login_path: self.login_path.clone(),
            me_path: self.me_path.clone(),
            me_header: self.me_header.clone(),
            anonymous_status: None,
            identity_pointer: self.identity_pointer.clone(),
            logout_path: None,
            settle_after_store_fault: None,
            login: self.login,
            users_file: self.users_file.clone(),
        }
    }
}

/// `--users`: a number of virtual users, or a users file for `--login form`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsersArg {
    Count(usize),
    File(PathBuf),
}

/// `soak --users`: a number of virtual users, 1 or more.
fn parse_user_count(s: &str) -> Result<usize, String> {
    match parse_users(s)? {
        UsersArg::Count(n) => Ok(n),
        UsersArg::File(_) => Err(format!("{s:?} is not a number of users")),
    }
}

/// `--nodes`: checked while the arguments are read, so a cluster of none is refused before any
/// image is built or run directory made.
fn parse_nodes(s: &str) -> Result<usize, String> {
    match s.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n as usize),
        Ok(_) => Err("a cluster needs at least one node".into()),
        Err(_) => Err(format!("{s:?} is not a number of nodes")),
    }
}

fn parse_users(s: &str) -> Result<UsersArg, String> {
    if s.parse::<i64>().is_ok_and(|n| n < 0) {
        return Err("at least one virtual user".into());
    }
    match s.parse::<usize>() {
        Ok(0) => Err("at least one virtual user".into()),
        Ok(n) => Ok(UsersArg::Count(n)),
        Err(_) if std::path::Path::new(s).is_file() => Ok(UsersArg::File(PathBuf::from(s))),
        Err(_) => Err(format!("{s:?} is neither a number of users nor a users file")),
    }
}

#[derive(Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum LoginArg {
    #[default]
    Mock,
    Form,
}

#[derive(Args)]
#[command(next_help_heading = "Report")]
pub struct ReportArgs {
    /// Write a report: `--report json FILE`, `--report junit FILE` or `--report html FILE` (one
    /// self-contained page: verdict, drift table, matrix, latency timeline, failures); repeatable.
    #[arg(long, num_args = 2, value_names = ["FORMAT", "FILE"], action = clap::ArgAction::Append)]
    pub report: Vec<String>,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// A scenario file, or a directory of them.
    pub path: PathBuf,
    /// Override the scenarios' backend.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Override the scenarios' Redis: single, sentinel or cluster (3 primaries, 3 replicas).
    /// Scenarios with reshard or add-redis-node steps need cluster.
    #[arg(long, value_enum)]
    pub redis: Option<RedisArg>,
    /// Run against the cluster of a running `bffctl up` instead of starting one per scenario.
    #[arg(long)]
    pub attach: bool,
    #[command(flatten)]
    pub state: StateArgs,
    /// Override the number of virtual users; or, with --login form, a users file.
    #[arg(long, value_name = "N|FILE", value_parser = parse_users, allow_negative_numbers = true)]
    pub users: Option<UsersArg>,
    /// Override the number of iterations.
    #[arg(long)]
    pub iterations: Option<usize>,
    #[arg(long, default_value = "bff-local/bff:latest")]
    pub bff_image: String,
    #[arg(long, default_value = "bff-local/redis:latest")]
    pub redis_image: String,
    /// How long a node may take to become ready (default 15s for processes, 30s for containers).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ready_timeout: Option<std::time::Duration>,
    /// Reproducible runs: the seed of every scenario (default: each its own, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub users_behave: BrowserArgs,
    #[command(flatten)]
    pub deployment: TargetArgs,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Args)]
pub struct IssuerArgs {
    /// Where to listen.
    #[arg(long, default_value = "0.0.0.0:9400")]
    pub listen: std::net::SocketAddr,
    /// The host name in the issuer URL (what gateways and browsers use to reach it). The default
    /// resolves on any host; containers need a name they map to this host (e.g.
    /// `issuer.localhost` with `--add-host issuer.localhost:host-gateway`).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Refuse authorization requests without a PKCE `code_challenge` (default: PKCE is enforced
    /// when the client sends a challenge; a confidential client may omit it, as real providers allow).
    #[arg(long)]
    pub require_pkce: bool,
    /// Issue a new refresh token at each refresh and refuse the used one (default: one refresh
    /// token serves every refresh).
    #[arg(long)]
    pub rotate_refresh_tokens: bool,
    #[arg(long, default_value = harness::cluster::CLIENT_ID)]
    pub client_id: String,
    #[arg(long, env = "BFFCTL_ISSUER_CLIENT_SECRET", hide_env_values = true, default_value = harness::cluster::CLIENT_SECRET)]
    pub client_secret: String,
    /// A registered redirect URI (repeatable); authorize refuses others. None: any.
    #[arg(long = "redirect-uri", value_name = "URL")]
    pub redirect_uris: Vec<String>,
    /// Serve a real HTML login form (and a consent form) for the users of --users-file instead of
    /// logging users in by itself.
    #[arg(long)]
    pub form_login: bool,
    /// `username:password` a line, for --form-login.
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// `node-2` (or `2`).
    pub node: String,
    /// Keep printing what the node writes, until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, short = 'n', value_name = "N")]
    pub tail: Option<usize>,
    /// The run directory (default: the running `bffctl up`, else the latest run).
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Args)]
pub struct ScenariosArgs {
    /// Directory of scenario files.
    #[arg(default_value = "scenarios")]
    pub path: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Clone)]
pub struct OutputArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SessionsAction {
    /// Show the sessions: created, last seen, idle and absolute expiry, the node that created each.
    List,
    /// End them (all, or one with --id) on every node at once.
    End,
}

/// What to do with whose sessions, on which gateway.
#[derive(Args)]
pub struct SessionsArgs {
    /// list or end.
    #[arg(value_enum)]
    pub action: SessionsAction,
    /// The gateway: its public URL (a load balancer, or any one node: each answers for the
    /// whole store). Default: the load balancer of the cluster `bffctl up` runs.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// The user: the issuer's `sub` claim.
    #[arg(long, required_unless_present = "sid", conflicts_with = "sid")]
    pub sub: Option<String>,
    /// One login at the issuer: its `sid` claim (instead of --sub).
    #[arg(long)]
    pub sid: Option<String>,
    /// With `end`, only this session: the id `bffctl sessions list` shows (a handle, not a cookie).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// The gateway's ops_token. Default: the token of the cluster `bffctl up` runs.
    #[arg(long, env = "BFF_OPS_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub ops_token: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct NodeArgs {
    /// Node number, 1-based (node-1 is 1).
    pub node: usize,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Auto,
    Docker,
    Process,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StoreArg {
    Redis,
    Memory,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RedisArg {
    /// One redis-server.
    Single,
    /// A primary, a replica and three sentinels (processes or containers); nodes use redis+sentinel://.
    Sentinel,
    /// Redis Cluster: three primaries and three replicas (processes or containers); nodes use
    /// redis+cluster:// with every primary as a seed.
    Cluster,
}

impl RedisArg {
    pub fn topology(self) -> harness::cluster::RedisTopology {
        match self {
            RedisArg::Single => harness::cluster::RedisTopology::Single,
            RedisArg::Sentinel => harness::cluster::RedisTopology::Sentinel,
            RedisArg::Cluster => harness::cluster::RedisTopology::Cluster,
        }
    }
}

/// `bench --redis`: the topologies a benchmark measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchRedisArg {
    /// One redis-server.
    Single,
    /// One redis-server and, next to it, a Redis Cluster of three primaries.
    Cluster,
}

/// `soak --redis`: the topologies a soak has a fault catalogue for.
#[derive(Clone, Copy, ValueEnum)]
pub enum SoakRedisArg {
    /// One redis-server, reached through fault relays.
    Single,
    /// Redis Cluster: three primaries and three replicas.
    Cluster,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LbArg {
    Random,
    RoundRobin,
    Sticky,
}

/// How the cluster is built; shared by `up` and the verification commands.
#[derive(Args, Clone)]
#[command(next_help_heading = "The cluster bffctl builds (not with --target)")]
pub struct ClusterArgs {
    /// Number of gateway nodes (1 or more).
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    pub nodes: usize,
    /// Where the nodes run: auto (Docker when it answers, else local processes; Redis Sentinel and
    /// Redis Cluster as processes), docker
    /// (containers from local images, built on demand) or process (redis-server and bff from PATH).
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Where the nodes keep sessions: redis (shared, the deployment that scales) or memory (each
    /// node its own: a negative control that must fail).
    #[arg(long, value_enum, default_value_t = StoreArg::Redis)]
    pub session_store: StoreArg,
    /// How the load balancer picks a node per request.
    #[arg(long, value_enum, default_value_t = LbArg::Random)]
    pub lb: LbArg,
    /// Redis keeps its data across its restarts (append-only file).
    #[arg(long)]
    pub redis_persistence: bool,
    /// How Redis runs: one server, with Sentinel (primary, replica, 3 sentinels), or as a Redis
    /// Cluster (3 primaries, 3 replicas).
    #[arg(long, value_enum, default_value_t = RedisArg::Single)]
    pub redis: RedisArg,
    /// Extra gateway setting for every node, e.g. --bff-env BFF_KEY_RING=local (repeatable).
    #[arg(long = "bff-env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub bff_env: Vec<(String, String)>,
    /// A setting of one node only, over every node's: --node-env 2:BFF_SESSION_COOKIE_NAME=other
    /// (repeatable; an empty value removes the variable from that node).
    #[arg(long = "node-env", value_name = "N:KEY=VALUE", value_parser = parse_node_pair)]
    pub node_env: Vec<(usize, (String, String))>,
    /// Another `bff` binary for one node (version skew): --node-bff-binary 3:/path/to/old/bff.
    #[arg(long = "node-bff-binary", value_name = "N:PATH", value_parser = parse_node_value)]
    pub node_bff_binary: Vec<(usize, String)>,
    /// Another image for one node (Docker backend): --node-image 3:myorg/bff:1.2.
    #[arg(long = "node-image", value_name = "N:IMAGE", value_parser = parse_node_value)]
    pub node_image: Vec<(usize, String)>,
    /// Docker image of the gateway.
    #[arg(long, default_value = "bff-local/bff:latest")]
    pub bff_image: String,
    /// Docker image of Redis (a stock `redis:7` works where a registry is reachable).
    #[arg(long, default_value = "bff-local/redis:latest")]
    pub redis_image: String,
    /// The `bff` binary for the process backend (default: next to bffctl, then PATH).
    #[arg(long, env = "BFF_BIN")]
    pub bff_binary: Option<PathBuf>,
    /// How long a node may take to become ready (default 15s for processes, 30s for containers);
    /// a node that does not is a FAIL, with its last /ready answer and log.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ready_timeout: Option<std::time::Duration>,
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 10s, 500ms)"))
}

/// `2:VALUE` → (2, VALUE).
fn parse_node_value(s: &str) -> Result<(usize, String), String> {
    let (node, value) = s.split_once(':').ok_or_else(|| format!("expected N:VALUE, got {s:?}"))?;
    let node = node
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{node:?} is not a node number (1, 2, …)"))?;
    Ok((node, value.to_owned()))
}

fn parse_node_pair(s: &str) -> Result<(usize, (String, String)), String> {
    let (node, pair) = parse_node_value(s)?;
    Ok((node, parse_pair(&pair)?))
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

impl StateArgs {
    /// The state file given, else the default one.
    pub fn path(&self) -> PathBuf {
        self.state_file.clone().unwrap_or_else(harness::cluster::control::default_state_path)
    }
}

impl BackendArg {
    pub fn kind(self) -> BackendKind {
        match self {
            BackendArg::Auto => BackendKind::Auto,
            BackendArg::Docker => BackendKind::Docker,
            BackendArg::Process => BackendKind::Process,
        }
    }
}

impl ClusterArgs {
    fn node_settings(&self) -> std::collections::BTreeMap<usize, harness::cluster::NodeSettings> {
        let mut nodes: std::collections::BTreeMap<usize, harness::cluster::NodeSettings> = Default::default();
        for (n, (key, value)) in &self.node_env {
            nodes.entry(*n).or_default().env.insert(key.clone(), value.clone());
        }
        for (n, binary) in &self.node_bff_binary {
            nodes.entry(*n).or_default().binary = Some(PathBuf::from(binary));
        }
        for (n, image) in &self.node_image {
            nodes.entry(*n).or_default().image = Some(image.clone());
        }
        nodes
    }

    pub fn spec(&self) -> ClusterSpec {
        ClusterSpec {
            nodes: self.nodes,
            backend: self.backend.kind(),
            session_store: match self.session_store {
                StoreArg::Redis => StoreKind::Redis,
                StoreArg::Memory => StoreKind::Memory,
            },
            lb: match self.lb {
                LbArg::Random => LbPolicy::Random,
                LbArg::RoundRobin => LbPolicy::RoundRobin,
                LbArg::Sticky => LbPolicy::Sticky,
            },
            redis_persistence: self.redis_persistence,
            redis: self.redis.topology(),
            redis_db_per_node: false,
            bff_env: self.bff_env.clone(),
            node_settings: self.node_settings(),
            api_upstream: false,
            access_token_lifetime_secs: None,
            images: harness::cluster::Images { bff: self.bff_image.clone(), redis: self.redis_image.clone() },
            bff_binary: self.bff_binary.clone(),
            ready_timeout_secs: self.ready_timeout.map(|d| d.as_secs().max(1)),
            ..ClusterSpec::default()
        }
    }
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args)]
pub struct ImagesArgs {
    /// The `bff` binary to put in the image (default: next to bffctl, then PATH).
    #[arg(long, env = "BFF_BIN")]
    pub bff_binary: Option<PathBuf>,
    #[arg(long, default_value = "bff-local/bff:latest")]
    pub bff_image: String,
    #[arg(long, default_value = "bff-local/redis:latest")]
    pub redis_image: String,
    /// Also the images of the compose deployment (deploy/compose/): bff-local/bffctl (the mock
    /// issuer) and bff-local/nginx (the load balancer).
    #[arg(long)]
    pub deploy: bool,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    fn bench_args(args: &[&str]) -> Result<super::BenchArgs, clap::Error> {
        use clap::Parser;
        match super::Cli::try_parse_from([&["bffctl", "bench"][..], args].concat())?.command {
            super::Command::Bench(args) => Ok(args),
            _ => panic!("bffctl bench parsed as another command"),
        }
    }

    #[test]
    fn bench_takes_a_redis_topology_single_by_default() {
        use super::BenchRedisArg;
        assert_eq!(bench_args(&[]).unwrap().redis, BenchRedisArg::Single);
        assert_eq!(bench_args(&["--redis", "single"]).unwrap().redis, BenchRedisArg::Single);
        let cluster = bench_args(&["--redis", "cluster", "--sessions", "1,10000", "--no-open-loop"]).unwrap();
        assert_eq!(cluster.redis, BenchRedisArg::Cluster);
        assert_eq!(cluster.sessions.0, [1, 10000]);
        let sentinel = bench_args(&["--redis", "sentinel"]).map(|_| ()).unwrap_err();
        assert_eq!(sentinel.kind(), clap::error::ErrorKind::InvalidValue);
    }
}

/// Comma-separated session counts; empty for none.
#[derive(Clone, Debug)]
pub struct SessionCounts(pub Vec<usize>);

/// `--access`: how a curve's requests pick their session.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum AccessArg {
    Uniform,
    Zipf,
}

impl From<AccessArg> for harness::bench::Access {
    fn from(arg: AccessArg) -> Self {
        match arg {
            AccessArg::Uniform => harness::bench::Access::Uniform,
            AccessArg::Zipf => harness::bench::Access::Zipf,
        }
    }
}

fn parse_counts(text: &str) -> Result<SessionCounts, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
            _ => Err(format!("not a session count from 1 to 1000000: {t:?} (say e.g. 1,10000,200000)")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(SessionCounts)
}

/// Options that apply only to a deployment reached with `--target`, by clap id.
const TARGET_ONLY: &[&str] = &[
    "node_url",
    "restart_cmd",
    "ready_path",
    "ops_token",
    "gateway",
    "login_path",
    "me_path",
    "me_header",
    "anonymous_status",
    "identity_pointer",
    "logout_path",
    "settle_after_store_fault",
    "login",
];

/// Options that build bffctl's own cluster, by clap id: meaningless with `--target`.
const OWN_CLUSTER_ONLY: &[&str] = &[
    "nodes",
    "backend",
    "session_store",
    "lb",
    "redis_persistence",
    "redis",
    "bff_env",
    "node_env",
    "node_bff_binary",
    "node_image",
    "bff_image",
    "redis_image",
    "bff_binary",
    "redis_db_per_node",
    "attach",
];

/// An option given on the command line that does nothing in the mode it was given in is an
/// error, never ignored: `verify-scaling --target URL --nodes 5` would otherwise verify a
/// deployment of whatever size it has and say nothing.
pub fn refuse_inapplicable(matches: &clap::ArgMatches) -> Result<(), String> {
    let Some((command, sub)) = matches.subcommand() else { return Ok(()) };
    if !matches!(command, "verify-scaling" | "run") {
        return Ok(());
    }
    let given = |id: &str| {
        sub.try_get_raw(id).ok().flatten().is_some()
            && sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
    };
    let flag = |id: &str| format!("--{}", id.replace('_', "-"));
    let (refused, why): (Vec<String>, &str) = if given("target") {
        (
            OWN_CLUSTER_ONLY.iter().filter(|id| given(id)).map(|id| flag(id)).collect(),
            "only shape the cluster bffctl builds itself, and --target verifies a deployment it did not build",
        )
    } else {
        (
            TARGET_ONLY
                .iter()
                .filter(|id| given(id))
                .map(|id| if *id == "node_url" { "--node".into() } else { flag(id) })
                .collect(),
            "only apply with --target URL (a deployment bffctl did not build)",
        )
    };
    if refused.is_empty() {
        return Ok(());
    }
    Err(format!("{command}: {} {why}", refused.join(", ")))
}
