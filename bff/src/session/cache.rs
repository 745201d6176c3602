//! [`NodeCache`]: sessions this node opened recently, kept in its memory, so that a request in
//! steady state costs no Redis round trip, while a session that ends or changes on any node
//! is served by no node once the write that ended or changed it has answered.
//!
//! How it stays coherent:
//! - Every write that ends or changes a session (logout, back-channel logout, token refresh, the
//!   absolute lifetime) publishes the session's store key on a Redis pub/sub channel after the
//!   write; every node listens, drops that entry, and then acknowledges the notice on the
//!   writer's own reply channel.
//! - The writer answers its caller only when every subscriber that Redis counted for the notice
//!   (`PUBLISH`'s answer) has acknowledged it, or when [`LEASE`] has passed since Redis took the
//!   notice, whichever comes first. Past that bound the rule is the lease: a node serves entries
//!   only while a `PING` it sent on its subscription less than [`LEASE`] ago has come back, and
//!   a pong comes back after every notice Redis published before it (one connection, in
//!   order). A node that has not seen the notice (stalled, paused, cut off from Redis) has
//!   therefore stopped serving from memory by the time the writer answers; it reads Redis, which
//!   says the session is gone, or answers 503. There is no window in which a node serves a
//!   session that a logout has already answered for.
//! - What it costs: one `PUBLISH` per node from each node that acknowledges and one reply round
//!   trip on the writer's side, about a millisecond on one host; a subscriber that cannot
//!   acknowledge holds the writer back for at most [`LEASE`]. Each node pings its subscription
//!   every [`PING_EVERY`] (a few commands a second, whatever the load). A per-request revocation
//!   check in Redis would close the window too, but would cost every request the round trip the
//!   cache exists to save.
//! - While this node's listener is not subscribed (starting, a Redis outage, a dropped
//!   connection) or its lease ran out, notices may be missed: the cache is not used until it is
//!   subscribed again, and it is emptied when it subscribes.
//! - An entry is only as good as the server it was read from: a Redis restarted without
//!   persistence answers again, at the same address, without the session, and a node that
//!   served the entry then would log nobody out but keep a session the store lost. So the cache
//!   is tied to one server, named by its `run_id` (new at every start of a Redis process):
//!   - the listener asks the command link for the server's `run_id` before it subscribes and
//!     again once subscribed; the two must agree (the subscription, opened between them, went to
//!     that server) and the link must not have reconnected meanwhile. Only then is the cache
//!     emptied, switched on, and a confirmation counted ([`NodeCache::confirmations`], shown by
//!     `/ready`);
//!   - every ping round checks the link's `run_id` again, so a link that reached another
//!     server (a master that moved, a reconnect the link did by itself) ends the subscription;
//!   - the moment the command link may have reached another server (a command found its
//!     connection gone, the master moved), it switches the cache off and empties it, before
//!     that command is sent again and before its answer is used; the listener then subscribes
//!     again, as above;
//!   - a subscription that ends (Redis closed it, it stopped answering) switches the cache off,
//!     not when the lease runs out: a restarted Redis accepts connections again within
//!     milliseconds, well inside the lease;
//!   - but the listener learns of that end only when it runs (after the redis crate's own task
//!     read the end of the connection), and on a loaded machine that can come after the
//!     restarted, empty Redis already answers: within its lease, the cache would answer for a
//!     session the store lost. So every answer from memory also asks this host's kernel whether
//!     the confirmed server still holds a [`Tripwire`] open: an idle connection opened to the
//!     subscription's address between the two `run_id` answers (so to that server), on which
//!     nothing is ever sent. A Redis process that ends closes it as it exits, before another
//!     can listen at its address, so its end is in the kernel before a restarted Redis answers
//!     anyone; a non-blocking `MSG_PEEK` on the request's own thread sees it, whether or not the
//!     listener has run. The listener waits on it too, and ends the subscription when it trips.
//!
//!   What it costs: one `INFO server` on the command link per ping round (a few a second per
//!   node, whatever the load), a new subscription after every reconnect of the link, one idle
//!   connection per node to the subscribed server, and one `recv` system call (no round trip,
//!   answered by the local kernel, about a microsecond) per answer from memory. What it
//!   relies on: the old process's connections are closed before a new one answers, which holds
//!   on one host and through anything that closes a client's connection when its server's ends;
//!   a server that vanishes without closing them (its host lost, a network cut) is answered for
//!   by the lease alone, at most [`LEASE`] after it sent the last ping that came back. With a
//!   cluster the tripwire is on the subscription's node only: a restart of another primary is
//!   seen at the next ping round, as before. A `FLUSHALL` on a running server is not a restart
//!   and is not seen.
//! - A read from Redis that raced with a notice is not kept: every notice moves a generation
//!   counter, and an entry is taken back when the counter moved while it was read or stored.
//! - With a Redis Cluster, a notice must still travel one server, in order with the pings: a
//!   `PUBLISH` reaches every node of a cluster, but over the cluster bus, in no order with a
//!   subscriber's pings on another node. So every node subscribes on one node, the primary that
//!   serves the notice channel's slot, and publishes its notices there, on the node of its own
//!   subscription. The link's server id then names that node and every primary's `run_id` and
//!   role, so a failover or restart of any primary, or the channel's slot moving, ends every
//!   subscription at the next ping round.
//! - But during such a move, gateway nodes are for a moment subscribed on two nodes (one that
//!   moved already, one whose view of the cluster has not changed yet), and `PUBLISH` answers
//!   only the subscribers of the node that took it: a writer still on the old node once answered
//!   a logout at once, counting itself, while a node on the new one served the session from
//!   memory (the notice reached it over the bus, after). So on a cluster the writer counts the
//!   subscribers of every node (`PUBSUB NUMSUB` on each, asked after its notices were taken) and
//!   waits for that many acknowledgements, or the lease; a subscription that ends switches its
//!   cache off before Redis can stop counting it. In addition, a new subscription serves nothing
//!   until a lease after it was confirmed, and only a live cache publishes on its own
//!   subscription (one that is not yet publishes on the channel's slot). What is left to the
//!   lease alone: a subscriber on another node than the writer's that does not acknowledge
//!   within the lease (its pings do not order it after the notice; the bus normally carries the
//!   notice within a millisecond).
//! - What an entry may be trusted for, and how long (see `Sessions::touch_due`): an entry is
//!   served as it is until its session's expiry in Redis is due to be pushed back, i.e. until
//!   less than `idle_timeout - touch_interval` of the time the read saw left would remain. The
//!   first request after that is still answered from memory, and sends the touch to Redis off
//!   its own path (`session/touches.rs`: a `PTTL`/`PEXPIRE` script, pipelined with the other
//!   touches waiting); the requests after it are answered from memory too, and the touch's
//!   answer renews the entry until the next touch is due. An entry is never served past the
//!   expiry Redis last gave its session (`lasts`: at least `idle_timeout - touch_interval` after
//!   the touch was due), touch or not: a session used only through this cache is touched in
//!   Redis about once per `touch_interval` and stays alive, and the idle timeout is kept to the
//!   second by Redis as without the cache. A touch that finds the session gone drops the entry;
//!   one that fails leaves it due, and the next request sends it again. `max_age`
//!   (`session.cache_max_age`) bounds an entry's life from its read, touches included; nothing
//!   else does while notices flow.
//! - Size: the entries' estimated memory (see [`entry_bytes`]) stays within a budget
//!   (`session.cache_memory`); past it, the least likely to be asked again go first (quick_cache's
//!   policy: a sampled, scan-resistant CLOCK, so that a sweep over many sessions read once does
//!   not push out the ones in steady use). Its memory and entry count are in the metrics
//!   (`bff_session_cache_bytes`, `bff_session_cache_entries`), updated at every ping round.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Session;
use super::id::random_token;
use crate::redis_link::{RedisLink, Retry};
use crate::session::StoreError;

