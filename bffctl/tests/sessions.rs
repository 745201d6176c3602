//! `bffctl sessions list|end` as an operator runs it against the cluster a `bffctl up` runs (one
//! Redis, or Redis Sentinel): the state file gives the load balancer and the nodes' ops token. A user logged in twice shows two
//! sessions; `end` ends both, and `/account/me` is a 404 on every node right after.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::VirtualUser;

const BFFCTL: &str = env!("CARGO_BIN_EXE_bffctl");

fn bffctl(state: &Path, args: &[&str]) -> Output {
    Command::new(BFFCTL).env("BFFCTL_STATE", state).env_remove("BFF_OPS_TOKEN").args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_list_and_end_on_the_cluster_bffctl_up_runs() {
    list_and_end_on_a_cluster("single").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_list_and_end_behind_redis_sentinel() {
    list_and_end_on_a_cluster("sentinel").await;
}

async fn list_and_end_on_a_cluster(redis: &str) {
    assert!(Path::new(BFFCTL).with_file_name("bff").is_file(), "build the gateway first: cargo build --workspace");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cluster.json");
    let none = bffctl(&state, &["sessions", "list", "--sub", "grace"]);
    assert_eq!(none.status.code(), Some(2), "{}", text(&none));
    assert!(text(&none).contains("no --target given, and no cluster up"), "{}", text(&none));

    let mut up = Command::new(BFFCTL)
        .env("BFFCTL_STATE", &state)
        .args(["up", "--nodes", "3", "--backend", "process", "--redis", redis])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.exists() {
        assert!(Instant::now() < deadline, "bffctl up did not write its state file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status: serde_json::Value = serde_json::from_slice(&bffctl(&state, &["status", "--json"]).stdout).unwrap();
    let lb = status["lb_url"].as_str().unwrap().to_owned();
    let nodes: Vec<String> = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("node-"))
        .map(|c| format!("http://{}", c["address"].as_str().unwrap()))
        .collect();
    assert_eq!(nodes.len(), 3);

    let (first, second) = (VirtualUser::new(Some("grace")), VirtualUser::new(Some("grace")));
    for user in [&first, &second] {
        user.login(&lb).await.unwrap();
    }

    let listed = bffctl(&state, &["sessions", "list", "--sub", "grace", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let listing: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let sessions = listing["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{listing:#}");
    for session in sessions {
        assert_eq!(session["sub"], "grace");
        assert!(session["created_on"].as_str().unwrap().starts_with("node-"), "{session}");
    }
    let table = bffctl(&state, &["sessions", "list", "--sub", "grace"]);
    assert!(table.status.success(), "{}", text(&table));
    for column in ["created", "last seen", "idle expiry", "absolute expiry", "created on", "2 session(s)"] {
        assert!(text(&table).contains(column), "{column} in {}", text(&table));
    }
    let misuse = bffctl(&state, &["sessions", "list", "--sub", "grace", "--id", "00"]);
    assert_eq!(misuse.status.code(), Some(2), "{}", text(&misuse));

    let ended = bffctl(&state, &["sessions", "end", "--sub", "grace"]);
    assert!(ended.status.success(), "{}", text(&ended));
    assert!(text(&ended).contains("2 session(s) ended on every node"), "{}", text(&ended));
    for node in &nodes {
        for user in [&first, &second] {
            assert_eq!(user.me(node).await.unwrap().status, 404, "{node}");
        }
    }
    let empty = bffctl(&state, &["sessions", "list", "--sub", "grace"]);
    assert!(text(&empty).contains("no live session"), "{}", text(&empty));
    let again = bffctl(&state, &["sessions", "end", "--sub", "grace", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["ended"], 0);

    // A token that is not the deployment's: the tool could not do its job.
    let refused =
        bffctl(&state, &["sessions", "list", "--sub", "grace", "--target", &lb, "--ops-token", "not-the-token-0"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("refused the ops token"), "{}", text(&refused));

    assert!(bffctl(&state, &["down"]).status.success());
    up.wait().unwrap();
}
