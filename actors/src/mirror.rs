//! `Mirror`: a block-synchronised copy, per network, of the token state that decides an
//! EIP-3009 payment, so that `/verify` of a known EOA payer needs no RPC call (issue 12).
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
//! batch. A seed that finishes after the mirror moved on (or was reset) is dropped.
//!
//! **When it answers** (`judge`): the probe's last head is at most `max_head_age` old, the
//! mirror has applied exactly that block (number and hash), the token is known and not
//! paused, payer and payee are mirrored and not blacklisted, and the payer has no code.
//! Anything else is a `Fallback` (the caller simulates). Staleness is thus bounded by the
//! probe: an answer is never older than the last head seen, and that head never older than
//! `max_head_age`. Not followed: code an address gets later (an EIP-7702 delegation of a
//! mirrored EOA), and Permit2 settles in flight (they are not counted as pending).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Filter, Log, TransactionInput, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use serde::Deserialize;
use tokio::sync::watch;
use x402::exact::evm::{IFiatTokenState as Token, IEIP3009};
use x402::Reason;

use crate::chain::SeenHead;
use crate::metrics::RpcMetrics;

/// `verify.mirror_*`.
#[derive(Debug, Clone, Copy)]
pub struct MirrorConfig {
    /// Accounts kept per network (payers and payees), least recently used dropped first.
    pub max_accounts: usize,
    /// The mirror answers only while the probe's last head is at most this old.
    pub max_head_age: Duration,
}

/// Past this many blocks behind, the follower starts over at the head (everything re-seeded).
pub const MAX_CATCH_UP: u64 = 64;

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
    /// LRU clock.
    touched: u64,
}

struct TokenState {
    paused: bool,
    accounts: HashMap<Address, Account>,
}

