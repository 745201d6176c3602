use std::collections::HashMap;
use std::io::Write;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn minimal() -> HashMap<String, String> {
    env(&[
        ("BFF_PUBLIC_URL", "http://localhost:8080"),
        ("BFF_OIDC_AUTHORITY", "http://issuer.test"),
        ("BFF_OIDC_CLIENT_ID", "client"),
        ("BFF_OIDC_CLIENT_SECRET", "secret"),
    ])
}

fn error_of(vars: HashMap<String, String>) -> String {
    Config::from_env_map(&vars).unwrap_err().to_string()
}

#[test]
fn minimal_environment_gives_defaults() {
    let c = Config::from_env_map(&minimal()).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.store, StoreConfig::Memory);
    assert_eq!(c.key_ring.mode, KeyRingMode::Local);
    assert_eq!(c.session.idle_timeout, Duration::from_secs(20 * 60));
    assert_eq!(c.session.touch_interval, Duration::from_secs(60), "a tenth of 20m, at most 1m");
    assert_eq!(c.key_ring.rotation, Duration::from_secs(7 * 86400));
    assert_eq!(c.redirect_uri().as_str(), "http://localhost:8080/account/login/callback");
    assert_eq!(c.cookie_name(), "bff-session");
}

const KEK: &str = "YmZmLXRlc3Qta2V5LWVuY3J5cHRpb24ta2V5LTAwMDA=";

#[test]
fn the_shared_ring_needs_a_key_encryption_key_or_an_explicit_opt_out() {
    let mut vars = minimal();
    vars.insert("BFF_REDIS_URL".into(), "redis://127.0.0.1:6379/2".into());
    let msg = error_of(vars.clone());
    assert!(msg.starts_with("key_encryption_key (BFF_KEY_ENCRYPTION_KEY): missing"), "{msg}");
    vars.insert("BFF_KEY_RING_PLAINTEXT_INSECURE".into(), "maybe".into());
    assert!(error_of(vars.clone()).starts_with("key_ring_plaintext_insecure"));
    vars.insert("BFF_KEY_RING_PLAINTEXT_INSECURE".into(), "true".into());
    let c = Config::from_env_map(&vars).unwrap();
    assert!(c.key_ring.plaintext_insecure && c.key_ring.key_encryption_key.is_none());
    vars.remove("BFF_KEY_RING_PLAINTEXT_INSECURE");
    vars.insert("BFF_KEY_RING".into(), "local".into());
    assert!(Config::from_env_map(&vars).is_ok(), "a local ring never reaches Redis");
}

#[test]
fn redis_url_selects_shared_store_and_ring() {
    let mut vars = minimal();
    vars.insert("BFF_REDIS_URL".into(), "redis://127.0.0.1:6379/2".into());
    vars.insert("BFF_KEY_ENCRYPTION_KEY".into(), KEK.into());
    let c = Config::from_env_map(&vars).unwrap();
    assert!(matches!(c.store, StoreConfig::Redis { ref key_prefix, .. } if key_prefix == "bff"));
    assert_eq!(c.key_ring.mode, KeyRingMode::Redis);
}

#[test]
fn https_public_url_gets_host_prefixed_cookie() {
    let mut vars = minimal();
    vars.insert("BFF_PUBLIC_URL".into(), "https://app.example.com/".into());
    let c = Config::from_env_map(&vars).unwrap();
    assert_eq!(c.cookie_name(), "__Host-bff-session");
    assert_eq!(c.redirect_uri().as_str(), "https://app.example.com/account/login/callback");
}

#[test]
fn each_missing_required_key_is_named() {
    for (var, key) in [
        ("BFF_PUBLIC_URL", "public_url"),
        ("BFF_OIDC_AUTHORITY", "oidc.authority"),
        ("BFF_OIDC_CLIENT_ID", "oidc.client_id"),
        ("BFF_OIDC_CLIENT_SECRET", "oidc.client_secret"),
    ] {
        let mut vars = minimal();
        vars.remove(var);
        let msg = error_of(vars);
        assert!(msg.starts_with(key) && msg.contains(var) && msg.contains("missing"), "{msg}");
    }
}

