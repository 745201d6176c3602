//! `redis-server` as a child process on a loopback port, optionally persistent (append-only
//! file, fsync always) so that a restart keeps its data.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::child::{OutputTail, ProcessError, Supervised};

pub struct RedisProcess {
    port: u16,
    persistent: bool,
    dir: tempfile::TempDir,
    child: Option<Supervised>,
    output: OutputTail,
    program: PathBuf,
}

impl RedisProcess {
    /// Starts `redis-server` from PATH on a free loopback port and waits until it answers PING.
    pub async fn start(persistent: bool) -> Result<Self, ProcessError> {
        Self::start_on(super::free_port(), persistent).await
    }

    pub async fn start_on(port: u16, persistent: bool) -> Result<Self, ProcessError> {
        let dir = tempfile::tempdir()
            .map_err(|e| ProcessError::Spawn { program: "redis-server".into(), reason: e.to_string() })?;
        let mut redis = RedisProcess {
            port,
            persistent,
            dir,
            child: None,
            output: OutputTail::default(),
            program: PathBuf::from("redis-server"),
        };
        redis.start_again().await?;
        Ok(redis)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.pid())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--port".into(),
            self.port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            self.dir.path().display().to_string(),
            "--save".into(),
            "".into(),
            "--daemonize".into(),
            "no".into(),
        ];
        if self.persistent {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
        } else {
            args.extend(["--appendonly", "no"].map(String::from));
        }
        args
    }

    /// Starts it again on the same port (after [`RedisProcess::stop`]).
    pub async fn start_again(&mut self) -> Result<(), ProcessError> {
        let mut child = Supervised::spawn(&self.program, &self.args(), &[], self.output.clone())?;
        let port = self.port;
        child
            .wait_until_ready(&self.output, Duration::from_secs(10), || async move {
                if ping(port).await { Ok(()) } else { Err("no PONG yet".to_owned()) }
            })
            .await?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops it (SIGTERM; it saves when persistent).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop(Duration::from_secs(10)).await;
        }
    }

    /// Kills it at once (SIGKILL): no save, connections die without a goodbye.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await;
        }
    }

    pub async fn restart(&mut self) -> Result<(), ProcessError> {
        self.stop().await;
        self.start_again().await
    }
}

/// True when something on `port` answers a RESP `PING` with `+PONG`.
pub async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_millis(500), attempt).await.ok().flatten().unwrap_or(false)
}
