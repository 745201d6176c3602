//! High 2: a key ring shared through Redis must be wrapped, unless the operator opts out in
//! words that say it is insecure; the node refuses to start otherwise (exit 64, naming the key).

use std::process::Command;

use crate::stack::BFF;

fn bff(extra: &[(&str, &str)]) -> std::process::Output {
    let base = [
        ("BFF_PUBLIC_URL", "http://localhost:8080"),
        ("BFF_OIDC_AUTHORITY", "http://issuer.test"),
        ("BFF_OIDC_CLIENT_ID", "c"),
        ("BFF_OIDC_CLIENT_SECRET", "s"),
        ("BFF_REDIS_URL", "redis://127.0.0.1:1"),
    ];
    Command::new(BFF).env_clear().envs(base.iter().chain(extra).copied()).arg("--check").output().unwrap()
}

#[test]
fn a_shared_ring_without_a_key_encryption_key_does_not_start() {
    let out = bff(&[]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("key_encryption_key (BFF_KEY_ENCRYPTION_KEY): missing"), "{stderr}");
    assert_eq!(bff(&[("BFF_KEY_RING_PLAINTEXT_INSECURE", "true")]).status.code(), Some(0), "the explicit opt-out");
    assert_eq!(bff(&[("BFF_KEY_ENCRYPTION_KEY", harness::cluster::KEY_ENCRYPTION_KEY)]).status.code(), Some(0));
}
