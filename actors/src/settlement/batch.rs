//! Batched settlement: the settles of one network queued within a short window go out as one
//! transaction, Multicall3's `aggregate3` with `allowFailure` on every call, so one bad
//! authorization fails alone.
//!
//! - `Batcher` collects payments for `batch_window` or until `batch_max` are queued, then one
//!   task per batch sends it through the network's `SettlementRouter` (one nonce, one
//!   signature: the settlement actor writes the transaction hash to every row of the batch
//!   before broadcasting), waits for its receipt, replaces it when it stays unmined, and hands
//!   every payment of the batch the receipt.
//! - Each payment's outcome is read from its own `AuthorizationUsed` log in the receipt
//!   (`carried`): a call that failed inside a successful batch logs nothing. The ledger keeps
//!   one row per payment; each row's gas and fee are an equal share of the transaction's, a
//!   failed call's as well as a carried one's (`share`).
//! - The window closes early when no other settle is on its way (`Batcher::approach`: claimed
//!   and being judged, not queued yet): a lone settle goes out at once, as without batching,
//!   so light load pays no latency for batching.
//! - A batch of one is sent as the plain call, as without batching.
//! - A batch whose worst-case gas limit would pass 1/6 of the block's (`BLOCK_SHARE`, read
//!   once from the head) goes out as several even ones, side by side: blocks fill better.
//! - Multicall3's address is the network's (`networks.<id>.multicall3_address`, by default the
//!   canonical one in `chain::multicall`).
//! - A chain with no code at Multicall3's address (a call there would "succeed" and transfer
//!   nothing) gets no batches: each payment goes out as its own plain call, and a warning
//!   says why. The code is read once, before the first batch.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, B256};
use alloy::providers::Provider;
use alloy::rpc::types::{
    BlockNumberOrTag, TransactionInput, TransactionReceipt, TransactionRequest,
};
use alloy::sol;
use alloy::sol_types::{SolCall, SolEvent};
use entities::settlement::{Column, Entity};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use tokio::sync::{mpsc, oneshot, Notify};

use super::{Broadcast, BroadcastError, Broadcasted, ReceiptWatcher, SettlementRouter};
use crate::chain::multicall::IMulticall3::{aggregate3Call, Call3};
use crate::ledger;

sol! {
    /// EIP-3009: logged by the token when an authorization is used.
    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
}

/// `settlement.batch_max` / `settlement.batch_window_ms`.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Payments per transaction at most (≥ 2; 1 or 0 = batching off).
    pub max: usize,
    /// How long the first payment of a batch waits for others.
    pub window: Duration,
    /// `settlement.batch_mirror_precheck`: a payment the state mirror clears is not simulated.
    pub mirror_precheck: bool,
}

impl BatchConfig {
    /// `None` when batching is off.
    pub fn enabled(max: usize, window_ms: u64, mirror_precheck: bool) -> Option<Self> {
        (max >= 2).then(|| Self {
            max,
            window: Duration::from_millis(window_ms),
            mirror_precheck,
        })
    }
}

/// A batch's worst-case gas limit stays under this share of the block's: a node admits a
/// transaction to a block only while its gas limit fits what is left of it, so a few batches
/// with loose limits would leave most of a 30M-gas block empty (100 calls: a 9M limit for ~4.4M
/// used). At 30M gas a batch carries at most 49 calls (a 4.5M limit: 12 such batches fit, ~2.2M
/// used each); at 300M the cap is `batch_max`. A smaller share packs no better: each
/// transaction's own 21k and cold reads spread over fewer payments (a 12th: 48.9k gas a payment
/// against 44.2k, for 5% more a block).
const BLOCK_SHARE: u64 = 6;

/// Gas of a batch when the node cannot estimate it: per call, and for the transaction.
const FALLBACK_GAS_PER_CALL: u64 = 100_000;
pub const FALLBACK_GAS_BASE: u64 = 40_000;
/// Per call of a batch that nobody simulated (every payment cleared by the state mirror: an
/// EOA's `transferWithAuthorization` of a FiatToken-like asset, at most ~70k gas with its
/// calldata, paying a new nonce and a new payee slot): not estimated, so that the node runs
/// each payment once, in its block.
pub const MIRRORED_GAS_PER_CALL: u64 = 90_000;