mod tripwire;

use tripwire::Tripwire;

struct Cached {
    /// Shared with every request that reads it: a hit copies no token.
    session: Arc<Session>,
    /// Served as it is until then: the session's touch is due (see the module header).
    until: Instant,
    /// Served past `until` while its touch goes to the store, never past this: the expiry the
    /// store last gave the session (or `max_age`).
    lasts: Instant,
    /// `max_age` after it was first kept: no touch serves it longer.
    max_until: Instant,
    /// A request found its touch due and sent it (see [`Hit::touch`]).
    touching: AtomicBool,
    /// What it costs in memory, key included (see [`entry_bytes`]).
    bytes: u64,
}

/// A session served from memory.
pub struct Hit {
    pub session: Arc<Session>,
    /// The session's touch is due and this request is the one to send it, off its own path
    /// (see [`NodeCache::touched`]): served meanwhile, until the store's expiry at most.
    pub touch: bool,
}

/// The estimated memory of one entry: the session's strings and structures, the key, and the
/// cache's own bookkeeping. An estimate (the allocator rounds up), close enough to size a budget.
fn entry_bytes(key: &str, session: &Session) -> u64 {
    use std::mem::size_of;
    // Arc counters (two), the cache's slot (key, value pointer, hash, policy state), its table.
    const BOOKKEEPING: usize = 2 * 16 + 64 + 16;
    let strings = session.claims.get().len()
        + session.id_token.len()
        + session.access_token.len()
        + session.refresh_token.as_ref().map_or(0, String::len)
        + session.created_on.as_ref().map_or(0, String::len)
        // The `Authorization` value made on first use ("Bearer " and the token).
        + 7 + session.access_token.len();
    (size_of::<Session>() + size_of::<Cached>() + size_of::<String>() + key.len() + strings + BOOKKEEPING) as u64
}

/// Weighs entries by their memory, for the budget.
#[derive(Clone)]
struct ByMemory;

impl quick_cache::Weighter<String, Arc<Cached>> for ByMemory {
    fn weight(&self, _key: &String, cached: &Arc<Cached>) -> u64 {
        cached.bytes
    }
}

/// A change notice this node published and waits to hear acknowledged.
#[derive(Default)]
struct Waiter {
    /// `"{node} {key}"` of every acknowledgement received: a notice sent twice (after a dropped
    /// connection) is acknowledged twice by the same node and counts once.
    acks: Mutex<HashSet<String>>,
    arrived: Notify,
}

/// Told the key of a session that changed, or `None` when any may have.
type ChangeHook = Box<dyn Fn(Option<&str>) + Send + Sync>;

pub struct NodeCache {
    entries: quick_cache::sync::Cache<String, Arc<Cached>, ByMemory>,
    /// The most memory the entries may take (estimated, see [`entry_bytes`]).
    budget: u64,
    max_age: Duration,
    /// Moves on every notice and whenever the cache is switched on or off.
    generation: AtomicU64,
    /// Subscribed to the notices of the server the command link talks to, and emptied for it:
    /// only then may entries be served.
    live: AtomicBool,
    /// How many times the cache was switched on for a subscription confirmed against a server.
    confirmations: AtomicU64,
    /// Woken when the command link may have reached another server: the listener subscribes
    /// again.
    link_moved: Notify,
    /// Milliseconds after `started` until which entries may be served: the send time of the
    /// latest ping whose pong came back, plus [`LEASE`].
    fresh_until_ms: AtomicU64,
    /// The idle connection to the server the cache is confirmed against (see [`Tripwire`]):
    /// entries are served only while it is there and intact. Set on confirmation, taken away
    /// whenever the cache is switched off.
    tripwire: RwLock<Option<Arc<Tripwire>>>,
    /// With a cluster: milliseconds after `started` before which nothing is kept or served, a
    /// [`LEASE`] after the subscription was confirmed (see the module header).
    serve_from_ms: AtomicU64,
    started: Instant,
    link: Arc<RedisLink>,
    channel: String,
    /// This node's name in notices and acknowledgements (random per process).
    node: String,
    /// Where other nodes acknowledge this node's notices.
    reply_channel: String,
    waiting: Mutex<HashMap<String, Arc<Waiter>>>,
    /// With a cluster: the node this node's subscription is on; notices are published there
    /// (see the module header).
    subscribed_on: Mutex<Option<(String, u16)>>,
    /// Told the key of every session that changed (`None`: any may have, as when the cache is
    /// switched on or off and notices may have been missed): the node's open WebSockets check
    /// their session (see [`super::OpenSockets`]).
    on_change: std::sync::OnceLock<ChangeHook>,
}

