//! Looks a key up: the environment variable first, then the TOML file, then the default from
//! [`KEYS`](super::KEYS). Typed getters turn any problem into a [`ConfigError`] naming the key.

use std::collections::HashMap;
use std::time::Duration;

use super::ConfigError;
use super::keys::{self, KEYS, Key};
use super::unknown_env;

/// The longest duration any setting may have (ten years).
const DURATION_MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

pub(super) struct Source<'a> {
    file: HashMap<String, String>,
    env: &'a HashMap<String, String>,
    /// The `[[routes]]` array, read by `routes.rs` (arrays of tables have no environment form).
    pub routes: Vec<toml::Value>,
}

impl<'a> Source<'a> {
    /// Flattens the TOML table into dotted keys and refuses keys nobody reads (typos), in the
    /// file and among the `BFF_*` variables.
    pub(super) fn new(table: toml::Table, env: &'a HashMap<String, String>) -> Result<Self, ConfigError> {
        unknown_env::refuse_unknown(env)?;
        let mut table = table;
        let from_file = table.remove("routes");
        // BFF_ROUTES holds the same array inline, e.g.
        // [{ path = "/api/", upstreams = ["http://api:9000"], auth = "required" }]
        let from_env = match env.get("BFF_ROUTES").filter(|v| !v.is_empty()) {
            None => None,
            Some(text) => Some(
                format!("routes = {text}")
                    .parse::<toml::Table>()
                    .map_err(|e| ConfigError::Route {
                        key: "routes (BFF_ROUTES)".into(),
                        reason: e.message().to_owned(),
                    })?
                    .remove("routes")
                    .expect("parsed above"),
            ),
        };
        let routes = match from_env.or(from_file) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items,
            Some(_) => return Err(ConfigError::UnknownKey { key: "routes (must be [[routes]] tables)".into() }),
        };
        let mut file = HashMap::new();
        flatten("", table, &mut file)?;
        Ok(Source { file, env, routes })
    }

    fn key(path: &str) -> &'static Key {
        keys::find(path).unwrap_or_else(|| panic!("configuration key {path} is not listed in KEYS"))
    }

    /// The value as set (environment, then file), ignoring empty environment values.
    pub(super) fn string(&self, path: &str) -> Option<String> {
        let key = Self::key(path);
        self.env.get(key.env).filter(|v| !v.is_empty()).cloned().or_else(|| self.file.get(path).cloned())
    }

    /// The value as set, or the key's default.
    pub(super) fn string_or(&self, path: &str) -> String {
        self.string(path).or_else(|| Self::key(path).default.map(str::to_owned)).unwrap_or_default()
    }

    pub(super) fn parse<T>(&self, path: &str, f: impl FnOnce(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        f(&self.string_or(path)).map_err(|reason| self.invalid(path, reason))
    }

    pub(super) fn require<T>(
        &self,
        path: &str,
        hint: &'static str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.string(path) {
            None => Err(self.missing(path, hint)),
            Some(v) => f(&v).map_err(|reason| self.invalid(path, reason)),
        }
    }

    /// A duration such as `20m`, `7d`, `1h 30m`, or a bare number of seconds.
    pub(super) fn duration(&self, path: &str) -> Result<Duration, ConfigError> {
        self.parse(path, |s| {
            let d = match s.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => {
                    humantime::parse_duration(s).map_err(|e| format!("not a duration ({e}); try 30s, 20m, 7d"))?
                }
            };
            if d.is_zero() {
                return Err("must be greater than zero".to_owned());
            }
            // The bound of last resort, for a duration read without one of its own: what no
            // setting needs, and what neither `Instant` arithmetic nor a Redis expiry overflows.
            if d > DURATION_MAX {
                return Err(format!("must be at most {}", humantime::format_duration(DURATION_MAX)));
            }
            Ok(d)
        })
    }

    /// A [`Self::duration`] no longer than `max`.
    pub(super) fn duration_at_most(&self, path: &str, max: Duration) -> Result<Duration, ConfigError> {
        let d = self.duration(path)?;
        if d > max {
            return Err(self.invalid(path, format!("must be at most {}", humantime::format_duration(max))));
        }
        Ok(d)
    }

    pub(super) fn invalid(&self, path: &str, reason: String) -> ConfigError {
        let key = Self::key(path);
        ConfigError::Invalid { key: key.path, env: key.env, reason }
    }

    pub(super) fn missing(&self, path: &str, hint: &'static str) -> ConfigError {
        let key = Self::key(path);
        ConfigError::Missing { key: key.path, env: key.env, hint }
    }
}

fn flatten(prefix: &str, table: toml::Table, out: &mut HashMap<String, String>) -> Result<(), ConfigError> {
    for (name, value) in table {
        let path = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
        let text = match value {
            toml::Value::Table(inner) => {
                flatten(&path, inner, out)?;
                continue;
            }
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        };
        if !KEYS.iter().any(|k| k.path == path) {
            return Err(ConfigError::UnknownKey { key: path });
        }
        out.insert(path, text);
    }
    Ok(())
}
