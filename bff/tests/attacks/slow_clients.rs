//! High: slow bodies and slow readers. A client that trickles a request body, or never reads a
//! large response, frees its connection slot within `server.body_timeout` or
//! `server.write_timeout`, on the public and the metrics listener; a response streamed slowly to a
//! client that reads it is delivered whole.

use std::time::{Duration, Instant};

use harness::MockIssuer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

use crate::fixture::{http, routes, upstream};
use crate::stack::stack;

const SLOW_BODIES: usize = 48;

/// 48 clients announce a 100 000-byte body and send a byte every 300 ms (each byte well inside
/// any per-read timeout) against 40 connection slots and a 1 s body timeout: every one is closed
/// within about three body timeouts, the 8 that waited in the backlog included, each answered
/// 408 (the account endpoint as the proxy), and the node then serves a normal request.
#[tokio::test]
async fn trickled_bodies_are_cut_off_and_free_their_slots() {
    let up = upstream(Vec::new()).await;
    let s = stack()
        .memory()
        .issuer(MockIssuer::builder().run().await.unwrap())
        .config(&routes(&up.uri()))
        .env("BFF_SERVER_MAX_CONNECTIONS", "40")
        .env("BFF_SERVER_BODY_TIMEOUT", "1s")
        .run()
        .await;
    let addr = s.url(0).trim_start_matches("http://").to_owned();
    let opened = Instant::now();
    let mut readers = Vec::with_capacity(SLOW_BODIES);
    for n in 0..SLOW_BODIES {
        let stream = TcpStream::connect(&addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let target = if n % 2 == 0 { "/account/backchannel-logout" } else { "/public/upload" };
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n"
        );
        tokio::spawn(async move {
            if write.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut every = tokio::time::interval(Duration::from_millis(300));
            while write.write_all(b"x").await.is_ok() {
                every.tick().await;
            }
        });
        readers.push(tokio::spawn(async move {
            let mut response = Vec::new();
            let _ = read.read_to_end(&mut response).await; // EOF or reset: closed either way
            String::from_utf8_lossy(&response).into_owned()
        }));
    }
    let bound = Duration::from_secs(4);
    for (n, reader) in readers.into_iter().enumerate() {
        let proxied = n % 2 == 1;
        let left = bound.saturating_sub(opened.elapsed());
        let answer = tokio::time::timeout(left, reader)
            .await
            .unwrap_or_else(|_| panic!("a trickled body still held its connection after {:?}", opened.elapsed()))
            .unwrap();
        let what = if proxied { "a proxied body" } else { "a back-channel logout's body" };
        assert!(answer.starts_with("HTTP/1.1 408"), "{what} cut off: {answer:?}");
    }
    println!("all {SLOW_BODIES} trickled bodies closed after {:?}", opened.elapsed());
    let answer = http().get(format!("{}/health", s.url(0))).send().await.unwrap();
    assert_eq!(answer.status(), 200);
}

/// A client that reads the start of a 10 MB proxied response and then nothing holds the node's
/// only connection slot; with a 1 s write timeout the slot is free again, and another client
/// served, within a few seconds, and the stalled client got less than the whole response.
#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    const SIZE: usize = 10 << 20;
    let up = upstream(vec![
        Mock::given(path("/public/big")).respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'z'; SIZE])),
    ])
    .await;
    let s = stack()
        .memory()
        .issuer(MockIssuer::builder().run().await.unwrap())
        .config(&routes(&up.uri()))
        .env("BFF_SERVER_MAX_CONNECTIONS", "1")
        .env("BFF_SERVER_WRITE_TIMEOUT", "1s")
        .run()
        .await;
    let addr = s.url(0).trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap(); // a small window: the node's writes stall early
    let mut stalled = socket.connect(addr).await.unwrap();
    stalled.write_all(b"GET /public/big HTTP/1.1\r\nHost: gateway\r\n\r\n").await.unwrap();
    let mut start = [0u8; 12];
    stalled.read_exact(&mut start).await.unwrap();
    assert_eq!(&start, b"HTTP/1.1 200");
    let stopped_reading = Instant::now();

    let other = http().get(format!("{}/health", s.url(0))).timeout(Duration::from_secs(5)).send().await;
    let waited = stopped_reading.elapsed();
    let other = other.unwrap_or_else(|e| panic!("the stalled reader still held the only slot after {waited:?}: {e}"));
    assert_eq!(other.status(), 200);
    assert!(waited >= Duration::from_millis(900), "served before the write timeout: {waited:?}");
    println!("the slot was free again after {waited:?}");

    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut rest))
        .await
        .expect("the stalled connection was closed");
    assert!(rest.len() < SIZE, "the whole response was delivered to a client that stopped reading");
}

