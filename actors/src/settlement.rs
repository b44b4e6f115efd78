//! `SettlementActor`: one per (network, signer key). It owns the signer's nonce: it assigns it,
//! signs, records the tx hash in the ledger, and broadcasts — one message at a time, so two
//! settles can never race on a nonce ("nonce too low", "replacement transaction underpriced").
//! It never waits for a receipt: `ReceiptWatcher` does that for every in-flight transaction
//! of a network at once, outside the actor.
//!
//! The tx hash is written to the ledger *before* the broadcast, so a crash after broadcasting
//! always leaves a row that names its transaction (start-up reconciliation finds it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, Bytes, TxKind, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::{RpcError, TransportErrorKind};
use dashmap::DashMap;
use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;

use crate::ledger;

pub mod batch;

/// Fee policy of one network.
#[derive(Debug, Clone, Copy)]
pub struct FeePolicy {
    /// Upper bound of `maxFeePerGas`, wei.
    pub max_fee_per_gas_cap: u128,
    /// `networks.<id>.max_gas_per_settlement`: no settlement transaction's gas limit is above
    /// this (a batch's: this times the payments it carries). A transaction's own limit is the
    /// node's estimate of its call plus a margin (`gas_limit_for`);
    /// `transferWithAuthorization` uses 81–103k.
    pub max_gas_per_settlement: u64,
    /// How long an estimate is reused.
    pub estimate_ttl: Duration,
}

/// The margin over a call's gas estimate: a fifth, plus this. The estimate is made against the
/// latest block, and the transaction runs in a later one: a payee's balance slot written
/// meanwhile, or a cold slot, moves the cost by a few thousand gas.
pub const GAS_MARGIN: u64 = 10_000;

impl FeePolicy {
    /// The gas limit of a transaction whose call the node estimated at `estimate` gas:
    /// `estimate + estimate / 5 + GAS_MARGIN`; `None` when that passes
    /// `max_gas_per_settlement` (the settlement is refused, nothing is sent).
    pub fn gas_limit_for(&self, estimate: u64) -> Option<u64> {
        let limit = estimate
            .saturating_add(estimate / 5)
            .saturating_add(GAS_MARGIN);
        (limit <= self.max_gas_per_settlement).then_some(limit)
    }
}

impl Default for FeePolicy {
    fn default() -> Self {
        Self {
            max_fee_per_gas_cap: 500_000_000_000, // 500 gwei
            max_gas_per_settlement: 300_000,
            estimate_ttl: Duration::from_secs(3),
        }
    }
}

/// A transaction to send for a ledger row.
#[derive(Message)]
#[rtype(result = "Result<Broadcasted, BroadcastError>")]
pub struct Broadcast {
    pub settlement_id: i64,
    pub to: Address,
    pub calldata: Bytes,
    /// Re-send an unmined transaction: same nonce, fees bumped past the node's replacement
    /// threshold (geth and anvil want +10% on both fees).
    pub replacing: Option<Broadcasted>,
    /// A batch transaction (`batch`): the other rows it carries.
    pub batch: Option<batch::BatchTx>,
    /// The transaction's gas limit: its call's estimate plus the margin
    /// (`FeePolicy::gas_limit_for`), or a batch's bound. Refused above the network's
    /// `max_gas_per_settlement` per row it carries.
    pub gas_limit: u64,
}

impl Broadcast {
    /// A new transaction (not a replacement, not a batch) for one ledger row.
    pub fn new(settlement_id: i64, to: Address, calldata: Bytes, gas_limit: u64) -> Self {
        Self {
            settlement_id,
            to,
            calldata,
            replacing: None,
            batch: None,
            gas_limit,
        }
    }
}

/// Fees of a replacement: at least 12.5% above the previous ones.
fn bumped(fee: u128) -> u128 {
    fee + fee / 8 + 1
}

