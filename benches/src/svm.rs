//! `--family svm`: Solana `exact` payments, self-contained. A local cluster (`devnet::solana`:
//! the `surfnet` runner executing the real SPL Token program, served as solana-devnet) with a
//! USDC-like mint and funded buyers; our facilitator in this process on a fresh SQLite file
//! with one fee payer; with --compare-reference the TypeScript reference facilitator
//! (`@x402/svm`'s `ExactSvmScheme`) on the same cluster with a fee payer of its own.
//!
//! Per facilitator: its fee payer read from its `/supported` (`extra.feePayer`, which the
//! buyer's transaction names as fee payer), a fresh payee with a token account, `count`
//! payments built and signed up front exactly as the official `@x402/svm` client builds them
//! (each with its own random memo, so every message is distinct), the load loop, then the
//! cluster's verdict (`svm_chain`).
//!
//! All of a run's payments share the blockhash read just before it is built: a run must end
//! within that blockhash's life (150 slots, ~60 s at the cluster's 400 ms slots).

use std::path::Path;

use anyhow::{bail, Context as _};
use devnet::solana::{
    encode_transaction, Keypair, PaymentBuilder, Pubkey, Signer as _, SolanaCluster,
    SolanaClusterOptions, VersionedTransaction, DEVNET_NETWORK,
};
use serde_json::{json, Value};

use super::dev::{local_facilitator_on, LocalSvm};
use super::engine::{self, PaymentId, Target, Workload};
use super::local::{overrides, Ours};
use super::payments::{v2_body, Payment};
use super::reference::ReferenceFacilitator;
use super::report::RunReport;
use super::{console, stats, svm_chain, BenchArgs, Outcome};

/// The local cluster and the facilitators measured on it.
pub struct SvmLocal {
    pub cluster: SolanaCluster,
    pub ours: Target,
    pub reference: Option<(Target, ReferenceFacilitator)>,
    server: Ours,
    _dir: tempfile::TempDir,
}

impl SvmLocal {
    /// Start the cluster (each buyer holding `tokens_each`) and the facilitators.
    async fn start(args: &BenchArgs, config: &Path, tokens_each: u64) -> anyhow::Result<Self> {
        let defaults = SolanaClusterOptions::default();
        let cluster = SolanaCluster::start_with(SolanaClusterOptions {
            payers: args.payers as usize,
            payer_tokens: tokens_each.max(defaults.payer_tokens),
            // One for ours, one for the reference: never shared.
            fee_payers: 2,
            ..defaults
        })
        .await
        .context(
            "cannot start the local Solana cluster (scripts/build-surfnet.sh builds its runner)",
        )?;
        let dir = tempfile::tempdir().context("temp dir")?;
        let facilitator = local_facilitator_on(
            config,
            overrides(args, None, None),
            dir.path(),
            None,
            Some(LocalSvm {
                cluster: &cluster,
                fee_payers: &cluster.fee_payers[..1],
            }),
        )
        .await?;
        let server = Ours::serve("ours", facilitator)?;
        let reference = if args.compare_reference {
            let (url, key) = (
                cluster.rpc_url.clone(),
                cluster.fee_payers[1].insecure_clone(),
            );
            Some(
                ReferenceFacilitator::target(move || ReferenceFacilitator::start_svm(&url, &key))
                    .await?,
            )
        } else {
            None
        };
        Ok(Self {
            ours: server.target.clone(),
            cluster,
            reference,
            server,
            _dir: dir,
        })
    }

    /// Stop the facilitators, then the cluster.
    pub async fn stop(self) {
        drop(self.reference);
        self.server.stop().await;
        self.cluster.stop().await;
    }

    fn targets(&self) -> Vec<Target> {
        let mut targets = vec![self.ours.clone()];
        targets.extend(self.reference.iter().map(|(t, _)| t.clone()));
        targets
    }
}

/// The flags `--family svm` cannot honour, each with why.
fn refuse_flags(args: &BenchArgs) -> anyhow::Result<()> {
    if !args.self_contained() {
        bail!(
            "--family svm is self-contained only (a local cluster): drop --facilitator and --state"
        );
    }
    if args.compare.is_some() {
        bail!("--compare needs --facilitator; with --family svm use --compare-reference");
    }
    if args.x402_version != 2 {
        bail!("--family svm measures x402 v2 (the reference serves Solana on v2 only)");
    }
    for (set, flag) in [
        (args.rpc_latency.is_some(), "--rpc-latency"),
        (args.block_gas_limit != 300_000_000, "--block-gas-limit"),
        (
            args.scheme != super::Scheme::Exact,
            "--scheme batch-settlement",
        ),
        (args.mirror.is_some(), "--mirror"),
        (args.batch_max.is_some(), "--batch-max"),
        (args.batch_window_ms.is_some(), "--batch-window-ms"),
        (args.compare_unbatched, "--compare-unbatched"),
        (!args.binaries.is_empty(), "--binary"),
        (args.signers != 1, "--signers"),
        (args.asset.is_some(), "--asset"),
        (args.rpc_url.is_some(), "--rpc-url"),
        (args.network.is_some(), "--network"),
        (args.payer_keys_file.is_some(), "--payer-keys-file"),
    ] {
        if set {
            bail!("{flag} is for EVM runs: --family svm does not take it");
        }
    }
    Ok(())
}

