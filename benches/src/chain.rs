//! The chain as the bench sees it, read directly from the node and never through the
//! facilitator under test: pre-flight checks (chain id, token, buyers' balances) and the
//! verdict after a run (the payee's balance, `authorizationState` of every nonce, the receipts).

use std::collections::{BTreeMap, HashSet};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::sol;
use anyhow::{bail, Context as _};
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;

use super::args::Family;
use super::engine::{Outcome, PaymentId, Record};

sol! {
    #[sol(rpc)]
    interface IEip3009Token {
        function name() view returns (string);
        function version() view returns (string);
        function balanceOf(address account) view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) view returns (bool);
    }
}

/// Reads in flight at once against the node.
const READS_IN_FLIGHT: usize = 32;

pub struct Chain {
    provider: DynProvider,
    pub rpc_url: String,
    pub chain_id: u64,
    pub asset: Address,
}

/// What the chain says about one run. On Solana (`family` svm): gas is compute units, wei
/// are lamports, blocks are slots, and a settlement's "nonce" is the buyer's signature.
#[derive(Debug, Clone, Serialize)]
pub struct OnChain {
    pub family: Family,
    /// Every check below held.
    pub consistent: bool,
    pub payee: String,
    /// ok x amount (settling modes) or 0 (verify).
    pub expected_delta: String,
    pub payee_delta: String,
    /// Distinct transactions the successful settlements named.
    pub transactions: usize,
    /// Of those, how many have no successful receipt.
    pub transactions_not_mined: usize,
    pub gas_per_settlement: f64,
    /// Fee (gas x effective gas price) per settlement, in wei of the native coin.
    pub fee_per_settlement_wei: f64,
    pub blocks: usize,
    pub settlements_per_block_mean: f64,
    pub settlements_per_block_max: usize,
    /// Blocks the chain made while a successful settle waited for its answer, mean (from the
    /// bench's own view of the head, polled every 20 ms; settling modes).
    pub latency_blocks_mean: Option<f64>,
    /// Successful answers whose nonce the token does not mark used.
    pub settled_but_unused: usize,
    /// Failed answers (or verify-only requests) whose nonce the token marks used.
    pub failed_but_used: usize,
    /// One line per disagreement.
    pub problems: Vec<String>,
}

