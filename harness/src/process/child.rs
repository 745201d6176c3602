//! One supervised child process: spawned with captured output (kept in memory, and appended to a
//! log file when it has one, never copied to the parent's terminal), stopped with SIGTERM (then
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
    #[error("{program} exited before it was ready ({status}); {output}")]
    ExitedEarly { program: String, status: String, output: String },
    #[error("{program} was not ready within {waited:?} ({reason}); {output}")]
    NotReady { program: String, waited: Duration, reason: String, output: String },
}

impl ProcessError {
    /// Why the program did not become ready, when that is what happened (it exited, or its
    /// readiness probe never passed), as opposed to not starting at all.
    pub fn readiness_reason(&self) -> Option<String> {
        match self {
            ProcessError::Spawn { .. } => None,
            ProcessError::ExitedEarly { status, .. } => Some(format!("it exited before it was ready ({status})")),
            ProcessError::NotReady { waited, reason, .. } => Some(format!("not ready within {waited:?}: {reason}")),
        }
    }
}

const KEEP_LINES: usize = 400;
/// How many lines an error quotes.
const QUOTED_LINES: usize = 5;

/// The last lines a child wrote (stdout and stderr interleaved), and the file that has them all.
#[derive(Clone, Default)]
pub struct OutputTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    file: Option<Arc<Mutex<std::fs::File>>>,
    path: Option<PathBuf>,
}

impl OutputTail {
    /// Also appends every line to `path` (created when missing).
    pub fn to_file(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(OutputTail { lines: Arc::default(), file: Some(Arc::new(Mutex::new(file))), path: Some(path.to_owned()) })
    }

    /// The log file, when there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    fn push(&self, line: String) {
        if let Some(file) = &self.file {
            use std::io::Write;
            let _ = writeln!(file.lock().expect("log file lock"), "{line}");
        }
        let mut lines = self.lines.lock().expect("output lock");
        if lines.len() == KEEP_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// Where the output is and its last lines, as an error quotes them.
    pub fn quote(&self) -> String {
        let lines = self.lines();
        let last = &lines[lines.len().saturating_sub(QUOTED_LINES)..];
        let quoted: String = last.iter().map(|l| format!("\n    {}", crate::run_dir::strip_escapes(l))).collect();
        match &self.path {
            Some(path) => format!("its log: {}; last lines:{quoted}", path.display()),
            None => format!("last output:{quoted}"),
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("output lock").iter().cloned().collect()
    }
}

pub struct Supervised {
    pub program: String,
    child: Child,
    /// The tasks copying its stdout and stderr into the tail: awaited once it has exited, so that
    /// the lines it wrote last (often why it exited) are in the tail an error quotes.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// How long the last lines of an exited child may take to reach its tail (a grandchild that kept
/// the pipe open would otherwise hold the error forever).
const DRAIN_BOUND: Duration = Duration::from_secs(2);

impl Supervised {
    pub fn spawn(
        program: &PathBuf,
        args: &[String],
        env: &[(String, String)],
        output: OutputTail,
    ) -> Result<Self, ProcessError> {
        let name = program.display().to_string();
        let mut cmd = Command::new(program);
        // Exactly the gateway settings it is given: none inherited from the parent's environment,
        // where a stray variable would change the node under test.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("BFF_")) {
                cmd.env_remove(key);
            }
        }
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child =
            cmd.spawn().map_err(|e| ProcessError::Spawn { program: name.clone(), reason: e.to_string() })?;
        let mut readers = Vec::new();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    out.push(line);
                }
            }));
        }
        Ok(Supervised { program: name, child, readers })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> Option<String> {
        self.child.try_wait().ok().flatten().map(|s| s.to_string())
    }

    /// Polls `ready` until it answers `Ok`; fails if the child exits
    /// first or `timeout` passes, with the last reason `ready` gave and the child's last output.
    pub async fn wait_until_ready<F, Fut>(
        &mut self,
        output: &OutputTail,
        timeout: Duration,
        mut ready: F,
    ) -> Result<(), ProcessError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let reason = match ready().await {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            };
            if let Some(status) = self.exited() {
                self.drain_output().await;
                return Err(ProcessError::ExitedEarly {
                    program: self.program.clone(),
                    status,
                    output: output.quote(),
                });
            }
            if tokio::time::Instant::now() > deadline {
                // Still running: the caller kills it, or keeps it to ask it more.
                return Err(ProcessError::NotReady {
                    program: self.program.clone(),
                    waited: timeout,
                    reason,
                    output: output.quote(),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (bounded) until everything the exited child wrote is in its tail.
    async fn drain_output(&mut self) {
        let readers = std::mem::take(&mut self.readers);
        let _ = tokio::time::timeout(DRAIN_BOUND, futures::future::join_all(readers)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that says why it exits and exits: the quoted lines are its last ones, even when
    /// its exit is seen before its output was read. The readiness probe holds the (one) test
    /// thread until the child is a zombie, so nothing has read its pipe when the exit is seen.
    #[tokio::test]
    async fn an_early_exit_quotes_the_last_lines_the_child_wrote() {
        let output = OutputTail::default();
        let script = "echo starting; echo 'the reason it exits'; exit 3".to_owned();
        let mut child =
            Supervised::spawn(&PathBuf::from("sh"), &["-c".to_owned(), script], &[], output.clone()).unwrap();
        let stat = format!("/proc/{}/stat", child.pid().unwrap());
        let exited_unread = async || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !std::fs::read_to_string(&stat).unwrap_or_default().contains(") Z ") {
                assert!(std::time::Instant::now() < deadline, "the child never exited");
                std::thread::yield_now();
            }
            Err("never ready".to_owned())
        };
        let error = child.wait_until_ready(&output, Duration::from_secs(30), exited_unread).await.unwrap_err();
        let said = error.to_string();
        assert!(matches!(error, ProcessError::ExitedEarly { .. }), "{said}");
        assert!(said.contains("the reason it exits"), "{said}");
    }
}
