//! The process backend end to end: three real `bff` processes on a real `redis-server` behind the
//! load balancer; logins through the balancer are seen on every node directly; restarts keep
//! sessions with Redis and lose them with the memory store; teardown leaves no process behind.

use harness::cluster::{BackendKind, Cluster, ClusterSpec, StoreKind};

fn spec(store: StoreKind) -> ClusterSpec {
    ClusterSpec { nodes: 3, backend: BackendKind::Process, session_store: store, ..ClusterSpec::default() }
}

fn pids(cluster: &Cluster) -> Vec<u32> {
    cluster
        .components()
        .iter()
        .filter(|c| c.name != "issuer" && c.name != "lb")
        .filter_map(|c| c.id.as_deref()?.strip_prefix("pid ")?.parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

#[tokio::test]
async fn three_nodes_share_sessions_and_survive_restarts() {
    let mut cluster = Cluster::start(spec(StoreKind::Redis), &|_| {}).await.unwrap();
    assert_eq!(cluster.backend_name(), "process");
    let user = cluster.user(Some("dora"));
    let reply = user.login(&cluster.lb_url()).await.unwrap();
    assert_eq!(reply.status, 302, "{reply:?}");
    for i in 0..3 {
        let me = user.me(&cluster.node_url(i).unwrap()).await.unwrap();
        assert_eq!(me.status, 200, "node {i}");
        assert_eq!(me.json().unwrap()["sub"], "dora");
    }
    let through_lb = user.me(&cluster.lb_url()).await.unwrap();
    assert!(through_lb.node.as_deref().is_some_and(|n| n.starts_with("node-")));

    let port_before = cluster.node_url(1).unwrap();
    cluster.restart_node(1).await.unwrap();
    assert_eq!(cluster.node_url(1).unwrap(), port_before, "a restarted node keeps its port");
    assert_eq!(user.me(&cluster.node_url(1).unwrap()).await.unwrap().status, 200);

    cluster.kill_node(2).await.unwrap();
    assert!(cluster.node_url(2).is_none());
    for _ in 0..10 {
        let me = user.me(&cluster.lb_url()).await.unwrap();
        assert_eq!(me.status, 200, "the balancer skips the killed node: {me:?}");
        assert_ne!(me.node.as_deref(), Some("node-3"));
    }
    cluster.start_node(2).await.unwrap();
    assert_eq!(user.me(&cluster.node_url(2).unwrap()).await.unwrap().status, 200);

    cluster.restart_redis().await.unwrap();
    let pids = pids(&cluster);
    assert_eq!(pids.len(), 4, "redis and three nodes");
    cluster.teardown().await.unwrap();
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived teardown");
    }
}

#[tokio::test]
async fn memory_store_loses_sessions_on_restart() {
    // Sticky balancing, or the memory store could not even complete a login.
    let sticky = ClusterSpec { lb: harness::cluster::LbPolicy::Sticky, ..spec(StoreKind::Memory) };
    let mut cluster = Cluster::start(sticky, &|_| {}).await.unwrap();
    let user = cluster.user(None);
    user.login(&cluster.lb_url()).await.unwrap();
    // The session lives on the one node the balancer pinned this browser to: find it, restart
    // it, and it is gone everywhere.
    let mut holder = None;
    for i in 0..3 {
        if user.me(&cluster.node_url(i).unwrap()).await.unwrap().status == 200 {
            holder = Some(i);
        }
    }
    let holder = holder.expect("some node holds the session");
    cluster.restart_node(holder).await.unwrap();
    for i in 0..3 {
        assert_eq!(user.me(&cluster.node_url(i).unwrap()).await.unwrap().status, 404, "node {i}");
    }
    cluster.teardown().await.unwrap();
}

#[tokio::test]
async fn unknown_node_is_an_error() {
    let mut cluster = Cluster::start(ClusterSpec { nodes: 1, ..spec(StoreKind::Memory) }, &|_| {}).await.unwrap();
    assert!(matches!(cluster.restart_node(5).await, Err(harness::cluster::ClusterError::NoSuchNode(5))));
    cluster.teardown().await.unwrap();
}
