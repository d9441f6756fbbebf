//! `satchel --config PATH`: reads the configuration and runs the service.
//! `satchel check-config --config PATH`: checks it without starting.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{error::ErrorKind, CommandFactory, Parser, Subcommand};
use satchel::config::{keys_help, Config};

/// XEP-0363 HTTP File Upload component for any XMPP server, with encrypted storage.
#[derive(Parser)]
#[command(version, after_help = keys_help())]
struct Cli {
    /// Path of the TOML configuration file (required).
    #[arg(long, env = "SATCHEL_CONFIG", value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration file, its paths, the master key's mode, the
    /// HTTP port and the HTTPS certificate and key without starting: exit 0
    /// with a summary, or 2 with one line per problem. Run it as the service's
    /// user.
    CheckConfig,
}

/// The exit status of `check-config` when it finds problems (as of a
/// command line clap refuses).
const PROBLEMS_FOUND: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(config) = cli.config else {
        // Not `required` in clap: a global argument cannot be.
        Cli::command()
            .error(
                ErrorKind::MissingRequiredArgument,
                "--config PATH (or SATCHEL_CONFIG) is required",
            )
            .exit();
    };
    match cli.command {
        Some(Command::CheckConfig) => check_config(config),
        None => run(config),
    }
}

/// Prints the summary, or every problem on a line of its own. No logging:
/// the answer is these lines and the exit status.
fn check_config(path: PathBuf) -> ExitCode {
    match satchel::check::check_config(&path) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            ExitCode::from(PROBLEMS_FOUND)
        }
    }
}

fn run(config: PathBuf) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "satchel=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match start(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Every error of ours names its cause in its own text: one line.
            eprintln!("satchel: {error}");
            ExitCode::FAILURE
        }
    }
}

fn start(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(satchel::run(config, path))?;
    Ok(())
}
