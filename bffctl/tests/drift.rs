//! The one node that differs: for every setting nodes must share, a cluster of three where node-2
//! alone has another value FAILs with that setting and node named; the good cluster PASSes 20
//! runs out of 20. Process backend, real `bff` nodes and a real `redis-server`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BFFCTL: &str = env!("CARGO_BIN_EXE_bffctl");

fn verify(runs: &Path, extra: &[&str]) -> Output {
    verify_with_users(runs, 4, extra)
}

fn verify_with_users(runs: &Path, users: usize, extra: &[&str]) -> Output {
    Command::new(BFFCTL)
        .env("BFFCTL_RUNS", runs)
        .args(["verify-scaling", "--backend", "process", "--iterations", "1", "--ready-timeout", "3s"])
        .args(["--users", &users.to_string()])
        .args(extra)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A copy of the gateway whose embedded version is another release's: a canary.
fn other_version(dir: &Path) -> PathBuf {
    let bff = PathBuf::from(BFFCTL).with_file_name("bff");
    let mut bytes = std::fs::read(&bff).expect("build the gateway first: cargo build -p bff");
    let marker = format!("bff-version:{}", env!("CARGO_PKG_VERSION"));
    let at = bytes.windows(marker.len()).position(|w| w == marker.as_bytes()).expect("the version marker");
    let last = at + marker.len() - 1;
    bytes[last] = if bytes[last] == b'9' { b'8' } else { b'9' };
    let copy = dir.join("bff-canary");
    std::fs::write(&copy, bytes).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    copy
}

#[test]
fn one_odd_node_fails_with_its_setting_named_for_every_setting_that_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let canary = other_version(dir.path());
    let canary = format!("2:{}", canary.display());
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("version", vec!["--node-bff-binary".into(), canary, "--strict-version".into()]),
        ("store", vec!["--node-env".into(), "2:BFF_REDIS_URL=".into()]),
        ("redis.db", vec!["--node-env".into(), "2:BFF_REDIS_URL={redis_url}/5".into()]),
        ("redis.key_prefix", vec!["--node-env".into(), "2:BFF_REDIS_KEY_PREFIX=other".into()]),
        ("key_ring", vec!["--node-env".into(), "2:BFF_KEY_RING=local".into()]),
        (
            "key_encryption_key",
            vec!["--node-env".into(), "2:BFF_KEY_ENCRYPTION_KEY=b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktMzI=".into()],
        ),
        ("oidc.authority", vec!["--node-env".into(), "2:BFF_OIDC_AUTHORITY=http://127.0.0.1:9".into()]),
        ("oidc.client_id", vec!["--node-env".into(), "2:BFF_OIDC_CLIENT_ID=another-client".into()]),
        ("oidc.client_secret", vec!["--node-env".into(), "2:BFF_OIDC_CLIENT_SECRET=another-secret".into()]),
        ("oidc.scopes", vec!["--node-env".into(), "2:BFF_OIDC_SCOPES=openid email".into()]),
        ("session.cookie_name", vec!["--node-env".into(), "2:BFF_SESSION_COOKIE_NAME=other".into()]),
        ("session.same_site", vec!["--node-env".into(), "2:BFF_SESSION_SAME_SITE=strict".into()]),
        ("session.idle_timeout", vec!["--node-env".into(), "2:BFF_SESSION_IDLE_TIMEOUT=30m".into()]),
        ("session.absolute_lifetime", vec!["--node-env".into(), "2:BFF_SESSION_ABSOLUTE_LIFETIME=24h".into()]),
        ("account_prefix", vec!["--node-env".into(), "2:BFF_ACCOUNT_PREFIX=/auth".into()]),
        ("public_url", vec!["--node-env".into(), "2:BFF_PUBLIC_URL=http://127.0.0.1:9/".into()]),
        (
            "routes",
            vec![
                "--node-env".into(),
                r#"2:BFF_ROUTES=[{ path = "/x/", upstreams = ["http://127.0.0.1:9"], auth = "none" }]"#.into(),
            ],
        ),
        ("csrf", vec!["--node-env".into(), "2:BFF_CSRF_HEADER=X-Other".into()]),
    ];
    let mut missed = Vec::new();
    for (setting, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = verify(&runs, &args);
        let printed = text(&out);
        let named =
            printed.contains("settings differ between nodes:") && printed.contains(&format!("{setting} (node-2)"));
        if out.status.code() != Some(1) || !named {
            missed.push(format!("{setting}: exit {:?}\n{printed}", out.status.code()));
        }
    }
    assert!(
        missed.is_empty(),
        "{} of {} odd nodes not caught and named:\n{}",
        missed.len(),
        cases.len(),
        missed.join("\n")
    );
}

