//! `satchel --config PATH`: reads the configuration and runs the service.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use satchel::config::{keys_help, Config};

/// XEP-0363 HTTP File Upload component for any XMPP server, with encrypted storage.
#[derive(Parser)]
#[command(version, after_help = keys_help())]
struct Cli {
    /// Path of the TOML configuration file.
    #[arg(long, env = "SATCHEL_CONFIG", value_name = "PATH")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "satchel=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match start(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Every error of ours names its cause in its own text: one line.
            eprintln!("satchel: {error}");
            ExitCode::FAILURE
        }
    }
}

fn start(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(satchel::run(config))?;
    Ok(())
}
