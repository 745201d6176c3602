//! `[[routes]]`: path prefixes proxied to upstreams, like YARP's routes and clusters.
//!
//! ```toml
//! [[routes]]
//! path = "/api/"                         # path prefix
//! upstreams = ["http://127.0.0.1:9000"]  # one or more; spread across them
//! auth = "required"                      # required | optional | none
//! strip_prefix = false                   # true: /api/x reaches the upstream as /x
//! rewrite = "/v2/"                       # or: replace the prefix by this
//! balance = "random"                     # random | round-robin
//! timeout = "10s"                        # default: upstream_timeout
//! ```

use std::time::Duration;

use url::Url;

use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    /// A session is needed: without one, 401.
    Required,
    /// With a session the bearer token is added; without one the request goes anonymous.
    Optional,
    /// Never looks at the session; no CSRF check.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    Random,
    RoundRobin,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Path prefix, e.g. `/api/`.
    pub path: String,
    pub upstreams: Vec<Url>,
    pub auth: RouteAuth,
    /// What replaces `path` before forwarding (`path` itself when unset).
    pub rewrite: String,
    pub balance: Balance,
    pub timeout: Option<Duration>,
}

fn invalid(index: usize, field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Route { key: format!("routes[{index}].{field}"), reason: reason.into() }
}

pub(super) fn parse(items: &[toml::Value], account_prefix: &str) -> Result<Vec<Route>, ConfigError> {
    let mut routes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let table = item.as_table().ok_or_else(|| invalid(i, "", "must be a table"))?;
        for key in table.keys() {
            if !["path", "upstreams", "auth", "strip_prefix", "rewrite", "balance", "timeout"].contains(&key.as_str()) {
                return Err(invalid(i, key, "unknown key"));
            }
        }
        let path = table
            .get("path")
            .and_then(|v| v.as_str())
            .ok_or_else(|| invalid(i, "path", "missing (a path prefix such as /api/)"))?;
        if !path.starts_with('/') {
            return Err(invalid(i, "path", "must start with /"));
        }
        if path.starts_with(account_prefix) || ["/health", "/ready", "/metrics"].iter().any(|p| path.starts_with(p)) {
            return Err(invalid(i, "path", format!("{path} overlaps the gateway's own endpoints")));
        }
        let upstreams = match table.get("upstreams") {
            Some(toml::Value::Array(list)) if !list.is_empty() => list
                .iter()
                .map(|v| {
                    let text = v.as_str().ok_or_else(|| invalid(i, "upstreams", "must be URLs"))?;
                    let url = Url::parse(text).map_err(|e| invalid(i, "upstreams", format!("{text}: {e}")))?;
                    if url.scheme() != "http" || url.host().is_none() {
                        return Err(invalid(i, "upstreams", format!("{text}: must be an http:// URL")));
                    }
                    Ok(url)
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(invalid(i, "upstreams", "missing (a list of one or more URLs)")),
        };
        let auth = match table.get("auth").and_then(|v| v.as_str()).unwrap_or("required") {
            "required" => RouteAuth::Required,
            "optional" => RouteAuth::Optional,
            "none" => RouteAuth::None,
            other => return Err(invalid(i, "auth", format!("expected required, optional or none, got {other:?}"))),
        };
        let strip = table
            .get("strip_prefix")
            .map(|v| v.as_bool().ok_or_else(|| invalid(i, "strip_prefix", "must be true or false")))
            .transpose()?
            .unwrap_or(false);
        let rewrite = match (table.get("rewrite").and_then(|v| v.as_str()), strip) {
            (Some(_), true) => return Err(invalid(i, "rewrite", "set either rewrite or strip_prefix")),
            (Some(r), false) if r.starts_with('/') => r.to_owned(),
            (Some(_), false) => return Err(invalid(i, "rewrite", "must start with /")),
            (None, true) => "/".to_owned(),
            (None, false) => path.to_owned(),
        };
        let balance = match table.get("balance").and_then(|v| v.as_str()).unwrap_or("random") {
            "random" => Balance::Random,
            "round-robin" => Balance::RoundRobin,
            other => return Err(invalid(i, "balance", format!("expected random or round-robin, got {other:?}"))),
        };
        let timeout = match table.get("timeout").and_then(|v| v.as_str()) {
            None => None,
            Some(t) => Some(humantime::parse_duration(t).map_err(|e| invalid(i, "timeout", e.to_string()))?),
        };
        routes.push(Route { path: path.to_owned(), upstreams, auth, rewrite, balance, timeout });
    }
    // Longest prefix first, so matching takes the first hit.
    routes.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
    Ok(routes)
}
