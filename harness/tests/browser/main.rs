//! The BFF pattern end to end in a real browser: the example app of `examples/spa/` in headless
//! Chromium, through the load balancer of a 3-node cluster (process backend). A person's day:
//! log in by clicking (the mock issuer signs them in), see themselves, call the API, watch the
//! live panel tick (a WebSocket through the gateway), keep the page open while every node
//! restarts one by one, call the API again (still signed in, no new login at the issuer), see
//! the live panel tick again (reconnected to another node), log out, find the API answering 401,
//! and press back to a page that shows nobody. Over http and over https (a TLS front with a
//! certificate made here; a `__Host-`, `Secure`, `SameSite=Strict` cookie); with the memory
//! store the step after the restarts must fail, and does.
//!
//! Screenshots of every stage go to `target/e2e/<test>/`.

mod app_page;
mod chrome;
mod tls_front;

use std::net::SocketAddr;

use app_page::AppPage;
use chrome::{Browser, Screenshots};
use harness::cluster::{BackendKind, Cluster, ClusterSpec, LbPolicy, StoreKind};

/// One browser and one cluster at a time: two cores are shared with everything else.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The mock issuer's default user, whom a click on "Log in" signs in.
const USER: &str = "alice";

/// The stage of the journey that did not go as a person expects, and what the page showed.
#[derive(Debug)]
struct StepFailed {
    step: &'static str,
    detail: String,
}

fn at(step: &'static str) -> impl FnOnce(String) -> StepFailed {
    move |detail| StepFailed { step, detail }
}

fn check(step: &'static str, ok: bool, detail: impl FnOnce() -> String) -> Result<(), StepFailed> {
    if ok { Ok(()) } else { Err(StepFailed { step, detail: detail() }) }
}

fn spec(store: StoreKind, lb: LbPolicy, public_url: Option<String>) -> ClusterSpec {
    ClusterSpec {
        nodes: 3,
        backend: BackendKind::Process,
        session_store: store,
        lb,
        spa: true,
        api_upstream: true,
        public_url,
        ..ClusterSpec::default()
    }
}

/// The session cookie the browser holds after login: `__Host-bff-session`, Secure and
/// SameSite=Strict over https (as the https run configures it); `bff-session`, Lax, over http.
/// HttpOnly and path `/` either way.
async fn check_session_cookie(browser: &Browser, https: bool) -> Result<(), StepFailed> {
    let step = "session cookie";
    let cookies = browser.client.get_all_cookies().await.map_err(|e| at(step)(e.to_string()))?;
    // Names and attributes only: a session id has no place in a test's output either.
    let listed = || {
        let shown = cookies.iter().map(|c| {
            let (name, secure, http_only, path, same_site) =
                (c.name(), c.secure(), c.http_only(), c.path(), c.same_site());
            format!("{name} (secure {secure:?}, http-only {http_only:?}, path {path:?}, same-site {same_site:?})")
        });
        shown.collect::<Vec<_>>().join(" | ")
    };
    let name = if https { "__Host-bff-session" } else { "bff-session" };
    let cookie =
        cookies.iter().find(|c| c.name() == name).ok_or_else(|| at(step)(format!("no {name}: {}", listed())))?;
    check(step, cookie.http_only() == Some(true), || format!("{name} is not HttpOnly: {}", listed()))?;
    check(step, cookie.path() == Some("/"), || format!("{name} is not on path /: {}", listed()))?;
    check(step, cookie.secure() == Some(https), || format!("{name} Secure is not {https}: {}", listed()))?;
    let same_site = if https { "Strict" } else { "Lax" };
    check(step, cookie.same_site().map(|s| s.to_string()).as_deref() == Some(same_site), || {
        format!("{name} is not SameSite={same_site}: {}", listed())
    })?;
    check(step, !cookie.value().contains('.') && !cookie.value().contains(USER), || {
        format!("{name} looks like it carries a token or claims: {}", listed())
    })
}

