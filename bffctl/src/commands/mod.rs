//! One module per group of subcommands; [`dispatch`] maps a parsed command line to its code.

mod bench;
mod control;
mod images;
mod issuer;
mod logs;
mod sessions;
mod shell;
mod soak;
mod up;
mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => {
            let state = args.state.path();
            up::run(args, &state).await
        }
        Command::Status(a) => control::status(&a.state.path(), a.output.json).await,
        Command::RestartNode(a) => {
            control::node(&a.control.state.path(), a.node, "restart", a.control.output.json).await
        }
        Command::KillNode(a) => control::node(&a.control.state.path(), a.node, "kill", a.control.output.json).await,
        Command::StopNode(a) => control::node(&a.control.state.path(), a.node, "stop", a.control.output.json).await,
        Command::StartNode(a) => control::node(&a.control.state.path(), a.node, "start", a.control.output.json).await,
        Command::RestartRedis(a) => control::restart_redis(&a.state.path(), a.output.json).await,
        Command::Down(state) => control::down(&state.path()).await,
        Command::Sessions(args) => sessions::run(args).await,
        Command::Images(args) => images::run(args).await,
        Command::Issuer(args) => issuer::run(args).await,
        Command::Logs(args) => {
            let state = args.state.path();
            logs::run(args, &state).await
        }
        Command::VerifyScaling(args) => interruptible(verify::verify_scaling(args)).await,
        Command::Run(args) => {
            let state = args.state.path();
            interruptible(verify::run(args, &state)).await
        }
        Command::Scenarios(args) => verify::list(args),
        Command::Gateways(out) => {
            crate::output::gateways(&harness::preset::builtin(), out.json);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Bench(args) => interruptible(bench::run(args)).await,
        Command::Soak(args) => interruptible(soak::run(args)).await,
        Command::Completions(args) => shell::completions(args),
        Command::Man(args) => shell::man_pages(args),
    }
}

/// Runs a command that starts its own cluster until it ends or is interrupted (Ctrl-C,
/// SIGTERM). On a signal the command is dropped, and with it everything it started: child
/// processes are killed on drop and containers removed; the exit code is 128 + the signal.
async fn interruptible(work: impl Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let signal = tokio::select! {
        result = work => return result,
        _ = interrupt.recv() => 2,
        _ = term.recv() => 15,
    };
    eprintln!("bffctl: interrupted: stopped what this run had started");
    Ok(ExitCode::from(128 + signal))
}
