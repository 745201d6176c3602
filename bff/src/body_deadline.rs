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
//!
//! It also copies the small frames a trickled body arrives in ([`SMALL_FRAME`]): hyper hands each
//! out as a slice of its read buffer, which keeps that buffer (8 KiB at least) alive, and a
//! handler that collects a body (the back-channel logout's form) keeps every frame until the
//! end, so a client sending a byte at a time would have the node hold 8 KiB per byte sent.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::cutoff::{Bound, Cutoff};

/// Frames shorter than this are copied out of hyper's read buffer (see the module's header).
pub const SMALL_FRAME: usize = 4 << 10;

/// `frame` as its own allocation when it is small: no longer holding on to the buffer it was read
/// into.
fn unpinned(frame: Frame<Bytes>) -> Frame<Bytes> {
    match frame.into_data() {
        Ok(data) if data.len() < SMALL_FRAME => Frame::data(Bytes::copy_from_slice(&data)),
        Ok(data) => Frame::data(data),
        Err(frame) => frame,
    }
}

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
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map(unpinned).map_err(BodyError::from)));
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

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use http_body_util::BodyExt;
    use hyper::body::{Body, Bytes, Frame};

    use super::DeadlineBody;
    use crate::cutoff::Cutoff;

    /// Frames as hyper hands them out: each a slice of a larger read buffer.
    struct Sliced(Vec<Bytes>);

    impl Body for Sliced {
        type Data = Bytes;
        type Error = hyper::Error;

        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
            Poll::Ready(self.get_mut().0.pop().map(|data| Ok(Frame::data(data))))
        }
    }

    /// A one-byte frame no longer keeps the 8 KiB buffer it was read into; a large frame is
    /// passed as it is, without a copy.
    #[tokio::test]
    async fn small_frames_let_go_of_their_read_buffer() {
        let buffer = Bytes::from(vec![b'x'; 8 << 10]);
        let large = Bytes::from(vec![b'y'; 64 << 10]);
        // The read buffers stay referenced, as hyper's are while it reads on.
        let inner = Sliced(vec![large.slice(..32 << 10), buffer.slice(..1)]);
        let mut body = DeadlineBody::new(inner, Duration::from_secs(1), Cutoff::default());
        let small = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let small = small.try_into_mut().expect("the only reference to its allocation");
        assert_eq!((small.len(), small.capacity()), (1, 1), "copied into an allocation of its own");
        let large = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(large.try_into_mut().is_err(), "a large frame shares its read buffer: not copied");
        drop(buffer);
    }
}
