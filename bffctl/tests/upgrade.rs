//! Rolling upgrades with `verify-scaling --upgrade-to`: a copy of the current build under
//! another version rolls in and PASSes, with the matrix showing each node on each build; a build
//! whose record format the cluster cannot read (two formats on) rolled in FAILs at the step,
//! naming the node and both versions. Process backend, real `bff` nodes, a real `redis-server`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BFFCTL: &str = env!("CARGO_BIN_EXE_bffctl");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A copy of the gateway that reports version 9.9.9 (same length as this one's) and, with
/// `format`, writes that record format: what a later release would be, made from this build by
/// changing the bytes behind its markers.
fn later_build(dir: &Path, format: Option<u8>) -> PathBuf {
    let bff = PathBuf::from(BFFCTL).with_file_name("bff");
    let mut bytes = std::fs::read(&bff).expect("build the gateway first: cargo build -p bff");
    let later: String = VERSION.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
    let mut swap = |from: String, to: String| {
        let at = bytes.windows(from.len()).position(|w| w == from.as_bytes()).unwrap_or_else(|| panic!("{from}"));
        bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
    };
    swap(format!("bff-version:{VERSION}"), format!("bff-version:{later}"));
    if let Some(format) = format {
        swap("bff-record-format:2;".into(), format!("bff-record-format:{format};"));
    }
    let copy = dir.join(format!("bff-{later}-format-{}", format.unwrap_or(2)));
    std::fs::write(&copy, bytes).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    copy
}

fn verify_upgrade_to(dir: &Path, build: &Path) -> Output {
    Command::new(BFFCTL)
        .env("BFFCTL_RUNS", dir.join("runs"))
        .args(["verify-scaling", "--backend", "process", "--iterations", "1", "--users", "6", "--ready-timeout", "5s"])
        .args(["--upgrade-to", build.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn a_build_of_the_same_record_format_rolls_in_and_the_matrix_shows_each_node_on_each_build() {
    let dir = tempfile::tempdir().unwrap();
    let later = later_build(dir.path(), None);
    let out = verify_upgrade_to(dir.path(), &later);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(printed.contains(&format!("upgrade node-3 from {VERSION} to 9.9.9")), "{printed}");
    assert!(printed.contains("created on \\ read on"), "the matrix is shown: {printed}");
    assert!(printed.contains(&format!("node-1@{VERSION}")) && printed.contains("node-1@9.9.9"), "{printed}");
}

#[test]
fn a_build_whose_records_the_cluster_cannot_read_fails_naming_the_step_and_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let unreadable = later_build(dir.path(), Some(4));
    let out = verify_upgrade_to(dir.path(), &unreadable);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    let verdict = printed.lines().find(|l| l.starts_with("FAIL ")).unwrap_or_else(|| panic!("a verdict: {printed}"));
    assert!(verdict.contains("node-1 never became ready at step rolling-upgrade"), "{verdict}");
    assert!(verdict.contains(&format!("upgraded from {VERSION} to 9.9.9")), "{verdict}");
    assert!(
        printed.contains(&format!("record format 2 (written by bff {VERSION})"))
            && printed.contains("bff 9.9.9 (record format 4) does not start here"),
        "the node's refusal is quoted: {printed}"
    );
}
