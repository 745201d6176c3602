//! [`PinnedLogin`]: a login that starts and ends on one node, for the observed drift check. A
//! gateway's `redirect_uri` names the load balancer, so a browser's login would end on any node;
//! this one follows the redirects by hand like a new browser (its own cookie jar) and, when the
//! issuer sends it back to the `redirect_uri`, goes to the same path on the node it started on.
//! It suits issuers that log users in by themselves (bffctl's mock issuer, `bffctl issuer`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{DATE, LOCATION, SET_COOKIE};
use reqwest_cookie_store::CookieStoreMutex;
use url::Url;

use super::observed::{LoginAnswer, ObserveLogin, ObserveLoginError, ObservedPaths};

/// Redirects a login may take from the login path to the callback.
const MAX_REDIRECTS: usize = 10;

pub struct PinnedLogin {
    login_path: String,
    /// Host names to map (the issuer's `issuer.localhost` in Docker runs).
    resolve: Vec<(String, SocketAddr)>,
}

impl PinnedLogin {
    /// Logs in at `paths.login`, reaching the hosts in `resolve` at the given addresses.
    pub fn new(paths: &ObservedPaths, resolve: &[(String, SocketAddr)]) -> Self {
        PinnedLogin { login_path: paths.login.clone(), resolve: resolve.to_vec() }
    }

    fn browser(&self) -> reqwest::Client {
        let jar = Arc::new(CookieStoreMutex::default());
        let mut builder = reqwest::Client::builder()
            .cookie_provider(jar)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .no_proxy();
        for (name, addr) in &self.resolve {
            builder = builder.resolve(name, *addr);
        }
        builder.build().expect("http client")
    }
}

fn without_query(url: &Url) -> Url {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url
}

#[async_trait]
impl ObserveLogin for PinnedLogin {
    async fn login(&self, node_url: &str) -> Result<LoginAnswer, ObserveLoginError> {
        let node = Url::parse(node_url).map_err(|e| ObserveLoginError::Other(format!("{node_url}: {e}")))?;
        let mut url = node.join(&self.login_path).map_err(|e| ObserveLoginError::Other(e.to_string()))?;
        let browser = self.browser();
        let mut redirect_uri: Option<Url> = None;
        for _ in 0..MAX_REDIRECTS {
            let response = browser.get(url.clone()).send().await.map_err(|e| ObserveLoginError::Transport {
                url: without_query(&url).to_string(),
                reason: e.to_string(),
            })?;
            // Back on the node after the issuer: the answer that ends the login.
            if redirect_uri.is_some() && url.origin() == node.origin() {
                let status = response.status().as_u16();
                if status >= 400 {
                    return Err(ObserveLoginError::Refused { url: url.path().to_owned(), status });
                }
                let headers = response.headers();
                let set_cookie =
                    headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
                let date = headers.get(DATE).and_then(|d| d.to_str().ok()).map(str::to_owned);
                return Ok(LoginAnswer { set_cookie, date });
            }
            let status = response.status().as_u16();
            let location = response.headers().get(LOCATION).and_then(|l| l.to_str().ok());
            let Some(next) = location.and_then(|l| url.join(l).ok()).filter(|_| (300..400).contains(&status)) else {
                return Err(ObserveLoginError::NotARedirect { url: without_query(&url).to_string(), status });
            };
            if redirect_uri.is_none() && next.origin() != node.origin() {
                let asked = next.query_pairs().find(|(k, _)| k == "redirect_uri").map(|(_, v)| v.into_owned());
                let asked = asked.and_then(|u| Url::parse(&u).ok());
                redirect_uri = Some(asked.unwrap_or_else(|| node.clone()));
            }
            url = match &redirect_uri {
                Some(back) if without_query(&next) == without_query(back) => {
                    let mut pinned = node.clone();
                    pinned.set_path(next.path());
                    pinned.set_query(next.query());
                    pinned
                }
                _ => next,
            };
        }
        Err(ObserveLoginError::TooManyRedirects(MAX_REDIRECTS))
    }
}
