//! The example app (`examples/spa/`) as a person uses it: buttons clicked, text read off the
//! screen. Every wait polls the page for a condition, with a deadline.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};

/// How long a page may take to show what a click leads to (a login crosses the issuer).
const SETTLE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

pub struct AppPage<'a> {
    pub client: &'a Client,
}

/// What the API panel shows after a call.
#[derive(Debug)]
pub struct ApiAnswer {
    pub status: String,
    pub body: String,
}

impl AppPage<'_> {
    pub async fn open(&self, url: &str) -> Result<(), String> {
        self.client.goto(url).await.map_err(|e| format!("cannot open {url}: {e}"))
    }

    async fn text(&self, css: &str) -> Result<String, String> {
        let element = self.client.find(Locator::Css(css)).await.map_err(|e| format!("no {css} on the page: {e}"))?;
        element.text().await.map_err(|e| format!("cannot read {css}: {e}"))
    }

    async fn state(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.attr("data-state").await.ok().flatten()
    }

    async fn click(&self, css: &str) -> Result<(), String> {
        let element = self.client.find(Locator::Css(css)).await.map_err(|e| format!("no {css} on the page: {e}"))?;
        element.click().await.map(|_| ()).map_err(|e| format!("cannot click {css}: {e}"))
    }

    /// Waits until the element's `data-state` is one of `states`; returns that state.
    async fn wait_state(&self, css: &str, states: &[&str]) -> Result<String, String> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let state = self.state(css).await;
            if let Some(state) = state.as_ref().filter(|s| states.contains(&s.as_str())) {
                return Ok(state.clone());
            }
            if Instant::now() > deadline {
                let text = self.text(css).await.unwrap_or_default();
                let url = self.url().await;
                return Err(format!("{css} is {state:?} ({text:?}) at {url} after {SETTLE:?}, not one of {states:?}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the live panel is live and has received more than `after` ticks; returns
    /// how many it has.
    pub async fn live_ticks_past(&self, after: u64) -> Result<u64, String> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let live = self.state("#live-status").await;
            let ticks = self.text("#live-count").await?.parse::<u64>().unwrap_or(0);
            if live.as_deref() == Some("live") && ticks > after {
                return Ok(ticks);
            }
            if Instant::now() > deadline {
                let status = self.text("#live-status").await.unwrap_or_default();
                return Err(format!("the live panel is {live:?} ({status:?}) with {ticks} ticks after {SETTLE:?}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_else(|e| format!("(no url: {e})"))
    }

    /// Waits until the page says nobody is signed in.
    pub async fn expect_signed_out(&self) -> Result<(), String> {
        self.wait_state("#status", &["signed-out"]).await.map(|_| ())
    }

    /// Waits until the page shows a user; returns the claims table's text.
    pub async fn expect_signed_in(&self) -> Result<String, String> {
        self.wait_state("#status", &["signed-in"]).await?;
        self.text("#claims").await
    }

    pub async fn log_in(&self) -> Result<(), String> {
        self.click("#login").await
    }

    /// Clicks "Log out" (a form POST) and waits for the page it lands on to load.
    pub async fn log_out(&self) -> Result<(), String> {
        self.click("#logout button").await
    }

    /// Clicks "Call the API" and waits for the answer.
    pub async fn call_api(&self) -> Result<ApiAnswer, String> {
        self.click("#call-api").await?;
        self.wait_state("#api-status", &["ok", "error"]).await?;
        Ok(ApiAnswer {
            status: self.text("#api-status").await?,
            body: self.text("#api-body").await.unwrap_or_default(),
        })
    }

    /// Leaves a mark on the page as it is now, which only a page restored from the
    /// back/forward cache still carries.
    pub async fn mark(&self) -> Result<(), String> {
        self.client.execute("window.markedByTest = true;", vec![]).await.map(|_| ()).map_err(|e| format!("mark: {e}"))
    }

    /// How the page on screen came to be: `"restored"` (the marked page, from the
    /// back/forward cache) or its navigation type (`back_forward` when loaded again by the back
    /// button, `navigate`, `reload`).
    pub async fn how_shown(&self) -> Result<String, String> {
        let script = "return window.markedByTest === true ? 'restored' \
            : (performance.getEntriesByType('navigation')[0] || {}).type || 'unknown';";
        let value = self.client.execute(script, vec![]).await.map_err(|e| format!("how the page was shown: {e}"))?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    pub async fn back(&self) -> Result<(), String> {
        self.client.back().await.map_err(|e| format!("back: {e}"))
    }

    pub async fn reload(&self) -> Result<(), String> {
        self.client.refresh().await.map_err(|e| format!("reload: {e}"))
    }

    /// Everything the page shows as text right now.
    pub async fn visible_text(&self) -> String {
        self.text("body").await.unwrap_or_default()
    }
}
