//! [`Touches`]: the sessions that a node serves from memory past their touch (see `NodeCache`)
//! have their expiry pushed back in the store off the request's path, as many in one round trip
//! as are waiting. A touch that ran on the request's path was a full read (value, unsealing,
//! parsing) once per touch interval for every session in use: with many sessions, a tenth of all
//! requests or more. Here it is one `PTTL`/`PEXPIRE` script per session, pipelined, while the
//! request is answered from memory; Redis sees the same writes as before (at most one per
//! session per touch interval), and an entry is still never served past the expiry the store
//! last gave it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::SessionStore;
use super::cache::NodeCache;

/// Touches sent in one round trip at most.
const AT_ONCE: usize = 256;

/// How long the first touch of a round trip waits for others to join it. A due session is
/// served from memory for a good part of an idle timeout yet (19 minutes by default), so a
/// touch that goes 10 ms later changes nothing for it, while at a few thousand due sessions a
/// second each round trip then carries tens of touches instead of one.
const GATHER: Duration = Duration::from_millis(10);

static SENT: std::sync::LazyLock<metrics::Counter> =
    std::sync::LazyLock::new(|| metrics::counter!("bff_session_touches_total", "path" => "background"));

/// When a read (or touch) that the store answered with `left` to live is due to push the
/// expiry back: from then on, less than `idle - touch_interval` remains in the store. `sent`
/// is when it was sent, `answered` when its answer came (see `Sessions::touch_due`).
pub(super) fn touch_due(
    idle: Duration,
    touch_interval: Duration,
    sent: Instant,
    answered: Instant,
    left: Option<Duration>,
) -> Instant {
    // A key without an expiry (not written by this gateway): read again after one interval.
    let Some(left) = left else { return sent + touch_interval };
    let margin = idle.saturating_sub(touch_interval);
    // Counted from the answer, the store's time left is below the margin by then (a read at
    // exactly the margin would not push, and the next one would have to).
    let due = answered + left.saturating_sub(margin) + Duration::from_millis(1);
    due.min(sent + left)
}

/// The expiry the store gave a session, at the earliest: `left` counted from before the read
/// (or touch) was sent. A key without an expiry: one touch interval, as [`touch_due`].
pub(super) fn lasts(touch_interval: Duration, sent: Instant, left: Option<Duration>) -> Instant {
    sent + left.unwrap_or(touch_interval)
}

/// The queue of due sessions' keys and the task that touches them (started with the first).
#[derive(Default)]
pub(super) struct Touches {
    queue: OnceLock<mpsc::UnboundedSender<String>>,
}

impl Touches {
    /// Has the store push `key`'s expiry back, soon and off the caller's path; the answer
    /// renews (or drops) its entry in `cache`.
    pub(super) fn send(
        &self,
        key: String,
        store: &Arc<dyn SessionStore>,
        cache: &Arc<NodeCache>,
        idle: Duration,
        touch_interval: Duration,
    ) {
        let queue = self.queue.get_or_init(|| {
            let (queue, due) = mpsc::unbounded_channel();
            tokio::spawn(touch_when_due(due, store.clone(), cache.clone(), idle, touch_interval));
            queue
        });
        // One per entry at a time (its `touching` flag), so the queue holds at most the cache.
        if let Err(unsent) = queue.send(key) {
            cache.untouched(&unsent.0);
        }
    }
}

/// Touches what is waiting, as many at once as are there, until the queue is dropped.
async fn touch_when_due(
    mut due: mpsc::UnboundedReceiver<String>,
    store: Arc<dyn SessionStore>,
    cache: Arc<NodeCache>,
    idle: Duration,
    touch_interval: Duration,
) {
    let mut keys = Vec::with_capacity(AT_ONCE);
    while due.recv_many(&mut keys, AT_ONCE).await > 0 {
        if keys.len() < AT_ONCE {
            tokio::time::sleep(GATHER).await;
            while keys.len() < AT_ONCE
                && let Ok(key) = due.try_recv()
            {
                keys.push(key);
            }
        }
        // Before the touch: a notice that comes while it runs keeps its answer from renewing.
        let seen = cache.generation();
        let sent = Instant::now();
        match store.touch_many(&keys, idle, touch_interval).await {
            Ok(answers) => {
                SENT.increment(keys.len() as u64);
                let answered = Instant::now();
                for (key, left) in keys.iter().zip(answers) {
                    match left {
                        Some(left) => cache.touched(
                            key,
                            seen,
                            touch_due(idle, touch_interval, sent, answered, left),
                            lasts(touch_interval, sent, left),
                        ),
                        None => cache.gone(key),
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, sessions = keys.len(), "session touch failed; the next request sends it again");
                for key in &keys {
                    cache.untouched(key);
                }
            }
        }
        keys.clear();
    }
}