/// The bench of `--family svm`.
pub async fn run(args: BenchArgs, config: &Path) -> anyhow::Result<Outcome> {
    refuse_flags(&args)?;
    let (workload, count) = super::workload(&args)?;
    let runs = 1 + usize::from(args.compare_reference);
    let tokens_each = if args.mode.settles() {
        args.amount
            .checked_mul((count * runs).div_ceil(args.payers as usize) as u64)
            .context("--amount x --count is more than a token account holds")?
    } else {
        args.amount
    };
    let local = SvmLocal::start(&args, config, tokens_each).await?;
    match bench(&args, &local, workload, count).await {
        Ok(report) => Ok(Outcome {
            report,
            local: None,
            svm: Some(local),
        }),
        Err(e) => {
            local.stop().await;
            Err(e)
        }
    }
}

async fn bench(
    args: &BenchArgs,
    local: &SvmLocal,
    workload: Workload,
    count: usize,
) -> anyhow::Result<super::Report> {
    let cluster = &local.cluster;
    let targets = local.targets();
    let mut fee_payers = Vec::new();
    for t in &targets {
        let kind = super::probe(t, DEVNET_NETWORK, 2).await?;
        let fee_payer: Pubkey = kind["extra"]["feePayer"]
            .as_str()
            .and_then(|k| k.parse().ok())
            .with_context(|| {
                format!(
                    "{} names no extra.feePayer for {DEVNET_NETWORK}: {kind}",
                    t.url
                )
            })?;
        fee_payers.push(fee_payer);
    }
    let mut runs = Vec::new();
    for (target, fee_payer) in targets.iter().zip(fee_payers) {
        println!(
            "bench: {} ({}) — {} x {:?}, x402 v2 on Solana ({}), fee payer {fee_payer}, {}",
            target.name,
            target.url,
            count,
            args.mode,
            cluster.rpc_url,
            console::describe_loop(workload.looping)
        );
        let payee = Keypair::new().pubkey();
        cluster.create_token_accounts(&payee).await?;
        let before = svm_chain::Balances::read(cluster, &payee).await?;
        let (payments, valid_until) =
            sign_all(cluster, &payee, &fee_payer, args.amount, count).await?;
        let (records, _) = engine::run(target, workload, payments, target.name.clone()).await?;
        let summary = stats::summarize(&records);
        if summary.errors > 0 && cluster.rpc.block_height().await? > valid_until {
            println!(
                "  note: the run outlasted its payments' blockhash (valid to block height \
                 {valid_until}): those not settled by then could never land; use a smaller --count"
            );
        }
        let onchain = svm_chain::verdict(
            cluster,
            &payee,
            &before,
            args.amount,
            args.mode.settles(),
            &records,
        )
        .await?;
        let run = RunReport::new(
            target.name.clone(),
            target.url.clone(),
            args.mode,
            summary,
            onchain,
            &records,
        );
        console::print_run(&run);
        runs.push(run);
    }
    super::conclude(
        args,
        workload,
        DEVNET_NETWORK.to_owned(),
        cluster.usdc.address.to_string(),
        cluster.payers.len(),
        count,
        runs,
    )
}

/// `count` payments of `amount` to `pay_to`, round robin over the cluster's buyers, each the
/// official client's transaction (its own random memo) naming `fee_payer`, on one fresh
/// blockhash; signed before the clock starts. With the last block height they can land at.
async fn sign_all(
    cluster: &SolanaCluster,
    pay_to: &Pubkey,
    fee_payer: &Pubkey,
    amount: u64,
    count: usize,
) -> anyhow::Result<(Vec<Payment>, u64)> {
    let (blockhash, valid_until) = cluster.rpc.latest_blockhash().await?;
    let payers: Vec<Keypair> = cluster.payers.iter().map(|k| k.insecure_clone()).collect();
    let (mint, pay_to, fee_payer) = (cluster.usdc, *pay_to, *fee_payer);
    actix_web::rt::task::spawn_blocking(move || {
        (0..count)
            .map(|i| {
                let buyer = &payers[i % payers.len()];
                let tx = PaymentBuilder::new(
                    &mint,
                    &buyer.pubkey(),
                    &pay_to,
                    amount,
                    &fee_payer,
                    blockhash.clone(),
                )
                .build(&[buyer])?;
                Ok(Payment {
                    id: PaymentId::Svm {
                        payer: buyer.pubkey().to_string(),
                        signature: signature_of(&tx, &buyer.pubkey())?,
                    },
                    body: body(&tx, &mint.address, &pay_to, amount, &fee_payer),
                })
            })
            .collect::<anyhow::Result<Vec<Payment>>>()
    })
    .await?
    .map(|payments| (payments, valid_until))
}

/// `signer`'s signature on `tx` (base58).
fn signature_of(tx: &VersionedTransaction, signer: &Pubkey) -> anyhow::Result<String> {
    let keys = tx.message.static_account_keys();
    let at = keys
        .iter()
        .take(tx.signatures.len())
        .position(|k| k == signer)
        .context("the buyer does not sign its payment")?;
    Ok(tx.signatures[at].to_string())
}

/// The x402 v2 `/verify` and `/settle` body of `tx`, as a resource server sends it.
fn body(
    tx: &VersionedTransaction,
    mint: &Pubkey,
    pay_to: &Pubkey,
    amount: u64,
    fee_payer: &Pubkey,
) -> Value {
    let requirements = json!({
        "scheme": "exact",
        "network": DEVNET_NETWORK,
        "amount": amount.to_string(),
        "asset": mint.to_string(),
        "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": { "feePayer": fee_payer.to_string() },
    });
    v2_body(
        requirements,
        json!({ "transaction": encode_transaction(tx) }),
    )
}
