//! `Mirror`: a block-synchronised copy, per network, of the token state that decides an
//! EIP-3009 payment, so that `/verify` of a known EOA payer needs no RPC call.
//!
//! **What it keeps.** For each served asset that answers `paused()`: whether it is paused;
//! for the accounts seen recently (payers and payees a verify named; LRU, at most
//! `verify.mirror_accounts`): the balance, the blacklist flag, whether the account has code,
//! and every authorization nonce it has used or canceled. Beside it, our own settles claimed
//! or sent and not yet seen mined (`settling`), per payer: a payment the balance cannot cover
//! once those go through is `insufficient_funds`.
//!
//! **How it follows.** The chain access probe (`crate::chain`) publishes the best head it saw
//! (`SeenHead`); the follower wakes on each and applies every block since its last one, in
//! order: the header (its `parentHash` must be the hash of the block applied before, or the
//! whole network's state is dropped: a reorg), then the block's logs of the served assets, by
//! block hash (`Transfer`, `AuthorizationUsed`, `AuthorizationCanceled`, `Blacklisted`,
//! `UnBlacklisted`, `Pause`, `Unpause`; a proxy `Upgraded` drops everything too). An RPC error
//! leaves the mirror at its last block: behind the head, so it answers nothing until it
//! catches up. More than `MAX_CATCH_UP` blocks behind, it starts over at the head.
//!
//! **Seeding.** An account is added by `seed`, after a verify the mirror could not answer:
//! `balanceOf`, `isBlacklisted`, `eth_getCode` at the mirror's block (by hash, EIP-1898) and
//! the account's `AuthorizationUsed`/`AuthorizationCanceled` logs up to that block, in one
//! batch. A seed that finishes after the mirror moved on (or was reset) is dropped. A node
//! that refuses the logs from block 0 (many providers bound `eth_getLogs` ranges) leaves the
//! account without its history: its nonces are then read one by one (`authorizationState` at
//! the mirror's block, after the first verify of each fell back to the simulation), and a nonce
//! not read yet is never judged from memory.
//!
//! **When it answers** (`judge`): the probe's last head is at most `max_head_age` old, the
//! mirror has applied exactly that block (number and hash), the token is known and not
//! paused, payer and payee are mirrored and not blacklisted, and the payer has no code.
//! Anything else is a `Fallback` (the caller simulates). Staleness is thus bounded by the
//! probe: an answer is never older than the last head seen, and that head never older than
//! `max_head_age`. An EIP-7702 authorization in a block (its signer may have code from then
//! on) drops that account: its next verify seeds it again and reads its code. Our settles in
//! flight count against their payer whatever the method (Permit2 included) until the block
//! that mined them is applied.
//!
//! Here: the mirrored state and `Mirror`'s handle; `follow` (applying blocks), `seed` (adding
//! accounts), `judge` (answering, and our pending settles).

mod follow;
mod judge;
mod seed;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::RootProvider;
use tokio::sync::watch;
use x402::Reason;

use crate::chain::SeenHead;
use crate::metrics::RpcMetrics;
use judge::PendingSettles;

/// `verify.mirror_*`.
#[derive(Debug, Clone, Copy)]
pub struct MirrorConfig {
    /// Accounts kept per network (payers and payees), least recently used dropped first.
    pub max_accounts: usize,
    /// The mirror answers only while the probe's last head is at most this old.
    pub max_head_age: Duration,
}

/// Past this many blocks behind, the follower starts over at the head (everything re-seeded).
const MAX_CATCH_UP: u64 = 64;

/// Why the mirror did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Not at the last head seen, or that head is too old.
    Stale,
    /// The asset is not followed (or did not answer `paused()`).
    UnknownToken,
    Paused,
    /// Payer or payee not mirrored (yet): seed them.
    UnknownAccount,
    Blacklisted,
    /// The payer has code (a smart wallet): its signature is the contract's to judge.
    HasCode,
    /// The payer's authorization history could not be read (the node refused `eth_getLogs`
    /// from block 0) and this nonce was not read yet: read it (`authorizationState`).
    UnknownNonce,
}

