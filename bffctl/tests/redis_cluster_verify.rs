//! `--redis cluster`: the restart-survival test on a Redis Cluster of three primaries and three
//! replicas passes; one node given a single-server URL into one shard of it FAILs with that node
//! named; and what needs a cluster is refused, before anything starts, on any other Redis.
//! Process backend: real `bff` nodes and real `redis-server` cluster members.

use std::path::Path;
use std::process::{Command, Output};

const BFFCTL: &str = env!("CARGO_BIN_EXE_bffctl");

fn bffctl(runs: &Path, args: &[&str]) -> Output {
    Command::new(BFFCTL).env("BFFCTL_RUNS", runs).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn verify(runs: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["verify-scaling", "--backend", "process", "--redis", "cluster", "--iterations", "1"];
    args.extend(["--users", "6"]);
    args.extend(extra);
    bffctl(runs, &args)
}

#[test]
fn sessions_on_a_redis_cluster_survive_every_node_restart() {
    let dir = tempfile::tempdir().unwrap();
    let out = verify(dir.path(), &[]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(printed.contains("settings agree on every node"), "{printed}");
}

#[test]
fn a_node_given_one_shard_of_the_cluster_fails_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = verify(dir.path(), &["--node-env", "2:BFF_REDIS_URL={redis_shard_1}", "--ready-timeout", "5s"]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(printed.contains("redis.address (node-2)"), "{printed}");
    // The shard's own address, as a single server: the placeholder was filled in.
    assert!(printed.contains("≠ redis://127.0.0.1:"), "{printed}");
    assert!(printed.contains("FAIL verify-scaling: node-2"), "{printed}");
}

#[test]
fn the_negative_control_scenario_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/redis-cluster-one-shard-node.toml");
    let out = bffctl(dir.path(), &["run", scenario.to_str().unwrap(), "--ready-timeout", "5s"]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(printed.contains("PASS redis-cluster-one-shard-node (negative control)"), "{printed}");
    assert!(printed.contains("node-2 never became ready at start; drift in redis.address (node-2)"), "{printed}");
}

#[test]
fn what_needs_a_cluster_is_refused_on_any_other_redis() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/redis-cluster-reshard.toml");
    let out = bffctl(dir.path(), &["run", scenario.to_str().unwrap(), "--redis", "sentinel"]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(2), "{printed}");
    assert!(printed.contains("step 1 (reshard): needs a Redis Cluster"), "{printed}");

    let bad = dir.path().join("bad.toml");
    for (step, why) in [
        (r#"{ action = "reshard", share = 0.0 }"#, "share 0 is not above 0 and at most 1"),
        (r#"{ action = "reshard" }"#, "reshard needs share"),
        (r#"{ action = "failover-redis", shard = 0 }"#, "shards are numbered from 1"),
        (r#"{ action = "restart-redis", shard = 2 }"#, "`shard` goes with failover-redis"),
        (r#"{ action = "reshard", shard = 2, to_shard = 2, share = 0.5 }"#, "shard and to_shard are both 2"),
    ] {
        let toml = format!(
            "description = \"x\"\n[cluster]\nredis = \"cluster\"\n[[steps]]\naction = \"me\"\nduring = {step}\n"
        );
        std::fs::write(&bad, toml).unwrap();
        let out = bffctl(dir.path(), &["run", bad.to_str().unwrap()]);
        let printed = text(&out);
        assert_eq!(out.status.code(), Some(2), "{step}: {printed}");
        assert!(printed.contains(why), "{step}: {printed}");
    }
}
