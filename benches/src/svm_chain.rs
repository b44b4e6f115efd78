//! The Solana cluster's verdict on a run, read from the cluster and never through the
//! facilitator under test: the payee's token account rose by exactly ok x amount, each buyer's
//! fell by exactly its own ok x amount (so no failed answer moved money), and every signature a
//! successful answer named landed without error (`getSignatureStatuses`), one transaction per
//! payment; with each landed transaction's fee and compute units (`getTransaction`).

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context as _;
use devnet::solana::{Pubkey, Signature, Signer as _, SolanaCluster};
use futures::{stream, StreamExt, TryStreamExt};

use super::args::Family;
use super::chain::OnChain;
use super::engine::{Outcome, PaymentId, Record};

/// Reads in flight at once against the cluster.
const READS_IN_FLIGHT: usize = 32;

/// Token balances (the run's mint) of the payee and of every buyer, before a run.
pub struct Balances {
    payee: u64,
    payers: HashMap<String, u64>,
}

impl Balances {
    pub async fn read(cluster: &SolanaCluster, payee: &Pubkey) -> anyhow::Result<Self> {
        let payee = cluster.token_balance(payee, &cluster.usdc).await?;
        let payers = stream::iter(cluster.payers.iter().map(|k| k.pubkey()))
            .map(|p| async move {
                let b = cluster.token_balance(&p, &cluster.usdc).await?;
                anyhow::Ok((p.to_string(), b))
            })
            .buffered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(Self { payee, payers })
    }
}

/// A landed transaction's fee (lamports) and compute units, `None` when the cluster does not
/// tell.
async fn costs(cluster: &SolanaCluster, sig: &Signature) -> Option<(u64, u64)> {
    let tx = cluster.rpc.transaction(sig).await.ok()?;
    let meta = &tx["meta"];
    Some((
        meta["fee"].as_u64()?,
        meta["computeUnitsConsumed"].as_u64()?,
    ))
}

/// Check a finished run against the cluster (`before`: the balances read before it).
pub async fn verdict(
    cluster: &SolanaCluster,
    payee: &Pubkey,
    before: &Balances,
    amount: u64,
    settles: bool,
    records: &[Record],
) -> anyhow::Result<OnChain> {
    let mut problems = Vec::new();
    let ok = records.iter().filter(|r| r.outcome.is_ok()).count() as u64;
    let expected = if settles { ok * amount } else { 0 };
    let after = Balances::read(cluster, payee).await?;
    let delta = after.payee.saturating_sub(before.payee);
    if after.payee < before.payee {
        problems.push(format!(
            "payee balance fell from {} to {}",
            before.payee, after.payee
        ));
    }
    if delta != expected {
        problems.push(format!(
            "payee received {delta}, expected {expected} ({ok} x {amount})"
        ));
    }

    // Each buyer paid exactly for its own successful settlements.
    let mut paid_ok: HashMap<String, u64> = HashMap::new();
    for r in records.iter().filter(|r| settles && r.outcome.is_ok()) {
        *paid_ok.entry(r.id.payer()).or_default() += 1;
    }
    let mut failed_but_used = 0;
    let mut settled_but_unused = 0;
    for (payer, was) in &before.payers {
        let now = after.payers.get(payer).copied().unwrap_or(0);
        let spent = was.saturating_sub(now);
        let owed = paid_ok.get(payer).copied().unwrap_or(0) * amount;
        if spent != owed {
            problems.push(format!(
                "buyer {payer} spent {spent}, expected {owed} (its successful settlements x {amount})"
            ));
            if spent > owed {
                failed_but_used += ((spent - owed) / amount.max(1)) as usize;
            }
        }
    }

    // The signatures the successes named: one distinct transaction per payment, each landed.
    let mut named = Vec::new();
    let mut unnamed = 0;
    let mut bad = Vec::new();
    for r in records {
        match (&r.outcome, &r.id) {
            (Outcome::Ok { transaction: None }, _) if settles => unnamed += 1,
            (
                Outcome::Ok {
                    transaction: Some(t),
                },
                PaymentId::Svm { .. },
            ) if settles => match t.parse::<Signature>() {
                Ok(sig) => named.push(sig),
                Err(_) => bad.push(t.clone()),
            },
            (
                Outcome::Ok {
                    transaction: Some(t),
                },
                _,
            ) => bad.push(t.clone()),
            _ => {}
        }
    }
    if unnamed > 0 {
        problems.push(format!(
            "{unnamed} successful settlements named no transaction"
        ));
    }
    if !bad.is_empty() {
        problems.push(format!(
            "{} answers named no Solana signature of a settlement, e.g. {:?}",
            bad.len(),
            bad[0]
        ));
    }
    let distinct: HashSet<&Signature> = named.iter().collect();
    if distinct.len() != named.len() {
        problems.push(format!(
            "{} settlements named a transaction another payment also named",
            named.len() - distinct.len()
        ));
    }
    let statuses = cluster
        .rpc
        .signature_statuses(&named)
        .await
        .with_context(|| format!("cannot read the cluster at {}", cluster.rpc_url))?;
    let mut per_slot: BTreeMap<u64, usize> = BTreeMap::new();
    let mut landed = Vec::new();
    for (sig, status) in named.iter().zip(&statuses) {
        match status {
            Some(s) if s.err.is_none() && s.is_confirmed() => {
                *per_slot.entry(s.slot).or_default() += 1;
                landed.push(*sig);
            }
            _ => settled_but_unused += 1,
        }
    }
    if settled_but_unused > 0 {
        problems.push(format!(
            "{settled_but_unused} transactions named by successful settlements did not land (getSignatureStatuses)"
        ));
    }
    if failed_but_used > 0 {
        problems.push(format!(
            "{failed_but_used} payments that did not succeed moved their buyer's tokens"
        ));
    }

    let costs: Vec<(u64, u64)> = stream::iter(landed.iter())
        .map(|sig| costs(cluster, sig))
        .buffered(READS_IN_FLIGHT)
        .filter_map(|c| async move { c })
        .collect()
        .await;
    let mean = |f: fn(&(u64, u64)) -> u64| {
        if costs.is_empty() {
            0.0
        } else {
            costs.iter().map(f).sum::<u64>() as f64 / costs.len() as f64
        }
    };
    let slots = per_slot.len();
    Ok(OnChain {
        family: Family::Svm,
        consistent: problems.is_empty(),
        payee: payee.to_string(),
        expected_delta: expected.to_string(),
        payee_delta: delta.to_string(),
        transactions: distinct.len(),
        transactions_not_mined: settled_but_unused,
        gas_per_settlement: mean(|c| c.1),
        fee_per_settlement_wei: mean(|c| c.0),
        blocks: slots,
        settlements_per_block_mean: if slots > 0 {
            per_slot.values().sum::<usize>() as f64 / slots as f64
        } else {
            0.0
        },
        settlements_per_block_max: per_slot.values().copied().max().unwrap_or(0),
        latency_blocks_mean: None,
        settled_but_unused,
        failed_but_used,
        problems,
    })
}