static HITS: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("bff_session_cache_total", "result" => "hit"));
static MISSES: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("bff_session_cache_total", "result" => "miss"));
static UNACKNOWLEDGED: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("bff_session_change_unacknowledged_total"));
static LIVE: LazyLock<metrics::Gauge> = LazyLock::new(|| metrics::gauge!("bff_session_cache_live"));
static CONFIRMATIONS: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("bff_session_cache_confirmations_total"));
static BYTES: LazyLock<metrics::Gauge> = LazyLock::new(|| metrics::gauge!("bff_session_cache_bytes"));
static ENTRIES: LazyLock<metrics::Gauge> = LazyLock::new(|| metrics::gauge!("bff_session_cache_entries"));
static BUDGET: LazyLock<metrics::Gauge> = LazyLock::new(|| metrics::gauge!("bff_session_cache_budget_bytes"));
/// A session dropped by a change notice (this node's or another's).
static INVALIDATED: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("bff_session_cache_invalidations_total", "scope" => "session"));
/// The whole cache emptied: switched on or off, or a notice this version does not understand.
static EMPTIED: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("bff_session_cache_invalidations_total", "scope" => "all"));

/// The entry size the cache's tables are first sized for (they grow as needed): a session with
/// tokens of a few hundred bytes to a few kilobytes.
const TYPICAL_ENTRY_BYTES: u64 = 4096;

/// How long a node serves from memory after its subscription last proved it had delivered
/// every notice; also how long a writer waits at most for acknowledgements.
pub const LEASE: Duration = Duration::from_secs(1);

/// How often the listener pings its subscription (several pings per lease, so that a late one
/// does not switch the cache off).
pub const PING_EVERY: Duration = Duration::from_millis(200);

/// How long the listener waits before subscribing again after a failure.
const RETRY_EVERY: Duration = Duration::from_millis(250);

impl NodeCache {
    /// A cache of at most `memory` bytes (estimated, see [`entry_bytes`]) whose entries live at
    /// most `max_age` (and never past their touch, see the module header).
    pub fn new(link: Arc<RedisLink>, key_prefix: &str, max_age: Duration, memory: u64) -> Arc<Self> {
        let node = random_token()[..16].to_owned();
        let memory = memory.max(1);
        // Down until the first subscription is confirmed (an alert sees a node that never got
        // there). The recorder first: a handle taken before it is installed records nothing.
        let _ = crate::metrics::handle();
        LIVE.set(0.0);
        BUDGET.set(memory as f64);
        Arc::new(NodeCache {
            entries: quick_cache::sync::Cache::with_weighter(
                (memory / TYPICAL_ENTRY_BYTES).max(1) as usize,
                memory,
                ByMemory,
            ),
            budget: memory,
            max_age,
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
            confirmations: AtomicU64::new(0),
            link_moved: Notify::new(),
            fresh_until_ms: AtomicU64::new(0),
            tripwire: RwLock::new(None),
            serve_from_ms: AtomicU64::new(0),
            started: Instant::now(),
            link,
            channel: format!("{key_prefix}:session-changed"),
            reply_channel: format!("{key_prefix}:session-changed-ack:{node}"),
            node,
            waiting: Mutex::new(HashMap::new()),
            subscribed_on: Mutex::new(None),
            on_change: std::sync::OnceLock::new(),
        })
    }

    fn millis_since_start(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }

    /// Whether entries are served: subscribed, the subscription proved within [`LEASE`] that it
    /// delivered every notice, the server it was confirmed against has not ended (its
    /// [`Tripwire`] is intact; one system call, no round trip), and (with a cluster) it was
    /// confirmed at least a lease ago.
    pub fn is_live(&self) -> bool {
        let now = self.millis_since_start(Instant::now());
        self.live.load(Ordering::SeqCst)
            && now < self.fresh_until_ms.load(Ordering::SeqCst)
            && now >= self.serve_from_ms.load(Ordering::SeqCst)
            && self.tripwire.read().expect("tripwire").as_ref().is_some_and(|tripwire| tripwire.intact())
    }

    /// How many times this node subscribed to the notices of a server, confirmed that the
    /// command link talks to that same server, and emptied its cache for it. A verifier that read
    /// `n` before a Redis restart waits for more than `n` (and [`NodeCache::is_live`]) to know
    /// that the node's cache no longer holds anything from the old server.
    pub fn confirmations(&self) -> u64 {
        self.confirmations.load(Ordering::SeqCst)
    }

    /// Every notice published before `sent` has been handled: entries may be served until
    /// `sent + LEASE`.
    fn proven_at(&self, sent: Instant) {
        self.fresh_until_ms.fetch_max(self.millis_since_start(sent + LEASE), Ordering::SeqCst);
    }

