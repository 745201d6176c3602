//! Many active sessions, for the curve of cost against sessions: each one made by a full login
//! as a browser makes it (the gateway's login redirect, the mock issuer's authorize, the
//! callback and its code exchange), many at a time over one pooled HTTP client, cookies carried
//! by hand. Nothing is written into Redis behind the gateway's back and the gateway has no
//! endpoint for it: every session is sealed by the gateway under its key ring, like any other.
//! Then `wrk` spreads its requests uniformly over the sessions with a Lua script that picks a
//! cookie per request from a file.

use std::io::Write;
use std::path::Path;

use futures::StreamExt;

use super::BenchError;

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

/// Writes the cookies one a line and a wrk script that sends each request with one of them,
/// picked uniformly at random; returns the script's path.
pub fn wrk_script(dir: &Path, cookies: &[String]) -> std::io::Result<std::path::PathBuf> {
    let list = dir.join("cookies.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&list)?);
    for cookie in cookies {
        writeln!(file, "{cookie}")?;
    }
    file.flush()?;
    let script = dir.join("sessions.lua");
    std::fs::write(
        &script,
        format!(
            r#"local cookies = {{}}
for line in io.lines("{}") do cookies[#cookies + 1] = line end
local thread_seed = 0
function setup(thread)
  thread_seed = thread_seed + 1
  thread:set("seed", thread_seed)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
end
function request()
  return wrk.format("GET", nil, {{ ["Cookie"] = cookies[math.random(#cookies)], ["X-CSRF"] = "1" }})
end
"#,
            list.display()
        ),
    )?;
    Ok(script)
}
