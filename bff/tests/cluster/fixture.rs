//! A cluster stack: a Redis Cluster, the mock issuer, a wiremock upstream behind `/api/`, and N
//! real `bff` nodes on `redis+cluster://`, all with the first node's URL as public URL.

use harness::process::RedisCluster;
use harness::{BffProcess, MockIssuer};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub struct ClusterStack {
    pub cluster: RedisCluster,
    pub issuer: std::sync::Arc<MockIssuer>,
    pub nodes: Vec<BffProcess>,
    _upstream: MockServer,
    _config: tempfile::NamedTempFile,
}

pub struct ClusterStackBuilder {
    nodes: usize,
    replicas: usize,
    issuer: Option<MockIssuer>,
    env: Vec<(String, String)>,
}

pub fn cluster_stack() -> ClusterStackBuilder {
    ClusterStackBuilder { nodes: 2, replicas: 0, issuer: None, env: Vec::new() }
}

impl ClusterStackBuilder {
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    pub fn replicas_per_primary(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    pub fn issuer(mut self, issuer: MockIssuer) -> Self {
        self.issuer = Some(issuer);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub async fn run(self) -> ClusterStack {
        let cluster = RedisCluster::builder()
            .primaries(3)
            .replicas_per_primary(self.replicas)
            .run()
            .await
            .expect("cluster forms");
        let issuer = match self.issuer {
            Some(issuer) => issuer,
            None => MockIssuer::builder().run().await.expect("mock issuer starts"),
        };
        let upstream = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(200).set_body_string("from upstream"))
            .mount(&upstream)
            .await;
        let config = tempfile::NamedTempFile::new().expect("config file");
        let routes = format!(
            "[[routes]]\npath = \"/api/\"\nupstreams = [\"{}\"]\nauth = \"required\"\nrewrite = \"/v1/\"\n",
            upstream.uri()
        );
        std::fs::write(config.path(), routes).expect("write config");
        let ports: Vec<u16> = (0..self.nodes).map(|_| harness::process::free_port()).collect();
        let public_url = format!("http://127.0.0.1:{}", ports[0]);
        let mut nodes = Vec::new();
        for port in ports {
            let mut b = crate::stack::node_builder(&issuer, None, &public_url)
                .port(port)
                .env("BFF_REDIS_URL", cluster.url())
                .env("BFF_CONFIG", config.path().display().to_string());
            for (k, v) in &self.env {
                b = b.env(k, v.clone());
            }
            nodes.push(b.run().await.expect("bff node becomes ready on the cluster"));
        }
        ClusterStack { cluster, issuer: std::sync::Arc::new(issuer), nodes, _upstream: upstream, _config: config }
    }
}

impl ClusterStack {
    pub fn url(&self, node: usize) -> String {
        self.nodes[node].url()
    }
}

/// Calls `/api/data` as a single-page app does; answers the status (0: no answer).
pub async fn api_call(user: &harness::VirtualUser, base: &str) -> u16 {
    user.api(&format!("{base}/api/data")).await.map(|r| r.status).unwrap_or(0)
}

/// The store key of the session whose cookie `user` holds (`P:s:<sha256(id)>`).
pub fn session_key(user: &harness::VirtualUser) -> Option<String> {
    use base64::Engine;
    let jar = user.jar().lock().expect("cookie jar");
    let id = jar.iter_unexpired().find_map(|cookie| {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cookie.value()).ok()?;
        (bytes.len() == 32).then_some(bytes)
    })?;
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &id);
    Some(format!("bff:s:{}", hex::encode(hash.as_ref())))
}
