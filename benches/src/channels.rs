//! `--scheme batch-settlement`: payment channels, self-contained. The local chain gets the
//! channel contracts (`DevnetOptions::batch_settlement`), our facilitator has channels on
//! (`settlement.channels`), and with --compare-reference the TypeScript reference facilitator
//! also serves `@x402/evm`'s `BatchSettlementEvmScheme` on the same chain.
//!
//! Per facilitator: a fresh receiver and merchant key (its `receiverAuthorizer`: the merchant
//! signs its own claims), one channel per payer opened by a deposit through the facilitator's
//! `/settle` (its voucher, ceiling `amount`, pays the first request), then `--count` vouchers
//! spread over the channels, the k-th voucher of a channel with ceiling `(k + 2) x amount`,
//! signed up front and each `POST /verify`-ed, one stream per channel in order (a client pays
//! on its channel one request after the other): that is what is timed. Then one claim of every
//! channel at the highest ceiling it accepted and the sweep to the receiver, and the chain's
//! verdict (`channels_chain`). In the same run, the same facilitator's `exact` verify of as
//! many payments at the same concurrency, for the ratio.

use std::collections::HashMap;
use std::path::Path;

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use anyhow::bail;
use devnet::batch_settlement::Channel;
use devnet::Devnet;

use super::args::{Family, Mode};
use super::channels_chain::{self, Settler, Transactions};
use super::engine::{self, Loop, Outcome as Answer, PaymentId, Target, Workload};
use super::payments::{v2_body, Payment};
use super::report::RunReport;
use super::supported::{probe, probe_scheme};
use super::{console, stats, BenchArgs, Local, Outcome, Report, Setup};

/// The flags `--scheme batch-settlement` cannot honour, each with why.
fn refuse_flags(args: &BenchArgs) -> anyhow::Result<()> {
    if !args.self_contained() {
        bail!("--scheme batch-settlement is self-contained only (a local chain with the channel contracts): drop --facilitator and --state");
    }
    if args.family != Family::Evm {
        bail!("--scheme batch-settlement is for EVM (--family evm)");
    }
    if args.x402_version != 2 {
        bail!("--scheme batch-settlement is x402 v2 only");
    }
    for (set, flag) in [
        (
            args.rate.is_some(),
            "--rate (one stream per channel, in order)",
        ),
        (
            args.duration.is_some(),
            "--duration (every voucher is sent)",
        ),
        (
            args.compare.is_some(),
            "--compare (use --compare-reference)",
        ),
        (args.compare_unbatched, "--compare-unbatched"),
        (args.mirror.is_some(), "--mirror"),
        (!args.binaries.is_empty(), "--binary"),
    ] {
        if set {
            bail!("--scheme batch-settlement does not take {flag}");
        }
    }
    Ok(())
}

/// The bench of `--scheme batch-settlement`.
pub async fn run(args: BenchArgs, config: &Path) -> anyhow::Result<Outcome> {
    refuse_flags(&args)?;
    let payers = args.payers as usize;
    let count = args.count.unwrap_or(100) as usize;
    if count < payers {
        bail!("--count {count} is fewer vouchers than channels (--payers {payers})");
    }
    // Each payer deposits once per facilitator what its channel's vouchers need.
    let deposits = 1 + usize::from(args.compare_reference);
    let needed = U256::from(args.amount) * U256::from((count.div_ceil(payers) + 1) * deposits);
    let local = Local::start(&args, config, needed).await?;
    let result = async {
        let setup = super::local_setup(&args, &local).await?;
        bench(&args, &local, &setup, count).await
    }
    .await;
    match result {
        Ok(report) => Ok(Outcome {
            report,
            local: Some(local),
            svm: None,
        }),
        Err(e) => {
            local.stop().await;
            Err(e)
        }
    }
}

