//! Medium: Sentinel trusted blindly. Sentinels were spoken to over plain TCP without
//! authentication, the master link could not use TLS, and whatever master a sentinel named got
//! the Redis password. Against a real master and a real sentinel that both listen for TLS only
//! (certificates of a private CA made here) and both require a password: a node on
//! `rediss+sentinel://` with the sentinel's password and an allow-list that holds the master
//! stores sessions there; a node whose allow-list does not hold it never becomes ready and
//! opens no connection to the master; a node with the wrong sentinel password is not ready
//! either; a CA that did not sign the sentinel's certificate stops the node at start-up (exit
//! 64 naming `redis_ca_file`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use harness::{MockIssuer, VirtualUser};

use crate::redis_tls::{certificates, tls_client, tls_cmd};
use crate::stack::{eventually, node_builder};

const MASTER_PASSWORD: &str = "master-secret";
const SENTINEL_PASSWORD: &str = "sentinel-secret";

/// `redis-server` (or a sentinel, with `sentinel`) on TLS only, killed when dropped.
fn spawn(dir: &Path, args: &[String]) -> tokio::process::Child {
    tokio::process::Command::new("redis-server")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server on PATH")
}

fn tls_args() -> Vec<String> {
    ["--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem"]
        .into_iter()
        .chain(["--tls-auth-clients", "no"])
        .map(str::to_owned)
        .collect()
}

/// `INFO stats`' `total_connections_received` of the master, through `conn`.
async fn connections_received(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query_async(conn).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("total_connections_received:")).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn sentinels_and_master_over_tls_with_passwords_and_an_allow_list_of_masters() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let master_port = harness::process::free_port();
    let mut master_args: Vec<String> = vec!["--port".into(), "0".into(), "--tls-port".into(), master_port.to_string()];
    master_args.extend(tls_args());
    master_args.extend(
        ["--bind", "127.0.0.1", "--requirepass", MASTER_PASSWORD, "--save", "", "--appendonly", "no"].map(String::from),
    );
    let _master = spawn(dir.path(), &master_args);
    let master_url = format!("rediss://:{MASTER_PASSWORD}@127.0.0.1:{master_port}");
    let master = tls_client(&master_url, dir.path());
    eventually("the master answers over TLS", Duration::from_secs(10), || {
        let master = master.clone();
        async move { tls_cmd(&master, &["PING"]).await.is_ok() }
    })
    .await;

    let sentinel_port = harness::process::free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port 0\ntls-port {sentinel_port}\nbind 127.0.0.1\ndir {dir}\n\
             tls-cert-file server.pem\ntls-key-file server.key\ntls-ca-cert-file ca.pem\n\
             tls-auth-clients no\ntls-replication yes\nrequirepass {SENTINEL_PASSWORD}\n\
             sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
             sentinel auth-pass mymaster {MASTER_PASSWORD}\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let _sentinel = spawn(dir.path(), &[conf.display().to_string(), "--sentinel".into()]);
    let sentinel = tls_client(&format!("rediss://:{SENTINEL_PASSWORD}@127.0.0.1:{sentinel_port}"), dir.path());
    eventually("the sentinel names the master over TLS", Duration::from_secs(10), || {
        let sentinel = sentinel.clone();
        async move {
            matches!(tls_cmd(&sentinel, &["SENTINEL", "get-master-addr-by-name", "mymaster"]).await,
                Ok(redis::Value::Array(ref a)) if a.len() == 2)
        }
    })
    .await;

    let issuer = MockIssuer::builder().run().await.unwrap();
    let ca_file = dir.path().join("ca.pem").display().to_string();
    let url = format!("rediss+sentinel://:{MASTER_PASSWORD}@127.0.0.1:{sentinel_port}/mymaster");
    let node = |allowed: String, sentinel_password: &str| {
        let port = harness::process::free_port();
        node_builder(&issuer, None, &format!("http://127.0.0.1:{port}"))
            .port(port)
            .env("BFF_REDIS_URL", url.clone())
            .env("BFF_REDIS_CA_FILE", ca_file.clone())
            .env("BFF_REDIS_SENTINEL_PASSWORD", sentinel_password)
            .env("BFF_REDIS_SENTINEL_MASTERS", allowed)
            .env("BFF_REDIS_TIMEOUT", "1s")
    };

    let trusted =
        node(format!("127.0.0.1:{master_port}"), SENTINEL_PASSWORD).run().await.expect("a node becomes ready");
    let user = VirtualUser::new(Some("judy"));
    assert_eq!(user.login(&trusted.url()).await.unwrap().status, 302);
    assert_eq!(user.me(&trusted.url()).await.unwrap().status, 200);
    let sessions = tls_cmd(&master, &["KEYS", "bff:s:*"]).await.unwrap();
    assert!(matches!(&sessions, redis::Value::Array(keys) if keys.len() == 1), "{sessions:?}");
    drop(trusted);

    // A sentinel that names a master outside the allow-list: nothing is sent to that master.
    let mut watch = master.get_multiplexed_async_connection().await.unwrap();
    let before = connections_received(&mut watch).await;
    let refused = node("127.0.0.1:1".into(), SENTINEL_PASSWORD).without_waiting_for_ready().run().await.unwrap();
    eventually("the node refuses the master the sentinel names", Duration::from_secs(15), || async {
        refused.logs().iter().any(|l| l.contains("outside redis_sentinel_masters"))
    })
    .await;
    let ready = reqwest::get(format!("{}/ready", refused.url())).await.unwrap();
    assert_eq!(ready.status(), 503, "a node whose master is refused is not ready");
    assert_eq!(connections_received(&mut watch).await, before, "the refused master was connected to");
    drop(refused);

    // The wrong sentinel password: the sentinel refuses the node, which stays not ready.
    let wrong = node(format!("127.0.0.1:{master_port}"), "not-the-sentinel-password")
        .without_waiting_for_ready()
        .run()
        .await
        .unwrap();
    eventually("the sentinel refuses the wrong password", Duration::from_secs(15), || async {
        wrong.logs().iter().any(|l| l.contains("redis unreachable") && l.to_lowercase().contains("pass"))
    })
    .await;
    let ready = reqwest::get(format!("{}/ready", wrong.url())).await.unwrap();
    assert_eq!(ready.status(), 503);

    drop(wrong);

    // A CA that signed neither the sentinel's certificate nor the master's: a configuration
    // error at start-up, as for rediss://.
    let port = harness::process::free_port();
    let run = tokio::process::Command::new(crate::stack::BFF)
        .env_clear()
        .env("BFF_LISTEN", format!("127.0.0.1:{port}"))
        .env("BFF_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("BFF_OIDC_AUTHORITY", issuer.url())
        .env("BFF_OIDC_CLIENT_ID", "bff-client")
        .env("BFF_OIDC_CLIENT_SECRET", "bff-secret")
        .env("BFF_KEY_ENCRYPTION_KEY", harness::cluster::KEY_ENCRYPTION_KEY)
        .env("BFF_REDIS_URL", &url)
        .env("BFF_REDIS_CA_FILE", dir.path().join("other-ca.pem").display().to_string())
        .env("BFF_REDIS_SENTINEL_PASSWORD", SENTINEL_PASSWORD)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run).await.expect("a wrong CA ends the node").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("redis_ca_file") && stderr.contains("certificate"), "{stderr}");
}
