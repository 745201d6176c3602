//! The Docker backend end to end: images built here from the debug `bff` binary and the host's
//! `redis-server`, two real `bff` containers on a real Redis container in a run-private network,
//! the mock issuer on the host reached through the host gateway. A login on node 1 is seen on
//! node 2; node restarts (same host port), a Redis restart with persistence and a kill keep the
//! session; each node's output lands in its log file; teardown (or merely dropping the backend)
//! leaves no container and no network; a node that cannot start says why; a local image is built
//! when missing and rebuilt when its binary changed; a missing image that is not ours is one line,
//! never a pull error.
//!
//! Needs a Docker daemon and `target/debug/bff` (`cargo build -p bff`). testcontainers removes
//! containers while blocking in place, hence the multi-threaded runtimes; and it shares one
//! Docker client between every test's runtime, hence one test at a time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use harness::cluster::docker::{DockerBackend, RUN_LABEL};
use harness::cluster::{
    Backend, BackendKind, CLIENT_ID, CLIENT_SECRET, ClusterError, ClusterSpec, DOCKER_ISSUER_HOST, Images, StoreKind,
};
use harness::images::{ImageAction, docker_available, ensure_images};
use harness::{MockIssuer, Reply, VirtualUser};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;
use url::Url;

/// What the nodes believe their public URL is. The host reaches each node on a port Docker picks
/// when it starts, so the test logs in on node 1 by hand and points the callback there.
const PUBLIC_URL: &str = "http://127.0.0.1:9";

/// Held by each test that runs containers; true once the first one built the images.
static DOCKER: Mutex<bool> = Mutex::const_new(false);

/// Waits for the other container tests, builds the images if no test did yet.
async fn docker_with_images() -> MutexGuard<'static, bool> {
    assert!(docker_available().await, "this test needs a Docker daemon");
    let mut built = DOCKER.lock().await;
    if !*built {
        let bff = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/bff");
        assert!(bff.is_file(), "{} is missing: run `cargo build -p bff` first", bff.display());
        let building = Instant::now();
        ensure_images(&Images::default(), Some(&bff), true, &|step: &str| eprintln!("{step}")).await.unwrap();
        eprintln!("images ready in {:?}", building.elapsed());
        *built = true;
    }
    built
}

/// A run directory for one test, and a starter that puts node logs there.
async fn start(
    spec: &ClusterSpec,
    issuer: &MockIssuer,
    run: &tempfile::TempDir,
) -> Result<DockerBackend, ClusterError> {
    DockerBackend::start(spec, issuer.url(), PUBLIC_URL, run.path(), &|_: &str| {}).await
}

async fn issuer() -> MockIssuer {
    MockIssuer::builder()
        .bind(([0, 0, 0, 0], 0).into())
        .host(DOCKER_ISSUER_HOST)
        .client(CLIENT_ID, CLIENT_SECRET)
        .run()
        .await
        .unwrap()
}

fn run_containers(run: &str) -> Vec<String> {
    docker_lines(&["ps", "--all", "--quiet", "--filter", &format!("label={RUN_LABEL}={run}")])
}

fn network_exists(network: &str) -> bool {
    docker_lines(&["network", "ls", "--format", "{{.Name}}"]).iter().any(|n| n == network)
}

/// `docker ARGS` output lines (the test's own view, independent of the backend).
fn docker_lines(args: &[&str]) -> Vec<String> {
    let output = Command::new("docker").args(args).output().expect("run docker");
    assert!(output.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).filter(|l| !l.is_empty()).collect()
}

/// `/account/login` on `node` → the issuer → the callback, sent to `node` instead of
/// [`PUBLIC_URL`].
async fn login_at(user: &VirtualUser, node: SocketAddr) {
    let start = user.get(&format!("http://{node}/account/login")).await.unwrap();
    assert_eq!(start.status, 302, "login: {start:?}");
    let issued = user.get(start.location.as_deref().expect("authorize URL")).await.unwrap();
    assert_eq!(issued.status, 302, "authorize: {issued:?}");
    let mut callback = Url::parse(issued.location.as_deref().expect("callback URL")).unwrap();
    assert!(callback.as_str().starts_with(PUBLIC_URL), "{callback}");
    callback.set_port(Some(node.port())).unwrap();
    let done = user.get(callback.as_str()).await.unwrap();
    assert_eq!(done.status, 302, "callback: {done:?}");
}

