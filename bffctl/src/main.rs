//! `bffctl`: bring up a bff cluster and prove that it scales. A thin layer over `harness`.
//! Exit codes: 0 success, 1 the verification found failures, 2 the tool could not do its job.

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// The tool itself could not do its job (bad arguments, nothing to run on, no cluster up).
pub const EXIT_TOOL: u8 = 2;

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    if let Err(refused) = cli::refuse_inapplicable(&matches) {
        eprintln!("bffctl: {refused}");
        return ExitCode::from(EXIT_TOOL);
    }
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // Commands that only print are piped into `head`, `grep -m1`, `less`: a reader that closes
    // the pipe ends them quietly, as it ends any Unix tool. Not for the others, which hold
    // clusters and child processes that an early death would leave behind.
    if cli.command.only_prints() {
        sigpipe::reset();
    }
    // Thousands of sockets at a thousand users; a limit that cannot be raised shows up later as
    // a clear "too many open files" on the requests it stops.
    let _ = harness::open_files::raise_to_hard_limit();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bffctl: {error:#}");
            ExitCode::from(EXIT_TOOL)
        }
    }
}
