//! The bar of the slow-client bounds, measured (ignored: run by hand, prints figures, asserts
//! nothing about time): 10 000 connections against one node, half trickling a back-channel
//! logout body (`Content-Length: 100000`, a byte every 2 s), half asking for a 4 MiB proxied
//! response and never reading past its first bytes. Meanwhile `wrk` measures another client's
//! latency (p50, p99, errors) against a baseline without the flood; the node's RSS and the
//! machine's TCP buffer memory are sampled.
//!
//! When each slow connection is closed is taken twice. The node's account: its
//! `bff_slow_client_close_delay_seconds{bound}` histogram, the time from a connection's bound
//! running out to its socket being closed. The client's account: a thread of its own watches the
//! node's side of every slow connection leave ESTABLISHED, and times a body from its connection,
//! a stalled reader from its first bytes; it includes the client's own lag and the time a
//! connection waited to be accepted, so it is the looser of the two.
//!
//! ```text
//! cargo test --workspace --test attacks -- --ignored slow_flood --nocapture
//! SLOW_FLOOD_BFF=target/release/bff cargo test --workspace --test attacks -- --ignored slow_flood --nocapture
//! ```
//! With `SLOW_FLOOD_BFF` (a path relative to the workspace, or absolute) the flood runs against
//! that binary too (build it with
//! `cargo build --release -p bff --bin bff`), and the table has a column for each.
//! `SLOW_FLOOD_CONNECTIONS` changes the count, `SLOW_FLOOD_ONLY=bodies` or `readers` floods with
//! one kind only (to tell what each costs), `SLOW_FLOOD_MAX_CONNECTIONS` sets the node's cap (the
//! flood's size: the other client then waits for a slot); the open-files limit must hold it twice over on
//! this side: the test holds the clients' sockets and the upstream's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::MockIssuer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::fixture::routes;
use crate::stack::{metrics, stack};

const BODY_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_SIZE: usize = 4 << 20;
/// The tolerance stated with the bar, on the node's account: a slow connection is closed within
/// its bound plus this (a bucket of `bff_slow_client_close_delay_seconds`).
const NODE_TOLERANCE: &str = "1";
/// On the client's account, which adds its own lag (a sampling period of 200 ms and the time a
/// sample takes with 30 000 sockets open).
const CLIENT_TOLERANCE: Duration = Duration::from_secs(2);

/// An upstream that answers every request with the same 4 MiB body, shared (no copy per
/// response), for as long as its reader takes it. Its sockets queue at most 16 KiB each: in a
/// deployment the upstream's send buffers are on another machine, here they would take the TCP
/// memory the node's sockets need (and the node's figures would show the test's upstream).
async fn big_upstream() -> String {
    static BODY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let body = BODY.get_or_init(|| vec![b'z'; RESPONSE_SIZE]);
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(16 << 10).unwrap(); // accepted sockets inherit it
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(4096).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {RESPONSE_SIZE}\r\n\r\n");
                if stream.write_all(header.as_bytes()).await.is_ok() {
                    let _ = stream.write_all(body).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

/// The node's resident memory, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The node's RSS once it stops falling (unchanged for a second, or after 10 s): connections
/// and their buffers are freed a little after their sockets close.
async fn settled_rss_mib(pid: u32) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut last, mut since) = (rss_mib(pid), Instant::now());
    while Instant::now() < deadline && since.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss_mib(pid);
        if (now - last).abs() >= 1.0 {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

/// The CPU time the node has used (user and system, `/proc/<pid>/stat`), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after.split_whitespace().skip(11).take(2).filter_map(|v| v.parse::<f64>().ok()).sum();
    ticks / 100.0
}

/// The machine's TCP buffer memory (`/proc/net/sockstat`, `TCP: … mem` pages), in MiB: the
/// kernel's side of the flood, which the node's RSS does not show.
fn tcp_mem_mib() -> f64 {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let pages: f64 = sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "mem").nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1 << 20) as f64
}

