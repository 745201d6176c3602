//! The Redis Cluster fixture on real `redis-server` processes: it forms with every slot covered
//! by three primaries, each with a replica; a manual failover and a SIGKILLed primary swap
//! roles without losing a key; the killed node comes back as a replica; a live reshard under a
//! load of writes and reads moves slots without an error reaching the client; an added
//! primary gets slots from a reshard; memory per shard adds up to every key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use harness::process::RedisCluster;
use redis::AsyncCommands;

const KEYS: usize = 300;

async fn client(cluster: &RedisCluster) -> redis::cluster_async::ClusterConnection {
    let seeds: Vec<String> = cluster.addresses().iter().map(|a| format!("redis://{a}")).collect();
    redis::cluster::ClusterClient::new(seeds).unwrap().get_async_connection().await.unwrap()
}

async fn write_keys(conn: &mut redis::cluster_async::ClusterConnection) {
    for i in 0..KEYS {
        let _: () = conn.set(format!("key:{i}"), i).await.unwrap();
    }
}

async fn assert_keys(conn: &mut redis::cluster_async::ClusterConnection, when: &str) {
    for i in 0..KEYS {
        let value: Option<usize> = conn.get(format!("key:{i}")).await.unwrap();
        assert_eq!(value, Some(i), "key:{i} {when}");
    }
}

#[tokio::test]
async fn it_forms_and_fails_over_by_hand_and_by_sigkill_without_losing_a_key() {
    let mut cluster = RedisCluster::builder().primaries(3).replicas_per_primary(1).run().await.unwrap();
    assert_eq!(cluster.primaries().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
    let mut slots = 0;
    for shard in 0..3 {
        let own = cluster.slots(shard).await.unwrap();
        assert!(own > 5000, "shard {shard} serves {own} slots");
        slots += own;
    }
    assert_eq!(slots, 16_384);
    let url = cluster.url();
    assert!(url.starts_with("redis+cluster://127.0.0.1:") && url.matches(',').count() == 2, "{url}");
    let mut conn = client(&cluster).await;
    write_keys(&mut conn).await;

    let old = cluster.primaries()[0].address;
    let new = cluster.failover(0).await.unwrap();
    assert_ne!(old, new);
    assert_eq!(cluster.primaries()[0].address, new);
    assert!(cluster.replicas().iter().any(|r| r.address == old && r.shard == 0), "the old primary is its replica");
    assert_keys(&mut conn, "after CLUSTER FAILOVER").await;

    let killed = cluster.primaries()[1].address;
    let promoted = cluster.kill_primary(1).await.unwrap();
    assert_ne!(killed, promoted);
    assert_eq!(cluster.primaries().len(), 3);
    assert_eq!(cluster.replicas().len(), 2);
    assert_keys(&mut conn, "after a SIGKILLed primary").await;
    cluster.restart_killed().await.unwrap();
    assert!(
        cluster.replicas().iter().any(|r| r.address == killed && r.shard == 1),
        "the killed node is back as a replica"
    );
    assert_keys(&mut conn, "after the killed node came back").await;
}

#[tokio::test]
async fn a_live_reshard_under_load_and_an_added_primary_move_slots_without_errors() {
    let mut cluster = RedisCluster::builder().primaries(3).replicas_per_primary(0).run().await.unwrap();
    let mut conn = client(&cluster).await;
    write_keys(&mut conn).await;

    // A load of writes and reads on every key while the slots move.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, done, errors) = (stop.clone(), done.clone(), errors.clone());
        let mut conn = client(&cluster).await;
        tokio::spawn(async move {
            let mut i = 0;
            let mut first_error = None;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("key:{}", i % KEYS);
                let written: redis::RedisResult<()> = conn.set(&key, i % KEYS).await;
                let read: redis::RedisResult<Option<usize>> = conn.get(&key).await;
                match (written, read) {
                    (Ok(()), Ok(Some(v))) if v == i % KEYS => {}
                    other => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(format!("{key}: {other:?}"));
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            first_error
        })
    };
    let before = cluster.slots(2).await.unwrap();
    let moved = cluster.reshard(0, 2, 0.25).await.unwrap();
    assert!(moved > 1000, "{moved} slots moved");
    assert_eq!(cluster.slots(2).await.unwrap(), before + moved);

    let added = cluster.add_primary().await.unwrap();
    assert_eq!(added, 3);
    assert_eq!(cluster.slots(added).await.unwrap(), 0);
    let moved = cluster.reshard(1, added, 0.1).await.unwrap();
    assert_eq!(cluster.slots(added).await.unwrap(), moved);

    stop.store(true, Ordering::Relaxed);
    let first_error = load.await.unwrap();
    let (done, errors) = (done.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    println!("reshard under load: {done} write+read pairs, {errors} errors");
    assert!(done > 100, "the load ran ({done})");
    assert_eq!(errors, 0, "no error reached the client; the first: {first_error:?}");
    assert_keys(&mut conn, "after the reshards").await;

    let memory = cluster.memory_per_shard().await.unwrap();
    assert_eq!(memory.len(), 4);
    assert_eq!(memory.iter().map(|m| m.memory.keys).sum::<u64>(), KEYS as u64);
    assert!(memory.iter().all(|m| m.memory.used_memory > 0));
}
