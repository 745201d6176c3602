//! A `bff` process configured with `*.localhost` names (RFC 6761), which glibc does not resolve:
//! the issuer at `http://issuer.localhost:PORT` and an upstream at `http://api.localhost:PORT`.
//! The node must load discovery (become ready), log a user in and proxy to the upstream.

use harness::{BffProcess, MockIssuer, VirtualUser};

const BFF: &str = env!("CARGO_BIN_EXE_bff");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_an_issuer_and_an_upstream_named_under_localhost() {
    use std::net::ToSocketAddrs;
    if ("issuer.localhost", 80).to_socket_addrs().is_ok() {
        eprintln!("note: the system resolver resolves issuer.localhost here; this run proves less");
    }
    let issuer = MockIssuer::builder().host("issuer.localhost").run().await.unwrap();
    assert!(issuer.url().starts_with("http://issuer.localhost:"), "{}", issuer.url());
    let upstream = harness::demo_app::api_upstream("127.0.0.1:0").await.unwrap();

    let config = tempfile::NamedTempFile::new().unwrap();
    let routes = format!(
        "[[routes]]\npath = \"/api/\"\nupstreams = [\"http://api.localhost:{}\"]\nauth = \"required\"\n",
        upstream.address().port()
    );
    std::fs::write(config.path(), routes).unwrap();
    let port = harness::process::free_port();
    let node = BffProcess::builder(BFF)
        .port(port)
        .env("BFF_CONFIG", config.path().display().to_string())
        .env("BFF_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("BFF_OIDC_AUTHORITY", issuer.url())
        .env("BFF_OIDC_CLIENT_ID", "bff-client")
        .env("BFF_OIDC_CLIENT_SECRET", "bff-secret")
        .env("BFF_KEY_ENCRYPTION_KEY", harness::cluster::KEY_ENCRYPTION_KEY)
        .run()
        .await
        .expect("the node loads discovery from issuer.localhost and becomes ready");
    assert!(issuer.calls("discovery") >= 1 && issuer.calls("jwks") >= 1);

    let user = VirtualUser::new(Some("alice"));
    let callback = user.login(&node.url()).await.unwrap();
    assert_eq!(callback.status, 302, "{callback:?}");
    let me = user.me(&node.url()).await.unwrap();
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.json().unwrap()["sub"], "alice");
    assert_eq!(issuer.calls("token"), 1);

    let api = user.api(&format!("{}/api/orders", node.url())).await.unwrap();
    assert_eq!(api.status, 200, "the upstream at api.localhost: {api:?}");
    assert_eq!(api.json().unwrap()["path"], "/api/orders");
}
