//! `SettlementRouter`: hands a network's transactions to its signers' actors, and what each
//! signer's state is as this instance sees it (`SignerStats`: lease, funds, load).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use alloy::primitives::{Address, U256};

use super::actor::SettlementActor;
use super::{Broadcast, BroadcastError, Broadcasted};

/// One signer as this instance sees it: whether it may drive it (its lease), whether it can
/// pay for gas, and what the metrics show (last nonce, transactions awaited). Shared by the
/// actor, the router and the lease keeper.
#[derive(Debug)]
pub struct SignerStats {
    /// `u64::MAX` until the first broadcast.
    last_nonce: AtomicU64,
    in_flight: AtomicI64,
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
            last_nonce: AtomicU64::new(u64::MAX),
            in_flight: AtomicI64::new(0),
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
    /// Has the lease changed since the actor last read its nonce (under `epoch`)? A lease taken
    /// over since the last send: the chain's pending nonce is the truth.
    pub(super) fn lease_changed(&self, epoch: i64) -> bool {
        self.nonce_epoch.swap(epoch, Ordering::AcqRel) != epoch
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signer_takes_new_work_only_leased_undrained_and_funded() {
        let s = SignerStats::default();
        assert!(!s.available(), "no lease yet");
        s.set_epoch(3);
        assert!(s.available());
        s.set_draining(true);
        assert!(!s.available());
        // Losing the lease ends the draining with it.
        s.set_epoch(0);
        assert!(!s.is_draining());
        s.set_epoch(4);
        s.set_balance(U256::from(5u64), U256::from(6u64));
        assert!(!s.available());
        s.set_balance(U256::from(6u64), U256::from(6u64));
        assert!(s.available());
        s.set_unfunded();
        assert!(!s.available());
    }

    #[test]
    fn a_balance_is_kept_in_gwei() {
        let s = SignerStats::default();
        assert_eq!(s.balance_wei(), None);
        s.set_balance(U256::from(2_500_000_000u64), U256::ZERO);
        assert_eq!(s.balance_wei(), Some(U256::from(2_000_000_000u64)));
    }

    #[test]
    fn the_actor_rereads_its_nonce_once_per_lease() {
        let s = SignerStats::default();
        assert!(s.lease_changed(7));
        assert!(!s.lease_changed(7));
        assert!(s.lease_changed(8));
    }
}
