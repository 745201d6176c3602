//! The bar of the slow-client bounds, measured (ignored: run by hand, prints figures, asserts
//! nothing about time): 10 000 connections against one node, half trickling a back-channel
//! logout body (`Content-Length: 100000`, a byte every 2 s), half asking for a 4 MiB proxied
//! response and never reading past its first bytes. Meanwhile `wrk` measures another client's
//! latency (p50, p99) against a baseline without the flood; the node's RSS is sampled; every slow
//! connection's time to be closed (when the node's end leaves ESTABLISHED: it closed the
//! connection) is recorded and compared with the configured bound.
//!
//! `cargo test -p bff --test attacks -- --ignored slow_flood --nocapture`
//! (`SLOW_FLOOD_CONNECTIONS` to change the count; the open-files limit must hold it twice over
//! on this side: the test holds the clients' sockets and the upstream's.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::MockIssuer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

use crate::fixture::routes;
use crate::stack::stack;

const BODY_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_SIZE: usize = 4 << 20;

/// An upstream that answers every request with the same 4 MiB body, shared (no copy per
/// response), for as long as its reader takes it.
async fn big_upstream() -> String {
    static BODY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let body = BODY.get_or_init(|| vec![b'z'; RESPONSE_SIZE]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
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

/// `wrk --latency` against `url` for `seconds`: (requests/s, p50, p99) as wrk prints them.
async fn wrk(url: &str, seconds: u64) -> (String, String, String) {
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
    (field("Requests/sec:"), field("50%"), field("99%"))
}

#[tokio::test]
#[ignore = "a measurement: 10 000 connections, about a minute; run by hand"]
async fn slow_flood() {
    let count: usize = std::env::var("SLOW_FLOOD_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let limit = harness::open_files::raise_to_hard_limit().unwrap();
    println!("open-files limit {limit}, {count} slow connections");
    let upstream = big_upstream().await;
    let s = stack()
        .memory()
        .issuer(MockIssuer::builder().run().await.unwrap())
        .config(&routes(&upstream))
        .env("BFF_SERVER_MAX_CONNECTIONS", &(count + 1000).to_string())
        .env("BFF_SERVER_BODY_TIMEOUT", &format!("{}s", BODY_TIMEOUT.as_secs()))
        .env("BFF_SERVER_WRITE_TIMEOUT", &format!("{}s", WRITE_TIMEOUT.as_secs()))
        .env("BFF_LOG_LEVEL", "warn")
        .run()
        .await;
    let pid = s.nodes[0].pid().unwrap();
    let addr: std::net::SocketAddr = s.url(0).trim_start_matches("http://").parse().unwrap();
    let probe = format!("{}/health", s.url(0));
    let (base_rps, base_p50, base_p99) = wrk(&probe, 5).await;
    let idle_rss = rss_mib(pid);

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
        let reader = n % 2 == 1;
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
    let all_opened = started.elapsed();

    // When each slow connection is closed by the node (its side leaves ESTABLISHED), watched
    // from now on, while the rest of the measurement runs.
    let monitor = {
        let slow = slow.clone();
        let port = addr.port();
        tokio::spawn(async move {
            let mut closed_at: Vec<Option<Instant>> = vec![None; slow.len()];
            let mut most_open = 0;
            let deadline = Instant::now() + Duration::from_secs(180);
            while closed_at.iter().any(Option::is_none) && Instant::now() < deadline {
                let open = held_by_node(port);
                most_open = most_open.max(slow.iter().filter(|(p, _, _)| open.contains(p)).count());
                for (i, (port, _, _)) in slow.iter().enumerate() {
                    if closed_at[i].is_none() && !open.contains(port) {
                        closed_at[i] = Some(Instant::now());
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (closed_at, most_open)
        })
    };

    // The flood at its height: every stalled reader got its first bytes (or 30 s passed).
    let deadline = Instant::now() + Duration::from_secs(30);
    while first_bytes.load(Ordering::Relaxed) < count / 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flood_rss = rss_mib(pid);
    let (flood_rps, flood_p50, flood_p99) = wrk(&probe, 5).await;
    let peak_rss = rss_mib(pid).max(flood_rss);
    let (closed_at, flood_open) = monitor.await.unwrap();
    let first_byte_at = first_byte_at.lock().unwrap().clone();
    for holder in &holders {
        holder.abort();
    }
    // A body's bound runs from its connection, a stalled reader's from its first bytes.
    let mut body_times = Vec::new();
    let mut reader_times = Vec::new();
    for (n, ((_, reader, connected), closed)) in slow.iter().zip(&closed_at).enumerate() {
        match (reader, closed, first_byte_at[n]) {
            (false, Some(closed), _) => body_times.push(closed.duration_since(*connected)),
            (true, Some(closed), Some(first)) => reader_times.push(closed.saturating_duration_since(first)),
            (true, Some(closed), None) => reader_times.push(closed.duration_since(*connected)),
            (_, None, _) => {}
        }
    }
    let never_closed = closed_at.iter().filter(|t| t.is_none()).count();
    let after_rss = rss_mib(pid);
    let max = |times: &[Duration]| times.iter().max().copied().unwrap_or_default();
    let within = |times: &[Duration], bound: Duration| times.iter().filter(|t| **t <= bound).count();
    let mut table = comfy_table::Table::new();
    table.set_header(["figure", "value"]);
    for (name, value) in [
        ("slow connections opened".to_owned(), format!("{count} in {all_opened:.1?}")),
        (
            "other client, baseline (wrk -c4 /health)".into(),
            format!("{base_rps} req/s, p50 {base_p50}, p99 {base_p99}"),
        ),
        ("other client, during the flood".into(), format!("{flood_rps} req/s, p50 {flood_p50}, p99 {flood_p99}")),
        ("most slow connections open at once".into(), flood_open.to_string()),
        (
            "trickled bodies closed".into(),
            format!("{} of {}, slowest after {:.1?}", body_times.len(), count.div_ceil(2), max(&body_times)),
        ),
        (
            format!("  of them within body_timeout ({BODY_TIMEOUT:?}) + 2 s"),
            within(&body_times, BODY_TIMEOUT + Duration::from_secs(2)).to_string(),
        ),
        (
            "stalled readers closed (timed from their first bytes)".into(),
            format!("{} of {}, slowest after {:.1?}", reader_times.len(), count / 2, max(&reader_times)),
        ),
        (
            format!("  of them within write_timeout ({WRITE_TIMEOUT:?}) + 5 s"),
            within(&reader_times, WRITE_TIMEOUT + Duration::from_secs(5)).to_string(),
        ),
        ("never closed (within 3 min)".into(), never_closed.to_string()),
        ("node RSS idle / during / after, MiB".into(), format!("{idle_rss:.0} / {peak_rss:.0} / {after_rss:.0}")),
    ] {
        table.add_row([name, value]);
    }
    println!("{table}");
    assert_eq!(never_closed, 0, "slow connections the node never closed");
}

/// The client ports of the node's connections on `port` that the node still holds open (state
/// ESTABLISHED on its side, `/proc/net/tcp`). Once the node closes a connection its side leaves
/// ESTABLISHED at once, even while its FIN waits behind data a stalled reader never takes (the
/// kernel keeps that orphan in FIN-WAIT-1; the node's descriptor and slot are free).
fn held_by_node(port: u16) -> std::collections::HashSet<u16> {
    let local = format!(":{port:04X}");
    let mut open = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(ours), Some(peer), Some(state)) = (fields.get(1), fields.get(2), fields.get(3)) else {
                continue;
            };
            if *state == "01"
                && ours.ends_with(&local)
                && let Some(p) = peer.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                open.insert(p);
            }
        }
    }
    open
}