/// The whole journey; the first stage that goes wrong ends it.
async fn journey(cluster: &mut Cluster, browser: &Browser, shots: &mut Screenshots) -> Result<(), StepFailed> {
    let page = AppPage { client: &browser.client };
    let app = format!("{}/", cluster.public_url());
    let https = app.starts_with("https://");

    page.open(&app).await.map_err(at("open the app"))?;
    page.expect_signed_out().await.map_err(at("open the app"))?;
    shots.take(&browser.client, "signed-out").await;

    page.log_in().await.map_err(at("log in"))?;
    let claims = page.expect_signed_in().await.map_err(at("log in"))?;
    shots.take(&browser.client, "signed-in").await;
    check("see the user", claims.contains(USER) && claims.contains(&format!("{USER}@example.test")), || {
        format!("the claims shown are not {USER}'s: {claims:?}")
    })?;
    // Token times read as dates, not as seconds since 1970: `exp 2026-12-06 04:40:00 UTC (1796…)`.
    let expiry = claims.lines().find(|l| l.starts_with("exp")).unwrap_or_default().to_owned();
    check("see exp as a date", expiry.contains(" UTC (") && expiry.contains('-'), || {
        format!("exp is not shown as a date: {expiry:?} in {claims:?}")
    })?;
    check_session_cookie(browser, https).await?;
    let logins = cluster.issuer().calls("authorize");

    let answer = page.call_api().await.map_err(at("call the API"))?;
    shots.take(&browser.client, "api").await;
    check(
        "call the API",
        answer.status == "HTTP 200" && answer.body.contains(r#""bearer_token_received": true"#),
        || format!("{answer:?}"),
    )?;

    let ticks = page.live_ticks_past(1).await.map_err(at("live panel"))?;
    shots.take(&browser.client, "live").await;

    for node in 0..cluster.node_count() {
        cluster.restart_node(node).await.map_err(|e| at("restart every node")(e.to_string()))?;
    }
    shots.take(&browser.client, "after-restarts").await;

    let answer = page.call_api().await.map_err(at("call the API after the restarts"))?;
    shots.take(&browser.client, "api-after-restarts").await;
    check("call the API after the restarts", answer.status == "HTTP 200", || format!("{answer:?}"))?;
    // The node holding the panel's socket closed it (1001) and the panel reconnected elsewhere.
    page.live_ticks_past(ticks + 1).await.map_err(at("live panel after the restarts"))?;
    page.reload().await.map_err(at("still signed in"))?;
    let claims = page.expect_signed_in().await.map_err(at("still signed in"))?;
    shots.take(&browser.client, "still-signed-in").await;
    check("still signed in", claims.contains(USER), || format!("{claims:?}"))?;
    let again = cluster.issuer().calls("authorize");
    check("no new login", again == logins, || format!("the issuer saw {} more logins", again - logins))?;

    page.mark().await.map_err(at("log out"))?;
    page.log_out().await.map_err(at("log out"))?;
    page.expect_signed_out().await.map_err(at("log out"))?;
    shots.take(&browser.client, "logged-out").await;
    check("log out", page.url().await == app, || format!("the logout ended at {}, not {app}", app))?;

    let answer = page.call_api().await.map_err(at("call the API after logout"))?;
    shots.take(&browser.client, "api-after-logout").await;
    check("call the API after logout", answer.status.starts_with("HTTP 401"), || format!("{answer:?}"))?;
    check("call the API after logout", !answer.body.contains("hello from the API"), || format!("{answer:?}"))?;

    page.back().await.map_err(at("back"))?;
    let right_after = page.visible_text().await;
    let shown = page.how_shown().await.map_err(at("back"))?;
    eprintln!("back: the page before the logout came back {shown}");
    check("back", shown == "restored" || shown == "back_forward", || {
        format!("the page on screen is not the one before the logout, brought back ({shown})")
    })?;
    check("back", !right_after.contains(USER), || format!("the page shows the user's data again: {right_after:?}"))?;
    page.expect_signed_out().await.map_err(at("back"))?;
    let settled = page.visible_text().await;
    shots.take(&browser.client, "back").await;
    check("back", !settled.contains(USER), || format!("the page shows the user's data again: {settled:?}"))
}

/// Runs the journey on a fresh cluster and browser; the cluster is torn down either way.
async fn run(test: &str, spec: ClusterSpec, tls: Option<tls_front::TlsFront>) -> (Result<(), StepFailed>, Screenshots) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut shots = Screenshots::new(test);
    let mut cluster = Cluster::start(spec, &|_| {}).await.expect("the cluster starts");
    let spki = tls.as_ref().map(|t| t.spki_sha256.clone());
    let front = tls.map(|t| {
        let lb: SocketAddr = cluster.lb_url().trim_start_matches("http://").parse().expect("the balancer's address");
        t.forward_to(lb)
    });
    let browser = Browser::start(spki.as_deref()).await;
    let outcome = journey(&mut cluster, &browser, &mut shots).await;
    if outcome.is_err() {
        shots.take(&browser.client, "where-it-stopped").await;
    }
    let _ = browser.client.clone().close().await;
    cluster.teardown().await.expect("teardown");
    if let Some(front) = front {
        front.abort();
    }
    (outcome, shots)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_stays_signed_in_while_every_node_restarts() {
    let (outcome, shots) = run("redis-http", spec(StoreKind::Redis, LbPolicy::Random, None), None).await;
    if let Err(failed) = outcome {
        panic!("{}: {} (screenshots in {})", failed.step, failed.detail, shots.dir().display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_host_prefixed_secure_strict_cookie_carries_the_session() {
    let tls = tls_front::TlsFront::bind().await;
    let mut spec = spec(StoreKind::Redis, LbPolicy::Random, Some(tls.url()));
    // As a production deployment would: the page loads after the issuer's cross-site redirect
    // without the Strict cookie, and its own fetch of /account/me carries it.
    spec.bff_env.push(("BFF_SESSION_SAME_SITE".into(), "strict".into()));
    let (outcome, shots) = run("redis-https", spec, Some(tls)).await;
    if let Err(failed) = outcome {
        panic!("{}: {} (screenshots in {})", failed.step, failed.detail, shots.dir().display());
    }
}

/// The negative control: nodes that keep sessions in their own memory. The balancer keeps the
/// browser on one node (sticky) so that the login itself works; the restarts then lose the
/// session, and the journey must fail exactly there, with a 401 from the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_memory_store_the_restarts_sign_the_person_out() {
    let (outcome, shots) = run("memory-http", spec(StoreKind::Memory, LbPolicy::Sticky, None), None).await;
    let failed = outcome.expect_err("the journey passed on the memory store: the browser test cannot fail");
    assert_eq!(failed.step, "call the API after the restarts", "{failed:?} (screenshots in {})", shots.dir().display());
    assert!(failed.detail.contains("HTTP 401"), "{failed:?}");
}