/// The gas limit of a payment the state mirror cleared, sent alone (a batch of one): the
/// transaction's own cost and one call's bound.
pub const MIRRORED_GAS_LIMIT: u64 = FALLBACK_GAS_BASE + MIRRORED_GAS_PER_CALL;

/// One payment to settle in a batch.
#[derive(Debug, Clone)]
pub struct Payment {
    pub settlement_id: i64,
    /// The token, called with `calldata`.
    pub asset: Address,
    pub payer: Address,
    pub nonce: B256,
    pub calldata: Bytes,
    /// Simulated before it was queued (`false`: cleared by the state mirror instead).
    pub simulated: bool,
    /// Its gas limit sent alone: its call's estimate plus the margin, or `MIRRORED_GAS_LIMIT`.
    pub gas_limit: u64,
}

/// What became of a payment's batch.
#[derive(Debug, Clone)]
pub enum BatchOutcome {
    /// The batch's transaction is mined (the payment's own outcome: `carried`). Shared by the
    /// batch's payments: a 100-call batch's receipt holds 200 logs, and a copy per payment
    /// was ~10 MB per batch in flight. With the number of payments the transaction carries.
    Mined(Arc<TransactionReceipt>, u64),
    /// Sent (or maybe sent), not mined by the receipt timeout: these are its versions.
    Pending(Vec<B256>),
    /// No signer here could take it: nothing was sent.
    NoSigner(String),
    /// Nothing was sent.
    NotSent(String),
}

/// Rows a batch transaction carries besides `Broadcast::settlement_id`.
#[derive(Debug, Clone)]
pub struct BatchTx {
    pub carried: Vec<i64>,
}

/// The ledger rows a broadcast names: its own, then the batch's others.
pub(super) fn row_ids(msg: &Broadcast) -> Vec<i64> {
    let mut ids = vec![msg.settlement_id];
    if let Some(b) = &msg.batch {
        ids.extend_from_slice(&b.carried);
    }
    ids
}

/// `ledger::mark_submitted` for every row of a transaction (under the signer's lease, all or
/// none). The signed transaction is kept on the first row only (`ledger::raw_tx_of` finds it
/// from the others): a 100-payment batch is ~40 KB, and a copy on each row made every write
/// of the batch's rows (this one, then the mined outcome) rewrite ~4 MB.
pub(super) async fn mark_submitted(
    db: &DatabaseConnection,
    ids: &[i64],
    tx_hash: B256,
    nonce: u64,
    raw: &[u8],
    fence: &ledger::Fence<'_>,
) -> Result<bool, DbErr> {
    if let [id] = ids {
        return ledger::mark_submitted(db, *id, tx_hash, nonce, raw, fence).await;
    }
    let first = ids[0];
    let raw_on_first = Expr::case(
        Column::Id.eq(first),
        Expr::value(alloy::hex::encode_prefixed(raw)),
    )
    .finally(Expr::value(Option::<String>::None));
    let res = Entity::update_many()
        .col_expr(Column::Status, Expr::value(ledger::SUBMITTED))
        .col_expr(Column::TxHash, Expr::value(tx_hash.to_string()))
        .col_expr(Column::Signer, Expr::value(fence.signer.to_checksum(None)))
        .col_expr(Column::SignerNonce, Expr::value(nonce as i64))
        .col_expr(Column::RawTx, raw_on_first.into())
        .col_expr(Column::InstanceId, Expr::value(fence.holder))
        .col_expr(
            Column::QueuedAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .col_expr(Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(Column::Id.is_in(ids.iter().copied()))
        .filter(fence.holds())
        .exec(db)
        .await?;
    Ok(res.rows_affected == ids.len() as u64)
}

/// `ledger::unmark_submitted` for every row of a refused transaction.
pub(super) async fn unmark_submitted(
    db: &DatabaseConnection,
    ids: &[i64],
    tx_hash: B256,
) -> Result<(), DbErr> {
    for id in ids {
        ledger::unmark_submitted(db, *id, tx_hash).await?;
    }
    Ok(())
}

/// Did this transaction use the payer's authorization? A batch transaction succeeds even
/// when some of its calls fail: each payment's proof is its own `AuthorizationUsed` log.
pub fn carried(receipt: &TransactionReceipt, asset: Address, payer: Address, nonce: B256) -> bool {
    receipt.status()
        && receipt.inner.logs().iter().any(|log| {
            let topics = log.topics();
            log.address() == asset
                && topics.len() == 3
                && topics[0] == AuthorizationUsed::SIGNATURE_HASH
                && topics[1] == payer.into_word()
                && topics[2] == nonce
        })
}

/// How many authorizations a transaction used (its successful payments).
pub fn authorizations_used(receipt: &TransactionReceipt) -> u64 {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.topics().first() == Some(&AuthorizationUsed::SIGNATURE_HASH))
        .count() as u64
}

/// Whether a receipt is one of a batch (or any multicall) rather than a direct token call:
/// a transaction to the network's Multicall3 (`multicall3`).
pub fn is_batch(receipt: &TransactionReceipt, multicall3: Address) -> bool {
    receipt.to == Some(multicall3)
}

type Queued = (Payment, oneshot::Sender<BatchOutcome>);

/// The batching front of one network's settlement router.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::UnboundedSender<Queued>,
    approaching: Arc<Approaching>,
}