impl Fallback {
    pub fn label(self) -> &'static str {
        match self {
            Fallback::Stale => "fallback_stale",
            Fallback::UnknownToken => "fallback_unknown_token",
            Fallback::Paused => "fallback_paused",
            Fallback::UnknownAccount => "fallback_unknown_account",
            Fallback::Blacklisted => "fallback_blacklisted",
            Fallback::HasCode => "fallback_has_code",
            Fallback::UnknownNonce => "fallback_unknown_nonce",
        }
    }
}

/// The mirror's answer about a payment's on-chain part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    Valid,
    Refused(Reason),
    Fallback(Fallback),
}

/// One payment, as the mirror judges it.
#[derive(Debug, Clone, Copy)]
pub struct Payment {
    pub asset: Address,
    pub payer: Address,
    pub pay_to: Address,
    pub value: U256,
    pub nonce: B256,
}

struct Account {
    balance: U256,
    blacklisted: bool,
    has_code: bool,
    used: HashSet<B256>,
    /// `used` holds every nonce the account ever used (its logs from block 0 were read). Else
    /// only those seen since the seed, and a nonce is judged only once read (`free`).
    history: bool,
    /// Nonces read unused (`authorizationState`) at a block the mirror applied; a later
    /// `AuthorizationUsed` moves one to `used`. Only for an account without `history`.
    free: HashSet<B256>,
    /// LRU clock.
    touched: u64,
}

/// Nonces kept read-free per account at most (then the set starts over).
const MAX_FREE_NONCES: usize = 4096;

struct TokenState {
    paused: bool,
    accounts: HashMap<Address, Account>,
}

#[derive(Default)]
struct State {
    /// The last block applied (number, hash); `None` until the follower has started.
    block: Option<(u64, B256)>,
    /// Bumped at every reset: a seed begun before is dropped.
    epoch: u64,
    tokens: HashMap<Address, TokenState>,
    tick: u64,
}

impl State {
    fn accounts(&self) -> usize {
        self.tokens.values().map(|t| t.accounts.len()).sum()
    }
}

/// One network's mirror.
pub struct Mirror {
    network: &'static str,
    assets: Vec<Address>,
    config: MirrorConfig,
    provider: RootProvider,
    heads: watch::Receiver<Option<SeenHead>>,
    state: Mutex<State>,
    /// Our settles claimed or sent, not yet seen mined: (asset, payer) -> nonce -> amount.
    /// Not the chain's state: a reset keeps it.
    pending: Mutex<PendingSettles>,
    /// Accounts being seeded now (one seed each at a time).
    seeding: Mutex<HashSet<(Address, Address)>>,
    metrics: Option<RpcMetrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
impl Mirror {
    /// A mirror of `assets` on one network, following `heads` (the chain access probe's);
    /// `start` it.
    pub fn new(
        network: &'static str,
        assets: Vec<Address>,
        config: MirrorConfig,
        provider: RootProvider,
        heads: watch::Receiver<Option<SeenHead>>,
        metrics: Option<RpcMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            network,
            assets,
            config,
            provider,
            heads,
            state: Mutex::new(State::default()),
            pending: Mutex::new(HashMap::new()),
            seeding: Mutex::new(HashSet::new()),
            metrics,
        })
    }

    /// Follow the heads in the background, until the mirror is dropped.
    pub fn start(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let mut heads = self.heads.clone();
        // The head read before the start counts as new.
        heads.mark_changed();
        tokio::spawn(async move {
            while heads.changed().await.is_ok() {
                let head = *heads.borrow_and_update();
                let Some(mirror) = weak.upgrade() else { return };
                if let Some(head) = head {
                    mirror.follow(head).await;
                }
            }
        });
    }

    fn reset(&self, why: &'static str) {
        let mut s = lock(&self.state);
        tracing::info!(network = self.network, block = ?s.block, why, "state mirror reset");
        s.block = None;
        s.tokens.clear();
        s.epoch += 1;
    }

    fn report(&self) {
        if let Some(m) = &self.metrics {
            let s = lock(&self.state);
            m.set_mirror(
                self.network,
                s.block.map(|(n, _)| n).unwrap_or(0),
                s.accounts(),
            );
        }
    }
}
