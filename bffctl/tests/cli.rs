//! `bffctl` as a user runs it: `up` in one process, the control commands from others, exit codes,
//! and nothing left running after `down`. Uses the process backend (the Docker backend has its
//! own tests in the harness).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BFFCTL: &str = env!("CARGO_BIN_EXE_bffctl");

fn bffctl(state: &Path, args: &[&str]) -> Output {
    Command::new(BFFCTL).env("BFFCTL_STATE", state).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bff_built() {
    let bff = PathBuf::from(BFFCTL).with_file_name("bff");
    assert!(bff.is_file(), "build the gateway first: cargo build -p bff");
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn up_control_commands_and_down() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cluster.json");

    let none = bffctl(&state, &["status"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none).contains("no cluster is up"), "{}", text(&none));

    let up = Command::new(BFFCTL)
        .env("BFFCTL_STATE", &state)
        .args(["up", "--nodes", "2", "--backend", "process"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the state file", Duration::from_secs(30), || state.exists());

    let status = bffctl(&state, &["status", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let components = json["components"].as_array().unwrap();
    let names: Vec<&str> = components.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["issuer", "lb", "redis", "node-1", "node-2"]);
    let pids: Vec<u32> = components
        .iter()
        .filter_map(|c| c["id"].as_str()?.strip_prefix("pid ")?.parse().ok())
        .filter(|pid| *pid != up.id())
        .collect();
    assert_eq!(pids.len(), 3, "redis and two nodes: {pids:?}");

    // The example app at the balancer's `/`, and the mock API behind `/api/` for a logged-in user.
    let lb = json["lb_url"].as_str().unwrap().to_owned();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let user = harness::client::VirtualUser::new(Some("dora"));
        let page = user.get(&format!("{lb}/")).await.unwrap();
        assert!(page.status == 200 && page.body.contains("bff example app"), "{} {}", page.status, page.body);
        let script = user.get(&format!("{lb}/app.js")).await.unwrap();
        assert!(script.status == 200 && script.body.contains("/account/me"), "{}", script.status);
        user.login(&lb).await.unwrap();
        let api = user.api(&format!("{lb}/api/hello")).await.unwrap();
        assert_eq!(api.status, 200, "{}", api.body);
        assert!(api.body.contains(r#""bearer_token_received":true"#), "{}", api.body);
    });

    assert!(bffctl(&state, &["restart-node", "2"]).status.success());
    let unknown = bffctl(&state, &["restart-node", "9"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown).contains("no node 9"), "{}", text(&unknown));
    assert!(bffctl(&state, &["kill-node", "1"]).status.success());
    assert!(bffctl(&state, &["start-node", "1"]).status.success());
    assert!(bffctl(&state, &["restart-redis"]).status.success());

    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/logout-everywhere.toml");
    let attached = bffctl(&state, &["run", scenario, "--attach", "--users", "4"]);
    assert!(attached.status.success(), "{}", text(&attached));

    let down = bffctl(&state, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    let exit = up.wait_with_output().unwrap();
    assert!(exit.status.success());
    let printed = String::from_utf8_lossy(&exit.stdout);
    assert!(printed.contains(&format!("Open the example app at {lb}/")), "{printed}");
    assert!(!state.exists());
    let current: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(current.is_empty(), "left running after down: {current:?}");
}

#[test]
fn verify_scaling_passes_redis_and_fails_the_memory_store() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cluster.json");
    let report = dir.path().join("report.xml");
    let good = bffctl(&state, &["verify-scaling", "--backend", "process", "--users", "5", "--iterations", "1"]);
    assert_eq!(good.status.code(), Some(0), "{}", text(&good));
    assert!(text(&good).contains("PASS verify-scaling"));

    let bad = bffctl(
        &state,
        &[
            "verify-scaling",
            "--backend",
            "process",
            "--users",
            "5",
            "--session-store",
            "memory",
            "--report",
            "junit",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("FAIL verify-scaling") && text(&bad).contains("first failing step: login"));
    let junit = std::fs::read_to_string(&report).unwrap();
    assert!(junit.contains("<failure"), "{junit}");

    let tool_error = bffctl(&state, &["run", "/nonexistent.toml"]);
    assert_eq!(tool_error.status.code(), Some(2));
}

#[test]
fn verify_scaling_passes_on_redis_sentinel() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cluster.json");
    let json = dir.path().join("report.json");
    let args = ["verify-scaling", "--backend", "process", "--redis", "sentinel", "--users", "5", "--iterations", "1"];
    let mut with_report = args.to_vec();
    with_report.extend(["--report", "json", json.to_str().unwrap()]);
    let good = bffctl(&state, &with_report);
    assert_eq!(good.status.code(), Some(0), "{}", text(&good));
    assert!(text(&good).contains("PASS verify-scaling"));
    // The nodes were given the sentinels, not one Redis.
    let report = std::fs::read_to_string(&json).unwrap();
    assert!(report.contains("redis+sentinel://127.0.0.1:"), "{report}");
}

/// The same on the docker backend: the primary, the replica and the sentinels are containers
/// on the run's network, the nodes find the master by the sentinels' container names, and the
/// shipped failover scenario (`SENTINEL FAILOVER`, then `docker kill` of the primary) passes.
#[test]
fn redis_sentinel_as_containers_passes_verify_scaling_and_the_failover_scenario() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cluster.json");
    let json = dir.path().join("report.json");
    let verify = bffctl(
        &state,
        &[
            "verify-scaling",
            "--backend",
            "docker",
            "--redis",
            "sentinel",
            "--users",
            "5",
            "--iterations",
            "1",
            "--report",
            "json",
            json.to_str().unwrap(),
        ],
    );
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert!(text(&verify).contains("PASS verify-scaling"), "{}", text(&verify));
    let report = std::fs::read_to_string(&json).unwrap();
    assert!(report.contains("redis+sentinel://bff-run-"), "the nodes reach the sentinels by name: {report}");
    assert!(report.contains("-sentinel-3:26379"), "{report}");

    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/redis-failover.toml");
    let run = bffctl(&state, &["run", scenario, "--backend", "docker"]);
    let printed = text(&run);
    assert_eq!(run.status.code(), Some(0), "{printed}");
    assert!(printed.contains("on docker") && printed.contains("PASS redis-failover"), "{printed}");
    assert!(printed.contains("Outage (first to last unavailable request): failover-redis"), "{printed}");
}

#[test]
fn a_node_that_never_becomes_ready_is_a_fail_quoting_its_log_not_pouring_it() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cluster.json");
    let runs = dir.path().join("runs");
    // An issuer nobody answers for: the node starts, and its /ready says why it is not ready.
    let out = Command::new(BFFCTL)
        .env("BFFCTL_STATE", &state)
        .env("BFFCTL_RUNS", &runs)
        .args(["verify-scaling", "--backend", "process", "--nodes", "2", "--users", "2", "--ready-timeout", "2s"])
        .args(["--bff-env", "BFF_OIDC_AUTHORITY=http://127.0.0.1:9", "--bff-env", "BFF_LOG_LEVEL=debug"])
        .output()
        .unwrap();
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "a deployment failure, not a tool failure:\n{printed}");
    assert!(printed.contains("FAIL verify-scaling: node-1 never became ready at start"), "{printed}");
    assert!(printed.contains("its /ready answered 503"), "the node's own reason: {printed}");

    let run = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().contains("-verify-scaling-"))
        .expect("a run directory");
    let log = run.join("node-1.log");
    assert!(printed.contains(log.to_str().unwrap()), "the report names the log file: {printed}");
    let logged: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect();
    assert!(logged.len() > 20, "the node logged its probes into its file: {} lines", logged.len());
    let echoed =
        printed.lines().filter(|l| logged.iter().any(|g| !g.trim().is_empty() && l.trim() == g.trim())).count();
    assert!(echoed >= 1, "the report quotes the node's last lines: {printed}");
    assert!(echoed <= 8, "{echoed} of the node's lines reached bffctl's terminal:\n{printed}");
    assert!(!printed.contains('\u{1b}') || !logged.iter().any(|l| l.contains('\u{1b}')), "escape codes");
    assert!(logged.iter().all(|l| !l.contains('\u{1b}')), "the node wrote escape codes into a file");

    // `bffctl logs` finds the latest run by itself.
    let logs = Command::new(BFFCTL)
        .env("BFFCTL_STATE", &state)
        .env("BFFCTL_RUNS", &runs)
        .args(["logs", "node-1", "--tail", "3"])
        .output()
        .unwrap();
    assert!(logs.status.success(), "{}", text(&logs));
    assert_eq!(String::from_utf8_lossy(&logs.stdout).lines().count(), 3, "{}", text(&logs));
}

