//! Which records a node can share a cluster with: the record format it writes, the formats it
//! reads, and the check at start that refuses to join a cluster outside that window.
//!
//! Two builds share a cluster during every rolling upgrade (and every roll-back), and each reads
//! what the other wrote: sessions, pending-login cookies, the key ring, the login and logout
//! replay markers, the back-channel logout indexes. The rule (see `docs/src/upgrades.md`):
//!
//! - every record a build writes carries, or is laid out as, one *record format* `F`;
//! - a build that writes `F` reads `F - 1`, `F` and `F + 1`: the next format may only add what an
//!   older build ignores (a JSON field with a default), so the build before it reads it; a change
//!   an older build cannot read takes two releases (the first reads it, the second writes it);
//! - a build refuses to start in a cluster where a build of a format outside `F - 1 ..= F + 1`
//!   announced itself ([`cluster_formats`]), naming both versions; it never serves, so it never
//!   logs anybody out. A stored record of a format it does not read is treated as absent and
//!   logged at error level with its format.
//!
//! Format 1 is what bff 0.1.0 writes (no format field; its readers ignore unknown fields),
//! format 2 (bff 0.2.0) adds the `format` field to sessions and pending logins and the
//! announcement of each node's format in Redis. The key ring's entries keep their own wrapping
//! format (`keyring::stored_key`); the markers and indexes are unchanged since format 1.

mod cluster_formats;

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

pub use cluster_formats::{Announced, ClusterFormats, FormatError};

/// The record format this build writes, behind a marker that finds it in a binary: a test
/// makes a build that writes another format by changing the digit after the marker (as the
/// version marker of `config::fingerprint`), without a second compilation.
const WRITTEN_MARKER: &str = "bff-record-format:2;";

/// The record format of every record bff 0.1.0 wrote: records without a `format` field.
pub const LEGACY: u8 = 1;

/// The record format this build writes.
pub fn written() -> u8 {
    // Read at run time from the marker's bytes (a patched binary writes its own digit).
    let marker = std::hint::black_box(WRITTEN_MARKER.as_bytes());
    marker.get(marker.len().saturating_sub(2)).map_or(LEGACY, |digit| digit.wrapping_sub(b'0'))
}

/// The formats this build reads: the one it writes and each neighbour.
pub fn readable() -> RangeInclusive<u8> {
    let written = written();
    written.saturating_sub(1).max(LEGACY)..=written.saturating_add(1)
}

/// The format a stored record was written in: serialised as a number, absent in format 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordFormat(pub u8);

impl RecordFormat {
    /// The format of a record that carries none: written by bff 0.1.0.
    pub fn legacy() -> Self {
        RecordFormat(LEGACY)
    }

    /// The format this build writes its records in.
    pub fn current() -> Self {
        RecordFormat(written())
    }

    /// Whether this build reads records of this format.
    pub fn is_readable(self) -> bool {
        readable().contains(&self.0)
    }
}

impl std::fmt::Display for RecordFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_build_writes_format_2_and_reads_its_neighbours() {
        assert_eq!(written(), 2);
        assert_eq!(readable(), 1..=3);
        assert!(RecordFormat::legacy().is_readable());
        assert!(RecordFormat::current().is_readable());
        assert!(!RecordFormat(4).is_readable());
        assert!(!RecordFormat(0).is_readable());
    }
}
