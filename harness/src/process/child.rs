//! One supervised child process: spawned with captured output, stopped with SIGTERM (then
//! SIGKILL after a bound), killed on drop.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("{program} exited before it was ready ({status}); last output:\n{output}")]
    ExitedEarly { program: String, status: String, output: String },
    #[error("{program} was not ready within {waited:?}; last output:\n{output}")]
    NotReady { program: String, waited: Duration, output: String },
}

const KEEP_LINES: usize = 400;

/// The last lines a child wrote (stdout and stderr interleaved).
#[derive(Clone, Default)]
pub struct OutputTail(Arc<Mutex<VecDeque<String>>>);

impl OutputTail {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().expect("output lock");
        if lines.len() == KEEP_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("output lock").iter().cloned().collect()
    }

    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

pub struct Supervised {
    pub program: String,
    child: Child,
}

impl Supervised {
    pub fn spawn(
        program: &PathBuf,
        args: &[String],
        env: &[(String, String)],
        output: OutputTail,
    ) -> Result<Self, ProcessError> {
        let name = program.display().to_string();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child =
            cmd.spawn().map_err(|e| ProcessError::Spawn { program: name.clone(), reason: e.to_string() })?;
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    out.push(line);
                }
            });
        }
        Ok(Supervised { program: name, child })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> Option<String> {
        self.child.try_wait().ok().flatten().map(|s| s.to_string())
    }

    /// Polls `ready` until it answers true; fails (and kills the child) if the child exits
    /// first or `timeout` passes, quoting the child's last output.
    pub async fn wait_until_ready<F, Fut>(
        &mut self,
        output: &OutputTail,
        timeout: Duration,
        mut ready: F,
    ) -> Result<(), ProcessError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if ready().await {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(ProcessError::ExitedEarly {
                    program: self.program.clone(),
                    status,
                    output: output.tail(20),
                });
            }
            if tokio::time::Instant::now() > deadline {
                self.kill().await;
                return Err(ProcessError::NotReady {
                    program: self.program.clone(),
                    waited: timeout,
                    output: output.tail(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub async fn stop(&mut self, grace: Duration) -> String {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            _ => self.kill().await,
        }
    }

    /// SIGKILL at once.
    pub async fn kill(&mut self) -> String {
        let _ = self.child.start_kill();
        self.child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
    }
}
