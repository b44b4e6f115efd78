//! The command line of `x402-bench`.

use std::path::PathBuf;

use alloy::primitives::Address;
use clap::{Args, Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `POST /verify` only: nothing moves on chain.
    Verify,
    /// `POST /settle` only.
    Settle,
    /// `/verify`, then `/settle` when valid: what a resource server does per payment.
    Pay,
}

impl Mode {
    pub fn settles(self) -> bool {
        !matches!(self, Mode::Verify)
    }
}

/// The chain family a run pays on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// EIP-3009 USDC on an EVM chain.
    #[default]
    Evm,
    /// SPL Token USDC on Solana (`exact` on SVM): self-contained only, on a local cluster
    /// (the `surfnet` runner) served as solana-devnet.
    Svm,
}

/// The payment scheme a run measures (EVM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// One EIP-3009 authorization per payment.
    #[default]
    Exact,
    /// Payment channels (self-contained, x402 v2): per payer a channel opened by a deposit
    /// (settled through the facilitator, its voucher the first paid request), then vouchers
    /// with rising ceilings, one stream per channel, each `POST /verify` (what is timed); then
    /// one claim of every channel and the sweep to the receiver (settled through the
    /// facilitator). The chain must show the receiver got exactly the highest ceiling accepted
    /// on each channel. In the same run: `exact` verify of as many payments at the same
    /// concurrency, for the ratio.
    BatchSettlement,
}