async fn bench(
    args: &BenchArgs,
    local: &Local,
    setup: &Setup,
    count: usize,
) -> anyhow::Result<Report> {
    let (base, _) = super::workload(args)?;
    let network = setup.names.caip2.clone();
    let payers = setup.payers.len();
    let mut targets = vec![local.ours.clone()];
    targets.extend(local.reference.iter().map(|(t, _)| t.clone()));
    for t in &targets {
        probe_scheme(t, "batch-settlement", &network, 2).await?;
        probe(t, &network, 2).await?;
    }
    let vouchers = Workload {
        mode: Mode::Verify,
        looping: Loop::Streams { streams: payers },
        duration: None,
        timeout: base.timeout,
    };
    let exact = Workload {
        looping: Loop::Closed {
            concurrency: payers,
        },
        ..vouchers
    };
    let mut runs = Vec::new();
    for t in &targets {
        runs.push(voucher_run(args, &local.devnet, t, vouchers, count).await?);
        let name = format!("{}-exact", t.name);
        runs.push(super::exact_run(args, setup, t, exact, count, name).await?);
    }
    super::conclude(
        args,
        vouchers,
        network,
        setup.chain.asset.to_checksum(None),
        payers,
        count,
        runs,
    )
}

/// The vouchers of `channels`: payment `i` on channel `i % channels`, its ceiling
/// `(i / channels + 2) x amount` (the deposit's voucher was `amount`).
fn sign_vouchers(
    devnet: &Devnet,
    channels: &[Channel],
    count: usize,
    amount: u128,
) -> Vec<Payment> {
    (0..count)
        .map(|i| {
            let ch = &channels[i % channels.len()];
            let ceiling = amount * (i / channels.len() + 2) as u128;
            Payment {
                id: PaymentId::Voucher {
                    payer: ch.config.payer,
                    channel: ch.id,
                    ceiling,
                },
                body: v2_body(
                    ch.requirements_json(devnet, amount as u64),
                    ch.voucher_payload(devnet, ceiling),
                ),
            }
        })
        .collect()
}

/// One facilitator's voucher run: open, pay, claim, sweep, check.
async fn voucher_run(
    args: &BenchArgs,
    devnet: &Devnet,
    target: &Target,
    workload: Workload,
    count: usize,
) -> anyhow::Result<RunReport> {
    let name = format!("{}-voucher", target.name);
    let amount = u128::from(args.amount);
    let payee = PrivateKeySigner::random().address();
    let merchant = PrivateKeySigner::random();
    let channels: Vec<Channel> = devnet
        .payers
        .iter()
        .take(args.payers as usize)
        .map(|p| Channel::delegated(devnet, p.clone(), payee, merchant.clone()))
        .collect();
    let n = channels.len();
    println!(
        "bench: {name} ({}) — {count} vouchers on {n} channels (batch-settlement, x402 v2), {}",
        target.url,
        console::describe_loop(workload.looping)
    );
    let per: Vec<usize> = (0..n)
        .map(|c| count / n + usize::from(c < count % n))
        .collect();
    let payee_before = devnet.usdc_balance(payee).await?;
    let settler = Settler::new(target, workload.timeout)?;
    let deposits = channels_chain::open(&settler, devnet, &channels, &per, amount).await?;
    println!(
        "  opened {n} channels ({} deposits settled)",
        deposits.len()
    );

    let payments = sign_vouchers(devnet, &channels, count, amount);
    let (records, _) = engine::run(target, workload, payments, name.clone()).await?;
    let summary = stats::summarize(&records);

    // The highest ceiling each channel accepted (the deposit's voucher at least).
    let at: HashMap<_, usize> = channels
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();
    let mut highest = vec![amount; n];
    let mut ok = 0;
    for r in &records {
        if let (
            Answer::Ok { .. },
            PaymentId::Voucher {
                channel, ceiling, ..
            },
        ) = (&r.outcome, &r.id)
        {
            ok += 1;
            let h = &mut highest[at[channel]];
            *h = (*h).max(*ceiling);
        }
    }
    let claims: Vec<(&Channel, u128)> = channels.iter().zip(highest).collect();
    let (claim, sweep) =
        channels_chain::close(&settler, devnet, &claims, payee, args.amount).await?;
    let txs = Transactions {
        deposits,
        claim,
        sweep,
    };
    let (onchain, costs) =
        channels_chain::verdict(devnet, payee, payee_before, &claims, &txs, ok).await?;
    let mut run = RunReport::new(
        name,
        target.url.clone(),
        Mode::Verify,
        summary,
        onchain,
        &records,
    );
    run.channels = Some(costs);
    console::print_run(&run);
    Ok(run)
}
