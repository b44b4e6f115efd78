//! The `x402-facilitator` binary: `serve` (default) and `migrate`. The local dev chain and the
//! load benchmark are the `x402-dev` and `x402-bench` binaries of `benches/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use x402_facilitator::config::Settings;
use x402_facilitator::startup::Application;
use x402_facilitator::{db, telemetry};

#[derive(Parser)]
#[command(name = "x402-facilitator", version, about = "x402 payment facilitator")]
struct Cli {
    /// Configuration file (YAML); APP__SECTION__KEY environment variables override it.
    #[arg(long, global = true, default_value = "config.yaml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Run database migrations and exit.
    Migrate,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli.config)?;
    telemetry::init(&settings.log, false);
    // Before any thread allocates: the arena cap applies to arenas made from now on.
    x402_facilitator::memory::limit_arenas(settings.memory.arena_max);
    actix_web::rt::System::new().block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                Application::build(settings)
                    .await?
                    .run_until_stopped()
                    .await?
            }
            Command::Migrate => {
                db::connect_and_migrate(&settings).await?;
                tracing::info!("migrations applied");
            }
        }
        Ok(())
    })
}
