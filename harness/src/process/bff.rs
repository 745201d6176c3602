//! A `bff` node as a child process on a fixed loopback port. `run()` waits until `/ready`
//! answers 200; a restart keeps the port and the environment. The node's output goes to its log
//! file when it has one (appended across restarts), and its last lines are kept in memory.

use std::path::PathBuf;
use std::time::Duration;

use super::child::{OutputTail, ProcessError, Supervised};

pub struct BffProcessBuilder {
    binary: PathBuf,
    port: Option<u16>,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
    wait_ready: bool,
    keep_unready: bool,
    log_file: Option<PathBuf>,
}

impl BffProcessBuilder {
    /// A node that does not become ready in time keeps running (not ready), so that it can be
    /// asked why; by default it is killed.
    pub fn keep_when_unready(mut self) -> Self {
        self.keep_unready = true;
        self
    }

    /// Appends the node's output to `path`.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    /// Sets a `BFF_*` variable (or any other) for the child.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Return as soon as `/health` answers, without waiting for `/ready`.
    pub fn without_waiting_for_ready(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    /// The node, not started yet.
    pub fn build(self) -> Result<BffProcess, ProcessError> {
        let port = self.port.unwrap_or_else(super::free_port);
        let mut env = self.env;
        env.push(("BFF_LISTEN".into(), format!("127.0.0.1:{port}")));
        let output = match &self.log_file {
            Some(path) => OutputTail::to_file(path).map_err(|e| ProcessError::Spawn {
                program: self.binary.display().to_string(),
                reason: format!("log file {}: {e}", path.display()),
            })?,
            None => OutputTail::default(),
        };
        let node = BffProcess {
            binary: self.binary,
            port,
            env,
            ready_timeout: self.ready_timeout,
            wait_ready: self.wait_ready,
            keep_unready: self.keep_unready,
            child: None,
            output,
            http: reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client"),
        };
        Ok(node)
    }

    /// Starts the node and waits until it is ready.
    pub async fn run(self) -> Result<BffProcess, ProcessError> {
        let mut node = self.build()?;
        node.start().await?;
        Ok(node)
    }
}

pub struct BffProcess {
    binary: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
    wait_ready: bool,
    keep_unready: bool,
    child: Option<Supervised>,
    output: OutputTail,
    http: reqwest::Client,
}

impl BffProcess {
    pub fn builder(binary: impl Into<PathBuf>) -> BffProcessBuilder {
        BffProcessBuilder {
            binary: binary.into(),
            port: None,
            env: Vec::new(),
            ready_timeout: Duration::from_secs(15),
            wait_ready: true,
            keep_unready: false,
            log_file: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.pid())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Everything the node logged (the last few hundred lines).
    pub fn logs(&self) -> Vec<String> {
        self.output.lines()
    }

    /// The file the node's output is appended to, when it has one.
    pub fn log_file(&self) -> Option<&std::path::Path> {
        self.output.path()
    }

    /// Starts the node (again) and waits for `/ready` (or `/health`).
    pub async fn start(&mut self) -> Result<(), ProcessError> {
        let mut child = Supervised::spawn(&self.binary, &[], &self.env, self.output.clone())?;
        let probe = if self.wait_ready { "/ready" } else { "/health" };
        let url = format!("{}{probe}", self.url());
        let http = &self.http;
        match child.wait_until_ready(&self.output, self.ready_timeout, || probe_ready(http, &url)).await {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(error @ ProcessError::NotReady { .. }) if self.keep_unready => {
                self.child = Some(child);
                Err(error)
            }
            Err(error) => {
                child.kill().await;
                Err(error)
            }
        }
    }

    /// Graceful stop (SIGTERM); returns the exit status.
    pub async fn stop(&mut self) -> Option<String> {
        let mut child = self.child.take()?;
        Some(child.stop(Duration::from_secs(15)).await)
    }

    /// SIGKILL.
    pub async fn kill(&mut self) -> Option<String> {
        let mut child = self.child.take()?;
        Some(child.kill().await)
    }

    pub async fn restart(&mut self) -> Result<(), ProcessError> {
        self.stop().await;
        self.start().await
    }
}

/// `Ok` when `url` answers 2xx; else why not, as the node said it (`503 {"reason": …}`) or as the
/// connection failed.
pub(crate) async fn probe_ready(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let response = http.get(url).send().await.map_err(|e| match e.is_connect() {
        true => "not listening yet".to_owned(),
        false => format!("no answer: {e}"),
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let reason = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect());
    Err(format!("its /ready answered {}: {reason}", status.as_u16()))
}
