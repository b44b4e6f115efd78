//! `--scheme batch-settlement` around the timed vouchers, each step a `POST /settle` to the
//! facilitator measured (untimed): the deposits that open the channels, then one claim of every
//! channel and the sweep to the receiver. Then the chain's verdict, read from the node: the
//! receiver got exactly the highest ceiling accepted on each channel, each channel's
//! `totalClaimed` is that ceiling, every transaction succeeded; and their gas.

use std::collections::BTreeSet;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use anyhow::{bail, Context as _};
use devnet::batch_settlement::Channel;
use devnet::channel_payloads::{claim_payload, sweep_payload};
use devnet::Devnet;
use serde::Serialize;
use serde_json::Value;

use super::args::Family;
use super::chain::OnChain;
use super::engine::{base_urls, Target};
use super::payments::v2_body;

/// What a voucher run cost on chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelCosts {
    /// Channels opened (one per payer), each by a deposit carrying the first voucher.
    pub channels: usize,
    /// Vouchers accepted by `/verify` (the timed requests).
    pub vouchers_ok: usize,
    /// Paid requests: each deposit's voucher and each accepted voucher.
    pub paid_requests: usize,
    pub deposit_gas: u64,
    pub claim_gas: u64,
    pub sweep_gas: u64,
    /// (deposits + claim + sweep) / paid requests.
    pub gas_per_paid_request: f64,
    /// (claim + sweep) / paid requests: what a channel already open costs.
    pub gas_per_paid_request_after_deposits: f64,
    pub deposit_transactions: Vec<String>,
    pub claim_transaction: String,
    pub sweep_transaction: String,
}

/// Sends the untimed settles to one facilitator (its first instance).
pub(crate) struct Settler {
    http: reqwest::Client,
    url: String,
    name: String,
}

impl Settler {
    pub(crate) fn new(target: &Target, timeout: Duration) -> anyhow::Result<Self> {
        let url = base_urls(&target.url)
            .into_iter()
            .next()
            .with_context(|| format!("no facilitator URL in {:?}", target.url))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .default_headers(target.headers.clone())
            .timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            url,
            name: target.name.clone(),
        })
    }

    /// `POST /settle`; its transaction, which must have succeeded.
    async fn settle(&self, what: &str, body: &Value) -> anyhow::Result<B256> {
        let res = self
            .http
            .post(format!("{}/settle", self.url))
            .json(body)
            .send()
            .await
            .with_context(|| format!("{}: {what}: POST /settle", self.name))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() || answer["success"] != true {
            let cut: String = text.chars().take(400).collect();
            bail!(
                "{}: {what} refused (HTTP {}): {cut}",
                self.name,
                status.as_u16()
            );
        }
        answer["transaction"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .with_context(|| format!("{}: {what} names no transaction: {answer}", self.name))
    }
}

/// Open every channel: a deposit of `amount` x (its vouchers + 1), carrying the first voucher
/// (ceiling `amount`), all settled at once. Their transactions.
pub(crate) async fn open(
    settler: &Settler,
    devnet: &Devnet,
    channels: &[Channel],
    vouchers: &[usize],
    amount: u128,
) -> anyhow::Result<Vec<B256>> {
    let bodies: Vec<Value> = channels
        .iter()
        .zip(vouchers)
        .map(|(ch, &n)| {
            v2_body(
                ch.requirements_json(devnet, amount as u64),
                ch.deposit_payload(devnet, amount * (n as u128 + 1), amount),
            )
        })
        .collect();
    futures::future::try_join_all(bodies.iter().map(|b| settler.settle("deposit", b))).await
}

/// Claim every channel up to its ceiling (one `claimWithSignature`, signed by the merchant's
/// receiverAuthorizer), then sweep to `payee`. The two transactions.
pub(crate) async fn close(
    settler: &Settler,
    devnet: &Devnet,
    claims: &[(&Channel, u128)],
    payee: Address,
    amount: u64,
) -> anyhow::Result<(B256, B256)> {
    let (first, _) = claims.first().context("no channel to claim")?;
    let requirements = first.requirements_json(devnet, amount);
    let claim = v2_body(requirements.clone(), claim_payload(devnet, claims));
    let claimed = settler.settle("claim", &claim).await?;
    let sweep = v2_body(requirements, sweep_payload(payee, devnet.usdc));
    let swept = settler.settle("sweep", &sweep).await?;
    Ok((claimed, swept))
}

/// The run's transactions on chain.
pub(crate) struct Transactions {
    pub deposits: Vec<B256>,
    pub claim: B256,
    pub sweep: B256,
}

/// The chain's verdict on a voucher run and its costs.
pub(crate) async fn verdict(
    devnet: &Devnet,
    payee: Address,
    payee_before: U256,
    claims: &[(&Channel, u128)],
    txs: &Transactions,
    vouchers_ok: usize,
) -> anyhow::Result<(OnChain, ChannelCosts)> {
    let mut problems = Vec::new();
    let expected: u128 = claims.iter().map(|(_, max)| max).sum();
    let delta = devnet.usdc_balance(payee).await? - payee_before;
    if delta != U256::from(expected) {
        problems.push(format!(
            "payee received {delta}, expected {expected} (the highest ceiling accepted on each channel)"
        ));
    }
    for (ch, max) in claims {
        let state = devnet.channel_state(ch.id).await?;
        if state.total_claimed != *max {
            problems.push(format!(
                "channel {} has totalClaimed {}, expected {max}",
                ch.id, state.total_claimed
            ));
        }
    }
    let (mut gas, mut fee, mut blocks, mut not_mined) = ([0u64; 3], 0f64, BTreeSet::new(), 0);
    let all = txs
        .deposits
        .iter()
        .map(|t| (0, *t))
        .chain([(1, txs.claim), (2, txs.sweep)]);
    for (kind, tx) in all {
        match devnet.receipt(tx).await? {
            Some(r) if r.status() => {
                gas[kind] += r.gas_used;
                fee += r.gas_used as f64 * r.effective_gas_price as f64;
                blocks.extend(r.block_number);
            }
            _ => {
                not_mined += 1;
                problems.push(format!("transaction {tx} has no successful receipt"));
            }
        }
    }
    let paid = claims.len() + vouchers_ok;
    let per = |g: u64| g as f64 / paid.max(1) as f64;
    let total = gas.iter().sum::<u64>();
    let costs = ChannelCosts {
        channels: claims.len(),
        vouchers_ok,
        paid_requests: paid,
        deposit_gas: gas[0],
        claim_gas: gas[1],
        sweep_gas: gas[2],
        gas_per_paid_request: per(total),
        gas_per_paid_request_after_deposits: per(gas[1] + gas[2]),
        deposit_transactions: txs.deposits.iter().map(B256::to_string).collect(),
        claim_transaction: txs.claim.to_string(),
        sweep_transaction: txs.sweep.to_string(),
    };
    let onchain = OnChain {
        family: Family::Evm,
        consistent: problems.is_empty(),
        payee: payee.to_checksum(None),
        expected_delta: expected.to_string(),
        payee_delta: delta.to_string(),
        transactions: txs.deposits.len() + 2,
        transactions_not_mined: not_mined,
        gas_per_settlement: costs.gas_per_paid_request,
        fee_per_settlement_wei: fee / paid.max(1) as f64,
        blocks: blocks.len(),
        settlements_per_block_mean: 0.0,
        settlements_per_block_max: 0,
        latency_blocks_mean: None,
        settled_but_unused: 0,
        failed_but_used: 0,
        problems,
    };
    Ok((onchain, costs))
}
