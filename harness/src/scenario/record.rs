//! The raw history of a run: one [`Record`] per request, and the window of each cluster step.
//! The checker (`history`), the matrix and the report all read these; none of them owns them.

use serde::Serialize;

use super::model::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Ok,
    /// A wrong answer, or no answer outside a fault.
    Failed,
    /// No answer while a fault made one impossible (a node restarting, Redis down).
    Unavailable,
}

/// How the detail of a read begins when the user's login failed in the harness: there was no
/// session to read.
pub const HARNESS_BROKE_LOGIN: &str = "no session to read: this user's login failed in the harness";

/// One request: together, a run's history.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub step: String,
    pub action: Action,
    /// The virtual user who sent it.
    pub user: String,
    /// `me` answered 200: whose identity it showed (`sub`), when the body names one.
    pub identity: Option<String>,
    pub node: Option<String>,
    /// For reads of a session: the node that created it (answered the login callback).
    pub created_on: Option<String>,
    pub outcome: Outcome,
    pub status: Option<u16>,
    /// When the request was sent, from the start of the run.
    pub at_ms: f64,
    pub latency_ms: f64,
    pub detail: String,
    /// The failure was the harness's own (its issuer, its load balancer, its clients could not
    /// keep up), not the gateway's answer: it says nothing about the deployment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub harness: bool,
    /// The `traceparent` the request was sent with (for a failed login, its last hop's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The `x-request-id` the answer carried: the key to the node's log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// When a cluster step (a fault: a restart, a kill, a Redis restart) ran, from the start of the run.
#[derive(Debug, Clone, Serialize)]
pub struct FaultWindow {
    pub label: String,
    pub start_ms: f64,
    pub end_ms: f64,
}
