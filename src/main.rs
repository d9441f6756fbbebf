//! `satchel --config PATH`: reads the configuration and runs the service.
//! `satchel check-config --config PATH`: checks it without starting.
//! `satchel migrate --from OLD --config NEW`: copies a store into another.

use std::path::{Path, PathBuf};
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
    /// Copy the files, records and relays of the store `--from` describes
    /// (a configuration file, typically a single node's: sled and local
    /// files) into the store of `--config` (typically a cluster's:
    /// PostgreSQL and S3), sealed as they are, each copy read back and
    /// checked against its hashes. Files already copied are skipped, so an
    /// interrupted run resumes when run again. Stop the old service first;
    /// both must load the same master key.
    Migrate {
        /// Configuration file of the store to copy from.
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
    },
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
        Some(Command::Migrate { from }) => migrate(&from, &config),
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

/// Prints a line per file copied, then the totals; exits 1 if anything
/// was left behind (the log says what), so that a script can run it again.
fn migrate(from: &Path, to: &Path) -> ExitCode {
    log_to_stderr();
    let copied = |record: &satchel::storage::FileRecord| {
        println!("copied {} ({} bytes)", record.id, record.size);
    };
    match satchel::migrate::migrate(from, to, copied) {
        Ok(report) => {
            println!(
                "migrated: {} files copied ({} bytes), {} already there, {} expired and left, \
                 {} failed, {} relay and download entries",
                report.copied,
                report.copied_bytes,
                report.already_there,
                report.expired,
                report.failed,
                report.entries
            );
            if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("satchel migrate: {error}");
            ExitCode::FAILURE
        }
    }
}

fn log_to_stderr() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "satchel=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn run(config: PathBuf) -> ExitCode {
    log_to_stderr();
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
