//! What happens to sessions, counted by why: `bff_sessions_ended_total{reason}` and
//! `bff_token_refresh_total{result}`. The reasons and results are closed sets (the alert rules in
//! `deploy/prometheus/` and the metrics table in `docs/src/operations.md` name them).

/// Why a session ended, as far as this node can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// `POST /account/end-session`.
    Logout,
    /// The issuer's back-channel logout.
    Backchannel,
    /// The session API (`DELETE /ops/sessions…`).
    Operator,
    /// The issuer refused the refresh token (`invalid_grant`).
    RefreshFailure,
    /// A read found it past its absolute lifetime (and deleted it).
    Absolute,
    /// A request's cookie named a session the store no longer holds: it idled out, or it was
    /// ended on a path that could not clear the cookie (back-channel, operator). Redis expires
    /// idle sessions silently, so this is what a node can observe: an idle session whose
    /// browser never comes back is not counted.
    Idle,
}

impl EndReason {
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::Backchannel => "backchannel",
            EndReason::Operator => "operator",
            EndReason::RefreshFailure => "refresh_failure",
            EndReason::Absolute => "absolute",
            EndReason::Idle => "idle",
        }
    }
}

/// Counts `n` sessions ended for `reason`.
pub fn sessions_ended(reason: EndReason, n: usize) {
    metrics::counter!("bff_sessions_ended_total", "reason" => reason.label()).increment(n as u64);
}

/// Counts a session created (a login finished).
pub fn session_created() {
    metrics::counter!("bff_sessions_created_total").increment(1);
}

/// How one request's need for a fresh access token ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// This node refreshed the tokens.
    Ok,
    /// Another refresh (on this node or another) held the lock; this request waited for it and
    /// used its tokens.
    LockWait,
    /// Waiting for another node's refresh took too long; the request failed (503).
    LockTimeout,
    /// The lock's lease could not be kept (Redis did not answer); the refresh was abandoned.
    LockLost,
    /// The issuer refused the refresh token: the session ended.
    InvalidGrant,
    /// The issuer could not be reached or answered badly; the session is kept.
    IssuerError,
}

impl RefreshOutcome {
    pub fn label(self) -> &'static str {
        match self {
            RefreshOutcome::Ok => "ok",
            RefreshOutcome::LockWait => "lock_wait",
            RefreshOutcome::LockTimeout => "lock_timeout",
            RefreshOutcome::LockLost => "lock_lost",
            RefreshOutcome::InvalidGrant => "invalid_grant",
            RefreshOutcome::IssuerError => "issuer_error",
        }
    }
}

/// Counts one refresh outcome.
pub fn refresh(outcome: RefreshOutcome) {
    metrics::counter!("bff_token_refresh_total", "result" => outcome.label()).increment(1);
}