#[test]
fn a_version_difference_alone_is_a_note_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let canary = other_version(dir.path());
    let out = verify(&dir.path().join("runs"), &["--node-bff-binary", &format!("2:{}", canary.display())]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(printed.contains("nodes run different versions (node-1 "), "{printed}");
    assert!(printed.contains(&format!("node-1 {version}")), "{printed}");
    assert!(!printed.contains("settings differ between nodes"), "{printed}");
}

#[test]
fn a_good_cluster_passes_20_runs_out_of_20() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    for run in 1..=20 {
        let out = verify(&runs, &[]);
        assert_eq!(out.status.code(), Some(0), "run {run} of 20:\n{}", text(&out));
        assert!(text(&out).contains("settings agree on every node"), "{}", text(&out));
    }
}

#[test]
fn the_html_report_shows_the_verdict_drift_matrix_timeline_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    // Enough users that some log in whichever nodes their two login requests land on (each
    // does with probability 5/9 here): the matrix and its diagnosis need sessions.
    let out = verify_with_users(
        &dir.path().join("runs"),
        12,
        &["--node-env", "2:BFF_REDIS_KEY_PREFIX=old", "--report", "html", page.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    for tag in ["table", "tr", "svg", "p", "h2", "h3"] {
        let opened = html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count();
        assert_eq!(opened, html.matches(&format!("</{tag}>")).count(), "<{tag}> balanced");
    }
    assert!(html.contains("verdict fail") && html.contains("FAIL verify-scaling"), "the verdict");
    assert!(html.contains("<td class=\"odd\">≠ old</td>"), "the drifted setting on the odd node");
    let diagnosis = html.split("Diagnosis:</strong>").nth(1).expect("a diagnosis").split("</p>").next().unwrap();
    assert!(diagnosis.contains("node-2"), "the diagnosis names node-2: {diagnosis}");
    assert!(html.contains("created on \\ read on"), "the matrix");
    assert_eq!(html.matches("<svg").count(), 1, "one inline timeline");
    assert!(html.matches("<circle").count() > 10, "requests drawn as points");
    assert!(html.contains("node-1") && html.contains("seconds into the run"), "a legend and axes");
    assert!(html.contains("<h3>Failures</h3>"), "the failures");
    // What the terminal report says is on the page too.
    assert!(
        html.contains("<h3>Requests per step and node</h3>") && html.contains("<td>me @each-node</td>"),
        "step × node"
    );
    assert!(html.contains("step (all nodes)"), "each step over all nodes");
    assert!(html.contains("<h3>Invariants of the history</h3>"), "the invariants");
    assert!(
        html.contains("no user sees another user&#x27;s identity")
            || html.contains("no user sees another user's identity")
    );
    assert!(html.contains("<h3>Cluster events</h3>") && html.contains("<li>restart node-1"), "the cluster events");
    // The plot: bands labelled, failed requests marked apart, text large enough to read.
    let svg = html.split("<svg").nth(1).unwrap().split("</svg>").next().unwrap();
    let texts: Vec<&str> = svg
        .split("<text")
        .skip(1)
        .map(|t| t.split('>').nth(1).unwrap_or("").split('<').next().unwrap().trim())
        .collect();
    assert!(texts.contains(&"restart-node"), "a band's label on the plot: {texts:?}");
    assert!(
        texts.contains(&"failed") && texts.contains(&"unavailable"),
        "failed and unavailable in the legend: {texts:?}"
    );
    let sizes: Vec<f64> =
        svg.split("font-size=\"").skip(1).map(|s| s.split('"').next().unwrap().parse().unwrap()).collect();
    assert!(!sizes.is_empty() && sizes.iter().all(|s| *s >= 10.0), "text large enough to read: {sizes:?}");
    assert!(!html.contains("<script") && !html.contains("src=\"http"), "self-contained");
}
