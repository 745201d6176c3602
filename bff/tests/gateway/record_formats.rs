//! Compatibility test vectors: what a released build wrote to Redis (sessions, key-ring
//! entries, login and logout replay markers, back-channel logout indexes) and into its sealed
//! login cookie, committed under `tests/fixtures/`, and read by the current code. A change that
//! makes the current build unable to read them fails here (see `bff::compat` for the rule).
//!
//! The fixtures are captured by [`capture_records_of_a_build`] (ignored by default): it runs a
//! given `bff` binary against a real `redis-server` and the mock issuer with the fixed test
//! key-encryption key, logs users in, ends one by back-channel logout, starts a login and dumps
//! Redis. `just previous-release-fixtures` runs it on the previous release.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bff::keyring::KeyRing;
use bff::redis_link::RedisLink;
use bff::session::{PendingLogin, RedisStore, SessionId, Sessions};
use harness::{BffProcess, MockIssuer, RedisProcess, VirtualUser};
use serde::{Deserialize, Serialize};

use crate::stack::{backchannel_logout, redis_cmd};

/// Long enough that a fixture's records never count as expired or due for rotation.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
const PREFIX: &str = "bff";

/// One Redis key as a build left it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Stored {
    String { key: String, base64: String },
    Hash { key: String, fields: BTreeMap<String, String> },
    Set { key: String, members: Vec<String> },
}

/// What a build wrote, and what a reader needs to know to check it.
#[derive(Serialize, Deserialize)]
struct Fixture {
    /// The version the writing build reports.
    written_by: String,
    key_encryption_key: String,
    client_secret: String,
    issuer: String,
    /// A logged-in user's session cookie, and the claims `/account/me` gave for it.
    session_cookie: String,
    claims: serde_json::Value,
    /// A login started and not finished: its `state` and sealed login cookie.
    pending_state: String,
    pending_cookie: String,
    pending_landing_page: String,
    /// A finished login's `state` (its one-time-use marker is in Redis).
    used_state: String,
    /// A back-channel logout that was used (its replay marker is in Redis).
    logout_jti: String,
    redis: Vec<Stored>,
}

fn fixture_path(version: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/records-{version}.json"))
}

fn cookie(user: &VirtualUser, name: &str) -> Option<String> {
    let jar = user.jar().lock().expect("cookie jar");
    jar.iter_unexpired().find(|c| c.name() == name).map(|c| c.value().to_owned())
}

/// `BFF_FIXTURE_WRITER=/path/to/bff cargo test -p bff --test gateway capture -- --ignored`
/// writes `tests/fixtures/records-<its version>.json`.
#[tokio::test]
#[ignore = "captures fixtures from the build in BFF_FIXTURE_WRITER"]
async fn capture_records_of_a_build() {
    let writer = std::env::var("BFF_FIXTURE_WRITER").expect("BFF_FIXTURE_WRITER names a bff binary");
    let issuer = MockIssuer::builder().run().await.unwrap();
    let redis = RedisProcess::start(false).await.unwrap();
    let port = harness::process::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let node = BffProcess::builder(&writer)
        .port(port)
        .env("BFF_PUBLIC_URL", &url)
        .env("BFF_OIDC_AUTHORITY", issuer.url())
        .env("BFF_OIDC_CLIENT_ID", "bff-client")
        .env("BFF_OIDC_CLIENT_SECRET", "bff-secret")
        .env("BFF_KEY_ENCRYPTION_KEY", harness::cluster::KEY_ENCRYPTION_KEY)
        .env("BFF_REDIS_URL", redis.url())
        .env("BFF_REDIS_KEY_PREFIX", PREFIX)
        .run()
        .await
        .unwrap();

    // A logged-in user whose session stays.
    let alice = VirtualUser::new(Some("alice"));
    assert_eq!(alice.login(&url).await.unwrap().status, 302);
    let claims = alice.me(&url).await.unwrap().json().unwrap();
    let session_cookie = cookie(&alice, "bff-session").expect("a session cookie");

    // A user logged in, then out by the issuer: a used logout token's replay marker, and a
    // finished login's marker.
    let bob = VirtualUser::new(Some("bob"));
    let start = bob.get(&format!("{url}/account/login")).await.unwrap();
    let authorize = start.location.clone().unwrap();
    let used_state = state_of(&authorize);
    let issued = bob.get(&format!("{authorize}&login_hint=bob")).await.unwrap();
    assert_eq!(bob.get(&issued.location.unwrap()).await.unwrap().status, 302);
    let bob_claims = bob.me(&url).await.unwrap().json().unwrap();
    let token = issuer.logout_token(bob_claims["sid"].as_str(), None);
    let jti = jti_of(&token);
    assert_eq!(backchannel_logout(&url, &token).await, 200);
    assert_eq!(bob.me(&url).await.unwrap().status, 404);

    // A login in progress: its sealed cookie.
    let carol = VirtualUser::new(Some("carol"));
    let start = carol.get(&format!("{url}/account/login?landingpage=/app/fixture")).await.unwrap();
    let pending_state = state_of(start.location.as_deref().unwrap());
    let pending_cookie = cookie(&carol, "bff-session-login").expect("a login cookie");

    let mut dump = Vec::new();
    let keys = match redis_cmd(redis.port(), &["KEYS", "*"]).await {
        redis::Value::Array(keys) => keys,
        other => panic!("{other:?}"),
    };
    let mut keys: Vec<String> = keys.into_iter().map(|k| redis::from_redis_value(k).unwrap()).collect();
    keys.sort();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        dump.push(match kind.as_str() {
            "string" => {
                let bytes: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
                Stored::String { key, base64: STANDARD.encode(bytes) }
            }
            "hash" => {
                Stored::Hash { fields: redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap(), key }
            }
            "set" => {
                let mut members: Vec<String> = redis::cmd("SMEMBERS").arg(&key).query_async(&mut conn).await.unwrap();
                members.sort();
                Stored::Set { key, members }
            }
            other => panic!("{key}: unexpected type {other}"),
        });
    }
    let version = reported_version(&writer);
    let fixture = Fixture {
        written_by: version.clone(),
        key_encryption_key: harness::cluster::KEY_ENCRYPTION_KEY.into(),
        client_secret: "bff-secret".into(),
        issuer: issuer.url().to_owned(),
        session_cookie,
        claims,
        pending_state,
        pending_cookie,
        pending_landing_page: "/app/fixture".into(),
        used_state,
        logout_jti: jti,
        redis: dump,
    };
    let path = fixture_path(&version);
    std::fs::write(&path, serde_json::to_string_pretty(&fixture).unwrap() + "\n").unwrap();
    drop(node);
    println!("wrote {}", path.display());
}

