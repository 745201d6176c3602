//! The observed drift check over real sockets: three real `bff` processes on a real Redis, asked
//! directly as any client would ask another gateway (no `/ops/fingerprint`), with a login that
//! starts and ends on each node through the mock issuer. A healthy trio (over an https public
//! URL, so with bff's `__Host-` cookies) shows no drift, also with one node given twice; a node
//! with another cookie name, scope or client is named with the attribute.

use std::collections::BTreeMap;

use harness::cluster::{BackendKind, Cluster, ClusterSpec, NodeSettings};
use harness::drift::{self, DriftReport, ObservedPaths, PinnedLogin};

fn spec(odd_nodes: &[(usize, &str, &str)]) -> ClusterSpec {
    let mut node_settings: BTreeMap<usize, NodeSettings> = BTreeMap::new();
    for (node, key, value) in odd_nodes {
        node_settings.entry(*node).or_default().env.insert((*key).to_owned(), (*value).to_owned());
    }
    ClusterSpec { nodes: 3, backend: BackendKind::Process, node_settings, ..ClusterSpec::default() }
}

fn nodes(cluster: &Cluster) -> Vec<(String, Option<String>)> {
    (0..cluster.node_count()).map(|i| (harness::cluster::node_name(i), cluster.node_url(i))).collect()
}

async fn observe(cluster: &Cluster, nodes: &[(String, Option<String>)]) -> DriftReport {
    let paths = ObservedPaths::default();
    let login = PinnedLogin::new(&paths, cluster.resolve());
    drift::observe(nodes, &paths, Some(&login)).await
}

fn value<'a>(report: &'a DriftReport, setting: &str, node: usize) -> &'a str {
    let row = report.rows.iter().find(|r| r.setting == setting).unwrap_or_else(|| panic!("no row {setting}"));
    row.values[node].as_deref().unwrap_or("-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_trio_shows_no_drift_even_with_a_node_given_twice() {
    let https = ClusterSpec { public_url: Some("https://gateway.localhost".into()), ..spec(&[]) };
    let mut cluster = Cluster::start(https, &|_| {}).await.unwrap();
    let nodes = nodes(&cluster);
    let report = observe(&cluster, &nodes).await;
    assert!(!report.skipped);
    assert!(!report.found_drift(), "{}", report.summary());
    for i in 0..3 {
        assert_eq!(value(&report, "login.completes", i), "yes");
        assert_eq!(value(&report, "cookie[session].name", i), "__Host-bff-session");
        assert_eq!(value(&report, "cookie[session].secure", i), "yes");
        assert_eq!(value(&report, "cookie[session.cleared].name", i), "__Host-bff-session-login");
        assert_eq!(value(&report, "cookie[login].lifetime", i), "10m");
        assert_eq!(value(&report, "authorize.pkce", i), "yes");
        assert_eq!(value(&report, "anonymous.me.status", i), "404");
    }
    assert_eq!(value(&report, "authorize.redirect_uri", 0), "https://gateway.localhost/account/login/callback");
    assert!(
        !report.rows.iter().any(|r| r.setting == "authorize.state" || r.setting == "authorize.nonce"),
        "per-request values are not settings"
    );

    let twice = vec![nodes[0].clone(), ("again".to_owned(), nodes[0].1.clone())];
    let report = observe(&cluster, &twice).await;
    assert!(!report.found_drift(), "{}", report.summary());

    // bff's own fingerprint agrees, and the two checks make one report.
    let fingerprint = drift::check(&nodes, &cluster.spec().ops_token).await;
    let both = fingerprint.merged(observe(&cluster, &nodes).await);
    assert!(!both.found_drift(), "{}", both.summary());
    assert!(both.rows.iter().any(|r| r.setting == "session.cookie_name"));
    assert!(both.rows.iter().any(|r| r.setting == "cookie[session].name"));
    cluster.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_cookie_name_is_named() {
    let mut cluster = Cluster::start(spec(&[(2, "BFF_SESSION_COOKIE_NAME", "other")]), &|_| {}).await.unwrap();
    let report = observe(&cluster, &nodes(&cluster)).await;
    let drifted = report.drifted();
    for setting in
        ["cookie[login].name (node-2)", "cookie[session].name (node-2)", "cookie[session.cleared].name (node-2)"]
    {
        assert!(drifted.iter().any(|d| d == setting), "{setting} not in {drifted:?}");
    }
    assert_eq!(drifted.len(), 3, "nothing else differs: {drifted:?}");
    assert_eq!(value(&report, "cookie[session].name", 1), "other");
    cluster.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_scope_or_client_is_named() {
    let odd = [(3, "BFF_OIDC_SCOPES", "openid profile"), (1, "BFF_OIDC_CLIENT_ID", "another-client")];
    let mut cluster = Cluster::start(spec(&odd), &|_| {}).await.unwrap();
    let report = observe(&cluster, &nodes(&cluster)).await;
    let drifted = report.drifted();
    for setting in ["authorize.scope (node-3)", "authorize.client_id (node-1)"] {
        assert!(drifted.iter().any(|d| d == setting), "{setting} not in {drifted:?}");
    }
    // The issuer refuses the unknown client: that node's login never completes.
    assert!(drifted.iter().any(|d| d == "login.completes (node-1)"), "{drifted:?}");
    assert!(
        report.problems.iter().any(|p| p.starts_with("node-1: the login did not complete")),
        "{:?}",
        report.problems
    );
    assert_eq!(value(&report, "authorize.scope", 2), "openid profile");
    cluster.teardown().await.unwrap();
}