#[derive(Debug, Clone)]
pub struct Broadcasted {
    pub tx_hash: B256,
    pub signer: Address,
    pub nonce: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    /// Its gas limit (a replacement keeps it).
    pub gas_limit: u64,
    /// The signed transaction as sent.
    pub raw: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// This instance drives no signer of the network that can take a new transaction now (no
    /// lease held, or none funded): nothing was sent; a lease holder elsewhere may send it.
    #[error("no signer available here: {0}")]
    NoSigner(String),
    /// Nothing was broadcast (the node refused it, or we failed before sending).
    #[error("not broadcast: {0}")]
    NotSent(String),
    /// The send failed in transit: the transaction may or may not have reached the node. Its
    /// hash is in the ledger; the outcome is known only from the chain.
    #[error("broadcast outcome unknown for {tx_hash}: {error}")]
    Unknown { tx_hash: B256, error: String },
}

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

/// The fees a new settlement transaction would be signed with now (the node's estimate under
/// the network's cap): a smart wallet's payment is simulated with them.
pub async fn fees_now(
    provider: &RootProvider,
    policy: &FeePolicy,
) -> Result<(u128, u128), BroadcastError> {
    let (max_fee, priority) = estimate_fees(provider).await?;
    fees_to_send(max_fee, priority, None, policy)
}

/// The node's EIP-1559 estimate: (maxFeePerGas, maxPriorityFeePerGas).
async fn estimate_fees(provider: &RootProvider) -> Result<(u128, u128), BroadcastError> {
    let est = provider
        .estimate_eip1559_fees()
        .await
        .map_err(|e| BroadcastError::NotSent(format!("fee estimate: {e}")))?;
    Ok((est.max_fee_per_gas, est.max_priority_fee_per_gas))
}

