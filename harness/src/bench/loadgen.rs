//! The load generators: `wrk` (closed loop, keep-alive, fixed connections) for throughput, and
//! `oha` with latency correction at a fixed rate (open loop) for latency without coordinated
//! omission. Both are real tools run as child processes; this module only builds their command
//! lines and reads their output.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// What one load run measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadResult {
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx/3xx responses and socket errors.
    pub errors: u64,
    /// CPU time (user + system) the measured process tree spent per request, in µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_request: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
#[error("{tool}: {reason}")]
pub struct LoadError {
    pub tool: &'static str,
    pub reason: String,
}

/// One target: a URL and the headers a logged-in browser would send.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// A wrk Lua script (`-s`) that builds the requests, when they vary.
    pub script: Option<std::path::PathBuf>,
}

fn parse_duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    number.trim().parse::<f64>().ok().map(|v| v * factor)
}

/// Closed-loop load with `wrk -t2 -cN -dD --latency`.
pub async fn wrk(target: &Target, connections: u32, duration: Duration) -> Result<LoadResult, LoadError> {
    let mut cmd = Command::new("wrk");
    cmd.arg("-t2").arg(format!("-c{connections}")).arg(format!("-d{}s", duration.as_secs().max(1))).arg("--latency");
    for (name, value) in &target.headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    if let Some(script) = &target.script {
        cmd.arg("-s").arg(script);
    }
    cmd.arg(&target.url).stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd
        .output()
        .await
        .map_err(|e| LoadError { tool: "wrk", reason: format!("cannot run wrk ({e}); apt-get install wrk") })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(LoadError { tool: "wrk", reason: format!("{}{}", text, String::from_utf8_lossy(&out.stderr)) });
    }
    let mut result = LoadResult::default();
    for line in text.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["50%", v] => result.p50_ms = parse_duration_ms(v).unwrap_or_default(),
            ["99%", v] => result.p99_ms = parse_duration_ms(v).unwrap_or_default(),
            ["Requests/sec:", v] => result.requests_per_s = v.parse().unwrap_or_default(),
            [n, "requests", "in", ..] => result.requests = n.parse().unwrap_or_default(),
            ["Non-2xx", "or", "3xx", "responses:", n] => result.errors += n.parse::<u64>().unwrap_or_default(),
            ["Socket", "errors:", rest @ ..] => {
                result.errors += rest.iter().filter_map(|t| t.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>()
            }
            _ => {}
        }
    }
    if result.requests == 0 {
        return Err(LoadError { tool: "wrk", reason: format!("no request completed:\n{text}") });
    }
    Ok(result)
}

/// The `oha` binary: `$OHA`, then PATH, then `/opt/oha/bin/oha`.
pub fn oha_binary() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("OHA") {
        return Some(path.into());
    }
    crate::cluster::process::on_path("oha").or_else(|| {
        let opt = std::path::PathBuf::from("/opt/oha/bin/oha");
        opt.is_file().then_some(opt)
    })
}

/// Open-loop load at `rate` requests/s with `oha --latency-correction`.
pub async fn oha_open_loop(
    target: &Target,
    rate: f64,
    connections: u32,
    duration: Duration,
) -> Result<LoadResult, LoadError> {
    let binary = oha_binary().ok_or(LoadError { tool: "oha", reason: "not installed (cargo install oha)".into() })?;
    let mut cmd = Command::new(binary);
    cmd.arg("--no-tui")
        .arg("--output-format")
        .arg("json")
        .arg("--latency-correction")
        .arg("-z")
        .arg(format!("{}s", duration.as_secs().max(1)))
        .arg("-q")
        .arg(format!("{}", rate.max(1.0) as u64))
        .arg("-c")
        .arg(connections.to_string());
    for (name, value) in &target.headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(&target.url).stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd.output().await.map_err(|e| LoadError { tool: "oha", reason: e.to_string() })?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| LoadError {
        tool: "oha",
        reason: format!(
            "unreadable output ({e}): {}",
            String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or_default()
        ),
    })?;
    let pct = |p: &str| json["latencyPercentiles"][p].as_f64().unwrap_or_default() * 1000.0;
    let ok: u64 = json["statusCodeDistribution"]
        .as_object()
        .map(|m| m.iter().filter(|(code, _)| code.starts_with('2')).filter_map(|(_, n)| n.as_u64()).sum())
        .unwrap_or_default();
    let total: u64 = json["statusCodeDistribution"]
        .as_object()
        .map(|m| m.values().filter_map(|n| n.as_u64()).sum())
        .unwrap_or_default();
    let errors: u64 =
        json["errorDistribution"].as_object().map(|m| m.values().filter_map(|n| n.as_u64()).sum()).unwrap_or_default();
    Ok(LoadResult {
        requests: total,
        requests_per_s: json["summary"]["requestsPerSec"].as_f64().unwrap_or_default(),
        p50_ms: pct("p50"),
        p99_ms: pct("p99"),
        errors: errors + total.saturating_sub(ok),
        cpu_us_per_request: None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_in_wrk_units() {
        assert_eq!(super::parse_duration_ms("250.00us"), Some(0.25));
        assert_eq!(super::parse_duration_ms("1.50ms"), Some(1.5));
        assert_eq!(super::parse_duration_ms("2.00s"), Some(2000.0));
    }
}