/// The version a `bff` binary reports (`bff --version`: `bff 0.1.0`).
fn reported_version(binary: &str) -> String {
    let out = std::process::Command::new(binary).arg("--version").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().trim_start_matches("bff ").to_owned()
}

fn state_of(authorize: &str) -> String {
    let url = url::Url::parse(authorize).unwrap();
    url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).expect("a state")
}

fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// The back-channel index secret as every release derives it (`state::index_secret`): part of
/// the format, since the indexes' keys are made with it.
fn index_secret(kek: &[u8]) -> Vec<u8> {
    let mut material = b"bff back-channel index\0".to_vec();
    material.extend_from_slice(kek);
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material).as_ref().to_vec()
}

/// A `redis-server` holding exactly what the fixture's build left, and the current code's
/// sessions over it.
async fn load(fixture: &Fixture) -> (RedisProcess, Arc<KeyRing>, Sessions) {
    let redis = RedisProcess::start(false).await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for stored in &fixture.redis {
        let cmd = match stored {
            Stored::String { key, base64 } => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key).arg(STANDARD.decode(base64).unwrap());
                cmd
            }
            Stored::Hash { key, fields } => {
                let mut cmd = redis::cmd("HSET");
                cmd.arg(key);
                for (field, value) in fields {
                    cmd.arg(field).arg(value);
                }
                cmd
            }
            Stored::Set { key, members } => {
                let mut cmd = redis::cmd("SADD");
                cmd.arg(key).arg(members);
                cmd
            }
        };
        let _: () = cmd.query_async(&mut conn).await.unwrap();
    }
    let kek: [u8; 32] = STANDARD.decode(&fixture.key_encryption_key).unwrap().try_into().unwrap();
    let link = RedisLink::new(&redis.url(), Duration::from_secs(2)).unwrap();
    link.connect().await;
    let ring = KeyRing::shared(link.clone(), PREFIX, FOREVER, FOREVER, u64::MAX, Some(kek));
    ring.reload().await.unwrap();
    let store = Arc::new(RedisStore::new(link, PREFIX));
    let sessions = Sessions::new(
        store,
        ring.clone(),
        Duration::from_secs(1200),
        FOREVER,
        Duration::from_secs(600),
        &index_secret(&kek),
    );
    (redis, ring, sessions)
}

