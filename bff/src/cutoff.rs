//! Which bound cut a slow client off, and how long after that bound ran out its socket was
//! closed: the node's own account of `server.body_timeout` and `server.write_timeout`.
//!
//! A client's view of when it was closed includes its own lag (a load generator holding ten
//! thousand sockets notices late) and the time its connection waited to be accepted; the node's
//! view does not. Each connection shares one [`Cutoff`] between its socket ([`WriteDeadline`])
//! and its requests' bodies ([`DeadlineBody`]); the first bound to run out marks it, and when
//! the socket is dropped (closed) the delay past that bound is recorded:
//! `bff_slow_clients_closed_total{bound}` and `bff_slow_client_close_delay_seconds{bound}`, with
//! `bound` = `body` or `write`.
//!
//! [`WriteDeadline`]: crate::server
//! [`DeadlineBody`]: crate::body_deadline::DeadlineBody

use std::sync::{Arc, OnceLock};

use tokio::time::Instant;

/// The bound a slow client ran out of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// `server.body_timeout`: the request body did not arrive in time.
    Body,
    /// `server.write_timeout`: the client did not take the response in time.
    Write,
}

impl Bound {
    fn label(self) -> &'static str {
        match self {
            Bound::Body => "body",
            Bound::Write => "write",
        }
    }
}

/// One connection's mark: the first bound that ran out, and when it did (its deadline, not when
/// the timer got round to it). Cloning shares the mark.
#[derive(Clone, Debug, Default)]
pub struct Cutoff(Arc<OnceLock<(Bound, Instant)>>);

impl Cutoff {
    /// `bound` ran out at `deadline`; a later bound of the same connection changes nothing.
    pub fn ran_out(&self, bound: Bound, deadline: Instant) {
        let _ = self.0.set((bound, deadline));
    }

    /// The bound that ran out, if one did, and when.
    pub fn get(&self) -> Option<(Bound, Instant)> {
        self.0.get().copied()
    }

    /// The connection's socket is being closed: if a bound cut it off, count it and record how
    /// long after the bound ran out that happened.
    pub fn record_closed(&self) {
        if let Some((bound, deadline)) = self.get() {
            metrics::counter!("bff_slow_clients_closed_total", "bound" => bound.label()).increment(1);
            metrics::histogram!("bff_slow_client_close_delay_seconds", "bound" => bound.label())
                .record(deadline.elapsed().as_secs_f64());
        }
    }
}