/// What `wrk --latency` printed: requests/s, p50, p99, and the failed requests (socket errors,
/// non-2xx answers).
struct Wrk {
    rps: String,
    p50: String,
    p99: String,
    errors: u64,
}

async fn wrk(url: &str, seconds: u64) -> Wrk {
    let out = tokio::process::Command::new("wrk")
        .args(["-t1", "-c4", &format!("-d{seconds}s"), "--latency", url])
        .output()
        .await
        .expect("wrk on PATH");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.split_whitespace().next().unwrap_or("?").to_owned()))
            .unwrap_or_else(|| format!("? ({text})"))
    };
    // "Socket errors: connect 0, read 0, write 0, timeout 3" and "Non-2xx or 3xx responses: 5".
    let numbers =
        |line: &str| -> u64 { line.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u64>().ok()).sum() };
    let errors = text
        .lines()
        .filter_map(|l| {
            l.trim().strip_prefix("Socket errors:").or_else(|| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        })
        .map(numbers)
        .sum();
    Wrk { rps: field("Requests/sec:"), p50: field("50%"), p99: field("99%"), errors }
}

/// The node's own account of one bound, from its `/metrics`.
#[derive(Default)]
struct NodeCloses {
    closed: u64,
    within_tolerance: u64,
    /// The smallest histogram bucket that holds every delay (`le`, seconds).
    slowest_at_most: String,
    /// How many were closed within 0.1, 0.5, 1, 2.5 and 5 s of their bound.
    spread: String,
}

fn node_closes(metrics: &str, bound: &str) -> NodeCloses {
    let mut closes = NodeCloses::default();
    let mut buckets = Vec::new();
    for line in metrics.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let value: f64 = value.parse().unwrap_or(0.0);
        if !name.contains(&format!("bound=\"{bound}\"")) {
            continue;
        }
        if name.starts_with("bff_slow_client_close_delay_seconds_bucket")
            && let Some(le) = name.split("le=\"").nth(1).and_then(|rest| rest.split('"').next())
        {
            buckets.push((le.to_owned(), value as u64));
        } else if name.starts_with("bff_slow_client_close_delay_seconds_count") {
            closes.closed = value as u64;
        }
    }
    closes.spread = ["0.1", "0.5", "1", "2.5", "5"]
        .iter()
        .map(|le| buckets.iter().find(|(b, _)| b == le).map_or(0, |(_, n)| *n).to_string())
        .collect::<Vec<_>>()
        .join(" / ");
    closes.within_tolerance = buckets.iter().find(|(le, _)| le == NODE_TOLERANCE).map_or(0, |(_, n)| *n);
    closes.slowest_at_most =
        buckets.iter().find(|(_, n)| *n >= closes.closed).map_or_else(|| "-".to_owned(), |(le, _)| format!("≤ {le} s"));
    closes
}

/// One flood against one node binary.
struct Figures {
    count: usize,
    bodies: usize,
    readers: usize,
    opened: Duration,
    baseline: Wrk,
    during: Wrk,
    most_open: usize,
    body_times: Vec<Duration>,
    reader_times: Vec<Duration>,
    never_closed: usize,
    node_body: NodeCloses,
    node_write: NodeCloses,
    rss_idle: f64,
    rss_peak: f64,
    rss_after: f64,
    tcp_mem_peak: f64,
    monitor_period: Duration,
    /// The node's CPU time from the first slow connection until the last was closed.
    cpu: f64,
}

/// What the watching thread saw, sampled until every slow connection was closed (or 3 min).
struct Watched {
    closed_at: Vec<Option<Instant>>,
    most_open: usize,
    rss_peak: f64,
    tcp_mem_peak: f64,
    slowest_sample: Duration,
}

