//! The peers the gateway is measured against, on this machine: a minimal upstream (a fixed 1 KB
//! JSON body, the `direct` baseline) and nginx as a plain reverse proxy to it with upstream
//! keep-alive (the floor any proxy pays, doing no authentication).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// A 1 KB JSON document.
pub fn body_1kb() -> String {
    let filler = "x".repeat(1024 - 40);
    format!(r#"{{"status":"ok","filler":"{filler}"}}"#)
}

/// Serves the 1 KB body on every path until dropped, on a thread and runtime of its own (one
/// thread, like an nginx worker), so the benchmark's own tasks do not share its scheduler.
pub struct Upstream {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Upstream {
    pub async fn start() -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let body = body_1kb();
        std::thread::Builder::new().name("bench-upstream".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("upstream runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("upstream listener");
                let app = axum::Router::new().fallback(move || {
                    let body = body.clone();
                    async move { ([("content-type", "application/json")], body) }
                });
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        })?;
        Ok(Upstream { addr, stop: Some(stop) })
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// nginx from the Debian package, as a reverse proxy to `upstream`.
pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub async fn start(upstream: SocketAddr) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = crate::process::free_port();
        let d = dir.path().display();
        let conf = format!(
            r#"worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream backend {{ server {upstream}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
        );
        let path: PathBuf = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        let nginx = crate::cluster::process::on_path("nginx")
            .or_else(|| ["/usr/sbin/nginx"].iter().map(PathBuf::from).find(|p| p.is_file()))
            .ok_or("nginx not found: apt-get install nginx-light")?;
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .arg("-g")
            .arg("daemon off;")
            // Its own process group, so master and workers go together (see Drop).
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start nginx: {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                return Err(format!("nginx did not listen within 10 s; see {d}/error.log"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Nginx { addr, child, _dir: dir })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for Nginx {
    /// Killing the master alone would leave its workers running: kill the whole group.
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// RSS of a process and its children (nginx's master and workers), in MB.
pub fn process_tree_rss_mb(pid: Option<u32>) -> Option<f64> {
    let pid = pid?;
    let rss = |p: &str| -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let total: f64 = rss(&pid.to_string()).unwrap_or(0.0) + children.split_whitespace().filter_map(rss).sum::<f64>();
    Some(total / 1024.0)
}
