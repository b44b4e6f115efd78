//! A sent settlement's outcome: the bounded receipt wait (replacing a transaction that stays
//! unmined), the ledger outcome and its metrics, the background watch of a transaction still
//! pending when its request answered, and the answer of a row another call or instance owns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::rpc::types::TransactionReceipt;
use x402::proto::PaymentRequest;
use x402::Reason;

use super::{batched, Facilitator, NetworkRuntime, SettleAnswer, Transfer};
use crate::error::{ServiceError, ServiceResult};
use crate::ledger::{self, Key, Mined, Status};
use crate::metrics::{self, Operation, X402Event};
use crate::settlement::batch;
use crate::settlement::{Broadcast, Broadcasted};

impl Facilitator {
    /// Record a mined transaction in the ledger; the one call that resolves the row also
    /// accounts for the transfer (amount moved, gas, fee) in the metrics, whichever path got
    /// there first (the settle itself, a retry, a status read, or start-up reconciliation).
    pub(super) async fn resolve_mined(
        &self,
        id: i64,
        tx_hash: B256,
        mined: &Mined,
        transfer: Transfer,
    ) -> ServiceResult<()> {
        let moved = self
            .inner
            .writer
            .mark_mined(id, tx_hash, mined, Reason::InvalidTransactionState.as_str())
            .await?;
        if moved {
            self.inner.metrics.record_x402(X402Event {
                day: chrono::Utc::now().date_naive(),
                client_id: transfer.client_id.unwrap_or_default(),
                network: transfer.network,
                asset: transfer.asset,
                operation: Operation::Transfer,
                outcome: if mined.success {
                    metrics::CONFIRMED
                } else {
                    metrics::REVERTED
                }
                .to_owned(),
                amount: if mined.success {
                    transfer.amount
                } else {
                    U256::ZERO
                },
                gas_used: mined.gas_used,
                fee_wei: U256::from(mined.fee_wei),
                latency: Duration::ZERO,
            });
        }
        Ok(())
    }

    /// What `receipt` says of row `id`'s payment (`mined`). A batch transaction's gas and fee
    /// are shared by every payment it carries: when `transfer` does not say how many (a row
    /// resolved from the ledger), the ledger does.
    pub(super) async fn mined_of(
        &self,
        rt: &NetworkRuntime,
        id: i64,
        receipt: &TransactionReceipt,
        mut transfer: Transfer,
    ) -> (Mined, Transfer) {
        if transfer.calls.is_none() && batch::is_batch(receipt, rt.smart_wallets.multicall3) {
            match ledger::payments_of_transaction(&self.inner.db, id).await {
                Ok(n) => transfer.calls = Some(n),
                Err(e) => tracing::warn!(id, error = %e, "payments of a batch not counted"),
            }
        }
        (mined(receipt, rt, &transfer), transfer)
    }

