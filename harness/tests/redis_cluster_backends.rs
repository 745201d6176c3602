//! Redis Cluster as the backends run it (three primaries, three replicas), and every fault a
//! scenario does to it: `CLUSTER FAILOVER` of a shard, a primary SIGKILLed (its replica promoted,
//! the server back as a replica), live resharding and a primary added. After each, every key
//! written before is read back through `redis-cli -c` (which follows `MOVED` and `ASK` as a
//! cluster client does), from the addresses the cluster announces: what a node is given.
//! Real `redis-server` containers on a run-private network; no `bff` node is needed.

use std::process::Command;

use harness::cluster::docker::DockerBackend;
use harness::cluster::process::ProcessBackend;
use harness::cluster::{
    Backend, BackendKind, ClusterSpec, Images, RedisFault, RedisTopology, ShardPick, StoreKind, cluster_seeds,
};

const KEYS: usize = 300;

fn spec() -> ClusterSpec {
    let tag = std::env::var("BFF_TEST_IMAGE_TAG").unwrap_or_else(|_| "latest".into());
    ClusterSpec {
        nodes: 0,
        backend: BackendKind::Docker,
        session_store: StoreKind::Redis,
        redis: RedisTopology::Cluster,
        images: Images { bff: format!("bff-local/bff:{tag}"), redis: format!("bff-local/redis:{tag}") },
        ..ClusterSpec::default()
    }
}

/// `redis-cli -c` at `seed` with one command a line on stdin; its output lines.
fn cli(seed: &str, commands: &str) -> Vec<String> {
    let (host, port) = seed.rsplit_once(':').expect("host:port");
    let mut child = Command::new("redis-cli")
        .args(["-c", "-h", host, "-p", port])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli (apt-get install redis-tools)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(commands.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    // Its notes of the redirections it followed are not answers.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("-> Redirected"))
        .map(str::to_owned)
        .collect()
}

fn write_keys(seed: &str) {
    let commands: String = (0..KEYS).map(|i| format!("SET session:{i} value-{i}\n")).collect();
    let answers = cli(seed, &commands);
    assert_eq!(answers.iter().filter(|a| *a == "OK").count(), KEYS, "{answers:?}");
}

fn missing_keys(seed: &str) -> Vec<usize> {
    let commands: String = (0..KEYS).map(|i| format!("GET session:{i}\n")).collect();
    let answers = cli(seed, &commands);
    (0..KEYS).filter(|i| answers.get(*i).map(String::as_str) != Some(&format!("value-{i}"))).collect()
}

fn states(backend: &dyn Backend) -> Vec<String> {
    backend.components().iter().filter(|c| c.name.starts_with("redis-")).map(|c| c.state.clone()).collect()
}

async fn every_fault_keeps_every_key(backend: &mut dyn Backend, url: &str) {
    let seeds = cluster_seeds(url);
    assert_eq!(seeds.len(), 3, "every primary is a seed: {url}");
    let states_now = states(backend);
    assert_eq!(states_now.iter().filter(|s| s.starts_with("primary")).count(), 3, "{states_now:?}");
    assert_eq!(states_now.iter().filter(|s| s.starts_with("replica")).count(), 3, "{states_now:?}");
    write_keys(&seeds[0]);

    let faults = [
        RedisFault::Failover { shard: ShardPick::Index(0) },
        RedisFault::KillPrimary { shard: ShardPick::Index(1) },
        RedisFault::Reshard { from: ShardPick::Index(0), to: Some(ShardPick::Index(2)), share: 0.5 },
        RedisFault::AddPrimary,
        RedisFault::Reshard { from: ShardPick::Index(2), to: Some(ShardPick::Index(3)), share: 0.25 },
        RedisFault::KillPrimary { shard: ShardPick::Index(0) },
    ];
    for fault in faults {
        let done = backend.redis_cluster_fault(fault).await.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        // Any seed will do: the one of shard 2 whose primary was killed is a replica by now.
        let missing = missing_keys(&seeds[2]);
        assert!(missing.is_empty(), "after {fault:?} ({done}): {} keys missing: {missing:?}", missing.len());
    }
    let states_now = states(backend);
    assert_eq!(states_now.iter().filter(|s| s.starts_with("primary")).count(), 4, "{states_now:?}");
    let memory = backend.redis_memory_per_shard().await;
    assert_eq!(memory.len(), 4);
    assert!(memory.iter().all(|m| m.memory.used_memory > 0), "{memory:?}");
    // Every key, and the markers of the replication checks (which expire within a minute).
    assert!(memory.iter().map(|m| m.memory.keys).sum::<u64>() as usize >= KEYS, "{memory:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_fail_over_lose_a_primary_reshard_and_grow_without_losing_a_key() {
    let spec = ClusterSpec { backend: BackendKind::Process, ..spec() };
    let dir = tempfile::tempdir().unwrap();
    let mut backend =
        ProcessBackend::start(&spec, "http://127.0.0.1:1", "http://127.0.0.1:1", dir.path()).await.unwrap();
    let url = backend.redis_url().expect("a redis url").to_owned();
    every_fault_keeps_every_key(&mut backend, &url).await;
    backend.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_fail_over_lose_a_primary_reshard_and_grow_without_losing_a_key() {
    // The backend builds the images when missing or stale (BFF_TEST_IMAGE_TAG: under a tag of
    // one's own instead of `latest`).
    let spec = spec();
    let dir = tempfile::tempdir().unwrap();
    let mut backend =
        DockerBackend::start(&spec, "http://issuer.localhost:1", "http://127.0.0.1:1", dir.path(), &|_| {})
            .await
            .unwrap();
    // The nodes' URL names the members as they announce themselves.
    let url = backend.redis_url().expect("a redis url").to_owned();
    every_fault_keeps_every_key(&mut backend, &url).await;
    let network = backend.network().to_owned();
    backend.teardown().await.unwrap();
    let left = Command::new("docker").args(["ps", "-aq", "--filter", &format!("network={network}")]).output().unwrap();
    assert!(left.stdout.is_empty(), "containers left: {}", String::from_utf8_lossy(&left.stdout));
}
