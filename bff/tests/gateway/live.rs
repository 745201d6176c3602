//! WebSockets and server-sent events through real `bff` processes, to the harness's live API
//! (a WebSocket echo and an event-stream clock that record what reached them): the handshake is
//! authenticated like the route's requests and checked for its `Origin`; the upstream gets the
//! bearer token and none of the gateway's cookies; a session that ends on any node closes its
//! sockets on every node; a stopping node closes its sockets with 1001 and ends its event
//! streams; an event stream is delivered event by event and not cut by the write timeout.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::VirtualUser;
use harness::demo_app::LiveUpstream;
use harness::live_socket::{Ended, LiveSocket, LiveSocketError};

use crate::stack::{Stack, StackBuilder, stack};

fn routes(live: &str) -> String {
    format!(
        r#"
[[routes]]
path = "/live/"
upstreams = ["{live}"]
auth = "required"

[[routes]]
path = "/open-live/"
upstreams = ["{live}"]
auth = "none"
"#
    )
}

async fn live_stack(b: StackBuilder) -> (Stack, LiveUpstream) {
    let live = LiveUpstream::start("127.0.0.1:0").await.expect("live upstream");
    (b.config(&routes(&live.uri())).run().await, live)
}

fn cookie(user: &VirtualUser) -> String {
    format!("theme=dark; bff-session={}", crate::login::session_cookie(user))
}

async fn open(s: &Stack, node: usize, user: &VirtualUser) -> LiveSocket {
    LiveSocket::open(&format!("{}/live/echo", s.url(node)), &s.url(0), Some(&cookie(user))).await.expect("socket opens")
}

#[tokio::test]
async fn websockets_through_three_nodes_carry_the_bearer_and_echo() {
    let (s, live) = live_stack(stack().nodes(3)).await;
    let users: Vec<VirtualUser> = (0..10).map(|_| VirtualUser::new(None)).collect();
    for user in &users {
        user.login(&s.url(0)).await.unwrap();
    }
    let mut sockets = Vec::new();
    for (i, user) in users.iter().enumerate() {
        for j in 0..10 {
            sockets.push(open(&s, (i + j) % 3, user).await);
        }
    }
    for (n, socket) in sockets.iter_mut().enumerate() {
        socket.echo(&format!("hello {n}"), Duration::from_secs(5)).await.unwrap();
    }
    let handshakes = live.handshakes();
    assert_eq!(handshakes.len(), 100);
    let issued = s.issuer.issued_access_tokens();
    for handshake in &handshakes {
        let token = handshake.authorization.as_deref().and_then(|v| v.strip_prefix("Bearer ")).expect("a bearer");
        assert!(issued.contains(&token.to_owned()), "the bearer is an access token the issuer gave");
        assert_eq!(handshake.cookie.as_deref(), Some("theme=dark"), "the gateway's cookie stays home");
    }

    let no_session = LiveSocket::open(&format!("{}/live/echo", s.url(1)), &s.url(0), Some("theme=dark")).await;
    assert!(matches!(no_session, Err(LiveSocketError::Refused(401))), "{:?}", no_session.err());
    let foreign =
        LiveSocket::open(&format!("{}/live/echo", s.url(1)), "http://evil.example", Some(&cookie(&users[0]))).await;
    assert!(matches!(foreign, Err(LiveSocketError::Refused(403))), "{:?}", foreign.err());
    let no_origin = LiveSocket::open(&format!("{}/open-live/echo", s.url(2)), "null", None).await;
    assert!(matches!(no_origin, Err(LiveSocketError::Refused(403))), "the Origin rule holds on every route");
    let mut open_route = LiveSocket::open(&format!("{}/open-live/echo", s.url(2)), &s.url(0), None).await.unwrap();
    open_route.echo("anyone", Duration::from_secs(5)).await.unwrap();
    assert_eq!(live.handshakes().len(), 101, "refused handshakes never reached the upstream");
    assert_eq!(live.handshakes()[100].authorization, None);
}

