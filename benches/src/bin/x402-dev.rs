//! The `x402-dev` binary (`scripts/run.sh`): our facilitator on a local chain, anvil with
//! Circle's real USDC, a dev user and client key, on a fresh SQLite file.

use std::path::PathBuf;

use clap::Parser;
use x402_bench::dev::{self, DevOptions};
use x402_facilitator::config::Settings;

#[derive(Parser)]
#[command(
    name = "x402-dev",
    version,
    about = "Local demo: anvil + real USDC + a dev user and client key, served on a fresh SQLite"
)]
struct Cli {
    /// Configuration file (YAML); APP__SECTION__KEY environment variables override it.
    #[arg(long, default_value = "config.yaml")]
    config: PathBuf,
    /// Write facilitator URL, client key, admin token and payer keys here once ready.
    #[arg(long)]
    state_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli.config)?;
    x402_facilitator::telemetry::init(&settings.log, false);
    // Before any thread allocates: the arena cap applies to arenas made from now on.
    x402_facilitator::memory::limit_arenas(settings.memory.arena_max);
    actix_web::rt::System::new().block_on(dev::run(DevOptions {
        config: cli.config,
        state_file: cli.state_file,
    }))
}