/// Watches, on a thread of its own (so that the clients' runtime cannot delay it), when each
/// slow connection (by client port) is closed by the node, and the node's RSS.
fn watch(node_port: u16, pid: u32, ports: Vec<u16>) -> std::thread::JoinHandle<Watched> {
    std::thread::spawn(move || {
        let mut watched = Watched {
            closed_at: vec![None; ports.len()],
            most_open: 0,
            rss_peak: 0.0,
            tcp_mem_peak: 0.0,
            slowest_sample: Duration::ZERO,
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        while watched.closed_at.iter().any(Option::is_none) && Instant::now() < deadline {
            let sampled = Instant::now();
            let open = held_by_node(node_port);
            let now = Instant::now();
            watched.slowest_sample = watched.slowest_sample.max(now - sampled);
            watched.most_open = watched.most_open.max(ports.iter().filter(|p| open.contains(p)).count());
            for (i, port) in ports.iter().enumerate() {
                if watched.closed_at[i].is_none() && !open.contains(port) {
                    watched.closed_at[i] = Some(now);
                }
            }
            watched.rss_peak = watched.rss_peak.max(rss_mib(pid));
            watched.tcp_mem_peak = watched.tcp_mem_peak.max(tcp_mem_mib());
            std::thread::sleep(Duration::from_millis(200));
        }
        watched
    })
}

/// The node's `server.max_connections`: room for the flood and 1 000 more unless
/// `SLOW_FLOOD_MAX_CONNECTIONS` says otherwise (the flood's size: it fills every slot).
fn max_connections(count: usize) -> usize {
    std::env::var("SLOW_FLOOD_MAX_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(count + 1000)
}

async fn flood(binary: Option<&str>, count: usize) -> Figures {
    let upstream = big_upstream().await;
    let mut builder = stack()
        .memory()
        .issuer(MockIssuer::builder().run().await.unwrap())
        .config(&routes(&upstream))
        .env("BFF_SERVER_MAX_CONNECTIONS", &max_connections(count).to_string())
        .env("BFF_SERVER_BODY_TIMEOUT", &format!("{}s", BODY_TIMEOUT.as_secs()))
        .env("BFF_SERVER_WRITE_TIMEOUT", &format!("{}s", WRITE_TIMEOUT.as_secs()))
        .env("BFF_LOG_LEVEL", "warn");
    if let Some(binary) = binary {
        builder = builder.binary(binary);
    }
    let s = builder.run().await;
    let pid = s.nodes[0].pid().unwrap();
    let addr: std::net::SocketAddr = s.url(0).trim_start_matches("http://").parse().unwrap();
    let probe = format!("{}/health", s.url(0));
    let baseline = wrk(&probe, 5).await;
    let rss_idle = rss_mib(pid);

    let cpu_before = cpu_seconds(pid);
    let progress = indicatif::ProgressBar::new(count as u64);
    let first_bytes = Arc::new(AtomicUsize::new(0));
    // When each stalled reader got its first bytes: from then on the node's writes stall.
    let first_byte_at: Arc<std::sync::Mutex<Vec<Option<Instant>>>> = Arc::new(std::sync::Mutex::new(vec![None; count]));
    // (local port, a stalled reader?, when it connected)
    let mut slow: Vec<(u16, bool, Instant)> = Vec::with_capacity(count);
    let mut holders = Vec::with_capacity(count);
    let started = Instant::now();
    for n in 0..count {
        let socket = TcpSocket::new_v4().unwrap();
        let reader = match std::env::var("SLOW_FLOOD_ONLY").as_deref() {
            Ok("bodies") => false,
            Ok("readers") => true,
            _ => n % 2 == 1,
        };
        if reader {
            socket.set_recv_buffer_size(4096).unwrap();
        }
        let stream = socket.connect(addr).await.unwrap_or_else(|e| panic!("connection {n} of {count}: {e}"));
        slow.push((stream.local_addr().unwrap().port(), reader, Instant::now()));
        let (mut read, mut write) = stream.into_split();
        let first_bytes = first_bytes.clone();
        let first_byte_at = first_byte_at.clone();
        holders.push(tokio::spawn(async move {
            if reader {
                let _ = write.write_all(b"GET /public/big HTTP/1.1\r\nHost: gateway\r\n\r\n").await;
                let mut start = [0u8; 12];
                if read.read_exact(&mut start).await.is_ok() {
                    first_byte_at.lock().unwrap()[n] = Some(Instant::now());
                    first_bytes.fetch_add(1, Ordering::Relaxed);
                }
                // Never read again; the socket stays open here until the node closes it.
                std::future::pending::<()>().await;
            } else {
                let head = "POST /account/backchannel-logout HTTP/1.1\r\nHost: gateway\r\nContent-Type: \
                            application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nx";
                let _ = write.write_all(head.as_bytes()).await;
                let mut every = tokio::time::interval(Duration::from_secs(2));
                every.tick().await;
                loop {
                    every.tick().await;
                    if write.write_all(b"x").await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let opened = started.elapsed();
    let watcher = watch(addr.port(), pid, slow.iter().map(|(port, _, _)| *port).collect());

    // The flood at its height: every stalled reader got its first bytes (or 30 s passed).
    let deadline = Instant::now() + Duration::from_secs(30);
    let readers = slow.iter().filter(|(_, reader, _)| *reader).count();
    while first_bytes.load(Ordering::Relaxed) < readers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = wrk(&probe, 5).await;
    let watched = tokio::task::spawn_blocking(move || watcher.join().unwrap()).await.unwrap();
    let first_byte_at = first_byte_at.lock().unwrap().clone();
    for holder in &holders {
        holder.abort();
    }
    // A body's bound runs from its connection, a stalled reader's from its first bytes.
    let mut body_times = Vec::new();
    let mut reader_times = Vec::new();
    for (n, ((_, reader, connected), closed)) in slow.iter().zip(&watched.closed_at).enumerate() {
        match (reader, closed, first_byte_at[n]) {
            (false, Some(closed), _) => body_times.push(closed.duration_since(*connected)),
            (true, Some(closed), Some(first)) => reader_times.push(closed.saturating_duration_since(first)),
            (true, Some(closed), None) => reader_times.push(closed.duration_since(*connected)),
            (_, None, _) => {}
        }
    }
    let cpu = cpu_seconds(pid) - cpu_before;
    let text = metrics(&s.url(0)).await;
    Figures {
        count,
        bodies: count - readers,
        readers,
        opened,
        baseline,
        during,
        most_open: watched.most_open,
        body_times,
        reader_times,
        never_closed: watched.closed_at.iter().filter(|t| t.is_none()).count(),
        node_body: node_closes(&text, "body"),
        node_write: node_closes(&text, "write"),
        rss_idle,
        rss_peak: watched.rss_peak,
        rss_after: settled_rss_mib(pid).await,
        tcp_mem_peak: watched.tcp_mem_peak,
        monitor_period: watched.slowest_sample + Duration::from_millis(200),
        cpu,
    }
}

impl Figures {
    /// The rows of the table, in order: (figure, value).
    fn rows(&self) -> Vec<(String, String)> {
        let max = |times: &[Duration]| times.iter().max().copied().unwrap_or_default();
        let within = |times: &[Duration], bound: Duration| times.iter().filter(|t| **t <= bound).count();
        let (bodies, readers) = (self.bodies, self.readers);
        let wrk = |w: &Wrk| format!("{} req/s, p50 {}, p99 {}, {} errors", w.rps, w.p50, w.p99, w.errors);
        let node = |n: &NodeCloses, of: usize| {
            format!(
                "{}/{of} (closed {}, slowest {}; within 0.1/0.5/1/2.5/5 s: {})",
                n.within_tolerance, n.closed, n.slowest_at_most, n.spread
            )
        };
        let grown = (self.rss_peak - self.rss_idle).max(0.0);
        vec![
            ("slow connections opened".into(), format!("{} in {:.1?}", self.count, self.opened)),
            ("other client, baseline (wrk -c4 /health)".into(), wrk(&self.baseline)),
            ("other client, during the flood".into(), wrk(&self.during)),
            ("most slow connections open at once".into(), self.most_open.to_string()),
            (
                format!(
                    "slow bodies closed within body_timeout ({BODY_TIMEOUT:?}) + {NODE_TOLERANCE} s, node's account"
                ),
                node(&self.node_body, bodies),
            ),
            (
                format!("  client's account (from connect), within + {CLIENT_TOLERANCE:?}"),
                format!(
                    "{}/{bodies}, slowest {:.1?}",
                    within(&self.body_times, BODY_TIMEOUT + CLIENT_TOLERANCE),
                    max(&self.body_times)
                ),
            ),
            (
                format!(
                    "stalled readers closed within write_timeout ({WRITE_TIMEOUT:?}) + {NODE_TOLERANCE} s, node's account"
                ),
                node(&self.node_write, readers),
            ),
            (
                format!("  client's account (from first bytes), within + {CLIENT_TOLERANCE:?}"),
                format!(
                    "{}/{readers}, slowest {:.1?}",
                    within(&self.reader_times, WRITE_TIMEOUT + CLIENT_TOLERANCE),
                    max(&self.reader_times)
                ),
            ),
            ("never closed (within 3 min)".into(), self.never_closed.to_string()),
            (
                "node RSS before / peak / after, MiB".into(),
                format!("{:.0} / {:.0} / {:.0}", self.rss_idle, self.rss_peak, self.rss_after),
            ),
            (
                "node RSS per slow connection (peak − before)".into(),
                format!("{:.0} KiB", grown * 1024.0 / self.count as f64),
            ),
            ("machine's TCP buffers at the peak (sockstat)".into(), format!("{:.0} MiB", self.tcp_mem_peak)),
            ("node CPU time during the flood (incl. the other client's 5 s)".into(), format!("{:.1} s", self.cpu)),
            ("client's sampling period, at most".into(), format!("{:.0?}", self.monitor_period)),
        ]
    }
}

#[tokio::test]
#[ignore = "a measurement: 10 000 connections, one to two minutes a binary; run by hand"]
async fn slow_flood() {
    let count: usize = std::env::var("SLOW_FLOOD_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let limit = harness::open_files::raise_to_hard_limit().unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "open-files limit {limit}, {count} slow connections, max_connections {}, load average {}",
        max_connections(count),
        load.trim()
    );
    let mut runs = vec![("this build's bff".to_owned(), flood(None, count).await)];
    if let Ok(binary) = std::env::var("SLOW_FLOOD_BFF") {
        // A relative path is the workspace's (cargo runs the test in the package's directory).
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&binary);
        runs.push((binary.clone(), flood(Some(&path.display().to_string()), count).await));
    }
    let mut table = comfy_table::Table::new();
    let mut header = vec!["figure".to_owned()];
    header.extend(runs.iter().map(|(name, _)| name.clone()));
    table.set_header(header);
    let rows: Vec<Vec<(String, String)>> = runs.iter().map(|(_, figures)| figures.rows()).collect();
    for (i, (name, _)) in rows[0].iter().enumerate() {
        let mut row = vec![name.clone()];
        row.extend(rows.iter().map(|r| r[i].1.clone()));
        table.add_row(row);
    }
    println!("{table}");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
    for (name, figures) in &runs {
        assert_eq!(figures.never_closed, 0, "slow connections {name} never closed");
    }
}

/// The client ports of the node's connections on `port` that the node still holds open (state
/// ESTABLISHED on its side), as `ss` reads them from the kernel (a netlink dump filtered there:
/// `/proc/net/tcp` took seconds to read with 30 000 sockets open). Once the node closes a
/// connection its side leaves ESTABLISHED at once, even while its FIN waits behind data a stalled
/// reader never takes; the node's descriptor and slot are free.
fn held_by_node(port: u16) -> std::collections::HashSet<u16> {
    let out = std::process::Command::new("ss")
        .args(["-Htn", "state", "established", &format!("( sport = :{port} )")])
        .output()
        .expect("ss (iproute2) on PATH");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(3))
        .filter_map(|peer| peer.rsplit(':').next()?.parse().ok())
        .collect()
}
