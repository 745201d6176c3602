//! A bound on the time a client takes to send a whole request body (`server.body_timeout`).
//!
//! hyper bounds the headers only (`header_read_timeout`); a client that announces a large body and
//! then sends a byte every few seconds would hold its connection, and its `max_connections`
//! permit, for as long as it likes. tower-http's `TimeoutBody` restarts its timer at every frame,
//! which such a client satisfies, so the bound here is on the whole body: the deadline is set at
//! the first read that has to wait for the client and does not move. Past it the body ends with
//! [`BodyError::TimedOut`]; whoever reads it (a handler's extractor, the upstream request) fails,
//! the body is dropped and hyper closes the connection after the response, since the request was
//! not read to its end. The proxy answers such a request 408.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::cutoff::{Bound, Cutoff};

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body not received within {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body that fails once `timeout` has passed since a read of it first had to wait.
pub struct DeadlineBody<B> {
    inner: B,
    timeout: Duration,
    /// Set at the first read that has to wait for the client; boxed because `Sleep` is `!Unpin`,
    /// and only then, so requests without a body allocate nothing.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The connection's mark, set when the deadline passes.
    cutoff: Cutoff,
}

impl BodyError {
    /// Whether `error`, or an error it was caused by, is a request body that timed out: how the
    /// proxy tells a slow client (408) from an unreachable upstream.
    pub fn timed_out_in(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(error) = next {
            if matches!(error.downcast_ref::<BodyError>(), Some(BodyError::TimedOut(_))) {
                return true;
            }
            next = error.source();
        }
        false
    }
}

impl<B> DeadlineBody<B> {
    /// `cutoff` is the connection's: marked when this body's deadline passes.
    pub fn new(inner: B, timeout: Duration, cutoff: Cutoff) -> Self {
        DeadlineBody { inner, timeout, deadline: None, cutoff }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Error = hyper::Error> + Unpin,
{
    type Data = B::Data;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BodyError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::from)));
        }
        let timeout = this.timeout;
        let deadline =
            this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.cutoff.ran_out(Bound::Body, deadline.deadline());
                Poll::Ready(Some(Err(BodyError::TimedOut(timeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
