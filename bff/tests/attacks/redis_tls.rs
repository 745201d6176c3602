//! High 2: `rediss://`. The nodes talk to a real `redis-server` that listens only for TLS, with
//! certificates made here by a private CA (`redis_ca_file`): a session written by one node over TLS
//! is read by another, and each node's session cache is confirmed over TLS. A CA that did not sign
//! the server's certificate is a start-up error naming the setting, with the exit code of every
//! configuration error (64).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{MockIssuer, VirtualUser};

use crate::stack::{BFF, eventually, node_builder};

/// `openssl` with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl on PATH");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`ca.pem`), a server certificate it signed for 127.0.0.1 (`server.pem`, `server.key`),
/// and a CA that signed nothing (`other-ca.pem`).
pub fn certificates(dir: &Path) {
    for (name, cn) in [("ca", "bff test CA"), ("other-ca", "another CA")] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
}

/// A client that trusts `ca.pem`, as the test's own view of Redis.
pub fn tls_client(url: &str, dir: &Path) -> redis::Client {
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(ca) }).unwrap()
}

pub async fn tls_cmd(client: &redis::Client, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await
}

/// `redis-server` listening for TLS only (no plain port), killed when dropped.
async fn tls_redis(dir: &Path) -> (tokio::process::Child, String) {
    let port = harness::process::free_port();
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem"])
        .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", "."])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server on PATH");
    let url = format!("rediss://127.0.0.1:{port}");
    let client = tls_client(&url, dir);
    eventually("redis-server answers over TLS", Duration::from_secs(10), || {
        let client = client.clone();
        async move { tls_cmd(&client, &["PING"]).await.is_ok() }
    })
    .await;
    (child, url)
}

#[tokio::test]
async fn sessions_cross_nodes_over_tls_and_a_wrong_ca_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (_redis, url) = tls_redis(dir.path()).await;
    let ca_file = dir.path().join("ca.pem").display().to_string();
    let issuer = MockIssuer::builder().run().await.unwrap();

    let ports = [harness::process::free_port(), harness::process::free_port()];
    let public_url = format!("http://127.0.0.1:{}", ports[0]);
    let mut nodes = Vec::new();
    for port in ports {
        let node = node_builder(&issuer, None, &public_url)
            .port(port)
            .env("BFF_REDIS_URL", url.clone())
            .env("BFF_REDIS_CA_FILE", ca_file.clone())
            .run()
            .await
            .expect("a node on rediss:// becomes ready");
        nodes.push(node);
    }
    let user = VirtualUser::new(Some("alice"));
    assert_eq!(user.login(&nodes[0].url()).await.unwrap().status, 302);
    let me = user.me(&nodes[1].url()).await.unwrap();
    assert_eq!(me.status, 200, "the session written over TLS by node 1 is read over TLS by node 2: {me:?}");
    assert_eq!(me.json().unwrap()["sub"], "alice");
    let sessions = tls_cmd(&tls_client(&url, dir.path()), &["KEYS", "bff:s:*"]).await.unwrap();
    assert!(matches!(&sessions, redis::Value::Array(keys) if keys.len() == 1), "{sessions:?}");
    // The node cache is confirmed over TLS too: its tripwire, a connection to the TLS port that
    // never starts a handshake, is held open by the server.
    for node in &nodes {
        eventually("the node cache is live over TLS", Duration::from_secs(15), || async {
            let ready: serde_json::Value =
                reqwest::get(format!("{}/ready", node.url())).await.unwrap().json().await.unwrap();
            ready["session_cache"]["live"] == true
        })
        .await;
    }

    // The same server, a CA that did not sign its certificate: exit 64 naming the setting.
    let other_ca = dir.path().join("other-ca.pem").display().to_string();
    let run = tokio::process::Command::new(BFF)
        .env_clear()
        .env("BFF_LISTEN", "127.0.0.1:0")
        .env("BFF_PUBLIC_URL", &public_url)
        .env("BFF_OIDC_AUTHORITY", issuer.url())
        .env("BFF_OIDC_CLIENT_ID", "bff-client")
        .env("BFF_OIDC_CLIENT_SECRET", "bff-secret")
        .env("BFF_KEY_ENCRYPTION_KEY", harness::cluster::KEY_ENCRYPTION_KEY)
        .env("BFF_REDIS_URL", &url)
        .env("BFF_REDIS_CA_FILE", &other_ca)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run).await.expect("a wrong CA ends the node").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("redis_ca_file") && stderr.contains("certificate"), "{stderr}");
}
