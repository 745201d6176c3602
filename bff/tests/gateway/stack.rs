//! The fixture of the gateway tests: a mock issuer, optionally a real `redis-server`, and N real
//! `bff` processes that all use the first node's URL as their public URL (as if a load balancer
//! stood in front of them).

use harness::fault::FaultProxy;
use harness::{BffProcess, MockIssuer, RedisProcess};

pub const BFF: &str = env!("CARGO_BIN_EXE_bff");

/// The `ops_token` of every test node: it opens `/metrics` and `/ops/fingerprint`.
pub const OPS_TOKEN: &str = "ops-token-of-the-gateway-tests";

pub struct StackBuilder {
    nodes: usize,
    redis: bool,
    env: Vec<(String, String)>,
    issuer: Option<MockIssuer>,
    config: Option<String>,
    fault_proxies: bool,
    named: bool,
}

pub struct Stack {
    /// The config file the nodes read, kept for the stack's lifetime.
    pub _config_file: Option<tempfile::NamedTempFile>,
    pub issuer: MockIssuer,
    pub redis: Option<RedisProcess>,
    pub nodes: Vec<BffProcess>,
    /// With `fault_proxies()`: node i reaches Redis through `proxies[i]`.
    pub proxies: Vec<FaultProxy>,
}

pub fn stack() -> StackBuilder {
    StackBuilder {
        nodes: 1,
        redis: true,
        env: Vec::new(),
        issuer: None,
        config: None,
        fault_proxies: false,
        named: false,
    }
}

impl StackBuilder {
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// In-memory store (no `BFF_REDIS_URL`).
    pub fn memory(mut self) -> Self {
        self.redis = false;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// A TOML config file for every node (routes live there).
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// Each node reaches Redis through a [`FaultProxy`] of its own (`Stack::proxies`).
    pub fn fault_proxies(mut self) -> Self {
        self.fault_proxies = true;
        self
    }

    /// Node i gets `node_name` `node-{i + 1}`.
    pub fn named(mut self) -> Self {
        self.named = true;
        self
    }

    pub fn issuer(mut self, issuer: MockIssuer) -> Self {
        self.issuer = Some(issuer);
        self
    }

    pub async fn run(self) -> Stack {
        let issuer = match self.issuer {
            Some(i) => i,
            None => MockIssuer::builder().run().await.expect("mock issuer starts"),
        };
        let redis =
            if self.redis { Some(RedisProcess::start(false).await.expect("redis-server starts")) } else { None };
        let ports: Vec<u16> = (0..self.nodes).map(|_| harness::process::free_port()).collect();
        let public_url = format!("http://127.0.0.1:{}", ports[0]);
        let config_file = self.config.map(|text| {
            let file = tempfile::NamedTempFile::new().expect("temp config file");
            std::fs::write(file.path(), text).expect("write config file");
            file
        });
        let mut nodes = Vec::new();
        let mut proxies = Vec::new();
        for (index, port) in ports.into_iter().enumerate() {
            let mut b = node_builder(&issuer, redis.as_ref(), &public_url).port(port);
            if self.named {
                b = b.env("BFF_NODE_NAME", format!("node-{}", index + 1));
            }
            if let (true, Some(redis)) = (self.fault_proxies, &redis) {
                let proxy = FaultProxy::start(([127, 0, 0, 1], redis.port()).into()).await.expect("fault proxy");
                b = b.env("BFF_REDIS_URL", format!("redis://{}", proxy.addr()));
                proxies.push(proxy);
            }
            if let Some(file) = &config_file {
                b = b.env("BFF_CONFIG", file.path().display().to_string());
            }
            for (k, v) in &self.env {
                b = b.env(k, v.clone());
            }
            nodes.push(b.run().await.expect("bff node becomes ready"));
        }
        Stack { _config_file: config_file, issuer, redis, nodes, proxies }
    }
}

/// A node configured for this issuer and Redis (when given).
pub fn node_builder(
    issuer: &MockIssuer,
    redis: Option<&RedisProcess>,
    public_url: &str,
) -> harness::process::BffProcessBuilder {
    let mut b = BffProcess::builder(BFF)
        .env("BFF_PUBLIC_URL", public_url)
        .env("BFF_OIDC_AUTHORITY", issuer.url())
        .env("BFF_OIDC_CLIENT_ID", "bff-client")
        .env("BFF_OIDC_CLIENT_SECRET", "bff-secret")
        .env("BFF_KEY_ENCRYPTION_KEY", harness::cluster::KEY_ENCRYPTION_KEY)
        .env("BFF_LOG_LEVEL", "bff=debug,info")
        .env("BFF_OPS_TOKEN", OPS_TOKEN);
    if let Some(redis) = redis {
        b = b.env("BFF_REDIS_URL", redis.url());
    }
    b
}

impl Stack {
    pub fn url(&self, node: usize) -> String {
        self.nodes[node].url()
    }

    pub fn redis(&self) -> &RedisProcess {
        self.redis.as_ref().expect("this stack has redis")
    }
}

/// The node's `/metrics` text, as an operator reads it (with the ops token).
pub async fn metrics(base: &str) -> String {
    let response = reqwest::Client::new().get(format!("{base}/metrics")).bearer_auth(OPS_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200, "/metrics with the ops token");
    response.text().await.unwrap()
}

/// Polls `check` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, timeout: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Runs a `redis-cli`-like command against the stack's Redis through the raw protocol.
pub async fn redis_cmd(port: u16, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await.unwrap()
}

/// How many times Redis ran each command since its stats were last reset (`INFO commandstats`).
pub async fn redis_command_calls(port: u16) -> std::collections::BTreeMap<String, u64> {
    let info = match redis_cmd(port, &["INFO", "commandstats"]).await {
        redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("{other:?}"),
    };
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split("calls=").nth(1)?.split(',').next()?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Posts a back-channel logout token to `base` as the identity provider would.
pub async fn backchannel_logout(base: &str, token: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/account/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
        .status()
}