/// `/account/me` on `node` until it answers 200 (Redis may be coming back).
async fn me_eventually(user: &VirtualUser, node: SocketAddr) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(30);
    let base = format!("http://{node}");
    loop {
        let reply = user.me(&base).await;
        match reply {
            Ok(reply) if reply.status == 200 => return reply,
            other if Instant::now() > deadline => panic!("/account/me on {node} never answered 200: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn me(user: &VirtualUser, node: SocketAddr) -> Reply {
    user.me(&format!("http://{node}")).await.unwrap()
}

fn state(backend: &DockerBackend, name: &str) -> String {
    backend.components().into_iter().find(|c| c.name == name).map(|c| c.state).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_sessions_through_restarts_and_leave_nothing_behind() {
    let _docker = docker_with_images().await;
    let issuer = issuer().await;
    let spec = ClusterSpec {
        nodes: 2,
        backend: BackendKind::Docker,
        session_store: StoreKind::Redis,
        redis_persistence: true,
        ..ClusterSpec::default()
    };
    let starting = Instant::now();
    let logs = tempfile::tempdir().unwrap();
    let mut backend = start(&spec, &issuer, &logs).await.unwrap();
    let run = backend.run_id().to_owned();
    let network = backend.network().to_owned();
    let node1 = backend.start_node(0).await.unwrap();
    let node2 = backend.start_node(1).await.unwrap();
    eprintln!("redis and two nodes ready in {:?}", starting.elapsed());
    assert_eq!(run_containers(&run).len(), 3);
    assert!(network_exists(&network));
    assert_eq!(state(&backend, "node-1"), "running");

    let user = VirtualUser::with_resolver(None, &[(DOCKER_ISSUER_HOST.into(), ([127, 0, 0, 1], issuer.port()).into())]);
    login_at(&user, node1).await;
    let on_node1 = me(&user, node1).await;
    assert_eq!(on_node1.status, 200, "{on_node1:?}");
    let sub = on_node1.json().unwrap()["sub"].clone();
    assert!(sub.is_string(), "{on_node1:?}");
    let on_node2 = me(&user, node2).await;
    assert_eq!(on_node2.status, 200, "the session lives in Redis: {on_node2:?}");
    assert_eq!(on_node2.json().unwrap()["sub"], sub);

    // A graceful restart: the same container, the same host port, the same session.
    backend.stop_node(0).await.unwrap();
    assert_eq!(state(&backend, "node-1"), "stopped");
    assert_eq!(backend.start_node(0).await.unwrap(), node1, "a restarted node keeps its address");
    assert_eq!(me(&user, node1).await.status, 200);

    // Redis restarts under its container name with its append-only file; nodes reconnect.
    backend.restart_redis().await.unwrap();
    assert_eq!(me_eventually(&user, node2).await.json().unwrap()["sub"], sub);
    assert_eq!(me_eventually(&user, node1).await.json().unwrap()["sub"], sub);

    backend.kill_node(1).await.unwrap();
    assert_eq!(state(&backend, "node-2"), "killed");
    assert!(user.me(&format!("http://{node2}")).await.map_or(true, |r| r.status != 200), "a killed node answers");
    assert_eq!(backend.start_node(1).await.unwrap(), node2, "a node started after a kill keeps its address");
    assert_eq!(me(&user, node2).await.status, 200);
    // Every start's output, once: the first start's lines are not repeated after the restart.
    let log = backend.node_log(0).unwrap();
    assert_eq!(log, logs.path().join("node-1.log"));
    let text = std::fs::read_to_string(&log).unwrap();
    let starts = text.lines().filter(|l| l.contains("listening")).count();
    assert_eq!(starts, 2, "two starts of node-1, each logged once:\n{text}");
    assert!(!text.contains('\u{1b}'), "no terminal escape codes in a log file");

    backend.teardown().await.unwrap();
    backend.teardown().await.unwrap();
    assert_eq!(run_containers(&run), Vec::<String>::new(), "containers survived teardown");
    assert!(!network_exists(&network), "network {network} survived teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_backend_removes_its_containers_and_network() {
    let _docker = docker_with_images().await;
    let issuer = issuer().await;
    let spec = ClusterSpec { nodes: 1, session_store: StoreKind::Memory, ..ClusterSpec::default() };
    let logs = tempfile::tempdir().unwrap();
    let mut backend = start(&spec, &issuer, &logs).await.unwrap();
    backend.start_node(0).await.unwrap();
    let (run, network) = (backend.run_id().to_owned(), backend.network().to_owned());
    assert_eq!(run_containers(&run).len(), 1);
    drop(backend);
    assert_eq!(run_containers(&run), Vec::<String>::new(), "containers survived the drop");
    assert!(!network_exists(&network), "network {network} survived the drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_start_says_why() {
    let _docker = docker_with_images().await;
    let issuer = issuer().await;
    let spec = ClusterSpec {
        nodes: 1,
        session_store: StoreKind::Memory,
        bff_env: vec![("BFF_LISTEN".into(), "not-an-address".into())],
        ..ClusterSpec::default()
    };
    let logs = tempfile::tempdir().unwrap();
    let mut backend = start(&spec, &issuer, &logs).await.unwrap();
    let error = backend.start_node(0).await.unwrap_err();
    let ClusterError::NodeNotReady { node, reason, log, last_lines } = &error else {
        panic!("a node that exits is a node that never became ready: {error:?}")
    };
    assert_eq!((node.as_str(), reason.as_str()), ("node-1", "its container exited before it was ready"));
    assert_eq!(log.as_deref(), Some(logs.path().join("node-1.log").as_path()));
    assert!(last_lines.iter().any(|l| l.contains("BFF_LISTEN")), "the node's own words: {last_lines:?}");
    assert_eq!(backend.components()[0].state, "stopped");
    backend.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_that_is_not_ours_is_one_line_never_a_pull() {
    assert!(docker_available().await, "this test needs a Docker daemon");
    // No lock: it never reaches testcontainers.
    let spec = ClusterSpec {
        nodes: 1,
        backend: BackendKind::Docker,
        images: Images { bff: "example.invalid/bff:1".into(), redis: "example.invalid/redis:1".into() },
        ..ClusterSpec::default()
    };
    let logs = tempfile::tempdir().unwrap();
    let error = DockerBackend::start(&spec, "http://issuer.localhost:1", PUBLIC_URL, logs.path(), &|_: &str| {})
        .await
        .err()
        .expect("no backend without its image");
    assert!(matches!(error, ClusterError::Unavailable(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "image example.invalid/bff:1 not found locally and not one bffctl builds (`bff-local/…`): build or load it first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_image_is_built_when_missing_and_rebuilt_when_its_binary_changes() {
    let _docker = docker_with_images().await;
    let name = format!("bff-local/bff-autobuild-{:08x}:latest", rand::random::<u32>());
    let images = Images { bff: name.clone(), redis: Images::default().redis };
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("bff");
    std::fs::copy(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/bff"), &binary).unwrap();
    let notices = std::sync::Mutex::new(Vec::new());
    let notice = |line: &str| notices.lock().unwrap().push(line.to_owned());

    let first = ensure_images(&images, Some(&binary), false, &notice).await.unwrap();
    assert_eq!(first, [(name.clone(), ImageAction::Built("not found locally".into()))]);
    let again = ensure_images(&images, Some(&binary), false, &notice).await.unwrap();
    assert_eq!(again, [(name.clone(), ImageAction::Kept)], "a current image is kept");

    // A new build of the binary: the image is older than it, and is rebuilt.
    let file = std::fs::OpenOptions::new().write(true).open(&binary).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(5)).unwrap();
    drop(file);
    let rebuilt = ensure_images(&images, Some(&binary), false, &notice).await.unwrap();
    assert!(matches!(&rebuilt[0].1, ImageAction::Built(why) if why.starts_with("older than")), "{rebuilt:?}");
    let notices = notices.into_inner().unwrap();
    assert_eq!(notices.len(), 2, "one line per build: {notices:?}");
    assert!(notices[0].starts_with(&format!("building image {name} from ")), "{notices:?}");

    Command::new("docker").args(["rmi", "-f", &name]).output().unwrap();
}
