//! Run directories: where one run's files go, so that a node's output lands in a file a person
//! can read (`bffctl logs node-2`) instead of in `bffctl`'s terminal.
//!
//! Every cluster gets one directory under the runs root (`$BFFCTL_RUNS`, else
//! `<tmp>/bffctl/runs`), named `<UTC time, to the nanosecond>-<label>-<random>`, holding `node-1.log`, `node-2.log`,
//! …. A `latest` link points at the newest; the oldest are removed past [`KEEP_RUNS`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The variable that moves the runs root.
pub const RUNS_ENV: &str = "BFFCTL_RUNS";
/// How many run directories are kept.
pub const KEEP_RUNS: usize = 30;
/// The link to the newest run directory.
const LATEST: &str = "latest";

/// `$BFFCTL_RUNS`, else `<tmp>/bffctl/runs`.
pub fn runs_root() -> PathBuf {
    std::env::var_os(RUNS_ENV).map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("bffctl").join("runs"))
}

/// Creates a new run directory under `root`, points `latest` at it and prunes old runs.
pub fn create(root: &Path, label: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string().replace(':', "");
    let label: String = label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let dir = root.join(format!("{time}-{label}-{:04x}", rand::random::<u16>()));
    std::fs::create_dir(&dir)?;
    let latest = root.join(LATEST);
    let _ = std::fs::remove_file(&latest);
    // A link is a convenience: a concurrent run may have made it first.
    let _ = std::os::unix::fs::symlink(dir.file_name().expect("a run directory has a name"), &latest);
    prune(root, &dir);
    Ok(dir)
}

/// The newest run directory under `root`, when there is one.
pub fn latest(root: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(root.join(LATEST)).ok().filter(|p| p.is_dir())
}

/// Where component `name` (`node-1`, `redis`) writes its output in `dir`.
pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// The last `n` lines of a log file, with terminal escape sequences removed; none when the file
/// does not exist.
pub fn last_lines(path: &Path, n: usize) -> Vec<String> {
    last_lines_where(path, n, |_| true)
}

/// The last `n` lines a report quotes: as [`last_lines`], without the lines that log the harness's
/// own readiness probes (`/ready`, hundreds while a node is not ready), which would hide the
/// node's reason.
pub fn quoted_lines(path: &Path, n: usize) -> Vec<String> {
    last_lines_where(path, n, |line| !(line.contains("path=/ready") || line.contains("\"path\":\"/ready\"")))
}

fn last_lines_where(path: &Path, n: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut lines: std::collections::VecDeque<String> = std::collections::VecDeque::with_capacity(n + 1);
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        if line.trim().is_empty() || !keep(&line) {
            continue;
        }
        if lines.len() == n {
            lines.pop_front();
        }
        lines.push_back(strip_escapes(&line));
    }
    lines.into()
}

/// Removes ANSI escape sequences (`ESC [ … letter`), which a program writing to a terminal adds.
pub fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Keeps the newest [`KEEP_RUNS`] run directories (names sort by time), `current` always.
fn prune(root: &Path, current: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut runs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != LATEST && e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p != current)
        .collect();
    runs.sort();
    let excess = (runs.len() + 1).saturating_sub(KEEP_RUNS);
    for old in &runs[..excess] {
        let _ = std::fs::remove_dir_all(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_removed() {
        assert_eq!(strip_escapes("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m ready"), "2026  INFO ready");
    }

    #[test]
    fn runs_are_created_linked_and_pruned() {
        let root = tempfile::tempdir().unwrap();
        let mut made = Vec::new();
        for _ in 0..KEEP_RUNS + 2 {
            made.push(create(root.path(), "verify scaling").unwrap());
        }
        assert_eq!(latest(root.path()).unwrap(), std::fs::canonicalize(made.last().unwrap()).unwrap());
        let left = std::fs::read_dir(root.path()).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count();
        // The kept runs, and `latest` (a link to a directory).
        assert_eq!(left, KEEP_RUNS + 1);
        assert!(made.last().unwrap().file_name().unwrap().to_str().unwrap().contains("-verify_scaling-"));
    }

    #[test]
    fn last_lines_of_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "node-1");
        std::fs::write(&path, "one\n\ntwo\n\u{1b}[31mthree\u{1b}[0m\n").unwrap();
        assert_eq!(last_lines(&path, 2), ["two", "three"]);
        assert!(last_lines(&dir.path().join("none.log"), 2).is_empty());
        std::fs::write(&path, "WARN discovery failed\nERROR request{method=GET path=/ready}: 503\n").unwrap();
        assert_eq!(quoted_lines(&path, 2), ["WARN discovery failed"]);
    }
}
