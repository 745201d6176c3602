//! A `bff` node as a child process on a fixed loopback port. `run()` waits until `/ready`
//! answers 200; a restart keeps the port and the environment.

use std::path::PathBuf;
use std::time::Duration;

use super::child::{OutputTail, ProcessError, Supervised};

pub struct BffProcessBuilder {
    binary: PathBuf,
    port: Option<u16>,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
    wait_ready: bool,
}

impl BffProcessBuilder {
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

    pub async fn run(self) -> Result<BffProcess, ProcessError> {
        let port = self.port.unwrap_or_else(super::free_port);
        let mut env = self.env;
        env.push(("BFF_LISTEN".into(), format!("127.0.0.1:{port}")));
        let mut node = BffProcess {
            binary: self.binary,
            port,
            env,
            ready_timeout: self.ready_timeout,
            wait_ready: self.wait_ready,
            child: None,
            output: OutputTail::default(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client"),
        };
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

    /// Starts the node (again) and waits for `/ready` (or `/health`).
    pub async fn start(&mut self) -> Result<(), ProcessError> {
        let mut child = Supervised::spawn(&self.binary, &[], &self.env, self.output.clone())?;
        let probe = if self.wait_ready { "/ready" } else { "/health" };
        let url = format!("{}{probe}", self.url());
        let http = &self.http;
        child
            .wait_until_ready(&self.output, self.ready_timeout, || async {
                http.get(&url).send().await.is_ok_and(|r| r.status().is_success())
            })
            .await?;
        self.child = Some(child);
        Ok(())
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
