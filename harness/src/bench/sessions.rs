//! Many active sessions, for the curve of cost against sessions. The first [`LOGINS`] are each
//! made by a full login as a browser makes it (the gateway's login redirect, the mock issuer's
//! authorize, the callback and its code exchange), many at a time over one pooled HTTP client,
//! cookies carried by hand. The rest, up to a million, would take longer to log in than to
//! measure: `bff seed-sessions` (the gateway binary under test, configured as its nodes are)
//! seals and stores them with the gateway's own code, as a login would. Nothing is written into
//! Redis by this crate, and it knows nothing of the record format.
//! Then `wrk` spreads its requests over the sessions with a Lua script that picks a cookie per
//! request from a file: uniformly, or by a Zipf distribution (s = 1).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;

use super::{Access, BenchError};

/// Sessions made by full logins before the rest are seeded.
pub const LOGINS: usize = 1000;

/// How to run `bff seed-sessions` as the benchmark's nodes are configured.
pub struct Seeding<'a> {
    pub binary: &'a Path,
    pub env: Vec<(&'static str, String)>,
}

impl Seeding<'_> {
    /// `count` more sessions, sealed and stored by the gateway binary; their cookies.
    pub async fn seed(&self, count: usize, dir: &Path) -> Result<Vec<String>, BenchError> {
        let out = dir.join("seeded-cookies.txt");
        let mut cmd = tokio::process::Command::new(self.binary);
        cmd.arg("seed-sessions").arg("--count").arg(count.to_string()).arg("--out").arg(&out);
        cmd.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        let done = cmd.output().await.map_err(|e| BenchError(format!("bff seed-sessions: {e}")))?;
        if !done.status.success() {
            return Err(BenchError(format!(
                "bff seed-sessions exited with {}: {}",
                done.status,
                String::from_utf8_lossy(&done.stderr).lines().last().unwrap_or_default()
            )));
        }
        let text = std::fs::read_to_string(&out).map_err(|e| BenchError(format!("seeded cookies: {e}")))?;
        let cookies: Vec<String> = text.lines().map(str::to_owned).collect();
        if cookies.len() != count {
            return Err(BenchError(format!("bff seed-sessions wrote {} cookies of {count}", cookies.len())));
        }
        Ok(cookies)
    }
}

/// The `name=value` of every `Set-Cookie` in `response`.
fn set_cookies(response: &reqwest::Response) -> impl Iterator<Item = String> + '_ {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter(|pair| pair.contains('=') && !pair.ends_with('='))
        .map(|pair| pair.trim().to_owned())
}

fn location(response: &reqwest::Response, step: &str) -> Result<String, BenchError> {
    if !response.status().is_redirection() {
        return Err(BenchError(format!("{step} answered {}", response.status())));
    }
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| BenchError(format!("{step}: a redirect without Location")))
}

/// One login on `base`; returns the `Cookie` header value that carries its session.
async fn log_in(client: &reqwest::Client, base: &str, user: usize) -> Result<String, BenchError> {
    let send = |url: String, cookie: Option<String>| {
        let mut request = client.get(url);
        if let Some(cookie) = cookie {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        request.send()
    };
    let transport = |step: &'static str| move |e: reqwest::Error| BenchError(format!("{step}: {e}"));
    let start = send(format!("{base}/account/login"), None).await.map_err(transport("login"))?;
    let login_state = set_cookies(&start).collect::<Vec<_>>().join("; ");
    let mut authorize = url::Url::parse(&location(&start, "login")?).map_err(|e| BenchError(e.to_string()))?;
    authorize.query_pairs_mut().append_pair("login_hint", &format!("bench-user-{user}"));
    let issued = send(authorize.into(), None).await.map_err(transport("authorize"))?;
    let callback = location(&issued, "authorize")?;
    let done = send(callback, Some(login_state)).await.map_err(transport("callback"))?;
    let session = set_cookies(&done).find(|c| c.starts_with("bff-session="));
    session.ok_or_else(|| BenchError(format!("callback answered {} without a session cookie", done.status())))
}

/// `count` sessions on `base`, `concurrency` logins at a time; `progress` hears how many are done.
pub async fn log_in_many(
    base: &str,
    count: usize,
    concurrency: usize,
    progress: &(dyn Fn(usize) + Send + Sync),
) -> Result<Vec<String>, BenchError> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| BenchError(e.to_string()))?;
    let mut logins =
        futures::stream::iter(0..count).map(|user| log_in(&client, base, user)).buffer_unordered(concurrency);
    let mut cookies = Vec::with_capacity(count);
    while let Some(cookie) = logins.next().await {
        cookies.push(cookie?);
        if cookies.len() % 1000 == 0 {
            progress(cookies.len());
        }
    }
    Ok(cookies)
}

