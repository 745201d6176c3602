//! One value a client observed of a node (a text, or a lifetime in seconds compared with a
//! skew), shared by the readers of authorization requests and cookies and by the comparison.

use std::fmt;
use std::time::Duration;

/// Lifetimes at most this far apart are the same lifetime: an `Expires` and the `Date` it is
/// counted from are cut to whole seconds, and written at slightly different instants.
pub const LIFETIME_SKEW_SECS: i64 = 2;

/// One observed value: text, or a lifetime in seconds (compared with [`LIFETIME_SKEW_SECS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observed {
    Text(String),
    Seconds(i64),
}

impl Observed {
    pub(crate) fn text(value: impl Into<String>) -> Self {
        Observed::Text(value.into())
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Text(text) => f.write_str(text),
            Observed::Seconds(secs) => f.write_str(&lifetime_shown(*secs)),
        }
    }
}

/// `30m`, `1h 0m 1s` → `1h` when within the skew of a whole minute.
pub(crate) fn lifetime_shown(secs: i64) -> String {
    let rounded = (secs + 30).div_euclid(60) * 60;
    let secs = if secs >= 60 && (secs - rounded).abs() <= LIFETIME_SKEW_SECS { rounded } else { secs };
    humantime::format_duration(Duration::from_secs(secs.max(0) as u64)).to_string()
}
