//! The `x402-facilitator` binary: `serve` (default), `migrate`, `dev`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use x402_facilitator::config::Settings;
use x402_facilitator::startup::{connect_and_migrate, Application};
use x402_facilitator::telemetry;

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
    /// Local demo: anvil + real USDC + a dev user and client key, served on a fresh SQLite.
    Dev {
        /// Write facilitator URL, client key, admin token and payer keys here once ready.
        #[arg(long)]
        state_file: Option<PathBuf>,
    },
    /// Load-benchmark an x402 facilitator (ours or any other) and check every answer against
    /// the chain. Without --facilitator: self-contained (local anvil + USDC + ours).
    Bench(Box<x402_facilitator::bench::BenchArgs>),
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let mut settings = Settings::load(&cli.config)?;
    let bench = matches!(cli.command, Some(Command::Bench(_)));
    if bench && std::env::var_os("RUST_LOG").is_none() {
        // The bench prints its own progress; our facilitator's request log would drown it.
        settings.log.level = "warn".into();
    }
    // The bench's report is its stdout; logs go to stderr.
    telemetry::init(&settings.log, bench);
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
            Command::Dev { state_file } => {
                x402_facilitator::dev::run(x402_facilitator::dev::DevOptions {
                    config: cli.config,
                    state_file,
                })
                .await?
            }
            Command::Migrate => {
                connect_and_migrate(&settings).await?;
                tracing::info!("migrations applied");
            }
            Command::Bench(args) => {
                // Ctrl-C drops the bench, and with it the anvil and facilitators it started.
                let bench = x402_facilitator::bench::run(*args, &cli.config);
                let result = tokio::select! {
                    r = bench => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                };
                let outcome = match result {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        // Bad input or an unusable target: one clear line, no backtrace.
                        eprintln!("bench: error: {e:#}");
                        return Ok(ExitCode::from(2));
                    }
                };
                let passed = outcome.passed();
                outcome.shutdown().await;
                // Non-zero when a request failed or the chain disagrees: usable in CI.
                return Ok(if passed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
