//! [`StoreError`]: the one failure of every shared store, whatever holds the bytes.
//!
//! The session stores, the key ring's Redis store and the Redis link under both answer it, so it
//! stands below all three: the key ring and the link take it from here rather than from
//! `session`, which itself needs the key ring.

/// The store could not answer; the request gets a 503 and nothing is lost.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}