/// How a wrk script picks the cookie of each request.
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    /// As a curve's requests do.
    As(Access),
    /// Each thread walks the list in turn from its own start: every session asked once in the
    /// first `len` requests (a warm-up).
    InTurn,
}

/// The Lua that sets up the picking (after `cookies` is read) and the expression that picks.
fn picking(pick: Pick) -> (&'static str, &'static str) {
    match pick {
        Pick::As(Access::Uniform) => ("", "cookies[math.random(#cookies)]"),
        // Draws made once per thread at start (cumulative weights of 1/k, a binary search for
        // each uniform draw), then one picked at random per request: a request costs the load
        // generator what a uniform pick costs, so that the two curves differ only in the gateway.
        Pick::As(Access::Zipf) => (
            r#"local cumulative, total = {}, 0
for k = 1, #cookies do total = total + 1 / k; cumulative[k] = total end
local draws = {}
for i = 1, 1048576 do
  local u, lo, hi = math.random() * total, 1, #cookies
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cumulative[mid] < u then lo = mid + 1 else hi = mid end
  end
  draws[i] = cookies[lo]
end
cumulative = nil"#,
            "draws[math.random(#draws)]",
        ),
        Pick::InTurn => (
            r#"local turn = 0
local function in_turn()
  turn = turn + 1
  return cookies[((turn + start) % #cookies) + 1]
end"#,
            "in_turn()",
        ),
    }
}

/// Writes the cookies one a line and a wrk script that sends each request with one of them,
/// picked as `pick` says; returns the script's path.
pub fn wrk_script(dir: &Path, cookies: &[String], pick: Pick) -> std::io::Result<std::path::PathBuf> {
    let list = dir.join("cookies.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&list)?);
    for cookie in cookies {
        writeln!(file, "{cookie}")?;
    }
    file.flush()?;
    let (setup, expression) = picking(pick);
    let script = dir.join("sessions.lua");
    std::fs::write(
        &script,
        format!(
            r#"local cookies = {{}}
for line in io.lines("{list}") do cookies[#cookies + 1] = line end
{setup}
local thread_seed = 0
function setup(thread)
  thread_seed = thread_seed + 1
  thread:set("seed", thread_seed)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
  start = math.floor(#cookies * (seed - 1) / 2)
end
function request()
  return wrk.format("GET", nil, {{ ["Cookie"] = {expression}, ["X-CSRF"] = "1" }})
end
"#,
            list = list.display()
        ),
    )?;
    Ok(script)
}

/// The idle timeout and touch interval of the benchmark's gateways (the gateway's defaults).
const IDLE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// The store key of the session a `name=value` cookie names, as the gateway derives it
/// (`bff:s:` and the SHA-256 of the session id, in hex).
fn store_key(cookie: &str) -> Option<String> {
    use base64::Engine;
    let value = cookie.split_once('=')?.1;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value).ok()?;
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &id);
    Some(format!("bff:s:{}", hex::encode(hash.as_ref())))
}

/// Gives the sessions the expiries of sessions in steady use: each as if last pushed back at a
/// random moment within the last touch interval (`idle_timeout` less up to one touch interval
/// left). Sessions made just before a point would otherwise all be due in one touch interval
/// from now, and a point measured within it would see no touch at all: in steady state, with
/// `N` sessions in use, `N / touch_interval` of them fall due every second, each one read (or
/// touched) in Redis. `nodes` are the Redis servers (every primary of a cluster: a key's
/// `PEXPIRE` is sent to each, and the one that holds it applies it).
pub async fn age_as_in_steady_use(nodes: &[std::net::SocketAddr], cookies: &[String]) -> Result<(), BenchError> {
    use rand::Rng;
    let mut rng = rand::rng();
    let ttls: Vec<(String, u64)> = cookies
        .iter()
        .filter_map(|cookie| {
            let left = IDLE_TIMEOUT.as_millis() as u64 - rng.random_range(0..TOUCH_INTERVAL.as_millis() as u64);
            Some((store_key(cookie)?, left))
        })
        .collect();
    if ttls.len() != cookies.len() {
        return Err(BenchError("sessions: a cookie that names no session id".into()));
    }
    for node in nodes {
        let client = redis::Client::open(format!("redis://{node}")).map_err(|e| BenchError(e.to_string()))?;
        let mut conn =
            client.get_multiplexed_async_connection().await.map_err(|e| BenchError(format!("redis {node}: {e}")))?;
        for chunk in ttls.chunks(1000) {
            let mut pipe = redis::pipe();
            for (key, left) in chunk {
                // A key on another shard answers MOVED: ignored, its own shard applies it.
                pipe.cmd("PEXPIRE").arg(key).arg(left).ignore();
            }
            let _: Result<(), _> = pipe.query_async(&mut conn).await;
        }
    }
    Ok(())
}
