//! The binary's contract: configuration errors exit 64 naming the key, `--help` lists every
//! setting, SIGTERM finishes in-flight requests and exits 0.

use std::process::Command;
use std::time::Duration;

use harness::{TokenFaults, VirtualUser};

use crate::stack::{BFF, stack};

fn bff(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(BFF).env_clear().envs(env.iter().copied()).args(args).output().unwrap()
}

#[test]
fn configuration_errors_exit_64_naming_the_key() {
    let base = [
        ("BFF_PUBLIC_URL", "http://localhost:8080"),
        ("BFF_OIDC_AUTHORITY", "http://issuer.test"),
        ("BFF_OIDC_CLIENT_ID", "c"),
        ("BFF_OIDC_CLIENT_SECRET", "s"),
    ];
    let out = bff(&base[1..], &[]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("public_url (BFF_PUBLIC_URL): missing"), "{stderr}");

    let mut bad = base.to_vec();
    bad.push(("BFF_SESSION_IDLE_TIMEOUT", "forever"));
    let out = bff(&bad, &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8(out.stderr).unwrap().contains("session.idle_timeout (BFF_SESSION_IDLE_TIMEOUT)"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bff.toml");
    std::fs::write(&file, "public_url = \"http://x\"\n[oidc]\nauthoriti = \"http://issuer\"\n").unwrap();
    let out = bff(&[], &["--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8(out.stderr).unwrap().contains("oidc.authoriti: unknown key"));

    assert_eq!(bff(&base, &["--check"]).status.code(), Some(0));
}

/// A misspelt variable must not start a node on its in-memory store, alone: every `BFF_*`
/// variable nothing reads is refused, by name, with the closest known name.
#[test]
fn unknown_bff_variables_exit_64_naming_them() {
    let base = [
        ("BFF_PUBLIC_URL", "http://localhost:8080"),
        ("BFF_OIDC_AUTHORITY", "http://issuer.test"),
        ("BFF_OIDC_CLIENT_ID", "c"),
        ("BFF_OIDC_CLIENT_SECRET", "s"),
    ];
    let mut typo = base.to_vec();
    typo.push(("BFF_REDIS_ULR", "redis://127.0.0.1:6379"));
    let out = bff(&typo, &["--check"]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unknown environment variable BFF_REDIS_ULR (did you mean BFF_REDIS_URL?)"), "{stderr}");

    let mut unsupported = base.to_vec();
    unsupported.push(("BFF_REDIS_CLUSTER_NODES", "127.0.0.1:7000"));
    let out = bff(&unsupported, &["--check"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8(out.stderr).unwrap().contains("unknown environment variable BFF_REDIS_CLUSTER_NODES"));

    // What the binary and its toolkit read besides the keys is not refused.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bff.toml");
    std::fs::write(&file, "").unwrap();
    let mut around = base.to_vec();
    around.push(("BFF_CONFIG", file.to_str().unwrap()));
    around.push(("BFF_BIN", "/usr/local/bin/bff"));
    assert_eq!(bff(&around, &["--check"]).status.code(), Some(0));
}

#[test]
fn help_lists_every_setting() {
    let out = bff(&[], &["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "BFF_LISTEN",
        "BFF_PUBLIC_URL",
        "BFF_REDIS_URL",
        "BFF_OIDC_AUTHORITY",
        "BFF_OIDC_CLIENT_ID",
        "BFF_OIDC_CLIENT_SECRET",
        "BFF_KEY_RING",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_0() {
    let mut s = stack().run().await;
    let user = VirtualUser::new(None);
    let start = user.get(&format!("{}/account/login", s.url(0))).await.unwrap();
    let issued = user.get(start.location.as_deref().unwrap()).await.unwrap();
    let callback = issued.location.unwrap();

    s.issuer.set_token_faults(TokenFaults { delay: Some(Duration::from_millis(1500)), status: None });
    let in_flight = tokio::spawn(async move {
        let reply = user.get(&callback).await;
        (reply, user)
    });
    crate::stack::eventually("the callback reached the token endpoint", Duration::from_secs(5), || async {
        s.issuer.calls("token") == 1
    })
    .await;
    let status = s.nodes[0].stop().await.unwrap();
    assert_eq!(status, "exit status: 0");
    let (reply, _) = in_flight.await.unwrap();
    assert_eq!(reply.unwrap().status, 302, "the in-flight login completed");
}

#[test]
fn logs_are_plain_text_when_not_written_to_a_terminal() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BFF)
        .env_clear()
        .envs([
            ("BFF_LISTEN", "127.0.0.1:0"),
            ("BFF_PUBLIC_URL", "http://localhost:8080"),
            ("BFF_OIDC_AUTHORITY", "http://127.0.0.1:9"),
            ("BFF_OIDC_CLIENT_ID", "c"),
            ("BFF_OIDC_CLIENT_SECRET", "s"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // The in-memory store's warning and the first failed discovery: a few lines at start-up.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 && std::time::Instant::now() < deadline {
        if let Ok(line) = received.recv_timeout(Duration::from_millis(100)) {
            seen.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.len() >= 2, "the gateway logged at start-up: {seen:?}");
    assert!(seen.iter().all(|l| !l.contains('\u{1b}')), "escape codes in a log that is not a terminal: {seen:?}");
    assert!(seen.iter().any(|l| l.contains("WARN") || l.contains("INFO")), "{seen:?}");
}