async fn reads_every_record_of(version: &str) {
    let text = std::fs::read_to_string(fixture_path(version)).expect("the fixture is committed");
    let fixture: Fixture = serde_json::from_str(&text).unwrap();
    assert_eq!(fixture.written_by, version);
    let (_redis, ring, sessions) = load(&fixture).await;

    // The key ring: every entry the build wrote opens under the key-encryption key.
    let entries = fixture
        .redis
        .iter()
        .find_map(|s| match s {
            Stored::Hash { key, fields } if key == &format!("{PREFIX}:keyring") => Some(fields.clone()),
            _ => None,
        })
        .expect("a key ring");
    let current = hex::encode(ring.current_key_id().expect("the ring loaded a current key"));
    assert!(entries.contains_key(&current), "the current key {current} is one the build wrote");

    // The session: it opens, and `me` would give the same claims.
    let id = SessionId::parse(&fixture.session_cookie).expect("a session id");
    let session = sessions.load(&id).await.unwrap().expect("the session the build wrote opens");
    let claims: serde_json::Value = serde_json::from_str(session.claims.get()).unwrap();
    assert_eq!(claims, fixture.claims);
    assert!(session.format.is_readable());

    // The sealed login cookie: it opens for its state (the expiry it carries has passed since:
    // opened here under the key ring as `Sessions::open_login` does, past the expiry check).
    let blob = URL_SAFE_NO_PAD.decode(&fixture.pending_cookie).unwrap();
    let aad = format!(
        "l:{}",
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, fixture.pending_state.as_bytes()))
    );
    let plain = ring.open(aad.as_bytes(), &blob).await.expect("the login cookie opens");
    let login: PendingLogin = serde_json::from_slice(&plain).expect("the login cookie parses");
    assert_eq!(login.landing_page, fixture.pending_landing_page);
    assert!(login.format.is_readable());

    // The markers: the finished login and the used logout token are still known as used.
    assert!(sessions.login_used(&fixture.used_state).await.unwrap(), "the finished login's marker is read");
    assert!(!sessions.login_used(&fixture.pending_state).await.unwrap());
    let used = sessions.logout_token_used(&fixture.issuer, &fixture.logout_jti);
    assert!(used.await.unwrap(), "the used logout token's marker is read");

    // The back-channel index: a logout for the user's `sid` finds the session and ends it.
    let sid = fixture.claims["sid"].as_str().expect("a sid claim");
    assert_eq!(sessions.end_all(&fixture.issuer, Some(sid), None).await.unwrap(), 1, "the sid index is read");
    assert!(sessions.load(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn the_current_build_reads_every_record_the_previous_release_wrote() {
    reads_every_record_of("0.1.0").await;
}

/// A node whose Redis says a build of a format it does not read shares the cluster refuses to
/// start, naming both versions; a neighbouring format starts and announces its own.
#[tokio::test]
async fn a_node_refuses_a_cluster_of_a_format_it_does_not_read_and_names_both_versions() {
    let issuer = MockIssuer::builder().run().await.unwrap();
    let redis = RedisProcess::start(false).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let node = |redis: &RedisProcess| {
        crate::stack::node_builder(&issuer, Some(redis), "http://127.0.0.1:9").ready_timeout(Duration::from_secs(10))
    };

    // Format 3 (the next release's) is within this build's window: it starts and announces 2.
    redis_cmd(redis.port(), &["HSET", "bff:formats", "3", &format!("0.3.0 {now}")]).await;
    let started = node(&redis).run().await.expect("a node beside format 3 starts");
    let announced = redis_cmd(redis.port(), &["HGET", "bff:formats", "2"]).await;
    let announced: String = redis::from_redis_value(announced).unwrap();
    assert!(announced.starts_with(&format!("{} ", env!("CARGO_PKG_VERSION"))), "{announced}");
    drop(started);

    // Format 4 is two releases on: refused at start, with both versions named.
    redis_cmd(redis.port(), &["HSET", "bff:formats", "4", &format!("0.4.0 {now}")]).await;
    let refused = node(&redis).run().await.err().expect("a node beside format 4 must not start");
    let said = refused.to_string();
    assert!(said.contains("record format 4 (written by bff 0.4.0)"), "{said}");
    assert!(
        said.contains(&format!("bff {} (record format 2) does not start here", env!("CARGO_PKG_VERSION"))),
        "{said}"
    );

    // An announcement older than a session can live no longer counts.
    redis_cmd(redis.port(), &["HSET", "bff:formats", "4", &format!("0.4.0 {}", now - 13 * 3600)]).await;
    node(&redis).run().await.expect("a stale announcement does not block a start");
}

/// A running node that later finds a build of a format it does not read announced (two builds
/// started together, each checked before the other announced) stops being ready, naming the
/// other build, and is ready again once that announcement is gone.
#[tokio::test]
async fn a_running_node_that_finds_a_format_it_does_not_read_is_not_ready_until_it_is_gone() {
    let issuer = MockIssuer::builder().run().await.unwrap();
    let redis = RedisProcess::start(false).await.unwrap();
    let node = crate::stack::node_builder(&issuer, Some(&redis), "http://127.0.0.1:9")
        .env("BFF_KEY_RING_REFRESH", "1s")
        .ready_timeout(Duration::from_secs(10))
        .run()
        .await
        .unwrap();
    let ready = async || {
        let answer = reqwest::get(format!("{}/ready", node.url())).await.unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    };
    assert_eq!(ready().await.0, 200);

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    redis_cmd(redis.port(), &["HSET", "bff:formats", "4", &format!("0.4.0 {now}")]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (status, said) = loop {
        let (status, said) = ready().await;
        if status != 200 || tokio::time::Instant::now() > deadline {
            break (status, said);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503, "not ready beside format 4: {said}");
    assert!(said.contains("record format 4 (written by bff 0.4.0)"), "{said}");

    redis_cmd(redis.port(), &["HDEL", "bff:formats", "4"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ready().await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "ready again once format 4 is gone");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
