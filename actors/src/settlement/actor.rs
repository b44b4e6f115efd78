//! `SettlementActor`: one per (network, signer key). It owns the signer's nonce: it assigns it,
//! signs, records the tx hash in the ledger, and broadcasts — one message at a time, so two
//! settles can never race on a nonce ("nonce too low", "replacement transaction underpriced").
//! It never waits for a receipt: `ReceiptWatcher` does that for every in-flight transaction
//! of a network at once, outside the actor.
//!
//! The tx hash is written to the ledger *before* the broadcast, so a crash after broadcasting
//! always leaves a row that names its transaction (start-up reconciliation finds it).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Bytes, TxKind, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::{RpcError, TransportErrorKind};
use sea_orm::DatabaseConnection;

use super::fees::{estimate_fees, fees_to_send, FeePolicy};
use super::router::SignerStats;
use super::{batch, Broadcast, BroadcastError, Broadcasted};
use crate::ledger;

/// What every settlement actor of one network shares.
#[derive(Clone)]
pub struct NetworkSide {
    pub network: &'static str,
    pub chain_id: u64,
    pub provider: RootProvider,
    pub db: DatabaseConnection,
    pub policy: FeePolicy,
}

pub struct SettlementActor {
    network: &'static str,
    chain_id: u64,
    signer: PrivateKeySigner,
    provider: RootProvider,
    db: DatabaseConnection,
    policy: FeePolicy,
    /// This signer's lease and funds, shared with the router and the lease keeper.
    state: Arc<SignerStats>,
    /// This instance's id: the lease holder named in the fence of every ledger write.
    holder: Arc<str>,
    /// The next nonce to use; `None` = re-read the pending nonce from the chain first.
    next_nonce: Option<u64>,
    fees: Option<(Instant, u128, u128)>,
}

impl SettlementActor {
    pub fn new(
        network: &NetworkSide,
        signer: PrivateKeySigner,
        state: Arc<SignerStats>,
        holder: Arc<str>,
    ) -> Self {
        Self {
            network: network.network,
            chain_id: network.chain_id,
            signer,
            provider: network.provider.clone(),
            db: network.db.clone(),
            policy: network.policy,
            state,
            holder,
            next_nonce: None,
            fees: None,
        }
    }
}

impl Actor for SettlementActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        tracing::info!(network = self.network, signer = %self.signer.address(), "settlement actor started");
    }
}

/// Why a broadcast was refused when the signer's lease is gone.
pub const LEASE_LOST: &str = "the signer's lease is not held by this instance";

/// A refusal that means "wrong nonce" (geth, anvil, reth and erigon wordings).
fn nonce_refused(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("nonce too low")
        || m.contains("nonce too high")
        || m.contains("invalid nonce")
        || m.contains("replacement transaction underpriced")
}

/// Did the node refuse the transaction's fees (below the block's base fee, or underpriced)?
fn fee_refused(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    (m.contains("base fee") || m.contains("underpriced") || m.contains("fee too low"))
        && !m.contains("replacement transaction underpriced")
}

/// Did the node answer with an error (so it refused the tx), rather than the transport failing?
fn node_refused(e: &RpcError<TransportErrorKind>) -> Option<String> {
    match e {
        RpcError::ErrorResp(payload) => Some(payload.message.to_string()),
        _ => None,
    }
}

impl Handler<Broadcast> for SettlementActor {
    // Atomic: the next message waits until this one has sent, so nonces are assigned in order.
    type Result = AtomicResponse<Self, Result<Broadcasted, BroadcastError>>;