/// The fees to sign with: the estimate, bumped past the replaced transaction's, under the cap.
fn fees_to_send(
    max_fee: u128,
    priority: u128,
    replacing: Option<&Broadcasted>,
    policy: &FeePolicy,
) -> Result<(u128, u128), BroadcastError> {
    let (max_fee, priority) = match replacing {
        Some(old) => (
            max_fee.max(bumped(old.max_fee_per_gas)),
            priority.max(bumped(old.max_priority_fee_per_gas)),
        ),
        None => (max_fee, priority),
    };
    let max_fee_per_gas = max_fee.min(policy.max_fee_per_gas_cap);
    let max_priority_fee_per_gas = priority.min(max_fee_per_gas);
    if let Some(old) = replacing {
        if max_fee_per_gas < bumped(old.max_fee_per_gas) {
            return Err(BroadcastError::NotSent(
                "fee cap reached: cannot replace".into(),
            ));
        }
    }
    Ok((max_fee_per_gas, max_priority_fee_per_gas))
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
        if self.state.nonce_epoch.swap(epoch, Ordering::AcqRel) != epoch {
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
                let fenced = batch::mark_submitted(&db, &ids, tx_hash, nonce, &raw, &fence)
                    .await
                    .map_err(|e| BroadcastError::NotSent(format!("ledger: {e}")))?;
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
                let m = match provider.send_raw_transaction(&raw).await {
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

/// One signer as this instance sees it: whether it may drive it (its lease), whether it can
/// pay for gas, and what the metrics show (last nonce, transactions awaited). Shared by the
/// actor, the router and the lease keeper.
#[derive(Debug)]
pub struct SignerStats {
    /// `u64::MAX` until the first broadcast.
    last_nonce: std::sync::atomic::AtomicU64,
    in_flight: std::sync::atomic::AtomicI64,
    /// The lease epoch this instance holds; 0 = not held.
    epoch: AtomicI64,
    /// The epoch the actor last read its nonce under (a new epoch re-reads it).
    nonce_epoch: AtomicI64,
    /// Held, but given no new transactions (about to be released to another instance).
    draining: AtomicBool,
    /// Can pay `max_gas_per_settlement × maxFeePerGas` (as last read).
    funded: AtomicBool,
    /// The last native balance read, gwei; `u64::MAX` = not read yet.
    balance_gwei: AtomicU64,
    /// Broadcasts handed to the actor and not answered yet.
    sending: AtomicI64,
}

impl Default for SignerStats {
    fn default() -> Self {
        Self {
            last_nonce: std::sync::atomic::AtomicU64::new(u64::MAX),
            in_flight: std::sync::atomic::AtomicI64::new(0),
            epoch: AtomicI64::new(0),
            nonce_epoch: AtomicI64::new(0),
            draining: AtomicBool::new(false),
            funded: AtomicBool::new(true),
            balance_gwei: AtomicU64::new(u64::MAX),
            sending: AtomicI64::new(0),
        }
    }
}

impl SignerStats {
    /// The lease epoch held (0 = none).
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The lease was taken (`epoch`) or lost (0).
    pub fn set_epoch(&self, epoch: i64) {
        self.epoch.store(epoch, Ordering::Release);
        if epoch == 0 {
            self.draining.store(false, Ordering::Release);
        }
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Transactions awaited plus broadcasts under way.
    fn load(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed) + self.sending.load(Ordering::Relaxed)
    }

    /// No broadcast of this signer is queued or running.
    pub fn idle(&self) -> bool {
        self.sending.load(Ordering::Acquire) == 0
    }

    /// Record a balance read and whether it covers `need` wei.
    pub fn set_balance(&self, balance_wei: U256, need_wei: U256) {
        let gwei = balance_wei / U256::from(1_000_000_000u64);
        self.balance_gwei.store(
            u64::try_from(gwei).unwrap_or(u64::MAX - 1),
            Ordering::Relaxed,
        );
        self.funded
            .store(balance_wei >= need_wei, Ordering::Release);
    }

    /// The node said this signer cannot pay: no new work until the next balance read.
    pub fn set_unfunded(&self) {
        self.funded.store(false, Ordering::Release);
    }

    pub fn is_funded(&self) -> bool {
        self.funded.load(Ordering::Acquire)
    }

    /// The last balance read, wei.
    pub fn balance_wei(&self) -> Option<U256> {
        match self.balance_gwei.load(Ordering::Relaxed) {
            u64::MAX => None,
            g => Some(U256::from(g) * U256::from(1_000_000_000u64)),
        }
    }

    /// May take a new transaction now.
    fn available(&self) -> bool {
        self.epoch() != 0 && !self.is_draining() && self.is_funded()
    }
}

/// A point-in-time view of one signer.
#[derive(Debug, Clone)]
pub struct SignerSnapshot {
    pub address: Address,
    pub last_nonce: Option<u64>,
    pub in_flight: i64,
    /// This instance holds its lease.
    pub leased: bool,
    pub funded: bool,
    pub balance_wei: Option<U256>,
}

/// Counts one awaited transaction of a signer until dropped.
pub struct InFlight(Arc<SignerStats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A signer's address, its actor, and its state.
type RoutedSigner = (Address, Addr<SettlementActor>, Arc<SignerStats>);

/// Spreads settles over the network's signers this instance holds the lease of and that can
/// pay for gas, round robin. A replacement goes to the signer that sent the original: only it
/// owns that nonce.
#[derive(Clone)]
pub struct SettlementRouter {
    actors: Arc<Vec<RoutedSigner>>,
    next: Arc<AtomicUsize>,
}

/// Counts a broadcast handed to a signer's actor until dropped.
struct Sending(Arc<SignerStats>);

impl Drop for Sending {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SettlementRouter {
    pub fn new(actors: Vec<RoutedSigner>) -> Self {
        Self {
            actors: Arc::new(actors),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Every configured signer, leased here or not.
    pub fn signers(&self) -> Vec<Address> {
        self.actors.iter().map(|(a, _, _)| *a).collect()
    }

    /// The signers' states (the lease keeper and the funds poller update them).
    pub fn states(&self) -> impl Iterator<Item = (Address, &Arc<SignerStats>)> {
        self.actors.iter().map(|(a, _, s)| (*a, s))
    }

    pub fn is_empty(&self) -> bool {
        self.actors.is_empty()
    }

    /// Some signer here could take a new transaction now.
    pub fn has_available(&self) -> bool {
        self.actors.iter().any(|(_, _, s)| s.available())
    }

    /// Signers held here, but none can pay for gas.
    pub fn all_unfunded(&self) -> bool {
        let held: Vec<_> = self
            .actors
            .iter()
            .filter(|(_, _, s)| s.epoch() != 0)
            .collect();
        !held.is_empty() && held.iter().all(|(_, _, s)| !s.is_funded())
    }

    pub fn snapshot(&self) -> Vec<SignerSnapshot> {
        self.actors
            .iter()
            .map(|(address, _, stats)| SignerSnapshot {
                address: *address,
                last_nonce: Some(stats.last_nonce.load(Ordering::Relaxed))
                    .filter(|n| *n != u64::MAX),
                in_flight: stats.in_flight.load(Ordering::Relaxed),
                leased: stats.epoch() != 0,
                funded: stats.is_funded(),
                balance_wei: stats.balance_wei(),
            })
            .collect()
    }

    /// Mark a new transaction of `signer` as awaited until the guard drops.
    pub fn awaiting(&self, signer: Address) -> Option<InFlight> {
        let (_, _, stats) = self.actors.iter().find(|(a, _, _)| *a == signer)?;
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(InFlight(stats.clone()))
    }

    /// The signer `broadcast` would hand a new transaction to now (`pick`): a settlement is
    /// simulated as that signer, then sent by it (`broadcast_from`).
    pub fn next_sender(&self) -> Option<Address> {
        self.pick().map(|(a, _, _)| *a)
    }

    /// The signer able to take a new transaction with the fewest awaited or being sent; round
    /// robin among equals. A signer whose transaction is stuck (dropped by the node, say, until
    /// it is replaced) is not handed the next ones: they would wait behind its nonce.
    fn pick(&self) -> Option<&RoutedSigner> {
        let n = self.actors.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.actors[(start + i) % n])
            .filter(|(_, _, s)| s.available())
            .min_by_key(|(_, _, s)| s.load())
    }

    pub async fn broadcast(&self, msg: Broadcast) -> Result<Broadcasted, BroadcastError> {
        self.broadcast_from(None, msg).await
    }

    /// `broadcast`, sent by `signer` when given (a payment that names who may settle it, like
    /// `upto`'s `witness.facilitator`); `NoSigner` when that signer cannot send here now.
    pub async fn broadcast_from(
        &self,
        signer: Option<Address>,
        msg: Broadcast,
    ) -> Result<Broadcasted, BroadcastError> {
        if self.actors.is_empty() {
            return Err(BroadcastError::NotSent(
                "no signer configured for this network".into(),
            ));
        }
        let (_, actor, stats) = match (&msg.replacing, signer) {
            (Some(old), _) => self
                .actors
                .iter()
                .find(|(a, _, _)| *a == old.signer)
                .ok_or_else(|| {
                    BroadcastError::NotSent(format!("signer {} is not served", old.signer))
                })?,
            (None, Some(signer)) => self
                .actors
                .iter()
                .find(|(a, _, s)| *a == signer && s.available())
                .ok_or_else(|| {
                    BroadcastError::NoSigner(format!("signer {signer} cannot send here now"))
                })?,
            (None, None) => self.pick().ok_or_else(|| {
                BroadcastError::NoSigner(if self.all_unfunded() {
                    "no signer of this network can pay for gas".into()
                } else {
                    "no signer lease of this network is held here".into()
                })
            })?,
        };
        stats.sending.fetch_add(1, Ordering::AcqRel);
        let _sending = Sending(stats.clone());
        let sent = actor
            .send(msg)
            .await
            .map_err(|e| BroadcastError::NotSent(format!("settlement actor: {e}")))?;
        match &sent {
            Ok(b) => stats.last_nonce.store(b.nonce, Ordering::Relaxed),
            Err(BroadcastError::NotSent(m))
                if m.to_ascii_lowercase().contains("insufficient funds") =>
            {
                stats.set_unfunded()
            }
            Err(_) => {}
        }
        sent
    }
}

type Waiters = DashMap<B256, Vec<mpsc::UnboundedSender<TransactionReceipt>>>;

/// Watches a network's new blocks and hands each receipt to whoever waits for it: one
/// `eth_getBlockReceipts` per block serves every in-flight settlement of the network.
#[derive(Clone)]
pub struct ReceiptWatcher {
    provider: RootProvider,
    waiters: Arc<Waiters>,
    head: Arc<std::sync::atomic::AtomicU64>,
}

impl ReceiptWatcher {
    /// Start the polling loop on the current runtime. `on_block` is told each new head.
    pub fn start(
        provider: RootProvider,
        poll: Duration,
        on_block: impl Fn(Option<u64>) + Send + 'static,
    ) -> Self {
        let watcher = Self {
            provider,
            waiters: Arc::new(DashMap::new()),
            head: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let w = watcher.clone();
        tokio::spawn(async move {
            let mut last: Option<u64> = None;
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if Arc::strong_count(&w.waiters) == 1 {
                    return; // every handle is gone
                }
                let head = match w.provider.get_block_number().await {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::debug!(error = %e, "block number poll failed");
                        on_block(None);
                        continue;
                    }
                };
                on_block(Some(head));
                w.head.store(head, Ordering::Relaxed);
                let from = match last {
                    Some(l) if head > l => l + 1,
                    Some(_) => continue,
                    None => head,
                };
                if w.waiters.is_empty() {
                    last = Some(head);
                    continue;
                }
                let mut done = from;
                for block in from..=head {
                    match w.provider.get_block_receipts(block.into()).await {
                        Ok(Some(receipts)) => {
                            for r in receipts {
                                w.deliver(r);
                            }
                            done = block;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, block, "block receipts failed; polling hashes");
                            w.poll_each().await;
                            done = block;
                        }
                    }
                }
                last = Some(done);
            }
        });
        watcher
    }

    fn deliver(&self, r: TransactionReceipt) {
        if let Some((_, senders)) = self.waiters.remove(&r.transaction_hash) {
            for s in senders {
                let _ = s.send(r.clone());
            }
        }
    }

    async fn poll_each(&self) {
        let hashes: Vec<B256> = self.waiters.iter().map(|e| *e.key()).collect();
        for h in hashes {
            if let Ok(Some(r)) = self.provider.get_transaction_receipt(h).await {
                self.deliver(r);
            }
        }
    }

    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    /// Wait for the receipt of `tx_hash`, at most `timeout`. `None` on timeout.
    pub async fn wait(&self, tx_hash: B256, timeout: Duration) -> Option<TransactionReceipt> {
        self.wait_any(&[tx_hash], timeout).await
    }

    /// Wait for the first receipt of any of `hashes` (a transaction and its replacements: the
    /// chain mines one of them).
    pub async fn wait_any(&self, hashes: &[B256], timeout: Duration) -> Option<TransactionReceipt> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for h in hashes {
            self.waiters.entry(*h).or_default().push(tx.clone());
        }
        drop(tx);
        // Mined before we registered? Ask once directly.
        for h in hashes {
            if let Ok(Some(r)) = self.provider.get_transaction_receipt(*h).await {
                self.deliver(r);
                break;
            }
        }
        let got = tokio::time::timeout(timeout, rx.recv())
            .await
            .ok()
            .flatten();
        drop(rx);
        // Drop our closed senders so the map does not grow with abandoned waits.
        for h in hashes {
            if let dashmap::mapref::entry::Entry::Occupied(mut e) = self.waiters.entry(*h) {
                e.get_mut().retain(|s| !s.is_closed());
                if e.get().is_empty() {
                    e.remove();
                }
            }
        }
        got
    }

    pub fn in_flight(&self) -> usize {
        self.waiters.len()
    }
}

/// Parse signer keys (0x-hex, comma or newline separated).
pub fn parse_signer_keys(raw: &str) -> Result<Vec<PrivateKeySigner>, String> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for (i, part) in raw
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with('#'))
        .enumerate()
    {
        // Never echo the key itself in the error.
        let signer: PrivateKeySigner = part
            .parse()
            .map_err(|_| format!("signer key #{} is not a 32-byte hex private key", i + 1))?;
        if seen.insert(signer.address(), ()).is_none() {
            out.push(signer);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gas_limit_is_the_estimate_plus_margin_within_the_cap() {
        let policy = FeePolicy {
            max_gas_per_settlement: 130_000,
            ..FeePolicy::default()
        };
        // transferWithAuthorization to a new payee: ~103k.
        assert_eq!(policy.gas_limit_for(100_000), Some(130_000));
        assert_eq!(policy.gas_limit_for(100_001), None);
        assert_eq!(policy.gas_limit_for(0), Some(GAS_MARGIN));
        assert_eq!(policy.gas_limit_for(u64::MAX), None);
    }
}
