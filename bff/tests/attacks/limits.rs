//! Medium 3: limits against slow and flooding clients. Two thousand connections that send half a
//! request neither keep other clients from being served nor stay open past the header-read
//! timeout; a body over `server.max_body_size` is a 413.

use std::time::{Duration, Instant};

use harness::MockIssuer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixture::{http, routes, upstream};
use crate::stack::stack;

const SLOW_CLIENTS: usize = 2000;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches(" kB").trim().parse().ok()
}

#[tokio::test]
async fn half_sent_requests_are_closed_after_the_header_read_timeout_and_others_are_served() {
    let up = upstream(Vec::new()).await;
    let s = stack()
        .memory()
        .issuer(MockIssuer::builder().run().await.unwrap())
        .config(&routes(&up.uri()))
        .env("BFF_SERVER_HEADER_READ_TIMEOUT", "2s")
        .run()
        .await;
    let addr = s.url(0).trim_start_matches("http://").to_owned();
    let pid = s.nodes[0].pid().expect("the node runs");
    println!("node RSS before: {:?} KiB", rss_kib(pid));

    let mut slow = Vec::with_capacity(SLOW_CLIENTS);
    for _ in 0..SLOW_CLIENTS {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /public/x HTTP/1.1\r\nHost: gateway\r\nX-Half: ").await.unwrap();
        slow.push(stream);
    }
    let opened = Instant::now();

    let answer = http().get(format!("{}/health", s.url(0))).send().await.unwrap();
    assert_eq!(answer.status(), 200, "another client is served while {SLOW_CLIENTS} are slow");
    assert!(opened.elapsed() < Duration::from_secs(2), "served before the slow ones were closed");
    println!("node RSS with {SLOW_CLIENTS} half-sent requests: {:?} KiB", rss_kib(pid));

    let deadline = Duration::from_secs(15);
    for stream in &mut slow {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(deadline.saturating_sub(opened.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(_) | Err(_)) => {} // closed (EOF or reset), or a short error response then EOF
            Err(_) => panic!("a half-sent request was still open after {:?}", opened.elapsed()),
        }
    }
    let closed_after = opened.elapsed();
    println!("all {SLOW_CLIENTS} slow connections closed after {closed_after:?}; node RSS: {:?} KiB", rss_kib(pid));
    assert!(closed_after >= Duration::from_secs(1), "closed before the timeout: {closed_after:?}");
    let answer = http().get(format!("{}/health", s.url(0))).send().await.unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_a_large_body_refused() {
    let up = upstream(Vec::new()).await;
    let s = stack()
        .memory()
        .issuer(MockIssuer::builder().run().await.unwrap())
        .config(&routes(&up.uri()))
        .env("BFF_SERVER_HEADER_READ_TIMEOUT", "1s")
        .env("BFF_SERVER_MAX_BODY_SIZE", "1KiB")
        .run()
        .await;
    let answer = http().post(format!("{}/public/upload", s.url(0))).body(vec![b'x'; 4096]).send().await.unwrap();
    assert_eq!(answer.status(), 413);
    let answer = http().post(format!("{}/public/upload", s.url(0))).body(vec![b'x'; 512]).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    // A chunked body has no length to be refused by: the back-channel endpoint finds it too
    // large while reading it, and answers as the length check does.
    let mut stream = TcpStream::connect(s.url(0).trim_start_matches("http://")).await.unwrap();
    let chunk = format!("logout_token={}", "x".repeat(4096));
    let request = format!(
        "POST /account/backchannel-logout HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let status_line = String::from_utf8_lossy(&response).lines().next().unwrap_or_default().to_owned();
    assert_eq!(status_line, "HTTP/1.1 413 Payload Too Large", "a chunked back-channel body over the limit");

    let mut stream = TcpStream::connect(s.url(0).trim_start_matches("http://")).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "an idle keep-alive connection stayed open");
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));
}