    /// `resolve_mined`, retried in the background if the database refuses it now: a mined
    /// transaction is never reported as a failure because of our own storage.
    pub(super) async fn record_mined(
        &self,
        id: i64,
        tx_hash: B256,
        mined: Mined,
        transfer: Transfer,
    ) {
        let first = self
            .resolve_mined(id, tx_hash, &mined, transfer.clone())
            .await;
        let Err(e) = first else { return };
        tracing::warn!(id, %tx_hash, error = %e, "mined settlement not recorded yet; retrying");
        let this = self.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(200);
            for _ in 0..8 {
                tokio::time::sleep(wait).await;
                match this
                    .resolve_mined(id, tx_hash, &mined, transfer.clone())
                    .await
                {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(id, %tx_hash, error = %e, "mined settlement still not recorded")
                    }
                }
                wait *= 2;
            }
            tracing::error!(id, %tx_hash, "mined settlement not recorded; reconciliation will");
        });
    }

    /// Keep waiting for a transaction after its request has answered (`settlement_pending`),
    /// so the ledger and the metrics resolve without anyone asking again. One task per row.
    pub(super) fn watch_in_background(
        &self,
        rt: &Arc<NetworkRuntime>,
        id: i64,
        hashes: Vec<B256>,
        transfer: Transfer,
    ) {
        if self.inner.config.background_watch.is_zero()
            || self.inner.watched.insert(id, ()).is_some()
        {
            return;
        }
        let this = self.clone();
        let rt = rt.clone();
        let watch_for = self.inner.config.background_watch;
        tokio::spawn(async move {
            match rt.watcher.wait_any(&hashes, watch_for).await {
                Some(receipt) => {
                    let (mined, transfer) = this.mined_of(&rt, id, &receipt, transfer).await;
                    let tx_hash = receipt.transaction_hash;
                    if let Err(e) = this.resolve_mined(id, tx_hash, &mined, transfer).await {
                        tracing::warn!(id, %tx_hash, error = %e, "mined settlement not recorded");
                    }
                }
                None => tracing::warn!(
                    id,
                    "settlement still unmined after the background watch; a retry, a status \
                     read or the next start resolves it"
                ),
            }
            this.inner.watched.remove(&id);
        });
    }

    /// Wait (bounded) for the receipt and record it. A transaction still unmined after
    /// `replace_after` is replaced (same nonce, higher fees) and every version is watched. On
    /// timeout the answer names the transaction: the buyer's money may be moving, and a retry
    /// must not pay twice.
    pub(super) async fn await_outcome(
        &self,
        rt: &Arc<NetworkRuntime>,
        id: i64,
        sent: Sent,
        to: Address,
        transfer: Transfer,
        payer: Option<Address>,
    ) -> ServiceResult<SettleAnswer> {
        let amount = transfer.amount;
        let deadline = Instant::now() + rt.receipt_timeout;
        // Counted as in flight for its signer (metrics) until this returns.
        let _in_flight = match &sent {
            Sent::Known(b, _) => rt.router.awaiting(b.signer),
            Sent::Unknown(_) => None,
        };
        let (mut hashes, mut latest) = match sent {
            Sent::Known(b, calldata) => (vec![b.tx_hash], Some((b, calldata))),
            Sent::Unknown(h) => (vec![h], None),
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = if latest.is_some() {
                left.min(rt.replace_after)
            } else {
                left
            };
            if let Some(receipt) = rt.watcher.wait_any(&hashes, slice).await {
                let tx_hash = receipt.transaction_hash;
                let mined = mined(&receipt, rt, &transfer);
                // The chain has spoken: the answer follows it even if the ledger write fails
                // now (it is retried, and reconciliation would find it anyway).
                self.record_mined(id, tx_hash, mined.clone(), transfer)
                    .await;
                return Ok(SettleAnswer {
                    success: mined.success,
                    error_reason: (!mined.success).then_some(Reason::InvalidTransactionState),
                    transaction: Some(tx_hash),
                    payer,
                    block_number: Some(mined.block_number),
                    amount,
                    mined_here: true,
                    extra: None,
                    amount_empty: false,
                });
            }
            if Instant::now() >= deadline {
                self.watch_in_background(rt, id, hashes.clone(), transfer);
                return Ok(SettleAnswer {
                    success: false,
                    error_reason: Some(Reason::SettlementPending),
                    transaction: hashes.last().copied(),
                    payer,
                    block_number: None,
                    amount,
                    mined_here: false,
                    extra: None,
                    amount_empty: false,
                });
            }
            if let Some((previous, calldata)) = latest.take() {
                let replaced = rt
                    .router
                    .broadcast(Broadcast {
                        settlement_id: id,
                        to,
                        calldata: calldata.clone(),
                        replacing: Some(previous.clone()),
                        batch: None,
                        gas_limit: previous.gas_limit,
                    })
                    .await;
                match replaced {
                    Ok(b) => {
                        tracing::info!(old = %previous.tx_hash, new = %b.tx_hash, nonce = b.nonce, "replaced an unmined settlement");
                        hashes.push(b.tx_hash);
                        latest = Some((b, calldata));
                    }
                    // Keep watching what is out there; try again after the next slice.
                    Err(_) => latest = Some((previous, calldata)),
                }
            }
        }
    }

    /// The answer to a retry of the idempotent request that claimed this authorization's ledger
    /// row: the outcome of the first settle (or, while it is in flight, a bounded wait for it).
    pub(super) async fn answer_from_ledger(
        &self,
        rt: &Arc<NetworkRuntime>,
        key: &Key,
        req: &PaymentRequest,
    ) -> ServiceResult<SettleAnswer> {
        let auth = &req.payload.authorization;
        self.answer_from_row(
            rt,
            RowRef::Key(key),
            Some(auth.from),
            auth.value,
            false,
            Instant::now() + rt.receipt_timeout,
        )
        .await
    }

    /// Follow a ledger row to its outcome, until `deadline`: confirmed, failed, or still
    /// pending (with the transaction, if one was sent). `original`: this call is the settle
    /// that row belongs to (a queued one another instance sends), not a retry.
    pub(super) async fn answer_from_row(
        &self,
        rt: &Arc<NetworkRuntime>,
        which: RowRef<'_>,
        payer: Option<Address>,
        amount: U256,
        original: bool,
        deadline: Instant,
    ) -> ServiceResult<SettleAnswer> {
        let answer = |success, error_reason, transaction, block_number| SettleAnswer {
            success,
            error_reason,
            transaction,
            payer,
            block_number,
            amount,
            mined_here: original && success,
            extra: None,
            amount_empty: false,
        };
        loop {
            let row = match which {
                RowRef::Key(key) => ledger::find(&self.inner.db, key).await?,
                RowRef::Id(id) => ledger::find_by_id(&self.inner.db, id).await?,
            }
            .ok_or_else(|| ServiceError::LedgerRowGone(format!("{which:?}")))?;
            let tx_hash = row.tx_hash.as_deref().and_then(|h| h.parse::<B256>().ok());
            let block = row.block_number.map(|b| b as u64);
            match (Status::parse(&row.status), tx_hash) {
                (Some(status), Some(h)) if status.is_success() => {
                    return Ok(answer(true, None, Some(h), block))
                }
                (Some(Status::Failed), h) => {
                    let reason = row
                        .error_reason
                        .as_deref()
                        .and_then(Reason::parse)
                        .unwrap_or(Reason::UnexpectedSettleError);
                    return Ok(answer(false, Some(reason), h, block));
                }
                (Some(Status::Submitted), Some(h)) => {
                    // Another process broadcast it: watch the chain ourselves.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if let Some(receipt) = rt.watcher.wait(h, left).await {
                        let (mined, transfer) = self
                            .mined_of(rt, row.id, &receipt, Transfer::of(&row))
                            .await;
                        self.record_mined(row.id, h, mined.clone(), transfer).await;
                        let reason = (!mined.success).then_some(Reason::InvalidTransactionState);
                        return Ok(answer(
                            mined.success,
                            reason,
                            Some(h),
                            Some(mined.block_number),
                        ));
                    }
                    self.watch_in_background(rt, row.id, vec![h], Transfer::of(&row));
                    return Ok(answer(
                        false,
                        Some(Reason::SettlementPending),
                        Some(h),
                        None,
                    ));
                }
                _ => {
                    if Instant::now() >= deadline {
                        return Ok(answer(false, Some(Reason::SettlementPending), None, None));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A ledger row, by the authorization or by its id.
#[derive(Debug, Clone, Copy)]
pub(super) enum RowRef<'a> {
    Key(&'a Key),
    Id(i64),
}

/// What the first broadcast left us with.
pub(super) enum Sent {
    /// Sent, with what a replacement needs.
    Known(Broadcasted, Bytes),
    /// Maybe sent: only its hash is known.
    Unknown(B256),
}

/// What a receipt says of one payment, for the ledger: with `confirmations` ≤ 1 its block is
/// deep enough. A batch transaction is read per payment (`batched::of_batch`).
pub(super) fn mined(
    receipt: &TransactionReceipt,
    rt: &NetworkRuntime,
    transfer: &Transfer,
) -> Mined {
    let confirmations = rt.confirmations;
    batched::of_batch(
        receipt,
        rt.smart_wallets.multicall3,
        transfer,
        Mined {
            success: receipt.status(),
            block_number: receipt.block_number.unwrap_or_default(),
            gas_used: receipt.gas_used,
            fee_wei: receipt
                .effective_gas_price
                .saturating_mul(receipt.gas_used as u128),
            final_at_once: confirmations <= 1,
        },
    )
}