#[test]
fn the_same_seed_routes_the_same_way() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cluster.json");
    let routing = |seed: &str| {
        let out = bffctl(&state, &["verify-scaling", "--backend", "process", "--users", "8", "--seed", seed, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report[0]["seed"].to_string(), seed);
        let rows: Vec<(String, String, u64)> = report[0]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["step"].as_str().unwrap().contains("each-node"))
            .map(|r| (r["step"].to_string(), r["node"].to_string(), r["requests"].as_u64().unwrap()))
            .collect();
        rows
    };
    let first = routing("7");
    assert_eq!(routing("7"), first, "the same seed, the same routing");
    let others: Vec<_> = ["8", "9", "10"].iter().map(|s| routing(s)).collect();
    assert!(others.iter().any(|o| *o != first), "other seeds route otherwise: {first:?}");
}

#[test]
fn a_node_a_scenario_names_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("bad.toml");
    std::fs::write(&scenario, "description = \"x\"\n[cluster]\nnodes = 2\n[[steps]]\naction = \"me\"\nvia = 3\n")
        .unwrap();
    let out = bffctl(&dir.path().join("cluster.json"), &["run", scenario.to_str().unwrap(), "--backend", "process"]);
    assert_eq!(out.status.code(), Some(2), "a scenario error, before any run: {}", text(&out));
    assert!(text(&out).contains("step 1 (me): via node-3, which does not exist (nodes are 1 to 2)"), "{}", text(&out));
}

