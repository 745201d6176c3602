//! `bffctl watch` against a real deployment (three `bff` processes, a `redis-server`, the mock
//! issuer and a load balancer, started through the harness): while the nodes agree every round
//! passes; when one replica is restarted with another client secret, the failure metric and the
//! drift gauge name that node within two rounds, and the failure's log line carries the request
//! id and traceparent. The watch itself restarts nothing: the test does.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::cluster::{BackendKind, Cluster, ClusterSpec};

const BFFCTL: &str = env!("CARGO_BIN_EXE_bffctl");

/// The value of the sample `name{labels}` (labels in the exporter's order), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn scrape(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn rounds(metrics: &str) -> f64 {
    sample(metrics, r#"bffctl_watch_runs_total{result="pass"}"#).unwrap_or(0.0)
        + sample(metrics, r#"bffctl_watch_runs_total{result="fail"}"#).unwrap_or(0.0)
}

/// Kills the watch when the test ends, however it ends.
struct Watching(std::process::Child);

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_with_another_client_secret_is_named_within_two_rounds() {
    let bff = PathBuf::from(BFFCTL).with_file_name("bff");
    assert!(bff.is_file(), "build the gateway first: cargo build --workspace");
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        nodes: 3,
        backend: BackendKind::Process,
        bff_binary: Some(bff.clone()),
        run_dir: Some(dir.path().join("run")),
        ..Default::default()
    };
    let mut cluster = Cluster::start(spec, &|_| {}).await.expect("a cluster of three");
    let mut args = vec!["watch".to_owned(), "--target".into(), cluster.lb_url()];
    for i in 0..3 {
        args.push("--node".into());
        args.push(format!("node-{}={}", i + 1, cluster.node_url(i).unwrap()));
    }
    args.extend(["--every", "1s", "--listen", "127.0.0.1:0"].map(str::to_owned));
    let mut child = Command::new(BFFCTL)
        .args(&args)
        .env("BFFCTL_OPS_TOKEN", &cluster.spec().ops_token)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _watching = Watching(child);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = loop {
        let first = lines.lock().unwrap().first().cloned();
        if let Some(line) = first {
            break line.rsplit(' ').next().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the watch printed no metrics address");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"), "{url}");

    // The good deployment: a passing round, nothing drifts, no failure on node-2.
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let metrics = scrape(&url).await;
        if sample(&metrics, r#"bffctl_watch_runs_total{result="pass"}"#).unwrap_or(0.0) >= 1.0 {
            break metrics;
        }
        assert!(Instant::now() < deadline, "no passing round:\n{metrics}\n{:?}", lines.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let secret_drift = r#"bffctl_watch_drift{node="node-2",setting="oidc.client_secret"}"#;
    let login_failures = r#"bffctl_watch_failures{node="node-2",check="login"}"#;
    assert_eq!(sample(&metrics, secret_drift), Some(0.0), "{metrics}");
    assert_eq!(sample(&metrics, login_failures), Some(0.0), "{metrics}");
    assert!(sample(&metrics, "bffctl_watch_last_success_timestamp_seconds").is_some_and(|t| t > 0.0), "{metrics}");

    // node-2 restarted with another client secret (a rollout that left one replica behind).
    let wrapper = dir.path().join("bff-other-secret");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexport BFF_OIDC_CLIENT_SECRET=another-secret\nexec {} \"$@\"\n", bff.display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    cluster.upgrade_node(1, wrapper.to_str().unwrap()).await.expect("node-2 back with another secret");
    let restarted_at = rounds(&scrape(&url).await);

    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let metrics = scrape(&url).await;
        let named =
            sample(&metrics, secret_drift) == Some(1.0) && sample(&metrics, login_failures).is_some_and(|n| n >= 1.0);
        if named {
            break metrics;
        }
        assert!(
            rounds(&metrics) <= restarted_at + 2.0 && Instant::now() < deadline,
            "node-2 not named within two rounds of its restart:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(rounds(&metrics) <= restarted_at + 2.0, "named, but only after more than two rounds:\n{metrics}");
    assert_eq!(sample(&metrics, r#"bffctl_watch_failures{node="node-1",check="login"}"#), Some(0.0), "{metrics}");
    assert_eq!(
        sample(&metrics, r#"bffctl_watch_drift{node="node-1",setting="oidc.client_secret"}"#),
        Some(0.0),
        "{metrics}"
    );
    assert!(sample(&metrics, r#"bffctl_watch_runs_total{result="fail"}"#).is_some_and(|n| n >= 1.0), "{metrics}");

    // The failure's log line: the node, and what to look for in its log and the traces (a
    // round during the restart itself found node-2 refusing connections: no request id then).
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let found = lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("FAIL login node-2") && !l.contains("request_id=- "))
            .cloned();
        if let Some(line) = found {
            break line;
        }
        assert!(Instant::now() < deadline, "no failure line: {:?}", lines.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let request_id = line.split("request_id=").nth(1).unwrap().split(' ').next().unwrap();
    assert_eq!(request_id.len(), 36, "a request id from node-2's answer: {line}");
    let traceparent = line.split("traceparent=").nth(1).unwrap().split(' ').next().unwrap();
    assert!(traceparent.starts_with("00-") && traceparent.len() == 55, "{line}");
    let log = std::fs::read_to_string(cluster.node_log(1).unwrap()).unwrap();
    assert!(log.contains(request_id), "node-2's log names the failed request {request_id}");
    cluster.teardown().await.unwrap();
}
