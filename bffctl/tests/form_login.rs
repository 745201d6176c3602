//! `--login form`: the virtual users log in through an identity provider's real HTML login form
//! (and its consent form), here the mock issuer run alone by `bffctl issuer --form-login`, in
//! front of a deployment bffctl did not build (two `bff` processes on a real `redis-server`).
//! Passwords never appear in a report or in bffctl's output.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use harness::{BffProcess, RedisProcess};

const BFFCTL: &str = env!("CARGO_BIN_EXE_bffctl");

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn verify(target: &str, nodes: &[String], users_file: &Path, report: &Path) -> Output {
    let mut command = Command::new(BFFCTL);
    command.args(["verify-scaling", "--target", target, "--iterations", "1"]);
    for node in nodes {
        command.args(["--node", node]);
    }
    // `--users FILE`: as many virtual users as the file has, each logging in as its own line.
    command
        .args(["--login", "form", "--users", users_file.to_str().unwrap()])
        .args(["--report", "json", report.to_str().unwrap()])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_users_log_in_through_an_identity_providers_html_form() {
    let bff = PathBuf::from(BFFCTL).with_file_name("bff");
    assert!(bff.is_file(), "build the gateway first: cargo build -p bff");
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "# the team\nalice:wonderland-7\nbob:builder-42\n").unwrap();

    let redis = RedisProcess::start(false).await.unwrap();
    let port = harness::process::free_port();
    let _issuer = KillOnDrop(
        Command::new(BFFCTL)
            .args(["issuer", "--form-login", "--users-file", users.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--host", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let public_port = harness::process::free_port();
    let mut nodes = Vec::new();
    for (i, node_port) in [public_port, harness::process::free_port()].into_iter().enumerate() {
        let node = BffProcess::builder(&bff)
            .port(node_port)
            .env("BFF_PUBLIC_URL", format!("http://127.0.0.1:{public_port}"))
            .env("BFF_REDIS_URL", redis.url())
            .env("BFF_OIDC_AUTHORITY", format!("http://127.0.0.1:{port}"))
            .env("BFF_OIDC_CLIENT_ID", harness::cluster::CLIENT_ID)
            .env("BFF_OIDC_CLIENT_SECRET", harness::cluster::CLIENT_SECRET)
            .env("BFF_KEY_ENCRYPTION_KEY", harness::cluster::KEY_ENCRYPTION_KEY)
            .env("BFF_NODE_NAME", format!("node-{}", i + 1))
            .run()
            .await
            .unwrap();
        nodes.push(node);
    }
    let node_args: Vec<String> = nodes.iter().enumerate().map(|(i, n)| format!("node-{}={}", i + 1, n.url())).collect();
    let target = nodes[0].url();

    let report = dir.path().join("report.json");
    let out = verify(&target, &node_args, &users, &report);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let written = std::fs::read_to_string(&report).unwrap();
    for secret in ["wonderland-7", "builder-42"] {
        assert!(!text(&out).contains(secret) && !written.contains(secret), "a password in the output or report");
    }

    // The wrong passwords: the login form comes back, and the run says whose credentials failed.
    let wrong = dir.path().join("wrong.txt");
    std::fs::write(&wrong, "alice:not-her-password\n").unwrap();
    let out = verify(&target, &node_args, &wrong, &report);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("refused the credentials of alice"), "{}", text(&out));
    let written = std::fs::read_to_string(&report).unwrap();
    assert!(!text(&out).contains("not-her-password") && !written.contains("not-her-password"));
}
