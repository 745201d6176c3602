//! The oldest Redis the gateway can use: 7.0.
//!
//! The session read runs as a script declared with Redis 7's `#!lua flags=` line (so that a
//! demoted master refuses it, see `session::redis`), and Redis 7 replicates a script's effects
//! rather than the script, which is what keeps a read from being a write. An older server would
//! refuse every session read with a compile error; the link checks the version when it connects
//! instead, and treats an older server as one it cannot use: the node stays not ready (503s)
//! with a log line naming the version, and connects by itself once the server is upgraded.

/// The first Redis release the gateway runs on.
pub const OLDEST: (u32, u32) = (7, 0);

/// Checks `INFO server`'s `redis_version`; the error names the version found. A server that
/// does not say its version (a proxy that hides it) is given the benefit of the doubt.
pub fn check(info: &str, address: &str) -> redis::RedisResult<()> {
    let Some(version) = info.lines().find_map(|line| line.strip_prefix("redis_version:")).map(str::trim) else {
        return Ok(());
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found >= OLDEST {
        return Ok(());
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::Client,
        "redis too old",
        format!(
            "the redis server at {address} is version {version}; bff needs Redis {}.{} or later",
            OLDEST.0, OLDEST.1
        ),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_6_is_refused_naming_its_version_and_7_or_later_is_taken() {
        let refused = check("# Server\r\nredis_version:6.2.14\r\nrun_id:abc\r\n", "10.0.0.1:6379").unwrap_err();
        assert!(refused.to_string().contains("version 6.2.14"), "{refused}");
        assert!(refused.to_string().contains("Redis 7.0 or later"), "{refused}");
        for fine in ["redis_version:7.0.15", "redis_version:7.2.4", "redis_version:8.0.0", "run_id:abc"] {
            assert!(check(fine, "x").is_ok(), "{fine}");
        }
    }
}
