//! `completions` and `man`: what a shell needs to offer bffctl's commands and options, generated
//! from the one command-line definition (`cli.rs`) so they cannot drift from it.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

/// Prints the completion script for `args.shell` (clap_complete).
pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    clap_complete::generate(args.shell, &mut Cli::command(), "bffctl", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Writes `bffctl.1` and one `bffctl-<command>.1` per subcommand into `args.out` (clap_mangen).
pub fn man_pages(args: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out).map_err(|e| anyhow::anyhow!("{}: {e}", args.out.display()))?;
    let root = Cli::command();
    let mut written = vec![write_page(root.clone(), "bffctl", &args.out)?];
    for sub in root.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("bffctl-{}", sub.get_name());
        let page = sub.clone().bin_name(format!("bffctl {}", sub.get_name()));
        written.push(write_page(page, &name, &args.out)?);
    }
    println!(
        "{} man pages written to {} (read one: man -l {})",
        written.len(),
        args.out.display(),
        written[0].display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_page(command: clap::Command, name: &str, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command).title(name.to_uppercase()).render(&mut page)?;
    std::fs::write(&path, page).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(path)
}