/// Arguments are checked before anything happens: no image is built, no run directory made and
/// `latest` not moved for a run that is refused; and `down` with nothing up has nothing to do.
#[test]
fn refused_arguments_leave_nothing_behind_and_down_with_nothing_up_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let state = dir.path().join("cluster.json");
    let run = |args: &[&str]| {
        Command::new(BFFCTL).env("BFFCTL_STATE", &state).env("BFFCTL_RUNS", &runs).args(args).output().unwrap()
    };
    for (args, says) in [
        (&["up", "--nodes", "0"][..], "a cluster needs at least one node"),
        (&["verify-scaling", "--nodes", "0"][..], "a cluster needs at least one node"),
        (&["verify-scaling", "--users", "-1"][..], "at least one virtual user"),
        (&["verify-scaling", "--users", "0"][..], "at least one virtual user"),
        (&["soak", "--users", "-1"][..], "at least one virtual user"),
        (&["soak", "--nodes", "0"][..], "a cluster needs at least one node"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("unexpected argument"), "{args:?}: {}", text(&out));
        assert!(!runs.exists(), "{args:?} made a run directory");
    }
    let down = run(&["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    assert!(text(&down).contains("no cluster is up: nothing to stop"), "{}", text(&down));
    // Commands that talk to a cluster still say when none is up.
    assert_eq!(run(&["status"]).status.code(), Some(2));
}

/// `--state-file` is offered where a running cluster is read, and nowhere else.
#[test]
fn state_file_is_offered_only_where_it_is_used() {
    let help = |args: &[&str]| {
        let out = Command::new(BFFCTL).args(args).arg("--help").output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for used in ["up", "status", "down", "restart-node", "logs", "run"] {
        assert!(help(&[used]).contains("--state-file"), "{used} --help lacks --state-file");
    }
    for unused in ["verify-scaling", "images", "issuer", "scenarios", "gateways", "bench", "soak"] {
        assert!(!help(&[unused]).contains("--state-file"), "{unused} --help offers --state-file");
    }
    let verify = help(&["verify-scaling"]);
    for heading in [
        "The cluster bffctl builds",
        "A deployment bffctl did not build (--target)",
        "Report",
        "Examples:",
        "Exit codes:",
    ] {
        assert!(verify.contains(heading), "verify-scaling --help lacks {heading:?}");
    }
    let top = help(&[]);
    assert!(top.contains("Examples:") && top.contains("Exit codes:"), "{top}");
}

/// `bffctl up` in the background as the deployment, and its control commands as the restart.
fn up_in_background(state: &Path, extra: &[&str]) -> (std::process::Child, serde_json::Value) {
    let up = Command::new(BFFCTL)
        .env("BFFCTL_STATE", state)
        .args(["up", "--nodes", "3", "--backend", "process"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the state file", Duration::from_secs(30), || state.exists());
    let status = bffctl(state, &["status", "--json"]);
    (up, serde_json::from_slice(&status.stdout).unwrap())
}

#[test]
fn verify_scaling_target_checks_a_deployment_it_did_not_build() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    for (store, expected) in [("redis", 0), ("memory", 1)] {
        let state = dir.path().join(format!("{store}.json"));
        let (mut up, status) = up_in_background(&state, &["--session-store", store]);
        let lb = status["lb_url"].as_str().unwrap().to_owned();
        // Enough users that some log in on the memory store too (each with probability 1/3).
        let mut args: Vec<String> =
            vec!["verify-scaling".into(), "--target".into(), lb.clone(), "--users".into(), "12".into()];
        for c in
            status["components"].as_array().unwrap().iter().filter(|c| c["name"].as_str().unwrap().starts_with("node-"))
        {
            args.push("--node".into());
            args.push(format!("{}=http://{}", c["name"].as_str().unwrap(), c["address"].as_str().unwrap()));
        }
        let restart =
            format!("BFFCTL_STATE={} {BFFCTL} restart-node \"$(echo {{node}} | cut -d- -f2)\"", state.display());
        args.extend(["--restart-cmd".into(), restart]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = bffctl(&state, &args);
        assert_eq!(out.status.code(), Some(expected), "{store}: {}", text(&out));
        if expected == 0 {
            assert!(text(&out).contains("restart node-3"), "the deployment's own restart command ran: {}", text(&out));
            assert!(!text(&out).contains("skipped"), "{}", text(&out));
            // Without node addresses or a restart command, those steps are skipped and said so.
            let bare = bffctl(&state, &["verify-scaling", "--target", &lb, "--users", "4"]);
            assert_eq!(bare.status.code(), Some(0), "{}", text(&bare));
            assert!(text(&bare).contains("(skipped: me @each-node: no --node given"), "{}", text(&bare));
            assert!(text(&bare).contains("restart-node: no --restart-cmd given"), "{}", text(&bare));
        } else {
            assert!(text(&out).contains("Diagnosis: "), "the matrix names what does not share: {}", text(&out));
        }
        assert!(bffctl(&state, &["down"]).status.success());
        up.wait().unwrap();
    }
}

#[test]
fn soak_refuses_a_rate_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = bffctl(&dir.path().join("cluster.json"), &["soak", "--rate", "fast"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("\"fast\" is not a rate"), "{}", text(&out));
}

/// A 12 s soak at 50/s with 10 users, a 2 s fault every 4 s and a sample a second, with `extra`
/// arguments; its JSON report, which it must have printed.
fn short_soak(dir: &Path, seed: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["soak", "--duration", "12s", "--rate", "50/s", "--users", "10", "--seed", seed];
    args.extend(["--fault-every", "4s", "--fault-lasts", "2s", "--sample-every", "1s", "--json"]);
    args.extend(extra);
    let out = bffctl(&dir.join("cluster.json"), &args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)))
}

/// A short soak on a real process cluster: two faults from the catalogue, the figures, the
/// history's invariants, and the history file with every request in it.
#[test]
fn a_short_soak_reports_its_figures_and_invariants() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let page = dir.path().join("soak.html");
    let report =
        short_soak(dir.path(), "3", &["--html", page.to_str().unwrap(), "--history", history.to_str().unwrap()]);
    assert_eq!(report["faults"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["invariants"].as_array().unwrap().len(), 4);
    assert_eq!(report["wrong"], 0, "{report}");
    assert_eq!(report["unavailable_outside_faults"], 0, "{report}");
    let lines = std::fs::read_to_string(&history).unwrap().lines().count() as u64;
    assert_eq!(lines, report["requests"].as_u64().unwrap(), "every request is in the history");
    assert!(lines > 300, "an open loop at 50/s for 12 s: {lines} requests");
    let page = std::fs::read_to_string(&page).unwrap();
    assert!(page.contains(report["verdict"].as_str().unwrap()), "the page gives the verdict");
    assert!(page.contains("a live session is never answered as unknown"), "and the invariants");
    assert_eq!(page.matches("<svg").count(), 3, "and the RSS, fd and key curves");
}

/// The soak on containers: the faults run there too (`docker pause`, `docker kill`, the relays
/// on the host), and each node is sampled through its container's host pid.
#[test]
fn a_short_soak_on_containers_samples_every_node() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    let report = short_soak(dir.path(), "5", &["--backend", "docker"]);
    assert_eq!(report["wrong"], 0, "{report}");
    assert_eq!(report["unavailable_outside_faults"], 0, "{report}");
    let faults = report["faults"].as_array().unwrap();
    assert!(faults.iter().all(|f| f["error"].is_null()), "every fault ran on containers: {faults:?}");
    let samples = report["samples"].as_array().unwrap();
    let last = samples.last().unwrap();
    for what in ["rss_kib", "fds"] {
        let values = last[what].as_array().unwrap();
        assert_eq!(values.len(), 3);
        assert!(values.iter().all(|v| v.as_u64().is_some_and(|n| n > 0)), "{what} of every node: {last}");
    }
}

/// Every process a process started, and theirs, read from `/proc`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    for task in tasks {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            out.push(child);
            out.extend(descendants(child));
        }
    }
    out
}

