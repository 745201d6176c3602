//! [`LuaScript`]: a Lua script sent to Redis by its digest, so that a command on the hot path
//! (the session read) carries 40 hex digits on the wire instead of the script's body.
//!
//! `EVALSHA` answers `NOSCRIPT` from a server that has not seen the script yet (a new or
//! restarted server, a replica just promoted); the call is then sent once more as `EVAL` with the
//! body, which also loads it for the next calls. Either way it is one command to Redis per call in
//! steady state. The redis crate's `Script` does the same, behind a feature this build does not
//! enable; this keeps the one retry path of [`RedisLink`](super::RedisLink) around both attempts.

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use redis::ToRedisArgs;

pub struct LuaScript {
    body: &'static str,
    /// SHA-1 of the body, lowercase hex: the name Redis keeps the script under.
    sha: String,
}

/// One call of a script: by digest first, with the body when the server answers `NOSCRIPT`.
pub struct ScriptCall {
    pub(super) by_digest: redis::Cmd,
    pub(super) with_body: redis::Cmd,
}

impl LuaScript {
    pub fn new(body: &'static str) -> Self {
        LuaScript { body, sha: hex::encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, body.as_bytes())) }
    }

    /// The call with `keys` (`KEYS[1]`…) and then `args` (`ARGV[1]`…).
    pub fn call(&self, keys: &[&str], args: impl ToRedisArgs) -> ScriptCall {
        let build = |verb: &str, script: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(script).arg(keys.len()).arg(keys).arg(&args);
            cmd
        };
        ScriptCall { by_digest: build("EVALSHA", &self.sha), with_body: build("EVAL", self.body) }
    }
}

/// Whether the server answered `NOSCRIPT` (to a command, or to one in a pipeline): it has not
/// seen the script, and the call must be sent with its body.
pub(super) fn no_script(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        || error.clone().into_server_errors().is_some_and(|errors| errors.iter().any(|(_, e)| e.code() == "NOSCRIPT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_one_redis_names_the_script_by() {
        // `redis-cli SCRIPT LOAD "return 1"` answers this digest.
        assert_eq!(LuaScript::new("return 1").sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
