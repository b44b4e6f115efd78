//! Finality: a settlement answered as mined is `mined` in the ledger, and counts as
//! `confirmed` only once its block is `confirmations` deep (per network; 1 = at once). Until
//! then the finality watch checks it every block:
//!
//! - its receipt is in another block (a reorg re-included it): the row follows;
//! - its receipt is gone (a reorg took it out of the chain): the very same signed transaction
//!   is re-sent (same nonce, same hash: it cannot pay twice, and it keeps the signer's later
//!   nonces valid);
//! - re-sent, it reverted: if the authorization was used by some other transaction, the row
//!   points at that one (the payee was paid); if not, the reorg undid the payment for good and
//!   the row fails.
//!
//! Every reorg seen is counted in the metrics (`x402_settlement_reorgs`).

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol;
use alloy::sol_types::SolEvent;

use super::{Facilitator, NetworkRuntime, SettlementRow as Row};
use crate::error::{ServiceError, ServiceResult};
use crate::ledger;

sol! {
    /// FiatToken (EIP-3009) logs this when an authorization is used, by whichever transaction.
    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
}

/// How far back the log of an authorization used elsewhere is looked for.
const CARRIER_LOOKBACK_BLOCKS: u64 = 10_000;

impl Facilitator {
    /// One pass over the network's mined rows.
    pub async fn follow_finality(&self, rt: &Arc<NetworkRuntime>) -> ServiceResult<()> {
        let db = &self.inner.db;
        let network = rt.entry.info.v1_name;
        let rows = ledger::mined_rows(db, network).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let head = rt
            .provider
            .get_block_number()
            .await
            .map_err(|e| ServiceError::Unavailable(format!("head: {e}")))?;
        for row in rows {
            let Some(hash) = row.tx_hash.as_deref().and_then(|h| h.parse::<B256>().ok()) else {
                continue;
            };
            let receipt = match rt.provider.get_transaction_receipt(hash).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(id = row.id, error = %e, "finality: receipt lookup failed");
                    continue;
                }
            };
            match receipt {
                Some(r) if r.status() => {
                    let block = r.block_number.unwrap_or_default();
                    if row.block_number != Some(block as i64) {
                        tracing::warn!(id = row.id, %hash, from = ?row.block_number, to = block, "settlement moved to another block (reorg)");
                        self.inner.metrics.settlement_reorged(network);
                        ledger::remined(db, row.id, hash, block).await?;
                    } else if head + 1 >= block + rt.confirmations {
                        ledger::confirm(db, row.id, block).await?;
                    }
                }
                Some(_) => {
                    // Re-sent after a reorg, it reverted: was the payment carried by another
                    // transaction meanwhile?
                    match self.authorization_carrier(rt, &row).await {
                        Some((carrier, block)) => {
                            tracing::warn!(id = row.id, ours = %hash, %carrier, "authorization used by another transaction after a reorg");
                            ledger::remined(db, row.id, carrier, block).await?;
                        }
                        None => {
                            tracing::error!(id = row.id, %hash, "a reorg undid this settlement: re-sent, it reverted");
                            ledger::unmined(
                                db,
                                row.id,
                                x402::Reason::InvalidTransactionState.as_str(),
                            )
                            .await?;
                        }
                    }
                }
                None => {
                    // Out of the canonical chain: send the very same bytes again.
                    tracing::warn!(id = row.id, %hash, block = ?row.block_number, "settlement reorged out of the chain; re-sending it");
                    self.inner.metrics.settlement_reorged(network);
                    let raw = ledger::raw_tx_of(db, &row).await?;
                    match raw {
                        Some(raw) => {
                            if let Err(e) = rt.provider.send_raw_transaction(&raw).await {
                                tracing::debug!(id = row.id, error = %e, "re-send refused (already in the pool?)");
                            }
                        }
                        None => tracing::error!(
                            id = row.id,
                            "reorged settlement without its signed transaction"
                        ),
                    }
                }
            }
        }
        Ok(())
    }

    /// The transaction (and block) whose `AuthorizationUsed` log names this row's
    /// authorization, if the chain has one.
    async fn authorization_carrier(&self, rt: &NetworkRuntime, row: &Row) -> Option<(B256, u64)> {
        let asset: Address = row.asset.parse().ok()?;
        let payer: Address = row.payer.parse().ok()?;
        let nonce: B256 = row.auth_nonce.parse().ok()?;
        let from = row
            .block_number
            .map(|b| (b as u64).saturating_sub(CARRIER_LOOKBACK_BLOCKS))
            .unwrap_or(0);
        let filter = Filter::new()
            .address(asset)
            .event_signature(AuthorizationUsed::SIGNATURE_HASH)
            .topic1(payer.into_word())
            .topic2(nonce)
            .from_block(from);
        let logs = rt.provider.get_logs(&filter).await.ok()?;
        let log = logs.last()?;
        Some((log.transaction_hash?, log.block_number?))
    }

    /// Watch every network's mined rows until they are deep enough.
    pub(super) fn start_finality_watch(&self, every: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for rt in this.inner.networks.values() {
                    if let Err(e) = this.follow_finality(rt).await {
                        tracing::debug!(network = rt.entry.info.v1_name, error = %e, "finality pass incomplete");
                    }
                }
            }
        });
    }
}