fn command_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

/// Stopped by SIGTERM in the middle of a run (a CI job cancelled, a terminal closed), bffctl
/// stops what it started: no gateway node and no Redis outlives it.
#[test]
fn a_run_stopped_by_sigterm_leaves_no_process_behind() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    let mut run = Command::new(BFFCTL)
        .env("BFFCTL_STATE", dir.path().join("cluster.json"))
        .args(["soak", "--duration", "120s", "--rate", "20/s", "--users", "5", "--fault-every", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = run.id();
    wait_for("three gateway nodes and redis under bffctl", Duration::from_secs(60), || {
        let names: Vec<String> = descendants(pid).into_iter().map(command_name).collect();
        names.iter().filter(|n| *n == "bff").count() == 3 && names.iter().any(|n| n == "redis-server")
    });
    let started = descendants(pid);
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let mut status = None;
    wait_for("bffctl to exit", Duration::from_secs(30), || {
        status = run.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(143), "128 + SIGTERM");
    wait_for("every process it started to end", Duration::from_secs(10), || started.iter().all(|p| !alive(*p)));
}

/// `bffctl run DIR` ends with a line a person or a log search can read: how many scenarios, how
/// each kind of verdict counted, and how long the whole run took.
#[test]
fn a_run_of_a_folder_ends_with_a_total_and_the_elapsed_time() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("scenarios");
    std::fs::create_dir(&folder).unwrap();
    let scenario = "description = \"login and me\"\n[cluster]\nnodes = 1\n[load]\nusers = 2\n[[steps]]\naction = \"login\"\n[[steps]]\naction = \"me\"\n";
    std::fs::write(folder.join("a.toml"), scenario).unwrap();
    std::fs::write(folder.join("b.toml"), scenario).unwrap();
    let out = Command::new(BFFCTL)
        .env("BFFCTL_STATE", dir.path().join("cluster.json"))
        .env("BFFCTL_RUNS", dir.path().join("runs"))
        .args(["run", folder.to_str().unwrap(), "--backend", "process"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.starts_with("2 scenarios: 2 passed, 0 failed, 0 inconclusive, in "), "{last}");
    assert!(last.ends_with(" s"), "{last}");
}

/// `bffctl scenarios` piped (no terminal) wraps its table to `COLUMNS`, else to 100 columns.
#[test]
fn the_scenario_list_fits_a_width_when_piped() {
    let scenarios = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    for (columns, width) in [(None, 100), (Some("80"), 80)] {
        let mut command = Command::new(BFFCTL);
        command.args(["scenarios", scenarios]).env_remove("COLUMNS");
        if let Some(columns) = columns {
            command.env("COLUMNS", columns);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let widest = stdout.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(widest <= width && widest > width / 2, "COLUMNS={columns:?}: {widest} columns wide");
    }
}

/// A healthy run's node logs hold no error: bffctl's readiness probes are answered 503 while a
/// node (re)starts, and that answer is not a failed request.
#[test]
fn readiness_probes_during_restarts_are_not_logged_as_errors() {
    bff_built();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let out = Command::new(BFFCTL)
        .env("BFFCTL_RUNS", &runs)
        .args(["verify-scaling", "--backend", "process", "--users", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().path()).find(|p| !p.is_symlink()).unwrap();
    let mut lines = 0;
    for node in ["node-1", "node-2", "node-3"] {
        let log = std::fs::read_to_string(run.join(format!("{node}.log"))).unwrap();
        lines += log.lines().count();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        assert!(errors.is_empty(), "{node} logged errors in a healthy run: {errors:#?}");
    }
    assert!(lines > 0, "the nodes' logs were written");
}