    /// The session under `key`, when this node read it, no notice about it came since, and
    /// neither the store's expiry nor `max_age` has come; past its touch (see the module
    /// header), the first request to find it so is told to send the touch.
    pub fn get(&self, key: &str) -> Option<Hit> {
        if !self.is_live() {
            return None;
        }
        let Some(cached) = self.entries.get(key) else {
            MISSES.increment(1);
            return None;
        };
        let now = Instant::now();
        if cached.until > now {
            HITS.increment(1);
            return Some(Hit { session: cached.session.clone(), touch: false });
        }
        if cached.lasts > now {
            HITS.increment(1);
            let touch = !cached.touching.swap(true, Ordering::SeqCst);
            return Some(Hit { session: cached.session.clone(), touch });
        }
        self.entries.remove(key);
        MISSES.increment(1);
        None
    }

    /// The store pushed `key`'s expiry back (or it was not yet due there), in a touch sent when
    /// the generation was `seen`: its entry is served again until `until` and never past
    /// `lasts`. Unless a notice came since (what it holds may be stale): then it stays as it
    /// was, and the next request sends the touch again.
    pub fn touched(&self, key: &str, seen: u64, until: Instant, lasts: Instant) {
        let Some(old) = self.entries.get(key) else { return };
        // Switched off or emptied since (which moves the counter too): not renewed.
        if self.generation() != seen {
            old.touching.store(false, Ordering::SeqCst);
            return;
        }
        let cached = Cached {
            session: old.session.clone(),
            until: until.min(old.max_until),
            lasts: lasts.min(old.max_until),
            max_until: old.max_until,
            touching: AtomicBool::new(false),
            bytes: old.bytes,
        };
        self.entries.insert(key.to_owned(), Arc::new(cached));
        // A notice that moved the counter before this insert may have removed the key before it
        // was inserted: take it back.
        if self.generation() != seen {
            self.entries.remove(key);
        }
    }

    /// The touch of `key` failed: the next request that finds it due sends it again.
    pub fn untouched(&self, key: &str) {
        if let Some(cached) = self.entries.get(key) {
            cached.touching.store(false, Ordering::SeqCst);
        }
    }

    /// The store no longer holds `key` (found by its touch): not served again.
    pub fn gone(&self, key: &str) {
        self.entries.remove(key);
    }

    /// The entries' estimated memory in bytes, and how many there are.
    pub fn size(&self) -> (u64, usize) {
        (self.entries.weight(), self.entries.len())
    }

    /// Publishes [`NodeCache::size`] in the metrics.
    fn report_size(&self) {
        let (bytes, entries) = self.size();
        BYTES.set(bytes as f64);
        ENTRIES.set(entries as f64);
        // Here rather than once at start: the metrics recorder is installed after the cache.
        BUDGET.set(self.budget as f64);
    }

    /// Taken before reading a session from the store, handed to [`NodeCache::keep`] after.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Keeps what was read from the store until `touch_due` (when the next read must reach the
    /// store to push the session's expiry back, see the module header) or `max_age` from now,
    /// whichever comes first; unless a notice came since `seen` (what was read may already be
    /// stale).
    pub fn keep(&self, key: &str, session: &Arc<Session>, seen: u64, touch_due: Instant, lasts: Instant) {
        if !self.is_live() || self.generation() != seen {
            return;
        }
        let now = Instant::now();
        let max_until = now.checked_add(self.max_age).unwrap_or(lasts);
        let (until, lasts) = (touch_due.min(max_until), lasts.min(max_until));
        if lasts <= now {
            return;
        }
        let cached = Cached {
            session: session.clone(),
            until,
            lasts,
            max_until,
            touching: AtomicBool::new(false),
            bytes: entry_bytes(key, session),
        };
        self.entries.insert(key.to_owned(), Arc::new(cached));
        // A notice that moved the counter before this insert may have removed the key before it
        // was inserted: take it back.
        if self.generation() != seen {
            self.entries.remove(key);
        }
    }

    fn forget(&self, key: &str) {
        INVALIDATED.increment(1);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(key);
        if let Some(hook) = self.on_change.get() {
            hook(Some(key));
        }
    }

    /// Drops every entry (a read in flight is not kept either).
    fn forget_all(&self) {
        EMPTIED.increment(1);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
        if let Some(hook) = self.on_change.get() {
            hook(None);
        }
    }

    /// Calls `hook` with the key of every session a notice (or this node) says changed, and
    /// with `None` whenever notices may have been missed. One hook per cache; a second is
    /// ignored.
    pub fn on_change(&self, hook: impl Fn(Option<&str>) + Send + Sync + 'static) {
        let _ = self.on_change.set(Box::new(hook));
    }

    /// Switches the cache on and proves its subscription now, without Redis: for tests of what
    /// it keeps and for how long.
    #[cfg(test)]
    pub(crate) fn live_for_a_test(&self) {
        if !self.live.load(Ordering::SeqCst) {
            *self.tripwire.write().expect("tripwire") = Some(Arc::new(Tripwire::to_nowhere()));
            self.switch(true);
        }
        self.proven_at(Instant::now());
    }

    /// Switches the cache on or off; either way it is emptied. Switched off, it lets go of its
    /// [`Tripwire`]; switched on, it serves only once one is set (see [`NodeCache::confirm`]).
    fn switch(&self, live: bool) {
        if !live {
            self.fresh_until_ms.store(0, Ordering::SeqCst);
            *self.tripwire.write().expect("tripwire") = None;
        }
        self.live.store(live, Ordering::SeqCst);
        self.forget_all();
        LIVE.set(if live { 1.0 } else { 0.0 });
        self.report_size();
    }

    /// Called by the command link the moment its connection may reach another server: nothing
    /// read from the old one is served any more, and the listener subscribes again.
    fn link_reconnected(&self) {
        self.switch(false);
        self.link_moved.notify_one();
    }

