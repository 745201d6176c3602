//! [`OpenSockets`]: the WebSockets this node holds open, by session, so that a session that ends
//! closes its sockets on every node, and a node that stops closes its own.
//!
//! A socket registers under its session's store key when it is joined and leaves when it ends
//! ([`OpenSocket`] is the registration; dropping it leaves). The registry does not decide
//! whether a session ended: it tells the sockets of a session to check ([`SocketSignal::Recheck`])
//! when this node's cache hears a change notice for it (a logout, a back-channel logout or a
//! refresh on any node, see [`super::NodeCache`]), and every socket when notices may have been
//! missed (the cache was switched off or on). Each socket also checks on its own at a fixed
//! interval (`websocket.session_check`), which is what closes it after an idle or absolute
//! expiry, a missed notice, or with the in-memory store. The check reads whether the session
//! still exists without sliding its idle timeout ([`super::Sessions::is_open`]): an open socket
//! is not activity.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::{SessionError, SessionId, Sessions, store_key};

/// What a socket is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketSignal {
    /// Check whether the session still exists; close if not.
    Recheck,
    /// The node is stopping: close with 1001 (going away).
    GoingAway,
}

type Senders = HashMap<u64, mpsc::UnboundedSender<SocketSignal>>;

/// The sockets open on this node, by the store key of their session (sockets of routes without
/// a session are registered under the empty key: only [`OpenSockets::going_away`] reaches them).
#[derive(Default)]
pub struct OpenSockets {
    by_session: Mutex<HashMap<String, Senders>>,
    next_id: AtomicU64,
    /// How many are open; [`OpenSockets::all_closed`] waits for zero.
    open: watch::Sender<usize>,
    /// Set once the node stops: a socket that registers after it is told at once.
    stopping: AtomicBool,
    /// Turns true with `stopping`, for the node's other long responses (event streams), which
    /// end when the node stops so that the browser reconnects elsewhere (see
    /// [`OpenSockets::node_stops`]).
    node_stopping: watch::Sender<bool>,
}

/// One open socket's registration and the signals sent to it.
pub struct OpenSocket {
    registry: Arc<OpenSockets>,
    key: String,
    id: u64,
    pub signals: mpsc::UnboundedReceiver<SocketSignal>,
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        let mut by_session = self.registry.by_session.lock().expect("open sockets");
        if let Some(senders) = by_session.get_mut(&self.key) {
            senders.remove(&self.id);
            if senders.is_empty() {
                by_session.remove(&self.key);
            }
        }
        drop(by_session);
        self.registry.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A place for one socket, taken by [`OpenSockets::reserve`] before the handshake.
pub struct SocketPlace {
    /// `None` once registered: the registration then owns the place.
    registry: Option<Arc<OpenSockets>>,
}

impl SocketPlace {
    /// The socket is open: registers it under `session` in the place taken.
    pub fn register(mut self, session: Option<&SessionId>) -> OpenSocket {
        let registry = self.registry.take().expect("a place is registered once");
        registry.register(session)
    }
}

impl Drop for SocketPlace {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.take() {
            registry.open.send_modify(|n| *n = n.saturating_sub(1));
        }
    }
}

impl OpenSockets {
    pub fn new() -> Arc<Self> {
        Arc::new(OpenSockets::default())
    }

    /// Takes one of at most `limit` places for a socket, before its handshake: the place is held
    /// from the check to the registration ([`SocketPlace::register`]), so that handshakes under
    /// way at the same time cannot, each having seen room for one more, open more than `limit`.
    /// `None` when every place is taken. A place dropped unregistered is given back.
    pub fn reserve(self: &Arc<Self>, limit: usize) -> Option<SocketPlace> {
        let taken = self.open.send_if_modified(|n| {
            let room = *n < limit;
            if room {
                *n += 1;
            }
            room
        });
        taken.then(|| SocketPlace { registry: Some(self.clone()) })
    }

    /// Registers a socket of `session` (`None`: a route without a session), counted at once.
    pub fn open(self: &Arc<Self>, session: Option<&SessionId>) -> OpenSocket {
        self.open.send_modify(|n| *n += 1);
        self.register(session)
    }