/// Settles on their way to the batch (claimed, being judged), which an open window waits for.
#[derive(Default)]
struct Approaching {
    count: AtomicUsize,
    /// Told when one arrives or turns away.
    changed: Notify,
}

/// A settle on its way to the network's batch: counted until it is queued (`Batcher::settle`)
/// or dropped (it went another way, or failed).
pub struct Approach(Arc<Approaching>);

impl Drop for Approach {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// The network a batcher sends on: its signers, receipts, node and bounds.
pub struct BatchNetwork {
    pub router: SettlementRouter,
    pub watcher: ReceiptWatcher,
    pub provider: alloy::providers::RootProvider,
    pub receipt_timeout: Duration,
    pub replace_after: Duration,
    /// `max_gas_per_settlement`: a batch's gas limit is at most this per call it carries.
    pub max_gas_per_call: u64,
    /// The network's Multicall3 (`networks.<id>.multicall3_address`).
    pub multicall3: Address,
}

/// What a batch's task needs.
struct Sender {
    network: BatchNetwork,
    /// Code at `network.multicall3`: `UNKNOWN` until read, then `PRESENT` or `ABSENT`.
    multicall3_code: AtomicU8,
    /// The chain's block gas limit: 0 until read.
    block_gas_limit: AtomicU64,
}

impl std::ops::Deref for Sender {
    type Target = BatchNetwork;
    fn deref(&self) -> &BatchNetwork {
        &self.network
    }
}

const UNKNOWN: u8 = 0;
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;

impl Batcher {
    /// Start the collector on the current runtime.
    pub fn start(config: BatchConfig, network: BatchNetwork) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Queued>();
        let sender = Arc::new(Sender {
            network,
            multicall3_code: AtomicU8::new(UNKNOWN),
            block_gas_limit: AtomicU64::new(0),
        });
        let approaching = Arc::new(Approaching::default());
        let waiting = approaching.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let opened = tokio::time::Instant::now();
                let until = opened + config.window;
                while batch.len() < config.max {
                    // What is queued now joins; then, with nothing else on its way, the
                    // window closes (a settle is queued before it stops being counted).
                    if let Ok(p) = rx.try_recv() {
                        batch.push(p);
                        continue;
                    }
                    if waiting.count.load(Ordering::Acquire) == 0 {
                        match rx.try_recv() {
                            Ok(p) => {
                                batch.push(p);
                                continue;
                            }
                            Err(_) => break,
                        }
                    }
                    tokio::select! {
                        next = tokio::time::timeout_at(until, rx.recv()) => match next {
                            Ok(Some(p)) => batch.push(p),
                            Ok(None) | Err(_) => break,
                        },
                        // One arrived or turned away: look again.
                        () = waiting.changed.notified() => {}
                    }
                }
                tracing::debug!(
                    payments = batch.len(),
                    waited_ms = opened.elapsed().as_secs_f64() * 1e3,
                    "batch closed"
                );
                tokio::spawn(sender.clone().send(batch));
            }
        });
        Self { queue, approaching }
    }

    /// A settle that may join this network's batch is on its way: an open window waits for
    /// it (at most `batch_window`) until it is queued or the returned guard is dropped.
    pub fn approach(&self) -> Approach {
        self.approaching.count.fetch_add(1, Ordering::AcqRel);
        Approach(self.approaching.clone())
    }

    /// Settle one payment with whatever else is queued now; `approach`, its guard, is let go
    /// once it is queued.
    pub async fn settle(&self, payment: Payment, approach: Option<Approach>) -> BatchOutcome {
        let (tx, rx) = oneshot::channel();
        let queued = self.queue.send((payment, tx));
        drop(approach);
        if queued.is_err() {
            return BatchOutcome::NotSent("the batcher has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| BatchOutcome::NotSent("the batch task ended".into()))
    }
}

impl Sender {
    async fn send(self: Arc<Self>, batch: Vec<Queued>) {
        if batch.len() > 1 && !self.multicall3_present().await {
            // One plain transaction per payment, side by side.
            let each = batch.into_iter().map(|(payment, reply)| {
                let this = self.clone();
                async move {
                    let _ = reply.send(this.run(std::slice::from_ref(&payment)).await);
                }
            });
            futures::future::join_all(each).await;
            return;
        }
        let parts = split(batch, self.calls_per_batch().await);
        futures::future::join_all(parts.into_iter().map(|part| self.clone().send_one(part))).await;
    }

    async fn send_one(self: Arc<Self>, batch: Vec<Queued>) {
        let (payments, replies): (Vec<Payment>, Vec<oneshot::Sender<BatchOutcome>>) =
            batch.into_iter().unzip();
        let outcome = self.run(&payments).await;
        for reply in replies {
            let _ = reply.send(outcome.clone());
        }
    }

    /// Calls per batch at most, from the block gas limit (`BLOCK_SHARE`); read once from the
    /// head block. Unknown (the read failed): no cap this time.
    async fn calls_per_batch(&self) -> usize {
        let mut limit = self.block_gas_limit.load(Ordering::Relaxed);
        if limit == 0 {
            match self
                .provider
                .get_block_by_number(BlockNumberOrTag::Latest)
                .await
            {
                Ok(Some(block)) => {
                    limit = block.header.gas_limit;
                    self.block_gas_limit.store(limit, Ordering::Relaxed);
                }
                Ok(None) => return usize::MAX,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the block gas limit; batches not capped this time");
                    return usize::MAX;
                }
            }
        }
        calls_within(limit, self.worst_gas_per_call())
    }

    /// A call's share of a batch's gas limit at most (the fallback when the node cannot
    /// estimate: `transaction`).
    fn worst_gas_per_call(&self) -> u64 {
        FALLBACK_GAS_PER_CALL
            .max(MIRRORED_GAS_PER_CALL)
            .min(self.max_gas_per_call)
    }

    /// Is there code at Multicall3's address? Read once; a failed read is asked again next
    /// time (and sends no batch meanwhile).
    async fn multicall3_present(&self) -> bool {
        match self.multicall3_code.load(Ordering::Relaxed) {
            PRESENT => return true,
            ABSENT => return false,
            _ => {}
        }
        match self.provider.get_code_at(self.multicall3).await {
            Ok(code) if !code.is_empty() => {
                self.multicall3_code.store(PRESENT, Ordering::Relaxed);
                true
            }
            Ok(_) => {
                if self.multicall3_code.swap(ABSENT, Ordering::Relaxed) != ABSENT {
                    tracing::warn!(
                        multicall3 = %self.multicall3,
                        "settlement.batch_max is set but this chain has no Multicall3: settling one transaction per payment"
                    );
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read Multicall3's code; not batching this time");
                false
            }
        }
    }

    /// The transaction of a batch and its gas limit: the plain call for one payment, else
    /// `aggregate3`, whose limit is never above `max_gas_per_call` times its calls.
    async fn transaction(&self, payments: &[Payment]) -> (Address, Bytes, Option<BatchTx>, u64) {
        if let [one] = payments {
            return (one.asset, one.calldata.clone(), None, one.gas_limit);
        }
        let calls = |allow_failure: bool| {
            payments
                .iter()
                .map(|p| Call3 {
                    target: p.asset,
                    allowFailure: allow_failure,
                    callData: p.calldata.clone(),
                })
                .collect::<Vec<_>>()
        };
        let calldata: Bytes = aggregate3Call { calls: calls(true) }.abi_encode().into();
        let n = payments.len() as u64;
        let cap = self.max_gas_per_call.saturating_mul(n);
        let batch = Some(BatchTx {
            carried: payments[1..].iter().map(|p| p.settlement_id).collect(),
        });
        if payments.iter().all(|p| !p.simulated) {
            // Under the cap: the mirror clears a payment only when `MIRRORED_GAS_LIMIT` is.
            let gas_limit = (FALLBACK_GAS_BASE + n * MIRRORED_GAS_PER_CALL).min(cap);
            return (self.multicall3, calldata, batch, gas_limit);
        }
        // Estimated with every call required to pass (each was simulated, or cleared by the
        // state mirror, just before): with `allowFailure` an estimate could be too low for the
        // last calls and still "succeed". If one fails after all, the fallback gas is used.
        let strict: Bytes = aggregate3Call {
            calls: calls(false),
        }
        .abi_encode()
        .into();
        let from = self.router.signers().first().copied().unwrap_or_default();
        let estimate = self
            .provider
            .estimate_gas(
                TransactionRequest::default()
                    .from(from)
                    .to(self.multicall3)
                    .input(TransactionInput::new(strict)),
            )
            .await;
        let gas_limit = match estimate {
            Ok(g) => g + g / 4 + 10_000 * n,
            Err(e) => {
                tracing::debug!(error = %e, "batch gas estimate failed; using the fallback");
                FALLBACK_GAS_BASE + n * self.worst_gas_per_call()
            }
        };
        // Each call was estimated under the cap alone: a batch above it is not their sum.
        (self.multicall3, calldata, batch, gas_limit.min(cap))
    }

    async fn run(&self, payments: &[Payment]) -> BatchOutcome {
        let (to, calldata, batch, gas_limit) = self.transaction(payments).await;
        let first = payments[0].settlement_id;
        let calls = payments.len() as u64;
        let msg = |replacing: Option<Broadcasted>| Broadcast {
            settlement_id: first,
            to,
            calldata: calldata.clone(),
            replacing,
            batch: batch.clone(),
            gas_limit,
        };
        let started = Instant::now();
        match self.router.broadcast(msg(None)).await {
            Ok(b) => {
                tracing::debug!(
                    calls,
                    tx = %b.tx_hash,
                    send_ms = started.elapsed().as_secs_f64() * 1e3,
                    "batch broadcast"
                );
                self.wait(calls, vec![b.tx_hash], Some(b), &msg).await
            }
            Err(BroadcastError::NoSigner(why)) => BatchOutcome::NoSigner(why),
            Err(BroadcastError::NotSent(why)) => BatchOutcome::NotSent(why),
            Err(BroadcastError::Unknown { tx_hash, error }) => {
                tracing::warn!(%tx_hash, %error, "batch broadcast outcome unknown; waiting for the chain");
                self.wait(calls, vec![tx_hash], None, &msg).await
            }
        }
    }

    /// Wait for the receipt of any version of a transaction of `calls` payments, replacing the
    /// latest while it stays unmined.
    async fn wait(
        &self,
        calls: u64,
        mut hashes: Vec<B256>,
        mut latest: Option<Broadcasted>,
        msg: &impl Fn(Option<Broadcasted>) -> Broadcast,
    ) -> BatchOutcome {
        let _in_flight = latest.as_ref().and_then(|b| self.router.awaiting(b.signer));
        let deadline = Instant::now() + self.receipt_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = match latest {
                Some(_) => left.min(self.replace_after),
                None => left,
            };
            if let Some(receipt) = self.watcher.wait_any(&hashes, slice).await {
                return BatchOutcome::Mined(Arc::new(receipt), calls);
            }
            if Instant::now() >= deadline {
                return BatchOutcome::Pending(hashes);
            }
            if let Some(previous) = latest.take() {
                match self.router.broadcast(msg(Some(previous.clone()))).await {
                    Ok(b) => {
                        tracing::info!(old = %previous.tx_hash, new = %b.tx_hash, nonce = b.nonce, "replaced an unmined batch");
                        hashes.push(b.tx_hash);
                        latest = Some(b);
                    }
                    Err(_) => latest = Some(previous),
                }
            }
        }
    }
}

