//! Reading settlements back: a client's own by transaction or by authorization (resolved
//! from the chain on the way), and reconciliation of rows left in flight.

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use x402::Reason;

use super::{Facilitator, SettlementRow, Transfer};
use crate::error::{ServiceError, ServiceResult};
use crate::ledger::{self, Status};

impl Facilitator {
    /// A client's own settlement by transaction: an EVM hash (0x hex) or a Solana signature
    /// (base58), in the form the ledger writes.
    pub async fn settlement_by_tx(
        &self,
        tx_hash: &str,
        client_id: &str,
    ) -> ServiceResult<SettlementRow> {
        let row = ledger::find_by_tx_hash(&self.inner.db, tx_hash, client_id)
            .await?
            .ok_or(ServiceError::NotFound("settlement"))?;
        self.fresh(row).await
    }

    /// A client's own settlement of an authorization (the caller lost a settle's answer).
    pub async fn settlement_by_authorization(
        &self,
        network: &x402::network::Network,
        payer: Address,
        nonce: B256,
        asset: Option<Address>,
        client_id: &str,
    ) -> ServiceResult<SettlementRow> {
        let row = ledger::find_by_authorization(
            &self.inner.db,
            network.v1_name,
            payer,
            nonce,
            asset,
            client_id,
        )
        .await?
        .ok_or(ServiceError::NotFound("settlement"))?;
        self.fresh(row).await
    }

    /// A row as the chain has it now: a submitted transaction that has been mined is resolved
    /// on the way.
    pub(super) async fn fresh(&self, row: SettlementRow) -> ServiceResult<SettlementRow> {
        if let Some(rt) = self.svm_runtime(&row.network).cloned() {
            return self.fresh_svm(&rt, row).await;
        }
        let tx_hash = row.tx_hash.as_deref().and_then(|h| h.parse::<B256>().ok());
        let (Some(Status::Submitted), Some(tx_hash)) = (Status::parse(&row.status), tx_hash) else {
            return Ok(row);
        };
        let Some(rt) = x402::network::by_v1_name(&row.network)
            .and_then(|n| self.inner.networks.get(&n.chain_id))
        else {
            return Ok(row);
        };
        if let Ok(Some(receipt)) = rt.provider.get_transaction_receipt(tx_hash).await {
            let (mined, transfer) = self
                .mined_of(rt, row.id, &receipt, Transfer::of(&row))
                .await;
            self.resolve_mined(row.id, tx_hash, &mined, transfer)
                .await?;
            return ledger::find_by_id(&self.inner.db, row.id)
                .await?
                .ok_or(ServiceError::NotFound("settlement"));
        }
        Ok(row)
    }

    /// Resolve rows left in flight (start-up, and periodically): receipts that arrived, and
    /// rows that were never broadcast.
    pub async fn reconcile(&self) -> ServiceResult<usize> {
        let mut resolved = 0;
        for rt in self.inner.networks.values() {
            for row in ledger::unresolved(&self.inner.db, rt.entry.info.v1_name).await? {
                let Some(h) = row.tx_hash.as_deref().and_then(|h| h.parse::<B256>().ok()) else {
                    // The hash is written before any broadcast: no hash, nothing was sent. A
                    // young row may be another instance's claim in progress: leave it.
                    if ledger::abandoned(&row)
                        && self
                            .inner
                            .in_flight
                            .iter()
                            .all(|e| e.key().auth_nonce != row.auth_nonce)
                    {
                        ledger::mark_failed_unsent(
                            &self.inner.db,
                            row.id,
                            Reason::UnexpectedSettleError.as_str(),
                        )
                        .await?;
                        resolved += 1;
                    }
                    continue;
                };
                match rt.provider.get_transaction_receipt(h).await {
                    Ok(Some(receipt)) => {
                        let (mined, transfer) = self
                            .mined_of(rt, row.id, &receipt, Transfer::of(&row))
                            .await;
                        self.resolve_mined(row.id, h, &mined, transfer).await?;
                        resolved += 1;
                    }
                    Ok(None) => {
                        let known = rt
                            .provider
                            .get_transaction_by_hash(h)
                            .await
                            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
                            .is_some();
                        if known {
                            // Still in the pool: a watcher resolves it when it is mined.
                            self.watch_in_background(rt, row.id, vec![h], Transfer::of(&row));
                        } else {
                            tracing::warn!(tx_hash = %h, "in-flight settlement unknown to the node");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reconcile: receipt lookup failed"),
                }
            }
        }
        resolved += self.reconcile_svm().await?;
        Ok(resolved)
    }
}
