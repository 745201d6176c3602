//! Faults on the links of a deployment: a [`FaultProxy`] stands between a node and what it talks
//! to (Redis), so a test or a scenario can make that one link slow, silent or broken while the
//! processes on both ends keep running.
//!
//! Why a small relay of our own rather than Toxiproxy's Rust port (`noxious`) or `tc netem`:
//! the process backend runs every node on `127.0.0.1`, shared with other users of the machine,
//! so `netem` on `lo` would slow everyone's traffic and a network namespace per node needs root;
//! `noxious` (last release 2021) exposes its proxies only through its server's internal event
//! channels and brings older `tokio-util` and `rand` along. What the faults need is a byte relay
//! that can delay, hold or reset, which `tokio::io` gives in a few lines; the protocols on both
//! ends stay the real ones.

mod proxy;

pub use proxy::{Fault, FaultProxy};
