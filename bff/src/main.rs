//! The `bff` binary: parse arguments, read configuration, serve until SIGTERM or SIGINT.
//! Exit codes: 0 after a clean shutdown, 64 for a configuration error (also one found at
//! start-up: a Redis TLS certificate that does not verify), 1 for anything else.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// A Backend-for-Frontend security gateway: OpenID Connect login, server-side sessions in Redis
/// sealed under a shared key ring, an opaque HttpOnly cookie for the browser.
#[derive(Parser)]
// `term_width = 0`: the key table keeps its columns (one key a line) instead of being wrapped.
#[command(name = "bff", version, after_help = after_help(), term_width = 0)]
struct Args {
    /// TOML configuration file; every key can be overridden by its environment variable.
    #[arg(long, short, env = "BFF_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration, print a summary and exit.
    #[arg(long)]
    check: bool,
    /// Print the configuration keys as a Markdown table (the manual's reference) and exit.
    #[arg(long)]
    config_reference: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// For benchmarks only: seal and store COUNT sessions of made-up users (random tokens) as
    /// the nodes configured like this one would, without logins, and print their cookies
    /// (`name=value`, one a line). Needs the Redis store and a node of the deployment started
    /// once (the shared key ring). `bffctl bench --sessions` uses it past its first logins.
    SeedSessions {
        /// How many sessions to make.
        #[arg(long)]
        count: usize,
        /// Where to write the cookies (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// What `bff --help` prints after the options: an example, the exit codes and every key.
fn after_help() -> String {
    format!(
        "Example (two nodes sharing sessions through Redis):\n  \
         export BFF_REDIS_URL=redis://127.0.0.1:6379 BFF_PUBLIC_URL=http://localhost:8080 \\\n    \
         BFF_KEY_ENCRYPTION_KEY=$(openssl rand -base64 32) BFF_OIDC_AUTHORITY=https://login.example.com \\\n    \
         BFF_OIDC_CLIENT_ID=app BFF_OIDC_CLIENT_SECRET=secret\n  \
         BFF_LISTEN=127.0.0.1:8080 bff & BFF_LISTEN=127.0.0.1:8081 bff &\n\n\
         Exit codes: 0 after a clean shutdown (SIGTERM, SIGINT), 64 configuration error (one line naming the key), \
         1 anything else.\n\n{}",
        bff::config::help_table()
    )
}

/// mimalloc: the request path allocates and frees many small buffers across threads, where
/// glibc's allocator spends measurable time consolidating (see the benchmark notes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.config_reference {
        print!("{}", bff::config::markdown_reference());
        return ExitCode::SUCCESS;
    }
    let env: HashMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("BFF_")).collect();
    let config = match bff::Config::load(args.config.as_deref(), &env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("bff: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The standard OpenTelemetry variables: no export unless they ask for one.
    let otel: HashMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")).collect();
    let traces = match bff::traces::TraceSettings::from_env(&otel) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("bff: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check {
        println!(
            "configuration ok: listen {} public_url {} store {:?}",
            config.listen, config.public_url, config.store
        );
        return ExitCode::SUCCESS;
    }
    if let Some(Command::SeedSessions { count, out }) = args.command {
        bff::telemetry::init(config.log_format, &config.log_filter);
        return seed_sessions(config, count, out);
    }
    let exporting = match &traces {
        None => {
            bff::telemetry::init(config.log_format, &config.log_filter);
            None
        }
        Some(settings) => {
            match bff::telemetry::init_exporting(config.log_format, &config.log_filter, settings, &config) {
                Ok(exporting) => Some(exporting),
                Err(error) => {
                    eprintln!("bff: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    // This thread is the first of the serving threads; `run` starts the others (see `server`).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let served = runtime.block_on(serve(config));
    // The spans still buffered go out before the process ends.
    if let Some(exporting) = exporting {
        exporting.shutdown();
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.downcast_ref::<bff::RunError>().is_some_and(bff::RunError::is_config) => {
            eprintln!("bff: configuration error: {error:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => {
            eprintln!("bff: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn seed_sessions(config: bff::Config, count: usize, out: Option<PathBuf>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let mut sink: Box<dyn std::io::Write + Send> = match &out {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Box::new(std::io::BufWriter::new(file)),
            Err(error) => {
                eprintln!("bff: {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let progress = |done: usize| eprintln!("bff: {done}/{count} sessions stored");
    match runtime.block_on(bff::bench_sessions::seed(config, count, &mut *sink, &progress)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ bff::bench_sessions::SeedError::NotRedis) => {
            eprintln!("bff: configuration error: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => {
            eprintln!("bff: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: bff::Config) -> anyhow::Result<()> {
    let listener = bff::server::listener::bind(config.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    bff::run(listener, config, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
