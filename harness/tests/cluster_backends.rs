//! Both backends end to end through [`Cluster`]: three real `bff` nodes (processes, or containers
//! on a run-private Docker network) on a real Redis behind the load balancer. A login through the
//! balancer is seen on every node directly; restarts keep sessions with Redis and lose them with
//! the memory store; kill + start and a Redis restart work; teardown leaves no process,
//! container or network behind (checked, not assumed).

use std::path::PathBuf;
use std::process::Command;

use harness::cluster::{BackendKind, Cluster, ClusterSpec, Images, LbPolicy, StoreKind};
use tokio::sync::Mutex;

/// Container tests take turns (testcontainers shares one Docker client); the flag says whether
/// the images were built.
static DOCKER: Mutex<bool> = Mutex::const_new(false);

async fn docker_images() -> tokio::sync::MutexGuard<'static, bool> {
    let mut built = DOCKER.lock().await;
    if !*built {
        let bff = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/bff");
        assert!(bff.is_file(), "{} is missing: run `cargo build -p bff` first", bff.display());
        harness::images::build_images(&bff, &Images::default(), |_| {}).await.unwrap();
        *built = true;
    }
    built
}

fn spec(backend: BackendKind, store: StoreKind) -> ClusterSpec {
    ClusterSpec { nodes: 3, backend, session_store: store, ..ClusterSpec::default() }
}

/// What must be gone after teardown: process ids or container ids.
fn leftovers(cluster: &Cluster) -> Vec<String> {
    cluster.components().iter().filter(|c| c.name != "issuer" && c.name != "lb").filter_map(|c| c.id.clone()).collect()
}

fn still_there(ids: &[String]) -> Vec<String> {
    let containers = String::from_utf8(
        Command::new("docker").args(["ps", "-a", "-q", "--no-trunc"]).output().map(|o| o.stdout).unwrap_or_default(),
    )
    .unwrap_or_default();
    ids.iter()
        .filter(|id| match id.strip_prefix("pid ") {
            Some(pid) => std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")),
            None => containers.lines().any(|c| c.starts_with(id.as_str())),
        })
        .cloned()
        .collect()
}

fn run_networks() -> usize {
    let out = Command::new("docker").args(["network", "ls", "-q", "--filter", "name=bff-run-"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).lines().count()).unwrap_or(0)
}

async fn sessions_are_shared_and_survive(backend: BackendKind) {
    let networks_before = run_networks();
    let mut cluster = Cluster::start(spec(backend, StoreKind::Redis), &|_| {}).await.unwrap();
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

    let before = cluster.node_url(1).unwrap();
    cluster.restart_node(1).await.unwrap();
    if backend == BackendKind::Process {
        assert_eq!(cluster.node_url(1).unwrap(), before, "a restarted process keeps its port");
    }
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
    let ids = leftovers(&cluster);
    assert_eq!(ids.len(), 4, "redis and three nodes: {ids:?}");
    cluster.teardown().await.unwrap();
    assert_eq!(still_there(&ids), Vec::<String>::new(), "left behind after teardown");
    if backend == BackendKind::Docker {
        assert_eq!(run_networks(), networks_before, "the run's network is removed");
    }
}

async fn memory_store_loses_sessions_on_restart(backend: BackendKind) {
    // Sticky balancing, or the memory store could not even complete a login.
    let sticky = ClusterSpec { lb: LbPolicy::Sticky, ..spec(backend, StoreKind::Memory) };
    let mut cluster = Cluster::start(sticky, &|_| {}).await.unwrap();
    let user = cluster.user(None);
    assert_eq!(user.login(&cluster.lb_url()).await.unwrap().status, 302);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_sessions_and_survive_restarts() {
    sessions_are_shared_and_survive(BackendKind::Process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_with_memory_store_lose_sessions_on_restart() {
    memory_store_loses_sessions_on_restart(BackendKind::Process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_share_sessions_and_survive_restarts() {
    let _turn = docker_images().await;
    sessions_are_shared_and_survive(BackendKind::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_with_memory_store_lose_sessions_on_restart() {
    let _turn = docker_images().await;
    memory_store_loses_sessions_on_restart(BackendKind::Docker).await;
}

#[tokio::test]
async fn unknown_node_is_an_error() {
    let mut cluster =
        Cluster::start(ClusterSpec { nodes: 1, ..spec(BackendKind::Process, StoreKind::Memory) }, &|_| {})
            .await
            .unwrap();
    assert!(matches!(cluster.restart_node(5).await, Err(harness::cluster::ClusterError::NoSuchNode(5))));
    cluster.teardown().await.unwrap();
}