    /// Switches the cache on, emptied, for a subscription confirmed against one server (see the
    /// module header) and tied to its `tripwire`, unless the command link reconnected since it
    /// read `reconnects`: then the server it talks to may be another, and the cache stays off.
    fn confirm(&self, reconnects: u64, sent: Instant, tripwire: Arc<Tripwire>) -> bool {
        if self.link.is_cluster() {
            // A writer still subscribed on the node the notices left publishes there; this
            // subscription hears it over the cluster bus, in no order with its own pings. For
            // the first lease, while other nodes may still be there, it serves nothing.
            self.serve_from_ms.store(self.millis_since_start(Instant::now() + LEASE), Ordering::SeqCst);
        }
        // Before the switch: a switch-off racing with this one takes it away again, and the
        // cache, on without a tripwire, serves nothing.
        *self.tripwire.write().expect("tripwire") = Some(tripwire);
        self.switch(true);
        self.proven_at(sent);
        // A reconnect that the check below misses moved the counter after it; its hook's
        // switch-off then comes after the switch-on above, and wins.
        if self.link.reconnects() != reconnects {
            self.switch(false);
            return false;
        }
        self.confirmations.fetch_add(1, Ordering::SeqCst);
        CONFIRMATIONS.increment(1);
        true
    }

    /// Tells every node (this one included) that these sessions changed or ended, and returns
    /// once no node serves them from memory any more: every subscriber acknowledged, or
    /// [`LEASE`] passed (see the module header). Called after the store was written.
    pub async fn changed(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        for key in keys {
            self.forget(key);
        }
        let nonce = random_token();
        let waiter = Arc::new(Waiter::default());
        self.waiting.lock().expect("waiters").insert(nonce.clone(), waiter.clone());
        let _unregister = Unregister { cache: self, nonce: &nonce };

        let messages: Vec<(String, String)> =
            keys.iter().map(|key| (self.channel.clone(), format!("{key} {} {nonce}", self.node))).collect();
        // With a cluster: on the node of this node's own subscription.
        let cluster = self.link.is_cluster();
        let subscribed_on =
            if cluster && self.is_live() { self.subscribed_on.lock().expect("subscription").clone() } else { None };
        // A notice says "read it again": two of them do no harm, and acknowledgements are
        // counted once per node and key. Safe to repeat.
        let receivers = self.link.publish(&messages, subscribed_on.as_ref(), Retry::Safe).await?;
        // Redis has taken every notice: from now on, a node that has not handled it stops
        // serving from memory within `LEASE`.
        let now = Instant::now();
        let deadline = now + LEASE;
        // With a cluster, `PUBLISH` counts only the subscribers of the node that took it, while
        // the notice reaches every node's subscribers over the cluster bus: during a failover,
        // one gateway node may already be subscribed on the new notice node while another is
        // still on the old one. So every node's subscribers are counted, asked after the notices
        // were taken: a subscription that was there then is counted, or it ended and its cache
        // is off. Not known (a node does not answer): the writer waits for the lease.
        let expected = if cluster {
            match tokio::time::timeout_at(deadline, self.link.subscribers_everywhere(&self.channel)).await {
                Ok(Ok(subscribers)) => Some(subscribers * keys.len()),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "change notice: subscribers not counted; waiting for the lease");
                    None
                }
                Err(_) => None,
            }
        } else {
            Some(receivers.iter().sum())
        };
        loop {
            let arrived = waiter.arrived.notified();
            let acks = waiter.acks.lock().expect("acks").len();
            if expected.is_some_and(|expected| acks >= expected) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                UNACKNOWLEDGED.increment(1);
                tracing::debug!(
                    ?expected,
                    received = waiter.acks.lock().expect("acks").len(),
                    "change notice not acknowledged by every node; their leases have run out"
                );
                return Ok(());
            }
        }
    }

    fn acknowledged(&self, payload: &str) {
        let Some((nonce, who)) = payload.split_once(' ') else { return };
        let waiter = self.waiting.lock().expect("waiters").get(nonce).cloned();
        if let Some(waiter) = waiter {
            waiter.acks.lock().expect("acks").insert(who.to_owned());
            waiter.arrived.notify_one();
        }
    }

    /// Handles one message of the subscription: a notice (forget, then acknowledge) or an
    /// acknowledgement of this node's own notice.
    fn handle(&self, notice: &redis::Msg) {
        let Ok(payload) = notice.get_payload::<String>() else {
            self.forget_all();
            return;
        };
        if notice.get_channel_name() == self.reply_channel {
            self.acknowledged(&payload);
            return;
        }
        let mut parts = payload.split(' ');
        let (Some(key), Some(node), Some(nonce), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            // Not a notice this version understands: forget everything rather than miss one.
            self.forget_all();
            return;
        };
        self.forget(key);
        let mut ack = redis::cmd("PUBLISH");
        let reply_channel = format!("{}-ack:{node}", self.channel);
        ack.arg(reply_channel).arg(format!("{nonce} {} {key}", self.node));
        let link = self.link.clone();
        // Counted once per node and key by the writer: safe to repeat.
        tokio::spawn(async move { link.query::<()>(&ack, Retry::Safe).await });
    }

    /// Listens for notices for as long as the node runs, subscribing again after every
    /// connection loss and every reconnect of the command link; the cache is live only while
    /// subscribed and confirmed (see the module header).
    pub fn listen_in_background(self: &Arc<Self>) {
        let cache = Arc::downgrade(self);
        self.link.on_reconnect(move || {
            if let Some(cache) = cache.upgrade() {
                cache.link_reconnected();
            }
        });
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                let confirmed_before = cache.confirmations();
                // Off at once as it ends (see `OffWhenDropped`): whatever ended the subscription
                // (most often, Redis going away) may have ended the server the entries were
                // read from.
                let Err(error) = cache.listen().await;
                if cache.confirmations() != confirmed_before {
                    tracing::warn!(%error, "session cache off until change notices are received again");
                    // The command connection most likely broke with this one: a PING now lets it
                    // reconnect before a user's request finds it broken (a one-time login state
                    // or a logout index cannot be read twice).
                    let _: Result<String, _> = cache.link.query(&redis::cmd("PING"), Retry::Safe).await;
                } else {
                    tracing::debug!(%error, "session cache: not subscribed");
                }
                // A subscription that was confirmed and ended is replaced at once; one that
                // could not be made waits a little before the next attempt.
                if cache.confirmations() == confirmed_before {
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        });
    }

    /// The `run_id` of the server the command link talks to, within the link's bound.
    async fn server_id(&self) -> Result<String, redis::RedisError> {
        self.link
            .server_id(&self.channel)
            .await
            .map_err(|error| redis::RedisError::from((redis::ErrorKind::Io, "no redis server id", error.to_string())))
    }

    /// One subscription, until its connection fails or stops answering, or the command link
    /// comes to talk to another server.
    async fn listen(&self) -> Result<std::convert::Infallible, redis::RedisError> {
        let timeout = self.link.timeout();
        let timed_out = || redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        let moved = |what: String| redis::RedisError::from((redis::ErrorKind::Io, "redis server changed", what));
        let reconnects = self.link.reconnects();
        let server = self.server_id().await?;
        let client = self.link.pubsub_client(&self.channel).await.map_err(|error| {
            redis::RedisError::from((redis::ErrorKind::Io, "no redis to subscribe on", error.to_string()))
        })?;
        // Opened, as the subscription, between the two `run_id` answers: to the same server.
        let tripwire = tokio::time::timeout(timeout, Tripwire::connect(client.get_connection_info().addr()))
            .await
            .map_err(|_| timed_out())??;
        let tripwire = Arc::new(tripwire);
        let pubsub = tokio::time::timeout(timeout, client.get_async_pubsub()).await.map_err(|_| timed_out())??;
        let (mut sink, mut notices) = pubsub.split();
        // Dropped before the subscription's connection (declared after it): the cache is off
        // before Redis can see the subscription end and stop counting it (see
        // [`NodeCache::changed`]).
        let _off = OffWhenDropped(self);
        let sent = Instant::now();
        tokio::time::timeout(timeout, sink.subscribe(&[&self.channel, &self.reply_channel]))
            .await
            .map_err(|_| timed_out())??;
        // The subscription was opened after the first answer and before this one: when both name
        // one server, it went to that server.
        let subscribed_on = self.server_id().await?;
        if subscribed_on != server {
            return Err(moved(format!("run_id {server} then {subscribed_on} while subscribing")));
        }
        if let redis::ConnectionAddr::Tcp(host, port) | redis::ConnectionAddr::TcpTls { host, port, .. } =
            client.get_connection_info().addr()
        {
            *self.subscribed_on.lock().expect("subscription") = Some((host.clone(), *port));
        }
        if !self.confirm(reconnects, sent, tripwire.clone()) {
            return Err(moved("the command link reconnected while subscribing".into()));
        }
        tracing::info!(redis_run_id = %server, "session cache on: subscribed to change notices");
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        loop {
            tokio::select! {
                notice = notices.next() => match notice {
                    Some(notice) => self.handle(&notice),
                    None => return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()),
                },
                () = tripwire.tripped() => {
                    return Err(moved("the server closed the connection the cache is tied to".into()));
                }
                () = self.link_moved.notified() => {
                    if self.link.reconnects() != reconnects {
                        return Err(moved("the command link reconnected".into()));
                    }
                }
                _ = ping.tick() => {
                    let sent = Instant::now();
                    match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => return Err(error),
                        Err(_) => return Err(timed_out()),
                    }
                    // Every notice Redis published before this ping came in before its pong
                    // and waits in the stream: handle them before extending the lease.
                    while let Some(Some(notice)) = notices.next().now_or_never() {
                        self.handle(&notice);
                    }
                    // The subscription's server is the one the command link reads from.
                    let now = self.server_id().await?;
                    if now != server {
                        return Err(moved(format!("run_id {server} then {now}")));
                    }
                    if self.link.reconnects() != reconnects {
                        return Err(moved("the command link reconnected".into()));
                    }
                    self.proven_at(sent);
                    self.report_size();
                }
            }
        }
    }
}

