//! Settling through a network's `Batcher` (`crate::settlement::batch`) when
//! `settlement.batch_max` ≥ 2: the claimed, simulated payment joins the next batch, and its
//! answer is read from the batch's receipt (its own `AuthorizationUsed` log).

use alloy::primitives::Address;
use alloy::rpc::types::TransactionReceipt;
use dashmap::DashMap;
use x402::Reason;

use super::{mined, ClaimedPayment, Facilitator, NetworkRuntime, Outgoing, SettleAnswer, Transfer};
use crate::error::ServiceResult;
use crate::ledger::Mined;
use crate::settlement::batch::{
    self, Approach, BatchConfig, BatchNetwork, BatchOutcome, Batcher, Payment,
};

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
pub(super) fn of_batch(
    receipt: &TransactionReceipt,
    multicall3: Address,
    transfer: &Transfer,
    mut m: Mined,
) -> Mined {
    if !batch::is_batch(receipt, multicall3) {
        return m;
    }
    let asset = transfer.asset.parse().unwrap_or_default();
    let used = batch::carried(receipt, asset, transfer.payer, transfer.nonce);
    m.success = used;
    (m.gas_used, m.fee_wei) = batch::share(
        receipt,
        multicall3,
        m.gas_used,
        m.fee_wei,
        used,
        transfer.calls,
    );
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
                    BatchNetwork {
                        router: rt.router.clone(),
                        watcher: rt.watcher.clone(),
                        provider: rt.provider.clone(),
                        receipt_timeout: rt.receipt_timeout,
                        replace_after: rt.replace_after,
                        max_gas_per_call: rt.fees.max_gas_per_settlement,
                        multicall3: rt.smart_wallets.multicall3,
                    },
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
    pub(super) async fn settle_batched(
        &self,
        out: &Outgoing<'_>,
        batcher: &Batcher,
        approach: Option<Approach>,
        claim: ClaimedPayment,
    ) -> ServiceResult<SettleAnswer> {
        let (rt, req) = (out.rt, out.req);
        let auth = &req.payload.authorization;
        let row = claim.row();
        let mut transfer = Transfer {
            client_id: out.client_id.map(str::to_owned),
            payer: auth.from,
            nonce: auth.nonce,
            ..Transfer::of(row)
        };
        let id = row.id;
        let queued = std::time::Instant::now();
        let outcome = batcher
            .settle(
                Payment {
                    settlement_id: id,
                    asset: req.asset,
                    payer: auth.from,
                    nonce: auth.nonce,
                    calldata: out.data.clone(),
                    simulated: out.simulated,
                    gas_limit: out.gas_limit,
                },
                approach,
            )
            .await;
        let answer = |success: bool, reason, transaction, block_number| SettleAnswer {
            success,
            error_reason: reason,
            transaction,
            payer: out.payer(),
            block_number,
            amount: auth.value,
            mined_here: success,
            extra: None,
            amount_empty: false,
        };
        match outcome {
            BatchOutcome::Mined(receipt, calls) => {
                claim.commit();
                transfer.calls = Some(calls);
                let tx_hash = receipt.transaction_hash;
                let mined = mined(&receipt, rt, &transfer);
                let batch_ms = queued.elapsed().as_secs_f64() * 1e3;
                self.record_mined(id, tx_hash, mined.clone(), transfer)
                    .await;
                tracing::debug!(
                    batch_ms,
                    record_ms = queued.elapsed().as_secs_f64() * 1e3 - batch_ms,
                    "batched settle mined"
                );
                let reason = (!mined.success).then_some(Reason::InvalidTransactionState);
                Ok(answer(
                    mined.success,
                    reason,
                    Some(tx_hash),
                    Some(mined.block_number),
                ))
            }
            BatchOutcome::Pending(hashes) => {
                claim.commit();
                let last = hashes.last().copied();
                self.watch_in_background(rt, id, hashes, transfer);
                Ok(answer(false, Some(Reason::SettlementPending), last, None))
            }
            BatchOutcome::NoSigner(why) if self.inner.config.fleet => {
                tracing::debug!(%why, "no signer here for the batch; queueing for the fleet");
                self.settle_through_the_fleet(out, claim).await
            }
            BatchOutcome::NoSigner(why) => {
                claim.abandon().await?;
                Err(out.no_signer(self, why))
            }
            BatchOutcome::NotSent(error) => {
                tracing::error!(network = rt.entry.info.v1_name, %error, "batch not broadcast");
                claim.abandon().await?;
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
