//! The bar "one session's keys never need a cross-slot operation": every operation of
//! the session layer (sessions with their back-channel logout indexes, token refresh locks,
//! one-time login markers, logout replay markers, the shared key ring with its lock and seal
//! counters) and every [`SessionStore`] operation, run on a cluster whose slots are spread over
//! three primaries. The cluster refuses a command whose keys span slots (`CROSSSLOT`) and counts
//! it in `INFO errorstats`: the count stays 0 on every primary, while a deliberate cross-slot
//! command shows the probe sees one.

use std::sync::Arc;
use std::time::Duration;

use bff::keyring::KeyRing;
use bff::redis_link::RedisLink;
use bff::session::{PendingLogin, RedisStore, Session, SessionStore, Sessions};
use harness::process::RedisCluster;

const HOUR: Duration = Duration::from_secs(3600);

/// `CROSSSLOT` refusals on every running node.
async fn crossslot_refusals(cluster: &RedisCluster) -> u64 {
    let mut total = 0;
    for address in cluster.addresses() {
        let info: String =
            harness::redis_cluster_admin::command(address, redis::cmd("INFO").arg("errorstats")).await.unwrap();
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("errorstat_CROSSSLOT:count="))
            .map(|n| n.trim().parse::<u64>().unwrap())
            .unwrap_or(0);
    }
    total
}

fn session(sub: &str, sid: &str) -> Session {
    serde_json::from_value(serde_json::json!({
        "format": bff::compat::RecordFormat::current(),
        "created_at": bff::session::now_secs(),
        "claims": {"iss": "https://issuer.test", "sub": sub, "sid": sid},
        "id_token": "id-token",
        "access_token": "access-token",
        "refresh_token": "refresh-token",
        "access_token_expires_at": null,
    }))
    .unwrap()
}

fn login() -> PendingLogin {
    serde_json::from_value(serde_json::json!({
        "format": bff::compat::RecordFormat::current(),
        "verifier": "v", "nonce": "n", "landing_page": "/",
        "expires_at": bff::session::now_secs() + 300,
    }))
    .unwrap()
}

#[tokio::test]
async fn every_store_operation_of_a_session_stays_on_one_slot() {
    let cluster = RedisCluster::builder().primaries(3).replicas_per_primary(0).run().await.unwrap();
    let link = RedisLink::new(&cluster.url(), Duration::from_secs(2)).unwrap();
    link.connect().await;
    let store: Arc<dyn SessionStore> = Arc::new(RedisStore::new(link.clone(), "bff"));
    let ring = KeyRing::shared(link.clone(), "bff", HOUR, 2 * HOUR, 1 << 32, Some([7; 32]));
    ring.reload().await.unwrap();
    let sessions = Sessions::new(store.clone(), ring.clone(), HOUR, 8 * HOUR, Duration::from_secs(300), b"secret");

    // The probe sees a cross-slot command (on the node that serves the first key's slot).
    let first = cluster.shard_of("probe-a").await.unwrap();
    let mut other = None;
    for i in 0..400 {
        let key = format!("probe-b{i}");
        if cluster.shard_of(&key).await.unwrap() != first {
            other = Some(key);
            break;
        }
    }
    let node = cluster.primaries().iter().find(|m| m.shard == first).unwrap().address;
    let refused = harness::redis_cluster_admin::command::<()>(
        node,
        redis::cmd("MSET").arg("probe-a").arg(1).arg(other.unwrap()).arg(2),
    )
    .await;
    assert!(refused.is_err(), "a cross-slot MSET is refused");
    assert_eq!(crossslot_refusals(&cluster).await, 1, "the probe counts it");

    // Sessions of 24 users, two per user (one sid each), their indexes, locks and markers.
    let mut ids = Vec::new();
    for user in 0..24 {
        for _ in 0..2 {
            let id = sessions.create(&session(&format!("user-{user}"), &format!("sid-{user}"))).await.unwrap();
            assert!(sessions.load(&id).await.unwrap().is_some());
            assert!(sessions.load_latest(&id).await.unwrap().is_some());
            assert!(sessions.save(&id, &session(&format!("user-{user}"), &format!("sid-{user}"))).await.unwrap());
            let lock = Sessions::refresh_lock_key(&id);
            assert!(store.try_lock(&lock, "holder", Duration::from_secs(5)).await.unwrap());
            assert!(store.extend_lock(&lock, "holder", Duration::from_secs(5)).await.unwrap());
            store.unlock(&lock, "holder").await.unwrap();
            ids.push((user, id));
        }
        let state = format!("state-{user}");
        assert!(!sessions.login_used(&state).await.unwrap());
        assert!(sessions.use_login(&state, &login()).await.unwrap());
        assert!(!sessions.use_login(&state, &login()).await.unwrap(), "a login state is used once");
        assert!(sessions.login_used(&state).await.unwrap());
    }
    let spread = cluster.memory_per_shard().await.unwrap();
    assert!(spread.iter().all(|m| m.memory.keys > 0), "every shard holds keys: {spread:?}");

    // Ending them: one by one, by sid, by sub (back-channel logout, with its replay marker).
    for (user, id) in &ids {
        match user % 3 {
            0 => sessions.end(id).await.unwrap(),
            1 => {
                sessions.end_all("https://issuer.test", Some(&format!("sid-{user}")), None).await.unwrap();
            }
            _ => {
                sessions.end_all("https://issuer.test", None, Some(&format!("user-{user}"))).await.unwrap();
            }
        }
        assert!(sessions.load(id).await.unwrap().is_none());
        let jti = format!("jti-{user}");
        sessions.remember_logout_token("https://issuer.test", &jti, Duration::from_secs(60)).await.unwrap();
        assert!(sessions.logout_token_used("https://issuer.test", &jti).await.unwrap());
    }

    // Every store operation directly, on keys of every shard, including the multi-key delete.
    let keys: Vec<String> = (0..30).map(|i| format!("s:direct-{i}")).collect();
    for key in &keys {
        store.put(key, b"v".to_vec(), HOUR).await.unwrap();
        assert!(store.replace(key, b"w".to_vec(), HOUR).await.unwrap());
        assert!(store.get_and_touch(key, HOUR, Duration::ZERO).await.unwrap().is_some());
        assert!(store.exists(key).await.unwrap());
        store.index_add("i:sub:direct", key, HOUR).await.unwrap();
        store.index_keep("i:sub:direct", HOUR, Duration::ZERO).await.unwrap();
        assert!(store.insert_new(&format!("j:{key}"), HOUR).await.unwrap());
    }
    assert_eq!(store.index_members("i:sub:direct").await.unwrap().len(), keys.len());
    assert!(store.peek(&keys[0]).await.unwrap().is_some());
    store.index_remove("i:sub:direct", &keys[0]).await.unwrap();
    assert_eq!(store.index_take("i:sub:direct").await.unwrap().len(), keys.len() - 1);
    store.delete_many(&keys).await.unwrap();
    for key in &keys {
        assert!(!store.exists(key).await.unwrap(), "{key} deleted");
    }
    store.delete(&keys[0]).await.unwrap();
    store.ping().await.unwrap();
    assert!(ring.is_loaded(), "the key ring loaded from its one shard");

    assert_eq!(crossslot_refusals(&cluster).await, 1, "no store operation was refused as cross-slot");
}
