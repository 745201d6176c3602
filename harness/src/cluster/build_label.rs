//! What build a node runs, for reports: the version a `bff` binary carries behind its
//! `bff-version:` marker (the one `/ops/fingerprint` reports), found in the file itself, so that
//! a binary that is not running (the next step of a rolling upgrade) can be named too. An image
//! is named by its tag.

use std::path::Path;

const MARKER: &[u8] = b"bff-version:";

/// The version in a `bff` binary (`0.1.0`), or its file name when it carries no marker.
pub fn of_binary(binary: &Path) -> String {
    let named = || binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Ok(bytes) = std::fs::read(binary) else { return named() };
    let Some(at) = bytes.windows(MARKER.len()).position(|w| w == MARKER) else { return named() };
    // A semantic version: digits and dots, then `-pre` or `+build` when there is one (the next
    // string in the binary may follow with no separator).
    let rest = &bytes[at + MARKER.len()..];
    let core = rest.iter().take_while(|b| b.is_ascii_digit() || **b == b'.').count();
    let tail = match rest.get(core) {
        Some(b'-' | b'+') => {
            1 + rest[core + 1..].iter().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')).count()
        }
        _ => 0,
    };
    let version = String::from_utf8_lossy(&rest[..core + tail]).into_owned();
    if version.is_empty() { named() } else { version }
}

/// A build named by a binary path or an image reference: `0.1.0`, `bff-local/bff:0.1.0`.
pub fn of(build: &str) -> String {
    let path = Path::new(build);
    if path.is_file() { of_binary(path) } else { build.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_is_named_by_its_marker() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bff");
        std::fs::write(&file, b"\x00\x01junk bff-version:0.1.0bff-version:\x00more").unwrap();
        assert_eq!(of_binary(&file), "0.1.0");
        std::fs::write(&file, b"bff-version:0.3.0-rc.1\x00").unwrap();
        assert_eq!(of_binary(&file), "0.3.0-rc.1");
        std::fs::write(&file, b"no marker").unwrap();
        assert_eq!(of_binary(&file), "bff");
        assert_eq!(of("bff-local/bff:old"), "bff-local/bff:old");
    }
}