    fn handle(&mut self, msg: Broadcast, _: &mut Self::Context) -> Self::Result {
        let provider = self.provider.clone();
        let signer = self.signer.clone();
        let db = self.db.clone();
        let chain_id = self.chain_id;
        let policy = self.policy;
        let network = self.network;
        let holder = self.holder.clone();
        // A lease taken over since the last send: the chain's pending nonce is the truth.
        let epoch = self.state.epoch();
        if self.state.lease_changed(epoch) {
            self.next_nonce = None;
        }
        let known_nonce = self.next_nonce;
        let cached_fees = self
            .fees
            .filter(|(at, _, _)| at.elapsed() < policy.estimate_ttl)
            .map(|(_, max, prio)| (max, prio));
        let replacing = msg.replacing.clone();
        let ids = batch::row_ids(&msg);
        let gas_limit = msg.gas_limit;
        let work = async move {
            let address = signer.address();
            if epoch == 0 {
                return Err(BroadcastError::NotSent(LEASE_LOST.into()));
            }
            // The last word on the cap, whichever path built the transaction.
            let cap = policy
                .max_gas_per_settlement
                .saturating_mul(ids.len() as u64);
            if gas_limit == 0 || gas_limit > cap {
                return Err(BroadcastError::NotSent(format!(
                    "gas limit {gas_limit} is not within max_gas_per_settlement ({cap} for {} payment(s))",
                    ids.len()
                )));
            }
            let fence = ledger::Fence {
                network,
                signer: address,
                holder: &holder,
                epoch,
            };
            let nonce = match (&replacing, known_nonce) {
                (Some(old), _) => old.nonce,
                (None, Some(n)) => n,
                (None, None) => provider
                    .get_transaction_count(address)
                    .pending()
                    .await
                    .map_err(|e| BroadcastError::NotSent(format!("nonce: {e}")))?,
            };
            let (mut max_fee, mut priority) = match cached_fees {
                Some(f) => f,
                None => estimate_fees(&provider).await?,
            };
            let (mut max_fee_per_gas, mut max_priority_fee_per_gas) =
                fees_to_send(max_fee, priority, replacing.as_ref(), &policy)?;
            // A node refusing the nonce means our count drifted (the key was used elsewhere, or
            // a transaction was dropped): re-read the pending nonce and send once more. A node
            // refusing the fee (the base fee rose past a reused estimate): estimate again and
            // send once more. Nothing was broadcast either way.
            let mut nonce = nonce;
            let mut retried = false;
            let mut fee_retried = false;
            loop {
                let mut tx = TxEip1559 {
                    chain_id,
                    nonce,
                    gas_limit,
                    max_fee_per_gas,
                    max_priority_fee_per_gas,
                    to: TxKind::Call(msg.to),
                    value: U256::ZERO,
                    access_list: Default::default(),
                    input: msg.calldata.clone(),
                };
                let signature = signer
                    .sign_transaction_sync(&mut tx)
                    .map_err(|e| BroadcastError::NotSent(format!("sign: {e}")))?;
                let envelope = TxEnvelope::Eip1559(tx.into_signed(signature));
                let tx_hash = *envelope.tx_hash();
                let raw = Bytes::from(envelope.encoded_2718());
                // Under the lease, or not at all: a paused old holder whose lease was taken
                // over must not send with a nonce the new holder owns.
                let marking = Instant::now();
                let fenced = batch::mark_submitted(&db, &ids, tx_hash, nonce, &raw, &fence)
                    .await
                    .map_err(|e| BroadcastError::NotSent(format!("ledger: {e}")))?;
                let mark_ms = marking.elapsed().as_secs_f64() * 1e3;
                if !fenced {
                    break Err(BroadcastError::NotSent(LEASE_LOST.into()));
                }
                let sent = Broadcasted {
                    tx_hash,
                    signer: address,
                    nonce,
                    max_fee_per_gas,
                    max_priority_fee_per_gas,
                    gas_limit,
                    raw: raw.clone(),
                };
                let sending = Instant::now();
                let result = provider.send_raw_transaction(&raw).await;
                tracing::debug!(
                    rows = ids.len(),
                    nonce,
                    mark_ms,
                    send_ms = sending.elapsed().as_secs_f64() * 1e3,
                    "signed, marked and sent"
                );
                let m = match result {
                    Ok(_) => break Ok(sent),
                    Err(e) => match node_refused(&e) {
                        // The same bytes are already in the pool: it was broadcast.
                        Some(m) if m.contains("already known") => break Ok(sent),
                        Some(m) => m,
                        None => {
                            break Err(BroadcastError::Unknown {
                                tx_hash,
                                error: e.to_string(),
                            })
                        }
                    },
                };
                // Refused: the ledger goes back to what is really out there.
                let restored = match &replacing {
                    Some(old) => batch::mark_submitted(
                        &db,
                        &ids,
                        old.tx_hash,
                        nonce,
                        &old.raw,
                        &fence,
                    )
                    .await
                    .map(|_| ()),
                    None => batch::unmark_submitted(&db, &ids, tx_hash).await,
                };
                if let Err(e) = restored {
                    tracing::error!(error = %e, "ledger not restored after a refused broadcast");
                }
                if !fee_retried && fee_refused(&m) {
                    (max_fee, priority) = estimate_fees(&provider).await?;
                    (max_fee_per_gas, max_priority_fee_per_gas) =
                        fees_to_send(max_fee, priority, replacing.as_ref(), &policy)?;
                    tracing::warn!(%address, refusal = %m, max_fee_per_gas, "fee refused; estimated again and resending");
                    fee_retried = true;
                    continue;
                }
                if retried || replacing.is_some() || !nonce_refused(&m) {
                    break Err(BroadcastError::NotSent(m));
                }
                let fresh = provider
                    .get_transaction_count(address)
                    .pending()
                    .await
                    .map_err(|e| BroadcastError::NotSent(format!("nonce: {e}")))?;
                tracing::warn!(%address, stale = nonce, fresh, refusal = %m, "nonce out of step; re-read and resending");
                nonce = fresh;
                retried = true;
            }
            .map(|b| (b, (max_fee, priority), cached_fees.is_none() || fee_retried))
        };
        let is_replacement = msg.replacing.is_some();
        AtomicResponse::new(Box::pin(work.into_actor(self).map(move |res, act, _| match res {
            // A replacement reuses a nonce already counted.
            Ok((b, _, _)) if is_replacement => Ok(b),
            Err(e) if is_replacement => {
                tracing::warn!(network = act.network, error = %e, "replacement not sent");
                Err(e)
            }
            Ok((b, (max_fee, priority), fresh)) => {
                act.next_nonce = Some(b.nonce + 1);
                // A fresh estimate replaces the cached one (which may have just been refused).
                if fresh
                    || act
                        .fees
                        .is_none_or(|(at, _, _)| at.elapsed() >= act.policy.estimate_ttl)
                {
                    act.fees = Some((Instant::now(), max_fee, priority));
                }
                Ok(b)
            }
            Err(e) => {
                // Re-read the pending nonce before the next send: the chain is the truth.
                act.next_nonce = None;
                act.fees = None;
                tracing::warn!(network = act.network, signer = %act.signer.address(), error = %e, "broadcast failed");
                Err(e)
            }
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_refusals_are_told_from_fee_refusals() {
        for m in [
            "nonce too low",
            "Nonce too high",
            "invalid nonce; got 4, expected 5",
            "replacement transaction underpriced",
        ] {
            assert!(nonce_refused(m), "{m}");
            assert!(!fee_refused(m), "{m}");
        }
        for m in [
            "max fee per gas less than block base fee",
            "transaction underpriced",
            "fee too low",
        ] {
            assert!(fee_refused(m), "{m}");
            assert!(!nonce_refused(m), "{m}");
        }
        assert!(!nonce_refused("insufficient funds for gas * price + value"));
        assert!(!fee_refused("insufficient funds for gas * price + value"));
    }
}
