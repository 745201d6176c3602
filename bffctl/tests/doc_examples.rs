//! The README's and the manual's command examples, run against the binaries, so that a renamed
//! flag or a changed message breaks the build instead of the reader.
//!
//! Two checks over `README.md` and `docs/src/**/*.md`:
//!
//! - **Console blocks are run.** A fenced block tagged `console` holds commands (`$ ` lines, run
//!   by bash from the repository's root with `target/debug` first on `PATH`, in a scratch
//!   `BFFCTL_STATE` and `BFFCTL_RUNS`) each followed by the output it must print (standard output
//!   and error, in that order). A `? N` line right after a command is the exit status it must
//!   give (default 0). In the expected output `[..]` matches any text within a line and a line
//!   `...` any number of lines, so ports, times and seeds are masked where they appear.
//! - **Every flag named is a flag.** In every code block and inline code span, each `bffctl SUB`
//!   command line's `--flags` must be options of that subcommand (`bffctl SUB --help`):
//!   synopses that are too long to run (a 10-minute soak, a benchmark) cannot drift either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const BFFCTL: &str = env!("CARGO_BIN_EXE_bffctl");

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The README and every chapter of the manual, with their text.
fn documents() -> Vec<(PathBuf, String)> {
    let root = repository();
    let mut paths = vec![root.join("README.md")];
    let mut pending = vec![root.join("docs/src")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(&root).unwrap().to_path_buf(), text)
        })
        .collect()
}

/// A fenced block: its info string, its first line's number (1-based) and its lines.
struct Block {
    info: String,
    line: usize,
    lines: Vec<String>,
}

fn fenced_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            match open.take() {
                Some(block) => blocks.push(block),
                None => open = Some(Block { info: info.trim().to_owned(), line: n + 2, lines: Vec::new() }),
            }
        } else if let Some(block) = open.as_mut() {
            block.lines.push(line.to_owned());
        }
    }
    blocks
}

/// One command of a console block and what it must print.
struct Example {
    command: String,
    status: i32,
    expected: Vec<String>,
    line: usize,
}

fn examples(block: &Block) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    for (i, line) in block.lines.iter().enumerate() {
        if let Some(command) = line.strip_prefix("$ ") {
            out.push(Example { command: command.to_owned(), status: 0, expected: Vec::new(), line: block.line + i });
        } else if let Some(last) = out.last_mut() {
            match line.strip_prefix("? ") {
                Some(code) if last.expected.is_empty() => last.status = code.trim().parse().expect("? N: a number"),
                _ => last.expected.push(line.clone()),
            }
        }
    }
    // A command continued on the next line (`\` at its end) is one command.
    for example in &mut out {
        while example.command.ends_with('\\') && !example.expected.is_empty() {
            example.command.pop();
            let next = example.expected.remove(0);
            example.command.push('\n');
            example.command.push_str(next.trim_start_matches("> "));
        }
    }
    out
}

/// `[..]` matches any text within one line.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern.trim_end() == line.trim_end();
    }
    let line = line.trim_end();
    let (first, last) = (parts[0], parts[parts.len() - 1].trim_end());
    if !line.starts_with(first) || line.len() < first.len() + last.len() || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// A line `...` matches any number of lines (none included).
