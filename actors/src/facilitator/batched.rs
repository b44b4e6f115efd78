//! Settling through a network's `Batcher` (`crate::settlement::batch`) when
//! `settlement.batch_max` ≥ 2: the claimed, simulated payment joins the next batch, and its
//! answer is read from the batch's receipt (its own `AuthorizationUsed` log).

use std::sync::Arc;

use alloy::primitives::Bytes;
use alloy::rpc::types::TransactionReceipt;
use dashmap::DashMap;
use x402::proto::PaymentRequest;
use x402::Reason;

use super::{mined, Facilitator, NetworkRuntime, SettleAnswer, SettlementRow as Row, Transfer};
use crate::auth::accounts::Charge;
use crate::error::{ServiceError, ServiceResult};
use crate::ledger::Mined;
use crate::settlement::batch::{self, BatchConfig, BatchOutcome, Batcher, Payment};

/// The batching configuration and the networks' batchers (started on first use).
pub(super) struct Batching {
    config: Option<BatchConfig>,
    batchers: DashMap<u64, Batcher>,
}

impl Batching {
    pub(super) fn new(config: Option<BatchConfig>) -> Self {
        Self {
            config,
            batchers: DashMap::new(),
        }
    }
}

/// One payment's view of a mined receipt: in a batch, it succeeded only if its own
/// authorization was used, and its gas and fee are its share (`batch::share`).
pub(super) fn of_batch(receipt: &TransactionReceipt, transfer: &Transfer, mut m: Mined) -> Mined {
    if !batch::is_batch(receipt) {
        return m;
    }
    let asset = transfer.asset.parse().unwrap_or_default();
    let used = batch::carried(receipt, asset, transfer.payer, transfer.nonce);
    m.success = used;
    (m.gas_used, m.fee_wei) = batch::share(receipt, m.gas_used, m.fee_wei, used, transfer.calls);
    m
}

impl Facilitator {
    /// The network's batcher, when batching is on.
    pub(super) fn batcher(&self, rt: &NetworkRuntime) -> Option<Batcher> {
        let config = self.inner.batching.config?;
        let chain = rt.entry.info.chain_id;
        let batcher = self
            .inner
            .batching
            .batchers
            .entry(chain)
            .or_insert_with(|| {
                Batcher::start(
                    config,
                    rt.router.clone(),
                    rt.watcher.clone(),
                    rt.provider.clone(),
                    rt.receipt_timeout,
                    rt.replace_after,
                    rt.fees.max_gas_per_settlement,
                )
            })
            .clone();
        Some(batcher)
    }

    /// `settlement.batch_mirror_precheck`, with batching on.
    pub(super) fn mirror_precheck(&self) -> bool {
        self.inner
            .batching
            .config
            .is_some_and(|c| c.mirror_precheck)
    }

    /// Settle a claimed payment, simulated or cleared by the mirror, in the network's next
    /// batch.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn settle_batched(
        &self,
        rt: &Arc<NetworkRuntime>,
        batcher: &Batcher,
        row: &Row,
        req: &PaymentRequest,
        calldata: Bytes,
        simulated: bool,
        gas_limit: u64,
        credit: Option<&Charge>,
        client_id: Option<&str>,
    ) -> ServiceResult<SettleAnswer> {
        let auth = &req.payload.authorization;
        let (payer, amount) = (Some(auth.from), auth.value);
        let mut transfer = Transfer {
            client_id: client_id.map(str::to_owned),
            payer: auth.from,
            nonce: auth.nonce,
            ..Transfer::of(row)
        };
        let outcome = batcher
            .settle(Payment {
                settlement_id: row.id,
                asset: req.asset,
                payer: auth.from,
                nonce: auth.nonce,
                calldata: calldata.clone(),
                simulated,
                gas_limit,
            })
            .await;
        let answer = |success: bool, reason, transaction, block_number| SettleAnswer {
            success,
            error_reason: reason,
            transaction,
            payer,
            block_number,
            amount,
            mined_here: success,
        };
        match outcome {
            BatchOutcome::Mined(receipt, calls) => {
                transfer.calls = Some(calls);
                let tx_hash = receipt.transaction_hash;
                let mined = mined(&receipt, rt.confirmations, &transfer);
                self.record_mined(row.id, tx_hash, mined.clone(), transfer)
                    .await;
                let reason = (!mined.success).then_some(Reason::InvalidTransactionState);
                Ok(answer(
                    mined.success,
                    reason,
                    Some(tx_hash),
                    Some(mined.block_number),
                ))
            }
            BatchOutcome::Pending(hashes) => {
                let last = hashes.last().copied();
                self.watch_in_background(rt, row.id, hashes, transfer);
                Ok(answer(false, Some(Reason::SettlementPending), last, None))
            }
            BatchOutcome::NoSigner(why) if self.inner.config.fleet => {
                tracing::debug!(%why, "no signer here for the batch; queueing for the fleet");
                self.settle_through_the_fleet(rt, row, req.asset, &calldata, credit, payer, amount)
                    .await
            }
            BatchOutcome::NoSigner(why) => {
                self.release_unsent(row.id).await?;
                self.refund_credit(credit).await;
                Err(ServiceError::NoSigner(self.cannot_send(rt).unwrap_or_else(
                    || format!("network {}: {why}", rt.entry.info.v1_name),
                )))
            }
            BatchOutcome::NotSent(error) => {
                tracing::error!(network = rt.entry.info.v1_name, %error, "batch not broadcast");
                self.release_unsent(row.id).await?;
                self.refund_credit(credit).await;
                Ok(answer(
                    false,
                    Some(Reason::UnexpectedSettleError),
                    None,
                    None,
                ))
            }
        }
    }
}