/// Calls of one batch whose worst-case gas limit (`per_call` each) fits `BLOCK_SHARE` of a
/// block of `block_gas_limit` (at least 2).
fn calls_within(block_gas_limit: u64, per_call: u64) -> usize {
    let calls = (block_gas_limit / BLOCK_SHARE).saturating_sub(FALLBACK_GAS_BASE) / per_call;
    usize::try_from(calls).unwrap_or(usize::MAX).max(2)
}

/// `batch` in the fewest parts of at most `cap` payments, as even as can be, in order.
fn split<T>(mut batch: Vec<T>, cap: usize) -> Vec<Vec<T>> {
    let cap = cap.max(1);
    let parts = batch.len().div_ceil(cap).max(1);
    let size = batch.len().div_ceil(parts);
    let mut out = Vec::with_capacity(parts);
    while batch.len() > size {
        let rest = batch.split_off(size);
        out.push(std::mem::replace(&mut batch, rest));
    }
    out.push(batch);
    out
}

/// A payment's gas and fee: its share of a batch transaction's of `calls` payments. Each pays
/// an equal share, whether its call went through or failed (a failed call burns gas too, and
/// is charged to whoever asked for it), and when the whole transaction reverted. `calls`
/// unknown: the successful payments share it, and a failed one costs nothing.
pub fn share(
    receipt: &TransactionReceipt,
    multicall3: Address,
    gas_used: u64,
    fee_wei: u128,
    used: bool,
    calls: Option<u64>,
) -> (u64, u128) {
    if !is_batch(receipt, multicall3) {
        return (gas_used, fee_wei);
    }
    let n = match calls {
        Some(n) => n.max(1),
        None if !used => return (0, 0),
        None => authorizations_used(receipt).max(1),
    };
    (gas_used / n, fee_wei / u128::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_fits_a_sixth_of_the_block() {
        let per_call = FALLBACK_GAS_PER_CALL;
        assert_eq!(calls_within(30_000_000, per_call), 49);
        assert_eq!(calls_within(12_000_000, per_call), 19);
        assert_eq!(calls_within(300_000_000, per_call), 499);
        // A larger single-settlement gas limit makes each call's worst case larger.
        assert_eq!(calls_within(30_000_000, 150_000), 33);
        // A tiny block still batches pairs (a pair's limit is what a lone call's would be).
        assert_eq!(calls_within(1_000_000, per_call), 2);
        for limit in [12_000_000, 30_000_000, 300_000_000] {
            let n = calls_within(limit, per_call) as u64;
            assert!(FALLBACK_GAS_BASE + n * per_call <= limit / BLOCK_SHARE);
        }
    }

    #[test]
    fn a_batch_splits_into_even_parts_in_order() {
        let sizes = |n: usize, cap: usize| -> Vec<usize> {
            split((0..n).collect::<Vec<_>>(), cap)
                .iter()
                .map(Vec::len)
                .collect()
        };
        assert_eq!(sizes(100, 24), vec![20; 5]);
        assert_eq!(sizes(100, 100), vec![100]);
        assert_eq!(sizes(100, usize::MAX), vec![100]);
        assert_eq!(sizes(25, 24), vec![13, 12]);
        assert_eq!(sizes(1, 24), vec![1]);
        let parts = split((0..50).collect::<Vec<_>>(), 9);
        assert!(parts.iter().all(|p| p.len() <= 9));
        assert_eq!(parts.concat(), (0..50).collect::<Vec<_>>());
    }
}