struct Pending {
    amount: U256,
    valid_before: u64,
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

#[derive(Debug, Deserialize)]
struct Header {
    hash: B256,
    #[serde(rename = "parentHash")]
    parent_hash: B256,
}

type PendingSettles = HashMap<(Address, Address), HashMap<B256, Pending>>;

/// The amount of `p`'s payer's other pending settles (those past `valid_before` dropped).
fn pending_sum(pending: &mut PendingSettles, p: &Payment, now: u64) -> U256 {
    let Some(of) = pending.get_mut(&(p.asset, p.payer)) else {
        return U256::ZERO;
    };
    of.retain(|_, x| x.valid_before > now);
    of.iter()
        .filter(|(nonce, _)| **nonce != p.nonce)
        .fold(U256::ZERO, |sum, (_, x)| sum.saturating_add(x.amount))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What applying one block came to.
enum Applied {
    Done,
    /// The mirror cannot follow from here: start over at the head.
    Reset(&'static str),
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

    pub fn network(&self) -> &'static str {
        self.network
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

    /// The last block applied.
    pub fn block(&self) -> Option<u64> {
        lock(&self.state).block.map(|(n, _)| n)
    }

    /// Accounts mirrored, over all assets.
    pub fn accounts(&self) -> usize {
        lock(&self.state).accounts()
    }

    /// Whether `account` of `asset` is mirrored.
    pub fn knows(&self, asset: Address, account: Address) -> bool {
        lock(&self.state)
            .tokens
            .get(&asset)
            .is_some_and(|t| t.accounts.contains_key(&account))
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

    /// Bring the mirror to `head`.
    async fn follow(&self, head: SeenHead) {
        let at = lock(&self.state).block;
        match at {
            None => self.restart_at(head).await,
            Some((n, hash)) if n == head.number && hash == head.hash => {}
            Some((n, _)) if head.number <= n || head.number - n > MAX_CATCH_UP => {
                self.reset(if head.number <= n {
                    "head went back or changed at the same height"
                } else {
                    "too far behind"
                });
                self.restart_at(head).await;
            }
            Some((n, _)) => {
                for b in n + 1..=head.number {
                    match self.apply(b).await {
                        Ok(Applied::Done) => {}
                        Ok(Applied::Reset(why)) => {
                            self.reset(why);
                            self.restart_at(head).await;
                            break;
                        }
                        Err(e) => {
                            // Behind the head until a later probe round: nothing is answered.
                            tracing::warn!(network = self.network, block = b, error = %e, "state mirror behind: block not applied");
                            break;
                        }
                    }
                }
            }
        }
        self.report();
    }

    /// Start (over) at `head`: which tokens answer `paused()` there. No account is kept.
    async fn restart_at(&self, head: SeenHead) {
        let at = serde_json::json!({ "blockHash": head.hash });
        let mut batch = alloy::rpc::client::BatchRequest::new(self.provider.client());
        let mut calls = Vec::new();
        for &asset in &self.assets {
            let call = TransactionRequest::default()
                .to(asset)
                .input(TransactionInput::new(
                    Token::pausedCall {}.abi_encode().into(),
                ));
            match batch.add_call::<_, Bytes>("eth_call", &(call, &at)) {
                Ok(w) => calls.push((asset, w)),
                Err(e) => {
                    tracing::warn!(network = self.network, error = %e, "state mirror: start");
                    return;
                }
            }
        }
        if let Err(e) = batch.send().await {
            tracing::warn!(network = self.network, error = %e, "state mirror not started");
            return;
        }
        let mut tokens = HashMap::new();
        for (asset, w) in calls {
            match w
                .await
                .ok()
                .and_then(|b: Bytes| Token::pausedCall::abi_decode_returns(&b).ok())
            {
                Some(paused) => {
                    tokens.insert(
                        asset,
                        TokenState {
                            paused,
                            accounts: HashMap::new(),
                        },
                    );
                }
                None => {
                    tracing::info!(network = self.network, %asset, "asset not mirrored (no paused())")
                }
            }
        }
        let mut s = lock(&self.state);
        if s.block.is_none() {
            s.tokens = tokens;
            s.block = Some((head.number, head.hash));
            s.epoch += 1;
        }
    }

    /// Apply block `b` on top of the last one.
    async fn apply(&self, b: u64) -> Result<Applied, String> {
        let header: Option<Header> = self
            .provider
            .client()
            .request("eth_getBlockByNumber", (format!("{b:#x}"), false))
            .await
            .map_err(|e| e.to_string())?;
        let header = header.ok_or_else(|| format!("block {b} not found"))?;
        let parent = lock(&self.state).block.map(|(_, h)| h);
        if parent != Some(header.parent_hash) {
            return Ok(Applied::Reset("reorg: parent hash differs"));
        }
        let filter = Filter::new()
            .at_block_hash(header.hash)
            .address(self.assets.clone());
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| e.to_string())?;
        if logs.iter().any(|l| l.block_hash != Some(header.hash)) {
            return Err("logs of another block".into());
        }
        let mut s = lock(&self.state);
        if s.block.map(|(_, h)| h) != Some(header.parent_hash) {
            return Ok(Applied::Reset("reset while applying"));
        }
        let mut used = Vec::new();
        for log in &logs {
            if let Some(why) = apply_log(&mut s, log, &mut used) {
                return Ok(Applied::Reset(why));
            }
        }
        s.block = Some((b, header.hash));
        drop(s);
        if !used.is_empty() {
            let mut pending = lock(&self.pending);
            for (key, nonce) in used {
                if let Some(p) = pending.get_mut(&key) {
                    p.remove(&nonce);
                    if p.is_empty() {
                        pending.remove(&key);
                    }
                }
            }
        }
        Ok(Applied::Done)
    }

    /// Judge a payment's on-chain part (what simulating `transferWithAuthorization` at the
    /// mirror's block would say, our pending settles included), or say why not. `now`: Unix
    /// seconds (pending settles past their `valid_before` no longer count).
    pub fn judge(&self, p: &Payment, now: u64) -> Judged {
        let pending = self.pending_of(p, now);
        let judged = self.judge_inner(p, pending);
        self.count_verify(judged);
        judged
    }

    /// `judge`, and when the payment is `Valid`, count it as pending at once (`settling`),
    /// under one lock: of two payments judged together, the second sees the first. For a
    /// settle that skips the simulation.
    pub fn reserve(&self, p: &Payment, now: u64, valid_before: u64) -> Judged {
        let mut pending = lock(&self.pending);
        let sum = pending_sum(&mut pending, p, now);
        // Lock order: `pending`, then `state` (nowhere is `state` held while `pending` is taken).
        let judged = self.judge_inner(p, sum);
        if judged == Judged::Valid {
            pending.entry((p.asset, p.payer)).or_default().insert(
                p.nonce,
                Pending {
                    amount: p.value,
                    valid_before,
                },
            );
        }
        drop(pending);
        if let Some(m) = &self.metrics {
            m.mirror_settle(
                self.network,
                match judged {
                    Judged::Valid => "answered",
                    Judged::Refused(_) => "refused",
                    Judged::Fallback(f) => f.label(),
                },
            );
        }
        judged
    }

    fn count_verify(&self, judged: Judged) {
        if let Some(m) = &self.metrics {
            m.mirror_verify(
                self.network,
                match judged {
                    Judged::Fallback(f) => f.label(),
                    _ => "answered",
                },
            );
        }
    }

    /// `pending`: what our other settles of this payer will take first.
    fn judge_inner(&self, p: &Payment, pending: U256) -> Judged {
        let fresh = self
            .heads
            .borrow()
            .filter(|h| h.seen_at.elapsed() <= self.config.max_head_age);
        let Some(head) = fresh else {
            return Judged::Fallback(Fallback::Stale);
        };
        let mut s = lock(&self.state);
        if s.block != Some((head.number, head.hash)) {
            return Judged::Fallback(Fallback::Stale);
        }
        s.tick += 1;
        let tick = s.tick;
        let Some(token) = s.tokens.get_mut(&p.asset) else {
            return Judged::Fallback(Fallback::UnknownToken);
        };
        if token.paused {
            return Judged::Fallback(Fallback::Paused);
        }
        let Some(payee) = token.accounts.get_mut(&p.pay_to) else {
            return Judged::Fallback(Fallback::UnknownAccount);
        };
        payee.touched = tick;
        let payee_blacklisted = payee.blacklisted;
        let Some(payer) = token.accounts.get_mut(&p.payer) else {
            return Judged::Fallback(Fallback::UnknownAccount);
        };
        payer.touched = tick;
        if payer.has_code {
            return Judged::Fallback(Fallback::HasCode);
        }
        if payer.blacklisted || payee_blacklisted {
            return Judged::Fallback(Fallback::Blacklisted);
        }
        // As FiatTokenV2_2 checks, after the modifiers: the nonce, then the balance.
        if payer.used.contains(&p.nonce) {
            return Judged::Refused(Reason::InvalidExactEvmNonceAlreadyUsed);
        }
        if p.value > payer.balance.saturating_sub(pending) {
            return Judged::Refused(Reason::InsufficientFunds);
        }
        Judged::Valid
    }

    /// What our other settles of this payer will take first.
    fn pending_of(&self, p: &Payment, now: u64) -> U256 {
        pending_sum(&mut lock(&self.pending), p, now)
    }

    /// A settle of ours is about to send (or sent) this payment.
    pub fn settling(&self, p: &Payment, valid_before: u64) {
        lock(&self.pending)
            .entry((p.asset, p.payer))
            .or_default()
            .insert(
                p.nonce,
                Pending {
                    amount: p.value,
                    valid_before,
                },
            );
    }

    /// A settle of ours ended without moving the money (nothing sent, or reverted).
    pub fn not_settled(&self, p: &Payment) {
        let mut pending = lock(&self.pending);
        if let Some(of) = pending.get_mut(&(p.asset, p.payer)) {
            of.remove(&p.nonce);
            if of.is_empty() {
                pending.remove(&(p.asset, p.payer));
            }
        }
    }

    /// Add the accounts of `asset` not mirrored yet (reads at the mirror's block, one batch).
    /// Dropped if the mirror moves on meanwhile.
    pub async fn seed(&self, asset: Address, accounts: &[Address]) {
        let (block, hash, epoch, wanted) = {
            let s = lock(&self.state);
            let (Some((n, h)), Some(t)) = (s.block, s.tokens.get(&asset)) else {
                return;
            };
            let mut wanted: Vec<Address> = accounts
                .iter()
                .copied()
                .filter(|a| !a.is_zero() && !t.accounts.contains_key(a))
                .collect();
            wanted.sort();
            wanted.dedup();
            (n, h, s.epoch, wanted)
        };
        let mine: Vec<Address> = {
            let mut seeding = lock(&self.seeding);
            wanted
                .into_iter()
                .filter(|a| seeding.insert((asset, *a)))
                .collect()
        };
        if mine.is_empty() {
            return;
        }
        let read = self.read_accounts(asset, &mine, block, hash).await;
        {
            let mut seeding = lock(&self.seeding);
            for a in &mine {
                seeding.remove(&(asset, *a));
            }
        }
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::debug!(network = self.network, error = %e, "state mirror: seed failed");
                return;
            }
        };
        let mut s = lock(&self.state);
        if s.epoch != epoch || s.block != Some((block, hash)) {
            return; // moved on: the next verify seeds again
        }
        s.tick += 1;
        let tick = s.tick;
        let cap = self.config.max_accounts.max(2);
        let total = s.accounts();
        let Some(token) = s.tokens.get_mut(&asset) else {
            return;
        };
        let mut used_nonces = Vec::new();
        for (address, mut account) in read {
            account.touched = tick;
            used_nonces.push((address, account.used.clone()));
            token.accounts.entry(address).or_insert(account);
        }
        if total + mine.len() > cap {
            evict(&mut s, cap);
        }
        drop(s);
        // Our settles the chain already shows (at or before the seed block) are in the
        // balance read: they no longer count as pending.
        let mut pending = lock(&self.pending);
        for (address, used) in used_nonces {
            if let Some(of) = pending.get_mut(&(asset, address)) {
                of.retain(|nonce, _| !used.contains(nonce));
            }
        }
        drop(pending);
        self.report();
    }

    async fn read_accounts(
        &self,
        asset: Address,
        accounts: &[Address],
        block: u64,
        hash: B256,
    ) -> Result<Vec<(Address, Account)>, String> {
        let at = serde_json::json!({ "blockHash": hash });
        let rpc = |e: alloy::transports::TransportError| e.to_string();
        let mut batch = alloy::rpc::client::BatchRequest::new(self.provider.client());
        let call = |data: Vec<u8>| {
            TransactionRequest::default()
                .to(asset)
                .input(TransactionInput::new(data.into()))
        };
        let mut waiting = Vec::new();
        for &a in accounts {
            let balance = batch
                .add_call::<_, Bytes>(
                    "eth_call",
                    &(
                        call(IEIP3009::balanceOfCall { account: a }.abi_encode()),
                        &at,
                    ),
                )
                .map_err(rpc)?;
            let blacklisted = batch
                .add_call::<_, Bytes>(
                    "eth_call",
                    &(
                        call(Token::isBlacklistedCall { account: a }.abi_encode()),
                        &at,
                    ),
                )
                .map_err(rpc)?;
            let code = batch
                .add_call::<_, Bytes>("eth_getCode", &(a, &at))
                .map_err(rpc)?;
            let filter = Filter::new()
                .address(asset)
                .from_block(0)
                .to_block(block)
                .event_signature(vec![
                    Token::AuthorizationUsed::SIGNATURE_HASH,
                    Token::AuthorizationCanceled::SIGNATURE_HASH,
                ])
                .topic1(a.into_word());
            let history = batch
                .add_call::<_, Vec<Log>>("eth_getLogs", &(filter,))
                .map_err(rpc)?;
            waiting.push((a, balance, blacklisted, code, history));
        }
        batch.send().await.map_err(rpc)?;
        let mut out = Vec::with_capacity(waiting.len());
        for (a, balance, blacklisted, code, history) in waiting {
            let balance = IEIP3009::balanceOfCall::abi_decode_returns(&balance.await.map_err(rpc)?)
                .map_err(|e| e.to_string())?;
            let blacklisted =
                Token::isBlacklistedCall::abi_decode_returns(&blacklisted.await.map_err(rpc)?)
                    .map_err(|e| e.to_string())?;
            let code: Bytes = code.await.map_err(rpc)?;
            let history: Vec<Log> = history.await.map_err(rpc)?;
            let used = history
                .iter()
                .filter_map(|l| l.topics().get(2).copied())
                .collect();
            out.push((
                a,
                Account {
                    balance,
                    blacklisted,
                    has_code: !code.is_empty(),
                    used,
                    touched: 0,
                },
            ));
        }
        Ok(out)
    }
}

/// Drop the least recently used accounts: `cap * 7 / 8` stay (so eviction runs once per
/// many seeds, not at each).
fn evict(s: &mut State, cap: usize) {
    let keep = cap * 7 / 8;
    let mut ticks: Vec<u64> = s
        .tokens
        .values()
        .flat_map(|t| t.accounts.values().map(|a| a.touched))
        .collect();
    if ticks.len() <= keep {
        return;
    }
    let cut = ticks.len() - keep;
    ticks.select_nth_unstable(cut - 1);
    let threshold = ticks[cut - 1];
    for t in s.tokens.values_mut() {
        t.accounts.retain(|_, a| a.touched > threshold);
    }
}

/// Apply one log; `Some(why)` when the mirror must start over.
fn apply_log(
    s: &mut State,
    log: &Log,
    used: &mut Vec<((Address, Address), B256)>,
) -> Option<&'static str> {
    let asset = log.address();
    let topic0 = *log.topics().first()?;
    if topic0 == Token::Upgraded::SIGNATURE_HASH {
        return Some("token implementation upgraded");
    }
    let token = s.tokens.get_mut(&asset)?;
    let data = &log.inner.data;
    match topic0 {
        Token::Transfer::SIGNATURE_HASH => {
            let Ok(e) = Token::Transfer::decode_log_data(data) else {
                return Some("undecodable Transfer");
            };
            if let Some(a) = token.accounts.get_mut(&e.from) {
                match a.balance.checked_sub(e.value) {
                    Some(b) => a.balance = b,
                    None => return Some("balance below zero"),
                }
            }
            if let Some(a) = token.accounts.get_mut(&e.to) {
                a.balance = a.balance.saturating_add(e.value);
            }
        }
        Token::AuthorizationUsed::SIGNATURE_HASH | Token::AuthorizationCanceled::SIGNATURE_HASH => {
            let (Some(authorizer), Some(nonce)) = (log.topics().get(1), log.topics().get(2)) else {
                return Some("undecodable authorization log");
            };
            let authorizer = Address::from_word(*authorizer);
            if let Some(a) = token.accounts.get_mut(&authorizer) {
                a.used.insert(*nonce);
            }
            used.push(((asset, authorizer), *nonce));
        }
        Token::Blacklisted::SIGNATURE_HASH | Token::UnBlacklisted::SIGNATURE_HASH => {
            let account = Address::from_word(*log.topics().get(1)?);
            if let Some(a) = token.accounts.get_mut(&account) {
                a.blacklisted = topic0 == Token::Blacklisted::SIGNATURE_HASH;
            }
        }
        Token::Pause::SIGNATURE_HASH => token.paused = true,
        Token::Unpause::SIGNATURE_HASH => token.paused = false,
        _ => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(touched: u64) -> Account {
        Account {
            balance: U256::from(10),
            blacklisted: false,
            has_code: false,
            used: HashSet::new(),
            touched,
        }
    }

    #[test]
    fn eviction_keeps_the_most_recently_used() {
        let mut s = State::default();
        let mut t = TokenState {
            paused: false,
            accounts: HashMap::new(),
        };
        for i in 0..16u8 {
            t.accounts
                .insert(Address::repeat_byte(i + 1), account(i as u64));
        }
        s.tokens.insert(Address::ZERO, t);
        evict(&mut s, 8);
        let left = &s.tokens[&Address::ZERO].accounts;
        assert_eq!(left.len(), 7);
        assert!(left.contains_key(&Address::repeat_byte(16)));
        assert!(!left.contains_key(&Address::repeat_byte(1)));
    }

    #[test]
    fn logs_move_balances_nonces_blacklist_and_pause() {
        let asset = Address::repeat_byte(0xaa);
        let payer = Address::repeat_byte(1);
        let other = Address::repeat_byte(2);
        let mut s = State::default();
        let mut t = TokenState {
            paused: false,
            accounts: HashMap::new(),
        };
        t.accounts.insert(payer, account(0));
        s.tokens.insert(asset, t);
        let log = |data: alloy::primitives::LogData| Log {
            inner: alloy::primitives::Log {
                address: asset,
                data,
            },
            ..Default::default()
        };
        let mut used = Vec::new();
        let transfer = Token::Transfer {
            from: payer,
            to: other,
            value: U256::from(4),
        };
        assert!(apply_log(&mut s, &log(transfer.encode_log_data()), &mut used).is_none());
        let nonce = B256::repeat_byte(7);
        let auth = Token::AuthorizationUsed {
            authorizer: payer,
            nonce,
        };
        apply_log(&mut s, &log(auth.encode_log_data()), &mut used);
        apply_log(
            &mut s,
            &log(Token::Blacklisted { account: payer }.encode_log_data()),
            &mut used,
        );
        apply_log(&mut s, &log(Token::Pause {}.encode_log_data()), &mut used);
        let t = &s.tokens[&asset];
        let a = &t.accounts[&payer];
        assert_eq!(a.balance, U256::from(6));
        assert!(a.used.contains(&nonce) && a.blacklisted && t.paused);
        assert_eq!(used, vec![((asset, payer), nonce)]);
        // More out than in: the mirror cannot be right, it starts over.
        let too_much = Token::Transfer {
            from: payer,
            to: other,
            value: U256::from(7),
        };
        assert!(apply_log(&mut s, &log(too_much.encode_log_data()), &mut used).is_some());
    }
}
