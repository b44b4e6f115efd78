//! The `x402-bench` binary: load-benchmark an x402 facilitator (ours or any other) and check
//! every answer against the chain. Without --facilitator: self-contained (local anvil + USDC +
//! ours in this process).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use x402_bench::BenchArgs;
use x402_facilitator::config::Settings;

#[derive(Parser)]
#[command(
    name = "x402-bench",
    version,
    about = "Load-benchmark an x402 facilitator"
)]
struct Cli {
    /// Configuration of our facilitator in self-contained mode (YAML); APP__SECTION__KEY
    /// environment variables override it.
    #[arg(long, default_value = "config.yaml")]
    config: PathBuf,
    #[command(flatten)]
    bench: BenchArgs,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let mut settings = Settings::load(&cli.config)?;
    if std::env::var_os("RUST_LOG").is_none() {
        // The bench prints its own progress; our facilitator's request log would drown it.
        settings.log.level = "warn".into();
    }
    // The bench's report is its stdout; logs go to stderr.
    x402_facilitator::telemetry::init(&settings.log, true);
    // Before any thread allocates: the arena cap applies to arenas made from now on.
    x402_facilitator::memory::limit_arenas(settings.memory.arena_max);
    actix_web::rt::System::new().block_on(async move {
        // Ctrl-C drops the bench, and with it the anvil and facilitators it started.
        let bench = x402_bench::run(cli.bench, &cli.config);
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
        Ok(if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}