#[tokio::test]
async fn open_sockets_are_bounded_by_max_connections() {
    let (s, _live) = live_stack(stack().env("BFF_SERVER_MAX_CONNECTIONS", "3")).await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let mut first = vec![open(&s, 0, &user).await, open(&s, 0, &user).await, open(&s, 0, &user).await];
    let over = LiveSocket::open(&format!("{}/live/echo", s.url(0)), &s.url(0), Some(&cookie(&user))).await;
    assert!(matches!(over, Err(LiveSocketError::Refused(503))), "{:?}", over.err());
    first.pop().unwrap().close().await;
    crate::stack::eventually("a socket's place is free again", Duration::from_secs(5), || async {
        LiveSocket::open(&format!("{}/live/echo", s.url(0)), &s.url(0), Some(&cookie(&user))).await.is_ok()
    })
    .await;
    first[0].echo("still here", Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn logout_on_another_node_closes_every_socket_of_that_session_only() {
    // The periodic check is far away: only the change notice can close the sockets in time.
    let (s, _live) = live_stack(stack().nodes(3).env("BFF_WEBSOCKET_SESSION_CHECK", "10m")).await;
    let (leaving, staying) = (VirtualUser::new(None), VirtualUser::new(None));
    leaving.login(&s.url(0)).await.unwrap();
    staying.login(&s.url(0)).await.unwrap();
    let mut theirs = Vec::new();
    let mut others = Vec::new();
    for node in 0..3 {
        theirs.push(open(&s, node, &leaving).await);
        others.push(open(&s, node, &staying).await);
    }
    for socket in theirs.iter_mut().chain(others.iter_mut()) {
        socket.echo("before", Duration::from_secs(5)).await.unwrap();
    }

    let started = Instant::now();
    let reply = leaving.logout(&s.url(1)).await.unwrap();
    assert!(reply.status < 400, "logout answered {}", reply.status);
    let mut slowest = Duration::ZERO;
    for socket in &mut theirs {
        let ended = socket.ended(Duration::from_secs(2)).await;
        assert_eq!(ended, Some(Ended::Closed(1008, "session ended".into())));
        slowest = slowest.max(started.elapsed());
    }
    println!("logout on node 1 to the last of 3 sockets (nodes 0-2) closed: {slowest:?}");
    assert!(slowest < Duration::from_secs(2));
    for socket in &mut others {
        socket.echo("after", Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test]
async fn a_backchannel_logout_closes_the_sessions_sockets_on_every_node() {
    let (s, _live) = live_stack(stack().nodes(2).env("BFF_WEBSOCKET_SESSION_CHECK", "10m")).await;
    let (erin, frank) = (VirtualUser::new(Some("erin")), VirtualUser::new(Some("frank")));
    erin.login(&s.url(0)).await.unwrap();
    frank.login(&s.url(0)).await.unwrap();
    let mut theirs = vec![open(&s, 0, &erin).await, open(&s, 1, &erin).await];
    let mut other = open(&s, 1, &frank).await;
    let token = s.issuer.logout_token(Some(&s.issuer.last_sid("erin").unwrap()), None);
    assert_eq!(crate::stack::backchannel_logout(&s.url(1), &token).await, 200);
    for socket in &mut theirs {
        assert_eq!(socket.ended(Duration::from_secs(2)).await, Some(Ended::Closed(1008, "session ended".into())));
    }
    other.echo("still here", Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn an_idle_session_closes_its_socket_with_the_memory_store() {
    let (s, _live) = live_stack(
        stack()
            .memory()
            .env("BFF_SESSION_IDLE_TIMEOUT", "2s")
            .env("BFF_SESSION_CACHE_MAX_AGE", "off")
            .env("BFF_WEBSOCKET_SESSION_CHECK", "200ms"),
    )
    .await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let mut socket = open(&s, 0, &user).await;
    let opened = Instant::now();
    socket.echo("hello", Duration::from_secs(5)).await.unwrap();
    // Messages are not activity: the session idles out while the socket is used.
    let ended = socket.ended(Duration::from_secs(10)).await;
    assert_eq!(ended, Some(Ended::Closed(1008, "session ended".into())));
    let after = opened.elapsed();
    println!("idle timeout 2s, check every 200ms: socket closed {after:?} after it opened");
    assert!(after >= Duration::from_millis(1500), "not before the session idled out");
}

#[tokio::test]
async fn a_stopping_node_closes_its_sockets_with_going_away() {
    let (mut s, _live) = live_stack(stack().nodes(2)).await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let mut on_stopping = open(&s, 1, &user).await;
    let mut on_staying = open(&s, 0, &user).await;
    on_stopping.echo("hello", Duration::from_secs(5)).await.unwrap();
    let stopping = tokio::spawn(async move {
        let status = s.nodes[1].stop().await;
        (s, status)
    });
    assert_eq!(on_stopping.ended(Duration::from_secs(10)).await, Some(Ended::Closed(1001, "going away".into())));
    let (s, status) = stopping.await.unwrap();
    assert!(status.unwrap().contains("exit status: 0"), "a clean exit");
    on_staying.echo("still here", Duration::from_secs(5)).await.unwrap();
    // The reconnect lands on the other node, still logged in.
    let mut again = open(&s, 0, &user).await;
    again.echo("back", Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_stopping_node_ends_its_event_streams_at_once() {
    // A stream far longer than the test, and a grace period far longer than the bound below: the
    // stop must end the stream, not wait for it.
    let (mut s, _live) = live_stack(stack().nodes(2).env("BFF_SHUTDOWN_TIMEOUT", "60s")).await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let mut response = reqwest::Client::new()
        .get(format!("{}/live/clock?every=100ms&count=100000", s.url(1)))
        .header("cookie", cookie(&user))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.chunk().await.unwrap().is_some(), "the first event");
    let started = Instant::now();
    let stopping = tokio::spawn(async move {
        let status = s.nodes[1].stop().await;
        (s, status)
    });
    let ended =
        tokio::time::timeout(Duration::from_secs(10), async { while let Ok(Some(_)) = response.chunk().await {} })
            .await;
    assert!(ended.is_ok(), "the event stream was still open 10 s after the node began to stop");
    let (_s, status) = stopping.await.unwrap();
    assert!(status.unwrap().contains("exit status: 0"), "a clean exit");
    println!("event stream ended and node stopped {:?} after the stop began", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10), "the stop waited for the stream");
}

#[tokio::test]
async fn a_browser_that_answers_no_ping_loses_its_socket_and_a_message_over_the_limit_ends_one() {
    let (s, _live) =
        live_stack(stack().env("BFF_WEBSOCKET_PING_INTERVAL", "1s").env("BFF_WEBSOCKET_MAX_MESSAGE_SIZE", "64KiB"))
            .await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();

    // A client that completes the handshake, then neither reads nor writes.
    let host = s.url(0).trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let handshake = format!(
        "GET /live/echo HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {}\r\nCookie: {}\r\n\r\n",
        s.url(0),
        cookie(&user)
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a client silent for 10 s (pings every 1 s) still had its socket");
    println!("a silent client's socket closed {:?} after the handshake", started.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(2), "closed before two intervals: {:?}", started.elapsed());

    // A client that reads (and so answers pings, as a browser does) keeps its socket past two
    // intervals.
    let mut socket = open(&s, 0, &user).await;
    assert_eq!(socket.ended(Duration::from_millis(3500)).await, None, "a client that answers pings was closed");
    socket.echo("still here", Duration::from_secs(5)).await.unwrap();
    // A message over the limit ends the socket; one under it passes.
    socket.echo(&"x".repeat(60 * 1024), Duration::from_secs(5)).await.unwrap();
    assert!(socket.echo(&"x".repeat(70 * 1024), Duration::from_secs(5)).await.is_err());
}

/// An event stream through the gateway, shorter than a minute here (`BFF_TEST_SSE_SECONDS` sets
/// it: 60 for the issue's bar); the write timeout is a second, far shorter than the stream.
#[tokio::test]
async fn an_event_stream_is_delivered_event_by_event_and_not_cut_by_the_write_timeout() {
    let seconds: u64 = std::env::var("BFF_TEST_SSE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let (s, _live) = live_stack(stack().env("BFF_SERVER_WRITE_TIMEOUT", "1s")).await;
    let user = VirtualUser::new(None);
    user.login(&s.url(0)).await.unwrap();
    let count = seconds * 10;
    let response = reqwest::Client::new()
        .get(format!("{}/live/clock?every=100ms&count={count}", s.url(0)))
        .header("cookie", cookie(&user))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut response = response;
    let mut pending = String::new();
    let mut delays = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        let received = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
        pending.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let data = event.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
            let data: serde_json::Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["n"].as_u64(), Some(delays.len() as u64 + 1), "every event, in order");
            delays.push(received.saturating_sub(data["sent_unix_micros"].as_u64().unwrap()));
        }
    }
    assert_eq!(delays.len() as u64, count, "the stream ran to its end");
    delays.sort_unstable();
    let (median, max) = (delays[delays.len() / 2], delays[delays.len() - 1]);
    println!("{count} events over {seconds}s through the gateway: upstream to client median {median} µs, max {max} µs");
    // The bar (50 ms) is a figure to read above; what must hold is that no event waits for the
    // stream to go on or end (the stream lasts seconds).
    assert!(max < 1_000_000, "every event passed on as it came (max {max} µs)");
    let metrics = crate::stack::metrics(&s.url(0)).await;
    assert!(metrics.contains("bff_event_streams_total 1"), "{metrics}");
    assert!(metrics.contains("bff_event_streams_open 0"));
}