#[test]
fn invalid_values_are_named() {
    for (var, value, key) in [
        ("BFF_LISTEN", "nope", "listen"),
        ("BFF_PUBLIC_URL", "ftp://x", "public_url"),
        ("BFF_REDIS_URL", "http://x", "redis_url"),
        ("BFF_SESSION_IDLE_TIMEOUT", "soon", "session.idle_timeout"),
        ("BFF_SESSION_TOUCH_INTERVAL", "often", "session.touch_interval"),
        ("BFF_SESSION_TOUCH_INTERVAL", "0s", "session.touch_interval"),
        ("BFF_SESSION_TOUCH_INTERVAL", "20m", "session.touch_interval"),
        ("BFF_KEY_RING", "shared", "key_ring"),
        ("BFF_KEY_ENCRYPTION_KEY", "c2hvcnQ=", "key_encryption_key"),
        ("BFF_OIDC_SCOPES", "profile", "oidc.scopes"),
        ("BFF_OIDC_PROVIDER", "okta", "oidc.provider"),
        ("BFF_LOG_FORMAT", "xml", "log_format"),
    ] {
        let mut vars = minimal();
        vars.insert(var.into(), value.into());
        let msg = error_of(vars);
        assert!(msg.starts_with(key) && msg.contains(var), "{var}={value}: {msg}");
    }
}

#[test]
fn shared_ring_without_redis_is_refused() {
    let mut vars = minimal();
    vars.insert("BFF_KEY_RING".into(), "redis".into());
    assert!(error_of(vars).contains("needs redis_url"));
}

#[test]
fn file_is_read_and_environment_overrides_it() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        r#"
public_url = "http://from-file:1"
redis_url = "redis://127.0.0.1:1"
key_encryption_key = "YmZmLXRlc3Qta2V5LWVuY3J5cHRpb24ta2V5LTAwMDA="
[session]
idle_timeout = "5m"
[oidc]
authority = "http://issuer.test"
client_id = "file-client"
client_secret = "s"
scopes = ["openid", "email"]
"#
    )
    .unwrap();
    let vars = env(&[("BFF_OIDC_CLIENT_ID", "env-client")]);
    let c = Config::load(Some(file.path()), &vars).unwrap();
    assert_eq!(c.public_url.as_str(), "http://from-file:1/");
    assert_eq!(c.session.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.oidc.client_id, "env-client");
    assert_eq!(c.oidc.scopes, ["openid", "email"]);
}

#[test]
fn unknown_file_key_is_named() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[session]\nidle_timout = \"5m\"").unwrap();
    let msg = Config::load(Some(file.path()), &minimal()).unwrap_err().to_string();
    assert_eq!(msg, "session.idle_timout: unknown key in the config file");
}

#[test]
fn presets_derive_the_authority() {
    let mut vars = minimal();
    vars.remove("BFF_OIDC_AUTHORITY");
    vars.insert("BFF_OIDC_PROVIDER".into(), "auth0".into());
    vars.insert("BFF_OIDC_DOMAIN".into(), "tenant.eu.auth0.com".into());
    let c = Config::from_env_map(&vars).unwrap();
    assert_eq!(c.oidc.authority.as_str(), "https://tenant.eu.auth0.com/");

    vars.insert("BFF_OIDC_PROVIDER".into(), "entra".into());
    assert!(error_of(vars.clone()).starts_with("oidc.tenant_id"));
    vars.insert("BFF_OIDC_TENANT_ID".into(), "contoso-id".into());
    let c = Config::from_env_map(&vars).unwrap();
    assert_eq!(c.oidc.authority.as_str(), "https://login.microsoftonline.com/contoso-id/v2.0");
}

#[test]
fn routes_come_from_the_file_or_inline_from_the_environment() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        r#"
[[routes]]
path = "/api/"
upstreams = ["http://127.0.0.1:9000"]

[[routes]]
path = "/api/v2/"
upstreams = ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
auth = "none"
strip_prefix = true
balance = "round-robin"
"#
    )
    .unwrap();
    let c = Config::load(Some(file.path()), &minimal()).unwrap();
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[0].path, "/api/v2/", "longest prefix first");
    assert_eq!(c.routes[0].rewrite, "/");
    assert_eq!(c.routes[1].auth, RouteAuth::Required, "required by default");

    let mut vars = minimal();
    vars.insert(
        "BFF_ROUTES".into(),
        r#"[{ path = "/x/", upstreams = ["http://127.0.0.1:1"], auth = "optional" }]"#.into(),
    );
    let c = Config::load(Some(file.path()), &vars).unwrap();
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].auth, RouteAuth::Optional);
}