/// Our facilitator's state mirror (`verify.mirror`) in self-contained mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorMode {
    /// Off.
    Off,
    /// On (the configuration's default).
    On,
    /// Two of ours on one chain, one run: with the mirror ("ours+mirror"), then without
    /// ("ours"). Verify only.
    Both,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Chain family: `svm` benchmarks Solana payments (self-contained: a local cluster, ours
    /// with a fee payer of its own, and with --compare-reference the TypeScript reference
    /// facilitator with `@x402/svm`'s facilitator scheme and its own fee payer).
    #[arg(long, value_enum, default_value_t = Family::Evm)]
    pub family: Family,
    /// Payment scheme: `batch-settlement` measures voucher verifies on payment channels
    /// (self-contained; --count vouchers per facilitator spread over --payers channels, one
    /// stream per channel; --mode, --concurrency and --rate do not apply).
    #[arg(long, value_enum, default_value_t = Scheme::Exact)]
    pub scheme: Scheme,
    /// Facilitator to measure: its base URL, under which `/verify`, `/settle` and `/supported`
    /// live (ours: `http://host:port/api/v1`); several instances of one facilitator,
    /// comma-separated, share the load round robin. Without it (and without --state) the bench is
    /// self-contained: a local anvil with Circle's USDC and our facilitator on a fresh SQLite.
    #[arg(long, value_name = "URL")]
    pub facilitator: Option<String>,
    /// Extra request header for --facilitator, `'Name: value'` (repeatable), e.g. a client key.
    #[arg(long = "header", short = 'H', value_name = "'K: V'")]
    pub headers: Vec<String>,
    /// x402 protocol version of the request bodies.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub x402_version: u8,

    /// Node of the chain the facilitator settles on (with --network, --asset, --payer-keys-file).
    #[arg(long, value_name = "URL")]
    pub rpc_url: Option<String>,
    /// Network: a v1 name (`base-sepolia`) or CAIP-2 (`eip155:84532`).
    #[arg(long)]
    pub network: Option<String>,
    /// The EIP-3009 token (default: the network's USDC).
    #[arg(long)]
    pub asset: Option<Address>,
    /// The token's EIP-712 domain name.
    #[arg(long, default_value = "USDC")]
    pub asset_name: String,
    /// The token's EIP-712 domain version.
    #[arg(long, default_value = "2")]
    pub asset_version: String,
    /// Buyers' private keys, one per line (funded with the asset; they need no gas).
    #[arg(long, value_name = "FILE")]
    pub payer_keys_file: Option<PathBuf>,
    /// Read facilitator URL, client key, RPC URL, network, asset and payer keys from a
    /// `dev-state.json` (as `x402-dev --state-file` writes); flags win over it.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// What each request does.
    #[arg(long, value_enum, default_value_t = Mode::Settle)]
    pub mode: Mode,
    /// Payments per run (default 100; with --rate and --duration: rate x duration).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Closed loop: this many requests in flight, each sent when one answers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,
    /// Open loop: requests per second on a fixed schedule, whatever the answers; latency is
    /// measured from each request's scheduled time.
    #[arg(long, value_name = "PER_SEC", conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Stop sending after this many seconds (what was not sent is not counted).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Amount of each payment, in the asset's atomic units.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub amount: u64,
    /// Buyers to spread the payments over (self-contained: created and funded).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub payers: u64,
    /// Give up on one request after this many seconds.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub timeout: f64,

    /// Write `report.json` and `report.html` here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run the same workload against a second facilitator afterwards (fresh payee, fresh
    /// nonces) and print both side by side.
    #[arg(long, value_name = "URL")]
    pub compare: Option<String>,
    /// Extra request header for --compare (repeatable).
    #[arg(long = "compare-header", value_name = "'K: V'")]
    pub compare_headers: Vec<String>,
    /// Self-contained only: also start the official TypeScript facilitator
    /// (tools/bench/reference-facilitator.mjs) on the same chain and compare against it.
    #[arg(long, conflicts_with = "compare")]
    pub compare_reference: bool,
    /// Self-contained only: put a proxy that delays every RPC round trip by this many
    /// milliseconds between the facilitators and the node, as a remote node would.
    #[arg(long, value_name = "MS")]
    pub rpc_latency: Option<u64>,
    /// Self-contained only: our facilitator's database, which must be fresh (default: a new
    /// SQLite file), e.g. `postgres://postgres@127.0.0.1:5432/bench_1` for an empty database.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Self-contained only: settlement signer keys our facilitator uses (1-4).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4))]
    pub signers: u64,
    /// Self-contained only: our facilitator's `settlement.batch_max` (up to this many settles
    /// per Multicall3 transaction; 0 = off). Default: the configuration's (100).
    #[arg(long)]
    pub batch_max: Option<usize>,
    /// Self-contained only: our facilitator's `settlement.batch_window_ms`. Default: the
    /// configuration's.
    #[arg(long)]
    pub batch_window_ms: Option<u64>,
    /// Self-contained, settling modes: also measure ours with batching off
    /// (`settlement.batch_max: 0`, everything else alike) in the same run, as "ours-unbatched".
    #[arg(long)]
    pub compare_unbatched: bool,
    /// Self-contained only: the local chain's block gas limit. The default leaves room for
    /// ~3000 settlements a block (the chain is not what is measured); 30000000 is a real L2's,
    /// where blocks bound settle throughput.
    #[arg(long, value_name = "GAS", default_value_t = 300_000_000,
          value_parser = clap::value_parser!(u64).range(1_000_000..))]
    pub block_gas_limit: u64,
    /// Self-contained only: our facilitator's state mirror (`verify.mirror`); `both` measures
    /// ours with and without it in one run (verify mode). Default: the configuration's (on).
    #[arg(long, value_enum)]
    pub mirror: Option<MirrorMode>,
    /// Self-contained only: also start another build of this facilitator, `NAME=PATH` (e.g.
    /// `base=../v1/x402-facilitator`; at most 3), as a child process on the same chain
    /// (`PATH serve`, a fresh SQLite file, --signers keys of its own) and measure it after
    /// ours; the report has its resident memory.
    #[arg(long = "binary", value_name = "NAME=PATH")]
    pub binaries: Vec<String>,
}

#[derive(Parser)]
#[command(name = "bench")]
struct Standalone {
    #[command(flatten)]
    args: BenchArgs,
}

impl BenchArgs {
    /// Parse `bench`'s arguments (the first item is the program name), as the binary does.
    pub fn try_parse_from<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Standalone::try_parse_from(argv).map(|s| s.args)
    }

    pub fn self_contained(&self) -> bool {
        self.facilitator.is_none() && self.state.is_none()
    }
}
