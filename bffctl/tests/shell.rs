//! What a shell gets from `bffctl`: completion scripts that load, and a man page per command.

use std::process::Command;

const BFFCTL: &str = env!("CARGO_BIN_EXE_bffctl");

#[test]
fn the_bash_completion_loads_and_completes_commands_and_options() {
    let script = format!(
        r#"source <("{BFFCTL}" completions bash) || exit 3
complete -p bffctl || exit 4
COMP_WORDS=(bffctl verify-); COMP_CWORD=1; COMP_LINE="bffctl verify-"; COMP_POINT=${{#COMP_LINE}}
_bffctl bffctl verify- bffctl; echo "commands: ${{COMPREPLY[*]}}"
COMP_WORDS=(bffctl verify-scaling --ta); COMP_CWORD=2; COMP_LINE="bffctl verify-scaling --ta"; COMP_POINT=${{#COMP_LINE}}
_bffctl bffctl --ta verify-scaling; echo "options: ${{COMPREPLY[*]}}""#
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("-F _bffctl bffctl"), "complete -p bffctl: {printed}");
    assert!(printed.contains("commands: verify-scaling"), "{printed}");
    assert!(printed.contains("options: --target"), "{printed}");
}

#[test]
fn zsh_and_fish_completions_name_every_command() {
    for shell in ["zsh", "fish"] {
        let out = Command::new(BFFCTL).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for command in ["verify-scaling", "restart-node", "completions", "soak"] {
            assert!(script.contains(command), "{shell} completion lacks {command}");
        }
    }
    let refused = Command::new(BFFCTL).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn man_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BFFCTL).args(["man", "--out"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in ["bffctl.1", "bffctl-up.1", "bffctl-verify-scaling.1", "bffctl-down.1", "bffctl-man.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|_| panic!("{page} missing"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page} is not a man page");
    }
    let verify = std::fs::read_to_string(dir.path().join("bffctl-verify-scaling.1")).unwrap();
    assert!(
        verify.contains("target") && verify.contains("Exit codes"),
        "the page carries the options and the exit codes"
    );
    assert!(!dir.path().join("bffctl-help.1").exists());
}

/// `bffctl scenarios DIR | head -1`: the reader closes the pipe after one line, and bffctl ends
/// quietly (killed by SIGPIPE, as `ls | head -1` ends `ls`), not with a panic on stderr. The
/// listing (2,000 scenarios) is larger than the pipe's buffer, so bffctl is still writing when
/// `head` goes.
#[test]
fn a_listing_piped_into_head_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/login-me-restart.toml");
    for n in 0..2000 {
        std::fs::copy(scenario, dir.path().join(format!("copy-{n:04}.toml"))).unwrap();
    }
    let script = format!(
        "'{BFFCTL}' scenarios '{}' | head -1 >/dev/null; echo \"status=${{PIPESTATUS[0]}}\"",
        dir.path().display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stderr.contains("panicked"), "bffctl scenarios | head -1 panicked: {stderr}");
    assert!(
        stdout.contains("status=0") || stdout.contains("status=141"),
        "bffctl scenarios | head -1: {stdout}{stderr}"
    );
}