#[test]
fn bad_routes_are_named() {
    for (routes, key) in [
        (r#"[{ upstreams = ["http://a:1"] }]"#, "routes[0].path"),
        (r#"[{ path = "/a/", upstreams = [] }]"#, "routes[0].upstreams"),
        (r#"[{ path = "/a/", upstreams = ["ftp://a"] }]"#, "routes[0].upstreams"),
        (r#"[{ path = "/a/", upstreams = ["http://a:1"], auth = "maybe" }]"#, "routes[0].auth"),
        (r#"[{ path = "/account/x", upstreams = ["http://a:1"] }]"#, "routes[0].path"),
        (r#"[{ path = "/a/", upstreams = ["http://a:1"], colour = "red" }]"#, "routes[0].colour"),
        ("not toml", "routes (BFF_ROUTES)"),
    ] {
        let mut vars = minimal();
        vars.insert("BFF_ROUTES".into(), routes.into());
        let msg = error_of(vars);
        assert!(msg.starts_with(key), "{routes}: {msg}");
    }
}

#[test]
fn trusted_proxies_are_addresses_and_blocks() {
    let mut vars = minimal();
    assert!(Config::from_env_map(&vars).unwrap().trusted_proxies.is_empty());
    vars.insert("BFF_TRUSTED_PROXIES".into(), "10.0.0.0/8, 192.168.1.7,::1".into());
    let c = Config::from_env_map(&vars).unwrap();
    assert!(c.is_trusted_proxy("10.2.3.4".parse().unwrap()));
    assert!(c.is_trusted_proxy("192.168.1.7".parse().unwrap()));
    assert!(c.is_trusted_proxy("::ffff:10.0.0.1".parse().unwrap()));
    assert!(c.is_trusted_proxy("::1".parse().unwrap()));
    assert!(!c.is_trusted_proxy("192.168.1.8".parse().unwrap()));
    vars.insert("BFF_TRUSTED_PROXIES".into(), "10.0.0.0/33".into());
    assert!(error_of(vars).starts_with("trusted_proxies (BFF_TRUSTED_PROXIES): \"10.0.0.0/33\""));
}

#[test]
fn server_limits_have_defaults_and_name_their_key_when_malformed() {
    let c = Config::from_env_map(&minimal()).unwrap();
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.max_connections, 10_000);
    assert_eq!(c.server.max_body_size, 10 << 20);
    let mut vars = minimal();
    vars.insert("BFF_SERVER_MAX_BODY_SIZE".into(), "64 KiB".into());
    assert_eq!(Config::from_env_map(&vars).unwrap().server.max_body_size, 64 << 10);
    vars.insert("BFF_SERVER_MAX_BODY_SIZE".into(), "lots".into());
    assert!(error_of(vars.clone()).starts_with("server.max_body_size (BFF_SERVER_MAX_BODY_SIZE)"));
    vars.remove("BFF_SERVER_MAX_BODY_SIZE");
    vars.insert("BFF_SERVER_MAX_CONNECTIONS".into(), "0".into());
    assert!(error_of(vars).starts_with("server.max_connections (BFF_SERVER_MAX_CONNECTIONS)"));
}

#[test]
fn body_and_write_timeouts_have_defaults_and_an_upper_bound() {
    let c = Config::from_env_map(&minimal()).unwrap();
    assert_eq!(c.server.body_timeout, Duration::from_secs(10));
    assert_eq!(c.server.write_timeout, Duration::from_secs(30));
    for env in ["BFF_SERVER_BODY_TIMEOUT", "BFF_SERVER_WRITE_TIMEOUT"] {
        let mut vars = minimal();
        vars.insert(env.into(), "1h".into());
        assert!(Config::from_env_map(&vars).is_ok(), "{env} = 1h");
        vars.insert(env.into(), "100y".into());
        let error = error_of(vars);
        assert!(error.contains(&format!("({env})")) && error.contains("at most"), "{error}");
    }
}

/// Every duration setting, with a value its bound allows: a value far past it (the review's
/// `100000000y`) is refused naming the key, where it was accepted and failed at the first use.
#[test]
fn every_duration_has_an_upper_bound_naming_its_key() {
    let durations = [
        ("BFF_KEY_ROTATION", "365d"),
        ("BFF_KEY_RING_REFRESH", "1h"),
        ("BFF_SESSION_ABSOLUTE_LIFETIME", "365d"),
        ("BFF_SESSION_LOGIN_TIMEOUT", "1h"),
        ("BFF_SESSION_CACHE_MAX_AGE", "1h"),
        ("BFF_REFRESH_SKEW", "1h"),
        ("BFF_REFRESH_LOCK_LEASE", "5m"),
        ("BFF_UPSTREAM_TIMEOUT", "1h"),
        ("BFF_SHUTDOWN_TIMEOUT", "1h"),
        ("BFF_SERVER_HEADER_READ_TIMEOUT", "1h"),
        ("BFF_SERVER_BODY_TIMEOUT", "1h"),
        ("BFF_SERVER_WRITE_TIMEOUT", "1h"),
        ("BFF_REDIS_TIMEOUT", "60s"),
        ("BFF_OIDC_CLOCK_SKEW", "1h"),
        ("BFF_OIDC_HTTP_TIMEOUT", "5m"),
        ("BFF_OIDC_JWKS_REFRESH", "7d"),
    ];
    let mut idle = minimal();
    idle.extend(env(&[("BFF_SESSION_ABSOLUTE_LIFETIME", "365d"), ("BFF_SESSION_IDLE_TIMEOUT", "30d")]));
    assert!(Config::from_env_map(&idle).is_ok());
    idle.insert("BFF_SESSION_IDLE_TIMEOUT".into(), "31d".into());
    assert!(error_of(idle).starts_with("session.idle_timeout (BFF_SESSION_IDLE_TIMEOUT): must be at most"));
    for (env, largest) in durations {
        let mut vars = minimal();
        // The idle timeout stays within the absolute lifetime whatever is tried here.
        vars.insert("BFF_SESSION_IDLE_TIMEOUT".into(), "2h".into());
        vars.insert(env.into(), largest.into());
        assert!(Config::from_env_map(&vars).is_ok(), "{env} = {largest}: {:?}", Config::from_env_map(&vars).err());
        for too_long in ["100000000y", "1000y"] {
            vars.insert(env.into(), too_long.into());
            let error = error_of(vars.clone());
            assert!(error.contains(&format!("({env})")) && error.contains("at most"), "{env} = {too_long}: {error}");
        }
    }
}

#[test]
fn redis_ca_file_must_be_a_readable_pem_for_a_rediss_url() {
    let mut ca = tempfile::NamedTempFile::new().unwrap();
    write!(ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
    let path = ca.path().display().to_string();
    let with = |url: &str, file: &str| {
        let mut vars = minimal();
        vars.extend(env(&[("BFF_REDIS_URL", url), ("BFF_REDIS_CA_FILE", file), ("BFF_KEY_RING", "local")]));
        vars
    };
    let c = Config::from_env_map(&with("rediss://127.0.0.1:6380", &path)).unwrap();
    assert!(matches!(c.store, StoreConfig::Redis { ca_pem: Some(ref pem), .. } if pem.starts_with(b"-----BEGIN")));
    assert!(
        error_of(with("redis://127.0.0.1:6379", &path))
            .contains("redis_ca_file (BFF_REDIS_CA_FILE): needs a rediss://")
    );
    assert!(
        error_of(with("rediss://127.0.0.1:6380", "/nonexistent/ca.pem"))
            .contains("redis_ca_file (BFF_REDIS_CA_FILE): cannot read")
    );
    let mut not_pem = tempfile::NamedTempFile::new().unwrap();
    write!(not_pem, "not a certificate").unwrap();
    let not_pem_path = not_pem.path().display().to_string();
    assert!(error_of(with("rediss://127.0.0.1:6380", &not_pem_path)).contains("holds no PEM certificate"));
}

#[test]
fn key_rotation_seals_and_metrics_listen_are_checked() {
    let c = Config::from_env_map(&minimal()).unwrap();
    assert_eq!(c.key_ring.rotation_seals, 1_000_000_000);
    assert_eq!(c.metrics_listen, None);
    let mut vars = minimal();
    vars.extend(env(&[("BFF_KEY_ROTATION_SEALS", "0")]));
    assert!(error_of(vars).contains("key_rotation_seals (BFF_KEY_ROTATION_SEALS)"));
    let mut vars = minimal();
    vars.extend(env(&[("BFF_METRICS_LISTEN", "localhost")]));
    assert!(error_of(vars).contains("metrics_listen (BFF_METRICS_LISTEN)"));
    let mut vars = minimal();
    vars.extend(env(&[("BFF_METRICS_LISTEN", "127.0.0.1:9464")]));
    assert_eq!(Config::from_env_map(&vars).unwrap().metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
}

#[test]
fn sentinels_are_a_redis_store_given_by_url_or_one_by_one() {
    let mut vars = minimal();
    vars.insert("BFF_KEY_ENCRYPTION_KEY".into(), KEK.into());
    vars.insert("BFF_REDIS_URL".into(), "redis+sentinel://s1:26379,s2:26380/cache/2".into());
    let c = Config::from_env_map(&vars).unwrap();
    assert!(
        matches!(c.store, StoreConfig::Redis { ref url, .. } if url == "redis+sentinel://s1:26379,s2:26380/cache/2")
    );
    assert_eq!(c.key_ring.mode, KeyRingMode::Redis);

    vars.remove("BFF_REDIS_URL");
    vars.insert("BFF_REDIS_SENTINELS".into(), "s1,s2:26380".into());
    let c = Config::from_env_map(&vars).unwrap();
    assert!(
        matches!(c.store, StoreConfig::Redis { ref url, .. } if url == "redis+sentinel://s1:26379,s2:26380/mymaster")
    );
    vars.insert("BFF_REDIS_SENTINEL_MASTER".into(), "cache".into());
    let c = Config::from_env_map(&vars).unwrap();
    assert!(matches!(c.store, StoreConfig::Redis { ref url, .. } if url.ends_with("/cache")));
    assert_eq!(c.redis_wait_replicas, 0);
}

#[test]
fn bad_sentinel_settings_name_their_key() {
    let mut vars = minimal();
    vars.insert("BFF_KEY_ENCRYPTION_KEY".into(), KEK.into());
    vars.insert("BFF_REDIS_URL".into(), "redis+sentinel://s1:26379,s2:26380".into());
    assert!(error_of(vars.clone()).starts_with("redis_url (BFF_REDIS_URL)"), "{}", error_of(vars.clone()));
    vars.insert("BFF_REDIS_SENTINELS".into(), "s1".into());
    assert!(error_of(vars.clone()).starts_with("redis_sentinels (BFF_REDIS_SENTINELS)"));
    vars.remove("BFF_REDIS_URL");
    vars.insert("BFF_REDIS_SENTINELS".into(), "s1:port".into());
    assert!(error_of(vars.clone()).contains("bad port"));
    vars.insert("BFF_REDIS_SENTINELS".into(), "s1".into());
    vars.insert("BFF_REDIS_WAIT_REPLICAS".into(), "many".into());
    assert!(error_of(vars).starts_with("redis_wait_replicas (BFF_REDIS_WAIT_REPLICAS)"));
}

/// The manual's configuration reference is generated from `KEYS`; the committed copy must be the
/// one `bff --config-reference` prints now (`just docs` rewrites it), so it cannot disagree with
/// `bff --help`.
#[test]
fn manual_configuration_reference_is_generated_from_keys() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/gateway/configuration-keys.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == markdown_reference(),
        "{} is not what `bff --config-reference` prints: run `just docs` to regenerate it",
        path.display()
    );
    for key in KEYS {
        assert!(committed.contains(&format!("| `{}` | `{}` |", key.path, key.env)), "{} missing", key.path);
    }
}

#[test]
fn sentinel_trust_is_read_and_refused_without_sentinel() {
    let mut ca = tempfile::NamedTempFile::new().unwrap();
    write!(ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
    let mut vars = minimal();
    vars.extend(env(&[
        ("BFF_KEY_RING", "local"),
        ("BFF_REDIS_URL", "rediss+sentinel://:pw@s1:26379/mymaster"),
        ("BFF_REDIS_CA_FILE", &ca.path().display().to_string()),
        ("BFF_REDIS_SENTINEL_USERNAME", "gateway"),
        ("BFF_REDIS_SENTINEL_PASSWORD", "sentinel-pw"),
        ("BFF_REDIS_SENTINEL_MASTERS", "10.0.0.5:6379,10.0.0.6:6379"),
    ]));
    let c = Config::from_env_map(&vars).unwrap();
    let StoreConfig::Redis { sentinel, ca_pem, .. } = c.store else { panic!("redis") };
    assert!(ca_pem.is_some());
    assert_eq!(sentinel.username.as_deref(), Some("gateway"));
    assert_eq!(sentinel.masters, vec![("10.0.0.5".to_owned(), 6379), ("10.0.0.6".to_owned(), 6379)]);

    vars.insert("BFF_REDIS_SENTINEL_MASTERS".into(), "10.0.0.5".into());
    assert!(error_of(vars.clone()).starts_with("redis_sentinel_masters (BFF_REDIS_SENTINEL_MASTERS)"));
    vars.remove("BFF_REDIS_SENTINEL_MASTERS");
    vars.remove("BFF_REDIS_SENTINEL_PASSWORD");
    assert!(error_of(vars.clone()).starts_with("redis_sentinel_password (BFF_REDIS_SENTINEL_PASSWORD)"));
    vars.remove("BFF_REDIS_SENTINEL_USERNAME");
    vars.remove("BFF_REDIS_CA_FILE");
    vars.insert("BFF_REDIS_URL".into(), "redis://127.0.0.1:6379".into());
    vars.insert("BFF_REDIS_SENTINEL_PASSWORD".into(), "sentinel-pw".into());
    assert!(error_of(vars).starts_with("redis_sentinel_password (BFF_REDIS_SENTINEL_PASSWORD): needs Sentinel"));
}

#[test]
fn the_touch_interval_follows_the_idle_timeout_and_stays_below_it() {
    let with = |pairs: &[(&str, &str)]| {
        let mut vars = minimal();
        vars.extend(env(pairs));
        vars
    };
    let c = Config::from_env_map(&with(&[("BFF_SESSION_IDLE_TIMEOUT", "5m")])).unwrap();
    assert_eq!(c.session.touch_interval, Duration::from_secs(30), "a tenth of a short idle timeout");
    let c = Config::from_env_map(&with(&[("BFF_SESSION_TOUCH_INTERVAL", "2m")])).unwrap();
    assert_eq!(c.session.touch_interval, Duration::from_secs(120));
    let msg = error_of(with(&[("BFF_SESSION_IDLE_TIMEOUT", "10m"), ("BFF_SESSION_TOUCH_INTERVAL", "9m58s")]));
    assert!(
        msg.starts_with("session.touch_interval (BFF_SESSION_TOUCH_INTERVAL): with session.cache_max_age"),
        "{msg}"
    );
    assert!(
        Config::from_env_map(&with(&[
            ("BFF_SESSION_IDLE_TIMEOUT", "10m"),
            ("BFF_SESSION_TOUCH_INTERVAL", "9m58s"),
            ("BFF_SESSION_CACHE_MAX_AGE", "off"),
        ]))
        .is_ok(),
        "without the node cache only the idle timeout bounds it"
    );
}

#[test]
fn a_cluster_url_is_a_redis_store_and_bad_ones_name_their_key() {
    let with = |pairs: &[(&str, &str)]| {
        let mut vars = minimal();
        vars.extend(env(pairs));
        vars.insert("BFF_KEY_RING".into(), "local".into());
        vars
    };
    let c = Config::from_env_map(&with(&[("BFF_REDIS_URL", "redis+cluster://a:7000,b:7001")])).unwrap();
    assert!(matches!(c.store, StoreConfig::Redis { ref url, .. } if url == "redis+cluster://a:7000,b:7001"));
    for bad in ["redis+cluster://", "redis+cluster://a:x", "redis+cluster://a:7000/2"] {
        let error = error_of(with(&[("BFF_REDIS_URL", bad)]));
        assert!(error.starts_with("redis_url (BFF_REDIS_URL)"), "{bad}: {error}");
    }
    let error = error_of(with(&[("BFF_REDIS_URL", "redis+cluster://a:7000"), ("BFF_REDIS_KEY_PREFIX", "{bff}")]));
    assert!(error.starts_with("redis_key_prefix (BFF_REDIS_KEY_PREFIX)") && error.contains("hash tag"), "{error}");
    // On one server a brace in the prefix is only a character.
    assert!(
        Config::from_env_map(&with(&[("BFF_REDIS_URL", "redis://a:6379"), ("BFF_REDIS_KEY_PREFIX", "{bff}")])).is_ok()
    );
    let mut ca = tempfile::NamedTempFile::new().unwrap();
    write!(ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
    let path = ca.path().display().to_string();
    let c = Config::from_env_map(&with(&[("BFF_REDIS_URL", "rediss+cluster://a:7000"), ("BFF_REDIS_CA_FILE", &path)]))
        .unwrap();
    assert!(matches!(c.store, StoreConfig::Redis { ca_pem: Some(_), .. }));
}