/// The instants at which the bench saw each new block (`Chain::watch_heads`).
pub struct Heads {
    seen: std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Heads {
    /// Stop watching; the instants, in order.
    pub fn stop(self) -> Vec<std::time::Instant> {
        self.task.abort();
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Mean blocks seen while each successful request waited (`t0`: the records' time origin).
pub fn latency_blocks(
    records: &[Record],
    t0: std::time::Instant,
    heads: &[std::time::Instant],
) -> Option<f64> {
    let waited: Vec<usize> = records
        .iter()
        .filter(|r| r.outcome.is_ok())
        .map(|r| {
            let (from, to) = (t0 + r.started, t0 + r.finished);
            heads.iter().filter(|h| **h > from && **h <= to).count()
        })
        .collect();
    (!waited.is_empty()).then(|| waited.iter().sum::<usize>() as f64 / waited.len() as f64)
}

/// The transaction hash a successful answer named (`None` for a failure, or no 0x hash).
fn tx_hash(r: &Record) -> Option<B256> {
    match &r.outcome {
        Outcome::Ok { transaction } => transaction.as_deref().and_then(|t| t.parse().ok()),
        Outcome::Failed { .. } => None,
    }
}

fn rpc_context(url: &str) -> String {
    format!("cannot read the chain at {url}")
}

impl Chain {
    /// Watch the head (every 5 ms) until `Heads::stop`. Finer than any facilitator's own
    /// reading of new blocks, so a settle answered right after its block is not counted as
    /// having waited none (at 20 ms, one answer in a hundred came before the bench saw its
    /// block).
    pub fn watch_heads(&self) -> Heads {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (provider, out) = (self.provider.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let mut last = None;
            let mut every = tokio::time::interval(std::time::Duration::from_millis(5));
            loop {
                every.tick().await;
                let Ok(n) = provider.get_block_number().await else {
                    continue;
                };
                let now = std::time::Instant::now();
                if let Some(prev) = last.filter(|p| n > *p) {
                    let mut seen = out.lock().unwrap_or_else(|e| e.into_inner());
                    seen.extend(std::iter::repeat_n(now, (n - prev) as usize));
                }
                if last.is_none_or(|p| n > p) {
                    last = Some(n);
                }
            }
        });
        Heads { seen, task }
    }

    pub async fn connect(rpc_url: &str, asset: Address) -> anyhow::Result<Self> {
        let url = rpc_url
            .parse()
            .with_context(|| format!("--rpc-url {rpc_url} is not a URL"))?;
        let provider = ProviderBuilder::new().connect_http(url).erased();
        let chain_id = provider
            .get_chain_id()
            .await
            .with_context(|| rpc_context(rpc_url))?;
        Ok(Self {
            provider,
            rpc_url: rpc_url.to_owned(),
            chain_id,
            asset,
        })
    }

    fn token(&self) -> IEip3009Token::IEip3009TokenInstance<&DynProvider> {
        IEip3009Token::new(self.asset, &self.provider)
    }

    /// The asset is a contract whose EIP-712 domain is the one the buyers will sign.
    pub async fn check_asset(&self, name: &str, version: &str) -> anyhow::Result<()> {
        let code = self
            .provider
            .get_code_at(self.asset)
            .await
            .with_context(|| rpc_context(&self.rpc_url))?;
        if code.is_empty() {
            bail!(
                "wrong asset: no contract at {} on chain {} ({})",
                self.asset,
                self.chain_id,
                self.rpc_url
            );
        }
        let token = self.token();
        let actual_name = token.name().call().await.with_context(|| {
            format!(
                "wrong asset: {} does not answer name() as an ERC-20 does",
                self.asset
            )
        })?;
        let actual_version = token.version().call().await.with_context(|| {
            format!(
                "wrong asset: {} has no version(): not an EIP-3009 token like USDC",
                self.asset
            )
        })?;
        if actual_name != name || actual_version != version {
            bail!(
                "wrong asset: {}'s EIP-712 domain is name {actual_name:?} version {actual_version:?}, \
                 not {name:?} / {version:?} (set --asset-name / --asset-version)",
                self.asset
            );
        }
        Ok(())
    }

    pub async fn balance(&self, who: Address) -> anyhow::Result<U256> {
        self.token()
            .balanceOf(who)
            .call()
            .await
            .with_context(|| rpc_context(&self.rpc_url))
    }

    /// Every buyer holds what its share of the payments needs.
    pub async fn check_funded(&self, payers: &[Address], needed_each: U256) -> anyhow::Result<()> {
        let balances: Vec<(Address, U256)> = stream::iter(payers.iter().copied())
            .map(|p| async move { self.balance(p).await.map(|b| (p, b)) })
            .buffered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        let short: Vec<String> = balances
            .iter()
            .filter(|(_, b)| *b < needed_each)
            .map(|(p, b)| format!("{p} holds {b}"))
            .collect();
        if !short.is_empty() {
            bail!(
                "unfunded payers: each needs {needed_each} of {} for this workload, but {} of {} do not have it: {}",
                self.asset,
                short.len(),
                payers.len(),
                short.join(", ")
            );
        }
        Ok(())
    }

    async fn authorization_state(&self, payer: Address, nonce: B256) -> anyhow::Result<bool> {
        self.token()
            .authorizationState(payer, nonce)
            .call()
            .await
            .with_context(|| rpc_context(&self.rpc_url))
    }

    /// Check a finished run against the chain.
    pub async fn verdict(
        &self,
        payee: Address,
        payee_before: U256,
        amount: U256,
        settles: bool,
        records: &[Record],
    ) -> anyhow::Result<OnChain> {
        let mut problems = Vec::new();
        let ok = records.iter().filter(|r| r.outcome.is_ok()).count();
        let expected = if settles {
            amount * U256::from(ok)
        } else {
            U256::ZERO
        };
        let after = self.balance(payee).await?;
        let delta = after.saturating_sub(payee_before);
        if after < payee_before {
            problems.push(format!("payee balance fell from {payee_before} to {after}"));
        }
        if delta != expected {
            problems.push(format!(
                "payee received {delta}, expected {expected} ({ok} x {amount})"
            ));
        }

        // authorizationState: true exactly for the settled nonces.
        let states: Vec<bool> = stream::iter(records.iter())
            .map(|r| async move {
                match &r.id {
                    PaymentId::Evm { payer, nonce } => {
                        self.authorization_state(*payer, *nonce).await
                    }
                    PaymentId::Svm { .. } => bail!("a Solana payment in an EVM run"),
                    PaymentId::Voucher { .. } => bail!("a voucher in an exact run"),
                }
            })
            .buffered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut settled_but_unused = 0;
        let mut failed_but_used = 0;
        for (r, used) in records.iter().zip(&states) {
            let should_be_used = settles && r.outcome.is_ok();
            if should_be_used && !used {
                settled_but_unused += 1;
            }
            if !should_be_used && *used {
                failed_but_used += 1;
            }
        }
        if settled_but_unused > 0 {
            problems.push(format!(
                "{settled_but_unused} settlements answered success but their nonce is unused on chain"
            ));
        }
        if failed_but_used > 0 {
            problems.push(format!(
                "{failed_but_used} payments that did not succeed have their nonce used on chain"
            ));
        }

        // Receipts of the transactions the successes named.
        let named: Vec<Option<B256>> = records.iter().map(tx_hash).collect();
        let hashes: Vec<B256> = {
            let mut seen = HashSet::new();
            named
                .iter()
                .flatten()
                .copied()
                .filter(|h| seen.insert(*h))
                .collect()
        };
        let with_tx = named.iter().flatten().count();
        if settles && with_tx < ok {
            problems.push(format!(
                "{} successful settlements named no transaction",
                ok - with_tx
            ));
        }
        let receipts: Vec<_> = stream::iter(hashes.iter().copied())
            .map(|h| async move {
                self.provider
                    .get_transaction_receipt(h)
                    .await
                    .with_context(|| rpc_context(&self.rpc_url))
            })
            .buffered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut gas: u128 = 0;
        let mut fee: u128 = 0;
        let mut not_mined = 0;
        let mut per_tx_block = BTreeMap::new();
        for (hash, receipt) in hashes.iter().zip(receipts) {
            match receipt {
                Some(r) if r.status() => {
                    gas += u128::from(r.gas_used);
                    fee = fee.saturating_add(
                        u128::from(r.gas_used).saturating_mul(r.effective_gas_price),
                    );
                    if let Some(b) = r.block_number {
                        per_tx_block.insert(*hash, b);
                    }
                }
                _ => not_mined += 1,
            }
        }
        if not_mined > 0 {
            problems.push(format!(
                "{not_mined} transactions named by successful settlements have no successful receipt"
            ));
        }
        let mut per_block: BTreeMap<u64, usize> = BTreeMap::new();
        for h in named.iter().flatten() {
            if let Some(b) = per_tx_block.get(h) {
                *per_block.entry(*b).or_default() += 1;
            }
        }
        let settled = ok.max(1) as f64;
        let blocks = per_block.len();
        Ok(OnChain {
            family: Family::Evm,
            consistent: problems.is_empty(),
            payee: payee.to_checksum(None),
            expected_delta: expected.to_string(),
            payee_delta: delta.to_string(),
            transactions: hashes.len(),
            transactions_not_mined: not_mined,
            gas_per_settlement: if ok > 0 { gas as f64 / settled } else { 0.0 },
            fee_per_settlement_wei: if ok > 0 { fee as f64 / settled } else { 0.0 },
            blocks,
            settlements_per_block_mean: if blocks > 0 {
                per_block.values().sum::<usize>() as f64 / blocks as f64
            } else {
                0.0
            },
            settlements_per_block_max: per_block.values().copied().max().unwrap_or(0),
            latency_blocks_mean: None,
            settled_but_unused,
            failed_but_used,
            problems,
        })
    }
}
