//! [`SessionApi`]: a client of a gateway's session API for operators (`GET` and `DELETE
//! /ops/sessions`, behind the ops token): list a user's sessions, end one or all of them.
//! `bffctl sessions` is its command line; the tests that prove an end reaches every node use it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whose sessions: a user (`sub`) or one login at the issuer (`sid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whose {
    Sub(String),
    Sid(String),
}

impl Whose {
    fn query(&self) -> [(&'static str, &str); 1] {
        match self {
            Whose::Sub(sub) => [("sub", sub)],
            Whose::Sid(sid) => [("sid", sid)],
        }
    }
}

/// One session as the gateway shows it to operators (times in Unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// The handle that ends it (not a cookie).
    pub id: String,
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub created_at: u64,
    pub last_seen_at: u64,
    pub idle_expires_at: u64,
    pub absolute_expires_at: u64,
    pub created_on: Option<String>,
}

/// A user's sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listing {
    /// The keyed digest that names the user in the gateway's audit log.
    pub subject: String,
    pub sessions: Vec<SessionInfo>,
}

/// What an end did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ending {
    pub subject: String,
    /// How many sessions ended (0 when they already had).
    pub ended: usize,
    /// Their handles.
    pub ids: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionApiError {
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} has no session API: a gateway without ops_token, or another version (404)")]
    NotServed { url: String },
    #[error("{url} refused the ops token (401)")]
    Refused { url: String },
    #[error("{url} answered {status}: {body}")]
    Failed { url: String, status: u16, body: String },
}

/// The session API of the gateway at `target` (the load balancer's URL, or any node's: each
/// node answers for the whole store).
pub struct SessionApi {
    target: String,
    ops_token: String,
    http: reqwest::Client,
}

impl SessionApi {
    pub fn new(target: &str, ops_token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client builds");
        SessionApi { target: target.trim_end_matches('/').to_owned(), ops_token: ops_token.to_owned(), http }
    }

    /// The sessions of `whose`, oldest first.
    pub async fn list(&self, whose: &Whose) -> Result<Listing, SessionApiError> {
        let url = format!("{}/ops/sessions", self.target);
        self.call(self.http.get(&url).query(&whose.query()), &url).await
    }

    /// Ends every session of `whose`, or only the one with handle `id`.
    pub async fn end(&self, whose: &Whose, id: Option<&str>) -> Result<Ending, SessionApiError> {
        let url = match id {
            Some(id) => format!("{}/ops/sessions/{id}", self.target),
            None => format!("{}/ops/sessions", self.target),
        };
        self.call(self.http.delete(&url).query(&whose.query()), &url).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, SessionApiError> {
        let unreachable = |reason: String| SessionApiError::Unreachable { url: url.to_owned(), reason };
        let response = request.bearer_auth(&self.ops_token).send().await.map_err(|e| unreachable(format!("{e:#}")))?;
        match response.status().as_u16() {
            200 => response.json().await.map_err(|e| unreachable(format!("unreadable answer: {e}"))),
            404 => Err(SessionApiError::NotServed { url: url.to_owned() }),
            401 => Err(SessionApiError::Refused { url: url.to_owned() }),
            status => {
                let body = response.text().await.unwrap_or_default();
                Err(SessionApiError::Failed { url: url.to_owned(), status, body: body.chars().take(300).collect() })
            }
        }
    }
}
