//! What a verdict may rest on: options that would do nothing are refused, waits are bounded by
//! the option that says so, and a diagnosis names the node that differs, run after run, with
//! that node's log quoted. Real `bff` processes and `redis-server`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BFFCTL: &str = env!("CARGO_BIN_EXE_bffctl");

fn bffctl(args: &[&str]) -> Output {
    let state = tempfile::tempdir().unwrap();
    Command::new(BFFCTL).env("BFFCTL_STATE", state.path().join("cluster.json")).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn an_option_that_does_not_apply_to_the_mode_is_refused() {
    let with_target = bffctl(&["verify-scaling", "--target", "http://127.0.0.1:9", "--nodes", "5"]);
    assert_eq!(with_target.status.code(), Some(2), "{}", text(&with_target));
    assert!(text(&with_target).contains("--nodes"), "{}", text(&with_target));
    let without = bffctl(&["verify-scaling", "--gateway", "duende", "--me-path", "/x"]);
    assert_eq!(without.status.code(), Some(2), "{}", text(&without));
    assert!(text(&without).contains("--gateway, --me-path only apply with --target"), "{}", text(&without));
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/redis-restart.toml");
    let run = bffctl(&["run", scenario, "--node", "node-1=http://127.0.0.1:9"]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(text(&run).contains("--node only apply with --target"), "{}", text(&run));
    let unknown = bffctl(&["verify-scaling", "--target", "http://127.0.0.1:9", "--gateway", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(text(&unknown).contains("oauth2-proxy"), "the presets are listed: {}", text(&unknown));
}

#[test]
fn ready_timeout_bounds_the_wait_for_a_deployment() {
    let started = Instant::now();
    let out = bffctl(&["verify-scaling", "--target", "http://127.0.0.1:9", "--ready-timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not ready within 2s"), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(30), "waited {:?}", started.elapsed());
}

#[test]
fn gateways_lists_the_presets_and_which_ci_runs() {
    let out = bffctl(&["gateways", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let presets: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let verified: Vec<&str> = presets
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["verified"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(verified, ["bff", "mod-auth-openidc"]);
}

/// One node with another cookie name: every seed names node-2 and quotes node-2's log first,
/// though the failed answers came from every node.
#[test]
fn the_node_with_another_cookie_name_is_named_whatever_the_seed() {
    assert!(PathBuf::from(BFFCTL).with_file_name("bff").is_file(), "build the gateway first: cargo build -p bff");
    for seed in ["1", "7", "23", "42"] {
        let out = bffctl(&[
            "verify-scaling",
            "--backend",
            "process",
            "--node-env",
            "2:BFF_SESSION_COOKIE_NAME=other",
            "--no-drift-check",
            "--seed",
            seed,
        ]);
        let text = text(&out);
        assert_eq!(out.status.code(), Some(1), "seed {seed}: {text}");
        let diagnosis = text.lines().find(|l| l.starts_with("Diagnosis:")).unwrap_or_default();
        assert!(diagnosis.starts_with("Diagnosis: node-2 is an island"), "seed {seed}: {diagnosis}");
        let first_log = text.lines().find(|l| l.contains("Its log:")).unwrap_or_default();
        assert!(first_log.starts_with("node-2 "), "seed {seed}: node-2's log comes first: {first_log}");
        assert!(text.contains("invariant"), "seed {seed}");
    }
}