    /// Registers a socket whose place is already counted.
    fn register(self: &Arc<Self>, session: Option<&SessionId>) -> OpenSocket {
        let key = session.map(|id| store_key("s", id.as_bytes())).unwrap_or_default();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, signals) = mpsc::unbounded_channel();
        // Read under the lock that `going_away` sets it under: a socket registers either before
        // the walk (and is told by it) or after the flag (and is told here), never between.
        let mut by_session = self.by_session.lock().expect("open sockets");
        if self.stopping.load(Ordering::SeqCst) {
            let _ = sender.send(SocketSignal::GoingAway);
        }
        by_session.entry(key.clone()).or_default().insert(id, sender);
        drop(by_session);
        OpenSocket { registry: self.clone(), key, id, signals }
    }

    /// How many sockets are open on this node.
    pub fn len(&self) -> usize {
        *self.open.borrow()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn send_to(&self, key: Option<&str>, signal: SocketSignal) {
        let by_session = self.by_session.lock().expect("open sockets");
        match key {
            Some(key) => by_session.get(key).into_iter().flat_map(|s| s.values()).for_each(|s| {
                let _ = s.send(signal);
            }),
            None => by_session.values().flat_map(|s| s.values()).for_each(|s| {
                let _ = s.send(signal);
            }),
        }
    }

    /// The session stored under `key` changed or ended (`None`: any may have): its sockets check.
    pub fn session_changed(&self, key: Option<&str>) {
        match key {
            Some(key) if !key.is_empty() => self.send_to(Some(key), SocketSignal::Recheck),
            Some(_) => {}
            None => self.send_to(None, SocketSignal::Recheck),
        }
    }

    /// The node stops: every socket, and any that opens from now on, closes with 1001.
    pub fn going_away(&self) {
        let by_session = self.by_session.lock().expect("open sockets");
        if !self.stopping.swap(true, Ordering::SeqCst) {
            self.node_stopping.send_replace(true);
            by_session.values().flat_map(|s| s.values()).for_each(|s| {
                let _ = s.send(SocketSignal::GoingAway);
            });
        }
    }

    /// Answers once the node has begun to stop ([`OpenSockets::going_away`]).
    pub fn node_stops(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.node_stopping.subscribe();
        async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        }
    }

    /// Answers once no socket is open.
    pub async fn all_closed(&self) {
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|n| *n == 0).await;
    }
}

impl Sessions {
    /// Whether the session `id`, created at `created_at` (Unix seconds), still exists and is
    /// within its absolute lifetime. Reads the store, not the node cache, and does not slide the
    /// idle timeout: a socket that checks is not a user who acts.
    pub async fn is_open(&self, id: &SessionId, created_at: u64) -> Result<bool, SessionError> {
        if super::now_secs().saturating_sub(created_at) > self.absolute_lifetime.as_secs() {
            return Ok(false);
        }
        Ok(self.store.exists(&store_key("s", id.as_bytes())).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_reaches_the_sockets_of_that_session_only() {
        let sockets = OpenSockets::new();
        let (a, b) = (SessionId::generate(), SessionId::generate());
        let mut first = sockets.open(Some(&a));
        let mut second = sockets.open(Some(&a));
        let mut other = sockets.open(Some(&b));
        let mut anonymous = sockets.open(None);
        assert_eq!(sockets.len(), 4);
        sockets.session_changed(Some(&store_key("s", a.as_bytes())));
        assert_eq!(first.signals.try_recv(), Ok(SocketSignal::Recheck));
        assert_eq!(second.signals.try_recv(), Ok(SocketSignal::Recheck));
        assert!(other.signals.try_recv().is_err());
        assert!(anonymous.signals.try_recv().is_err());
        sockets.session_changed(None);
        assert_eq!(other.signals.try_recv(), Ok(SocketSignal::Recheck));
    }

    #[tokio::test]
    async fn places_are_held_from_reservation_to_registration_and_given_back_unused() {
        let sockets = OpenSockets::new();
        let first = sockets.reserve(2).expect("room for the first");
        let second = sockets.reserve(2).expect("room for the second");
        assert!(sockets.reserve(2).is_none(), "two handshakes under way take both places");
        drop(second);
        let third = sockets.reserve(2).expect("a place given back is free again");
        let open = first.register(Some(&SessionId::generate()));
        assert_eq!(sockets.len(), 2);
        assert!(sockets.reserve(2).is_none());
        drop(third);
        drop(open);
        assert!(sockets.is_empty());
        assert!(sockets.by_session.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn going_away_reaches_every_socket_and_any_that_opens_later() {
        let sockets = OpenSockets::new();
        let mut anonymous = sockets.open(None);
        sockets.going_away();
        assert_eq!(anonymous.signals.try_recv(), Ok(SocketSignal::GoingAway));
        let mut late = sockets.open(Some(&SessionId::generate()));
        assert_eq!(late.signals.try_recv(), Ok(SocketSignal::GoingAway));
    }

    #[tokio::test]
    async fn all_closed_answers_when_the_last_registration_is_dropped() {
        let sockets = OpenSockets::new();
        let one = sockets.open(None);
        let two = sockets.open(Some(&SessionId::generate()));
        let waiting = tokio::spawn({
            let sockets = sockets.clone();
            async move { sockets.all_closed().await }
        });
        // Let the waiting task run until it waits: it must still be waiting.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "two sockets are open");
        drop(one);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "one socket is still open");
        drop(two);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(sockets.is_empty());
        assert!(sockets.by_session.lock().unwrap().is_empty());
    }
}