/// Switches the cache off however a subscription ends (see [`NodeCache::listen`]).
struct OffWhenDropped<'a>(&'a NodeCache);

impl Drop for OffWhenDropped<'_> {
    fn drop(&mut self) {
        self.0.switch(false);
    }
}

/// Removes a waiter however [`NodeCache::changed`] ends (answered, timed out, dropped).
struct Unregister<'a> {
    cache: &'a NodeCache,
    nonce: &'a str,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.cache.waiting.lock().expect("waiters").remove(self.nonce);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            format: crate::compat::RecordFormat::current(),
            created_at: 0,
            claims: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            id_token: "id".into(),
            access_token: "at".into(),
            refresh_token: None,
            access_token_expires_at: None,
            created_on: None,
            bearer: Default::default(),
        }
    }

    fn cache(max_age: Duration) -> Arc<NodeCache> {
        sized(max_age, 1 << 20)
    }

    fn sized(max_age: Duration, memory: u64) -> Arc<NodeCache> {
        // No I/O happens until the listener starts, which these tests do not do.
        let link = RedisLink::new("redis://127.0.0.1:1", Duration::from_secs(1)).unwrap();
        let cache = NodeCache::new(link, "test", max_age, memory);
        cache.live_for_a_test();
        cache
    }

    /// A touch that is not due for an hour.
    fn later() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// Whether `key` is served, and whether this request is told to send its touch.
    fn served(cache: &NodeCache, key: &str) -> Option<bool> {
        cache.proven_at(Instant::now());
        cache.get(key).map(|hit| hit.touch)
    }

    #[tokio::test(start_paused = true)]
    async fn past_its_touch_an_entry_is_served_while_one_request_sends_it_and_never_past_the_stores_expiry() {
        let cache = cache(Duration::from_secs(3600));
        let due = Instant::now() + Duration::from_secs(60);
        let lasts = Instant::now() + Duration::from_secs(120);
        cache.keep("s:a", &Arc::new(session()), cache.generation(), due, lasts);
        tokio::time::advance(Duration::from_millis(59_990)).await;
        assert_eq!(served(&cache, "s:a"), Some(false), "before the touch is due");
        tokio::time::advance(Duration::from_millis(20)).await;
        assert_eq!(served(&cache, "s:a"), Some(true), "due: this request sends the touch");
        assert_eq!(served(&cache, "s:a"), Some(false), "sent already: served, not sent again");
        // The touch failed: the next request sends it again.
        cache.untouched("s:a");
        assert_eq!(served(&cache, "s:a"), Some(true));
        // It answered: served as it is until the new due time.
        let seen = cache.generation();
        cache.touched("s:a", seen, Instant::now() + Duration::from_secs(30), Instant::now() + Duration::from_secs(90));
        tokio::time::advance(Duration::from_millis(29_990)).await;
        assert_eq!(served(&cache, "s:a"), Some(false));
        tokio::time::advance(Duration::from_millis(20)).await;
        assert_eq!(served(&cache, "s:a"), Some(true));
        // Never past the expiry the store gave, touch or not.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(served(&cache, "s:a"), None, "the store's expiry came");

        // A touch that answers after a notice leaves the entry as it was (due, to be sent again).
        cache.keep("s:b", &Arc::new(session()), cache.generation(), Instant::now(), later());
        assert_eq!(served(&cache, "s:b"), Some(true));
        let seen = cache.generation();
        cache.forget("s:other");
        cache.touched("s:b", seen, later(), later());
        assert_eq!(served(&cache, "s:b"), Some(true), "not renewed across a notice; sent again");
        // A touch that found the session gone: not served again.
        cache.gone("s:b");
        assert_eq!(served(&cache, "s:b"), None);
        // A read that found the store's expiry already come is not kept.
        cache.keep("s:c", &Arc::new(session()), cache.generation(), Instant::now(), Instant::now());
        assert_eq!(served(&cache, "s:c"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn max_age_shortens_an_entry_that_is_not_due() {
        let cache = cache(Duration::from_secs(5));
        cache.keep("s:a", &Arc::new(session()), cache.generation(), later(), later());
        tokio::time::advance(Duration::from_millis(4_990)).await;
        cache.proven_at(Instant::now());
        assert!(cache.get("s:a").is_some());
        tokio::time::advance(Duration::from_millis(20)).await;
        cache.proven_at(Instant::now());
        assert!(cache.get("s:a").is_none(), "older than max_age");
    }

    #[tokio::test]
    async fn the_entries_stay_within_the_memory_budget_and_report_it() {
        let one = entry_bytes("s:000000", &session());
        assert!(one > 300, "bookkeeping and strings are counted: {one}");
        let budget = 1 << 20;
        let cache = sized(Duration::from_secs(3600), budget);
        let many = 4 * budget / one;
        for i in 0..many {
            cache.keep(&format!("s:{i:06}"), &Arc::new(session()), cache.generation(), later(), later());
        }
        let (bytes, entries) = cache.size();
        assert!(bytes <= budget, "{bytes} bytes in a budget of {budget}");
        assert!(bytes > budget / 2, "the budget is used: {bytes} of {budget}");
        assert_eq!(bytes, entries as u64 * one, "every entry weighs what it holds");
        assert!((entries as u64) < many, "entries were evicted");
    }

    #[tokio::test]
    async fn a_session_in_steady_use_outlives_a_sweep_over_sessions_read_once() {
        let one = entry_bytes("s:0000", &session());
        let cache = sized(Duration::from_secs(3600), 1000 * one);
        cache.keep("s:hot", &Arc::new(session()), cache.generation(), later(), later());
        for i in 0..5000 {
            assert!(cache.get("s:hot").is_some(), "evicted after {i} others");
            cache.keep(&format!("s:{i:04}"), &Arc::new(session()), cache.generation(), later(), later());
        }
    }

    #[tokio::test]
    async fn serves_what_it_kept_until_a_notice() {
        let cache = cache(Duration::from_secs(60));
        cache.keep("s:a", &Arc::new(session()), cache.generation(), later(), later());
        assert!(cache.get("s:a").is_some());
        cache.forget("s:a");
        assert!(cache.get("s:a").is_none());
    }

    #[tokio::test]
    async fn a_read_that_raced_with_a_notice_is_not_kept() {
        let cache = cache(Duration::from_secs(60));
        let seen = cache.generation();
        cache.forget("s:other"); // a notice arrives while the session is read from the store
        cache.keep("s:a", &Arc::new(session()), seen, later(), later());
        assert!(cache.get("s:a").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_served_once_the_subscription_has_not_answered_for_a_lease() {
        let cache = cache(Duration::from_secs(60));
        cache.keep("s:a", &Arc::new(session()), cache.generation(), later(), later());
        tokio::time::advance(LEASE - Duration::from_millis(10)).await;
        assert!(cache.get("s:a").is_some(), "within the lease");
        tokio::time::advance(Duration::from_millis(20)).await;
        assert!(cache.get("s:a").is_none(), "the lease ran out");
        cache.proven_at(Instant::now());
        assert!(cache.get("s:a").is_some(), "a pong extends the lease");
    }

    #[tokio::test]
    async fn an_acknowledgement_counts_once_per_node_and_key() {
        let cache = cache(Duration::from_secs(60));
        let waiter = Arc::new(Waiter::default());
        cache.waiting.lock().unwrap().insert("n1".into(), waiter.clone());
        cache.acknowledged("n1 node-a s:a");
        cache.acknowledged("n1 node-a s:a");
        cache.acknowledged("n1 node-b s:a");
        cache.acknowledged("n2 node-c s:a");
        assert_eq!(waiter.acks.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_reconnect_of_the_command_link_empties_the_cache_and_switches_it_off() {
        let cache = cache(Duration::from_secs(60));
        cache.keep("s:a", &Arc::new(session()), cache.generation(), later(), later());
        cache.link_reconnected();
        assert!(!cache.is_live());
        assert!(cache.get("s:a").is_none());
        // An entry read before the reconnect is not kept either.
        let seen = cache.generation();
        cache.link_reconnected();
        assert!(cache.confirm(cache.link.reconnects(), Instant::now(), Arc::new(Tripwire::to_nowhere())));
        cache.keep("s:a", &Arc::new(session()), seen, later(), later());
        assert!(cache.get("s:a").is_none());
    }

    #[tokio::test]
    async fn a_subscription_is_confirmed_only_when_the_link_did_not_reconnect_meanwhile() {
        let cache = cache(Duration::from_secs(60));
        let before = cache.confirmations();
        let reconnects = cache.link.reconnects();
        assert!(cache.confirm(reconnects, Instant::now(), Arc::new(Tripwire::to_nowhere())));
        assert_eq!(cache.confirmations(), before + 1);
        assert!(cache.is_live());
        assert!(
            !cache.confirm(reconnects + 1, Instant::now(), Arc::new(Tripwire::to_nowhere())),
            "the link reconnected: another server maybe"
        );
        assert_eq!(cache.confirmations(), before + 1);
        assert!(!cache.is_live());
    }

    /// A listener that has not run since before a Redis restart (a task scheduled late on a
    /// loaded machine) still holds a confirmed cache, and its lease still runs, when the
    /// restarted Redis (no persistence: the session is gone) answers again. The cache must not
    /// answer for the server that ended.
    #[tokio::test]
    async fn a_restarted_redis_is_not_answered_for_while_the_listener_has_not_run() {
        let mut redis = harness::RedisProcess::start(false).await.unwrap();
        let link = RedisLink::new(&redis.url(), Duration::from_secs(5)).unwrap();
        link.connect().await;
        let cache = NodeCache::new(link, "test", Duration::from_secs(60), 1 << 20);
        let listener = cache.listen();
        tokio::pin!(listener);
        let deadline = Instant::now() + Duration::from_secs(30);
        while cache.confirmations() == 0 {
            assert!(Instant::now() < deadline, "no subscription confirmed within 30 s");
            tokio::select! {
                ended = &mut listener => {
                    let Err(error) = ended;
                    panic!("the subscription ended before it was confirmed: {error}");
                }
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        // From here on the listener is not polled: it has not run, as far as the cache knows.
        cache.keep("s:a", &Arc::new(session()), cache.generation(), later(), later());
        // Whatever the lease: here it runs for another minute, as if a pong had just come back.
        cache.proven_at(Instant::now() + Duration::from_secs(60));
        assert!(cache.get("s:a").is_some(), "served from memory before the restart");

        redis.restart().await.unwrap();
        assert!(cache.get("s:a").is_none(), "served from memory for a server that ended");
        assert!(!cache.is_live());
    }

    #[tokio::test(start_paused = true)]
    async fn on_a_cluster_a_new_subscription_keeps_and_serves_nothing_for_a_lease() {
        // No I/O happens until the listener starts, which this test does not do.
        let link = RedisLink::new("redis+cluster://127.0.0.1:1", Duration::from_secs(1)).unwrap();
        let cache = NodeCache::new(link, "test", Duration::from_secs(60), 1 << 20);
        assert!(cache.confirm(cache.link.reconnects(), Instant::now(), Arc::new(Tripwire::to_nowhere())));
        cache.keep("s:a", &Arc::new(session()), cache.generation(), later(), later());
        assert!(!cache.is_live(), "a writer on the old notice node may still answer at once");
        assert!(cache.get("s:a").is_none(), "nothing read in the first lease is kept");
        tokio::time::advance(LEASE - Duration::from_millis(10)).await;
        cache.proven_at(Instant::now());
        assert!(!cache.is_live());
        tokio::time::advance(Duration::from_millis(20)).await;
        cache.proven_at(Instant::now());
        assert!(cache.is_live(), "a lease after the subscription was confirmed");
        cache.keep("s:a", &Arc::new(session()), cache.generation(), later(), later());
        assert!(cache.get("s:a").is_some());
    }

    #[tokio::test]
    async fn on_one_server_a_new_subscription_serves_at_once() {
        let cache = cache(Duration::from_secs(60));
        assert!(cache.confirm(cache.link.reconnects(), Instant::now(), Arc::new(Tripwire::to_nowhere())));
        cache.keep("s:a", &Arc::new(session()), cache.generation(), later(), later());
        assert!(cache.get("s:a").is_some());
    }

    #[tokio::test]
    async fn nothing_is_served_while_not_subscribed() {
        let cache = cache(Duration::from_secs(60));
        cache.keep("s:a", &Arc::new(session()), cache.generation(), later(), later());
        cache.switch(false);
        assert!(cache.get("s:a").is_none());
        cache.live_for_a_test();
        assert!(cache.is_live());
        assert!(cache.get("s:a").is_none(), "switching empties the cache");
    }
}
