//! A headless Chromium driven over WebDriver: `chromedriver` (Debian's `chromium-driver`) on a
//! port of its own choosing, one fresh profile per browser, and screenshots saved per stage.
//!
//! WebDriver through `fantoccini` rather than the DevTools protocol through `chromiumoxide`:
//! it shares hyper and rustls with the rest of the workspace and compiles in a fraction of the
//! time, and clicking, reading the page, cookies (HttpOnly ones included), the back button and
//! screenshots are all the tests need.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long chromedriver may take to say which port it listens on.
const DRIVER_START: Duration = Duration::from_secs(20);

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
}

/// Starts chromedriver on a port of its choosing; returns it and the port, or what it said.
async fn start_driver(path: &Path) -> Result<(Child, u16), String> {
    let mut driver = Command::new(path)
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let mut lines = BufReader::new(driver.stdout.take().expect("piped stdout")).lines();
    let mut said = Vec::new();
    let deadline = Instant::now() + DRIVER_START;
    let port = loop {
        let line = match tokio::time::timeout_at(deadline.into(), lines.next_line()).await {
            Err(_) => return Err(format!("no port after {DRIVER_START:?}: {said:?}")),
            Ok(Ok(Some(line))) => line,
            Ok(_) => {
                let mut errors = String::new();
                if let Some(mut stderr) = driver.stderr.take() {
                    let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut errors).await;
                }
                let status = driver.wait().await.map(|s| s.to_string()).unwrap_or_default();
                return Err(format!("exited ({status}) before it listened: {said:?} {errors:?}"));
            }
        };
        if let Some(port) = line.split("started successfully on port ").nth(1) {
            break port.trim_end_matches('.').trim().parse::<u16>().map_err(|e| format!("{line:?}: {e}"))?;
        }
        said.push(line);
    };
    // Its output must keep draining, or chromedriver blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    if let Some(stderr) = driver.stderr.take() {
        let mut errors = BufReader::new(stderr).lines();
        tokio::spawn(async move { while let Ok(Some(_)) = errors.next_line().await {} });
    }
    Ok((driver, port))
}

/// A browser session; the driver (and the browser with it) stops when dropped.
pub struct Browser {
    pub client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium. `trusted_spki` is the base64 SHA-256 of a
    /// certificate's public key that Chromium is to accept for https (a certificate made by the
    /// test, trusted for this browser only).
    pub async fn start(trusted_spki: Option<&str>) -> Browser {
        let driver_path = on_path("chromedriver")
            .expect("chromedriver is not on PATH: run `just setup` (apt-get install chromium chromium-driver)");
        // A chromedriver that exits before it listens is started once more, and what it said is
        // shown; a second failure ends the test.
        let (driver, port) = match start_driver(&driver_path).await {
            Ok(started) => started,
            Err(first) => {
                eprintln!("chromedriver did not start, once more: {first}");
                start_driver(&driver_path).await.unwrap_or_else(|second| panic!("chromedriver did not start: {second}"))
            }
        };

        let profile = tempfile::tempdir().expect("a profile directory");
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1000,1250".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if let Some(spki) = trusted_spki {
            args.push(format!("--ignore-certificate-errors-spki-list={spki}"));
        }
        let mut options = serde_json::json!({ "args": args });
        // Debian's /usr/bin/chromium is a wrapper script; the browser itself lives here.
        if Path::new("/usr/lib/chromium/chromium").is_file() {
            options["binary"] = "/usr/lib/chromium/chromium".into();
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser { client, _driver: driver, _profile: profile }
    }
}

/// Screenshots of one test, numbered in the order taken, in `target/e2e/<test>/`.
pub struct Screenshots {
    dir: PathBuf,
    taken: usize,
}

impl Screenshots {
    pub fn new(test: &str) -> Screenshots {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target/tmp has a parent").to_owned();
        let dir = target.join("e2e").join(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        Screenshots { dir, taken: 0 }
    }

    pub async fn take(&mut self, client: &Client, stage: &str) {
        self.taken += 1;
        let png = client.screenshot().await.expect("a screenshot");
        let path = self.dir.join(format!("{:02}-{stage}.png", self.taken));
        std::fs::write(&path, png).expect("the screenshot is written");
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