fn output_matches(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.iter().all(|l| l.trim().is_empty()),
        Some((first, rest)) if first.trim() == "..." => {
            (0..=actual.len()).any(|skip| output_matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => {
            actual.first().is_some_and(|line| line_matches(first, line)) && output_matches(rest, &actual[1..])
        }
    }
}

#[test]
fn console_examples_print_what_the_documents_say() {
    let root = repository();
    let bin = PathBuf::from(BFFCTL).parent().unwrap().to_path_buf();
    assert!(bin.join("bff").is_file(), "build the gateway first: cargo build -p bff");
    let scratch = tempfile::tempdir().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut ran = 0;
    let mut failures = Vec::new();
    for (doc, text) in documents() {
        for block in fenced_blocks(&text).iter().filter(|b| b.info == "console") {
            for example in examples(block) {
                let output = Command::new("bash")
                    .args(["-c", &example.command])
                    .current_dir(&root)
                    .env("PATH", &path)
                    .env("BFFCTL_STATE", scratch.path().join("cluster.json"))
                    .env("BFFCTL_RUNS", scratch.path().join("runs"))
                    .env("NO_COLOR", "1")
                    .env("COLUMNS", "100")
                    .output()
                    .unwrap();
                ran += 1;
                let printed =
                    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
                let lines: Vec<&str> = printed.lines().collect();
                let status = output.status.code().unwrap_or(-1);
                if status != example.status || !output_matches(&example.expected, &lines) {
                    failures.push(format!(
                        "{}:{}: `{}` exited {status} (expected {}) and printed:\n{printed}\n--- the document expects:\n{}\n",
                        doc.display(),
                        example.line,
                        example.command,
                        example.status,
                        example.expected.join("\n")
                    ));
                }
            }
        }
    }
    assert!(ran >= 5, "only {ran} console examples found: the documents lost their examples");
    assert!(
        failures.is_empty(),
        "{} of {ran} examples differ from the binaries:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The long options `bffctl SUB --help` (or `bff --help`) lists.
fn options_of(program: &Path, subcommand: Option<&str>) -> Option<BTreeSet<String>> {
    let mut command = Command::new(program);
    command.args(subcommand).arg("--help");
    let output = command.output().unwrap();
    if !output.status.success() {
        return None;
    }
    let help = String::from_utf8_lossy(&output.stdout);
    let mut options: BTreeSet<String> = BTreeSet::new();
    for word in help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '=' || c == '<') {
        if word.starts_with("--") && word.len() > 2 {
            options.insert(word.trim_end_matches(|c: char| !c.is_alphanumeric()).to_owned());
        }
    }
    Some(options)
}

/// Every `bffctl SUB …` command line in code: (subcommand, flags, where).
fn bffctl_lines(text: &str) -> Vec<(String, Vec<String>, usize)> {
    let mut found = Vec::new();
    let mut code: Vec<(String, usize)> = Vec::new();
    for block in fenced_blocks(text) {
        // A synopsis may continue on indented lines: join a block into logical lines per command.
        let mut current: Option<(String, usize)> = None;
        for (i, line) in block.lines.iter().enumerate() {
            let starts = line.contains("bffctl ") || line.trim_start().starts_with("bff ");
            let continued = line.starts_with(' ') && !line.trim().is_empty() && !line.trim_start().starts_with('#');
            match current.as_mut() {
                Some((text, _)) if continued && !starts => {
                    text.push(' ');
                    text.push_str(line.trim());
                }
                _ => {
                    if let Some(done) = current.take() {
                        code.push(done);
                    }
                    current = Some((line.clone(), block.line + i));
                }
            }
        }
        code.extend(current);
    }
    for (n, line) in text.lines().enumerate() {
        let mut parts = line.split('`');
        parts.next();
        while let (Some(inline), _) = (parts.next(), parts.next()) {
            code.push((inline.to_owned(), n + 1));
        }
    }
    for (line, at) in code {
        let line = line.split(" # ").next().unwrap_or_default().to_owned();
        for command in line.split(['|', ';', '&', '(', '$']) {
            let words: Vec<&str> = command.split_whitespace().collect();
            // The program is the command's first word, after any VAR=value assignments.
            let Some(start) = words.iter().position(|w| !w.contains('=')) else { continue };
            if !(words[start] == "bffctl" || words[start].ends_with("/bffctl")) {
                continue;
            }
            let Some(sub) = words.get(start + 1).filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            else {
                continue;
            };
            let flags = words[start + 2..]
                .iter()
                .map(|w| w.trim_start_matches(['[', '(']))
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .map(|w| w.split('=').next().unwrap().trim_end_matches([',', '.', ')', ']', '`']).to_owned())
                .collect();
            found.push((sub.to_string(), flags, at));
        }
    }
    found
}

#[test]
fn every_bffctl_flag_the_documents_name_exists() {
    let bffctl = PathBuf::from(BFFCTL);
    let mut known: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (doc, text) in documents() {
        for (sub, flags, line) in bffctl_lines(&text) {
            let options = known.entry(sub.clone()).or_insert_with(|| options_of(&bffctl, Some(&sub)));
            let Some(options) = options else {
                wrong.push(format!("{}:{line}: `bffctl {sub}` is not a bffctl command", doc.display()));
                continue;
            };
            for flag in flags {
                checked += 1;
                if !options.contains(&flag) {
                    wrong.push(format!("{}:{line}: `bffctl {sub}` has no option {flag}", doc.display()));
                }
            }
        }
    }
    assert!(checked >= 80, "only {checked} flags found in the documents: the scan lost them");
    assert!(
        wrong.is_empty(),
        "{} flags or commands the documents name do not exist:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    println!("{checked} flags named in the documents, every one an option of its command");
}

#[test]
fn the_matcher_masks_volatile_parts_and_nothing_else() {
    let lines = |s: &str| s.lines().map(str::to_owned).collect::<Vec<_>>();
    assert!(line_matches("up in [..] s", "up in 0.3 s"));
    assert!(!line_matches("up in [..] s", "down in 0.3 s"));
    assert!(line_matches("seed [..], [..] requests", "seed 42, 120 requests"));
    assert!(output_matches(&lines("a\n...\nz"), &["a", "b", "c", "z"]));
    assert!(output_matches(&lines("a\n...\nz"), &["a", "z"]));
    assert!(!output_matches(&lines("a\nz"), &["a", "b", "z"]));
    assert!(!output_matches(&lines("a"), &["a", "more"]));
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// "Running the gateway by hand", as the manual gives it: Redis and two nodes from the snippet's
/// own lines (free ports, bffctl's mock issuer and the debug build in place of the fixed ones),
/// then what its comment promises: a login on the first node is the same user on the second.
#[test]
fn the_by_hand_snippet_runs_two_nodes_that_share_sessions() {
    let (_, running) = documents().into_iter().find(|(p, _)| p.ends_with("docs/src/gateway/running.md")).unwrap();
    let marker = running.find("<!-- tested: by-hand snippet").expect("running.md marks its by-hand snippet");
    let block = fenced_blocks(&running[marker..]).into_iter().next().unwrap();
    assert!(
        block.lines.iter().any(|l| l.contains("BFF_KEY_ENCRYPTION_KEY")),
        "the snippet sets the key-encryption key"
    );
    let bff = PathBuf::from(BFFCTL).with_file_name("bff");
    let (redis, first, second) = (free_port(), free_port(), free_port());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let issuer = harness::issuer::MockIssuer::builder().client("app", "secret").run().await.unwrap();
        let script: String = block
            .lines
            .iter()
            .filter(|line| !line.starts_with("cargo "))
            .map(|line| {
                line.replace("6379", &redis.to_string())
                    .replace("8080", &first.to_string())
                    .replace("8081", &second.to_string())
                    .replace("https://login.example.com", issuer.url())
                    .replace("target/release/bff", bff.to_str().unwrap())
            })
            .collect::<Vec<_>>()
            .join("\n");
        let scratch = tempfile::tempdir().unwrap();
        let mut shell = tokio::process::Command::new("bash");
        shell
            .args(["-c", &format!("{script}\nwait")])
            .current_dir(scratch.path())
            .env_remove("BFF_BIN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = shell.spawn().unwrap();
        let group = child.id().unwrap();
        // Everything the snippet started goes with its process group, whatever the outcome.
        struct Group(u32);
        impl Drop for Group {
            fn drop(&mut self) {
                let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.0)]).status();
            }
        }
        let _group = Group(group);

        let user = harness::client::VirtualUser::new(None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for port in [first, second] {
            loop {
                let ready = user.get(&format!("http://127.0.0.1:{port}/ready")).await;
                if ready.as_ref().is_ok_and(|r| r.status == 200) {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "node on {port} not ready: {ready:?}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        let login = user.login(&format!("http://localhost:{first}")).await.unwrap();
        assert!(login.status < 400, "login on the first node: {} {}", login.status, login.body);
        let me = user.me(&format!("http://localhost:{second}")).await.unwrap();
        assert_eq!(me.status, 200, "the second node knows the session of the first: {}", me.body);
        assert!(me.body.contains("alice"), "{}", me.body);
        let anonymous =
            harness::client::VirtualUser::new(None).me(&format!("http://localhost:{second}")).await.unwrap();
        assert_eq!(anonymous.status, 404, "no session, no user");
    });
}

/// The README's `--target` example is the command the manual's tutorial runs in CI against the
/// compose deployment (`just tutorial`), and `just deploy-verify` by hand, so it is executed there.
#[test]
fn the_readmes_target_example_is_the_one_ci_runs() {
    let (_, readme) = documents().into_iter().find(|(p, _)| p.ends_with("README.md")).unwrap();
    let justfile = std::fs::read_to_string(repository().join("justfile")).unwrap();
    let words = |text: &str| text.split_whitespace().filter(|w| *w != "\\").map(str::to_owned).collect::<Vec<_>>();
    let example = fenced_blocks(&readme)
        .into_iter()
        .map(|b| b.lines.join(" "))
        .find(|text| text.contains("--target"))
        .expect("the README has a --target example");
    let example = words(&example);
    assert_eq!(example[0], "bffctl");
    let recipe = justfile.split("\ndeploy-verify:").nth(1).unwrap();
    let verify = recipe.split("{{bffctl}} verify-scaling").nth(1).unwrap().split("\"$@\"").next().unwrap();
    assert_eq!(example[1..], words(&format!("verify-scaling {verify}"))[..], "README and just deploy-verify differ");
    let tutorial = std::fs::read_to_string(repository().join("docs/src/tutorial.md")).unwrap();
    let pass =
        tutorial.lines().find(|l| l.contains("--target") && l.contains("PASS")).expect("the tutorial's PASS step");
    let pass = words(pass.split(" --report ").next().unwrap());
    assert_eq!(pass[0], "target/debug/bffctl");
    assert_eq!(example[1..], pass[1..], "README and the tutorial (run by CI: just tutorial) differ");
}