/// An upstream that answers every request with `chunks` chunks of `size` bytes, `gap` apart.
async fn slow_upstream(chunks: usize, size: usize, gap: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
                let mut every = tokio::time::interval(gap);
                for _ in 0..chunks {
                    every.tick().await;
                    let chunk = format!("{size:x}\r\n{}\r\n", "s".repeat(size));
                    if stream.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    format!("http://{addr}")
}

/// A response streamed over 3 s, three times the write timeout, to a client that reads it as it
/// comes, arrives whole: the bound is on a write that makes no progress, not on the response.
#[tokio::test]
async fn a_slow_stream_read_as_it_comes_is_delivered_whole() {
    const CHUNKS: usize = 7;
    const SIZE: usize = 64 << 10;
    let up = slow_upstream(CHUNKS, SIZE, Duration::from_millis(500)).await;
    let s = stack()
        .memory()
        .issuer(MockIssuer::builder().run().await.unwrap())
        .config(&routes(&up))
        .env("BFF_SERVER_WRITE_TIMEOUT", "1s")
        .env("BFF_SERVER_BODY_TIMEOUT", "1s")
        .run()
        .await;
    let started = Instant::now();
    let answer = http().get(format!("{}/public/stream", s.url(0))).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let body = answer.bytes().await.expect("the whole stream");
    assert!(started.elapsed() >= Duration::from_secs(3), "streamed over {:?}", started.elapsed());
    assert_eq!(body.len(), CHUNKS * SIZE);
}

/// The operator's metrics listener has the public listener's bounds: half-sent headers and a
/// trickled body are closed within the 1 s timeouts, and `/metrics` is still served.
#[tokio::test]
async fn the_metrics_listener_closes_slow_clients_too() {
    let up = upstream(Vec::new()).await;
    let port = harness::process::free_port();
    let _node = stack()
        .memory()
        .issuer(MockIssuer::builder().run().await.unwrap())
        .config(&routes(&up.uri()))
        .env("BFF_METRICS_LISTEN", &format!("127.0.0.1:{port}"))
        .env("BFF_SERVER_HEADER_READ_TIMEOUT", "1s")
        .env("BFF_SERVER_BODY_TIMEOUT", "1s")
        .run()
        .await;
    let operator = format!("127.0.0.1:{port}");
    let opened = Instant::now();
    let mut slow = Vec::new();
    for head in [
        "GET /metrics HTTP/1.1\r\nHost: ops\r\nX-Half: ".to_owned(),
        "POST /metrics HTTP/1.1\r\nHost: ops\r\nContent-Length: 100000\r\n\r\nx".to_owned(),
    ] {
        let mut stream = TcpStream::connect(&operator).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    for mut stream in slow {
        let mut response = Vec::new();
        let left = Duration::from_secs(4).saturating_sub(opened.elapsed());
        let _ = tokio::time::timeout(left, stream.read_to_end(&mut response)).await.unwrap_or_else(|_| {
            panic!("a slow client of the metrics listener still open after {:?}", opened.elapsed())
        });
    }
    let metrics = http().get(format!("http://{operator}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
}
