//! Judging a payment from the mirrored state, and the count of our own settles sent and not
//! yet seen mined (`settling`), which the payer's balance must cover first.

use std::collections::HashMap;

use alloy::primitives::{Address, B256, U256};
use x402::Reason;

use super::{lock, Fallback, Judged, Mirror, Payment};

pub(super) struct Pending {
    amount: U256,
    valid_before: u64,
    /// The block that mined it, once known: from the moment the mirror has applied that block,
    /// its `Transfer` is in the mirrored balance and it no longer counts.
    mined_in: Option<u64>,
}

impl Pending {
    fn new(amount: U256, valid_before: u64) -> Self {
        Self {
            amount,
            valid_before,
            mined_in: None,
        }
    }

    /// Still to come out of the balance: not past `valid_before`, not in a block applied.
    fn counts(&self, now: u64, applied: Option<u64>) -> bool {
        self.valid_before > now && self.mined_in.zip(applied).is_none_or(|(m, a)| m > a)
    }
}

pub(super) type PendingSettles = HashMap<(Address, Address), HashMap<B256, Pending>>;

/// Drop the pending settles that no longer count: past `valid_before`, or mined in a block the
/// mirror has applied (`applied`).
pub(super) fn prune(pending: &mut PendingSettles, now: u64, applied: Option<u64>) {
    pending.retain(|_, of| {
        of.retain(|_, x| x.counts(now, applied));
        !of.is_empty()
    });
}

/// The amount of `p`'s payer's other pending settles (those that no longer count dropped).
fn pending_sum(pending: &mut PendingSettles, p: &Payment, now: u64, applied: Option<u64>) -> U256 {
    let Some(of) = pending.get_mut(&(p.asset, p.payer)) else {
        return U256::ZERO;
    };
    of.retain(|_, x| x.counts(now, applied));
    of.iter()
        .filter(|(nonce, _)| **nonce != p.nonce)
        .fold(U256::ZERO, |sum, (_, x)| sum.saturating_add(x.amount))
}
impl Mirror {
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
        let sum = pending_sum(&mut pending, p, now, self.applied());
        // Lock order: `pending`, then `state` (nowhere is `state` held while `pending` is taken).
        let judged = self.judge_inner(p, sum);
        if judged == Judged::Valid {
            pending
                .entry((p.asset, p.payer))
                .or_default()
                .insert(p.nonce, Pending::new(p.value, valid_before));
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
        if !payer.history && !payer.free.contains(&p.nonce) {
            return Judged::Fallback(Fallback::UnknownNonce);
        }
        if p.value > payer.balance.saturating_sub(pending) {
            return Judged::Refused(Reason::InsufficientFunds);
        }
        Judged::Valid
    }

    /// What our other settles of this payer will take first.
    fn pending_of(&self, p: &Payment, now: u64) -> U256 {
        let mut pending = lock(&self.pending);
        pending_sum(&mut pending, p, now, self.applied())
    }

    /// The last block applied (taken under `pending`: the lock order is `pending`, `state`).
    fn applied(&self) -> Option<u64> {
        lock(&self.state).block.map(|(n, _)| n)
    }

    /// A settle of ours was mined in `block`: it counts until the mirror has applied it.
    pub fn mined_in(&self, p: &Payment, block: u64) {
        if let Some(x) = lock(&self.pending)
            .get_mut(&(p.asset, p.payer))
            .and_then(|of| of.get_mut(&p.nonce))
        {
            x.mined_in = Some(block);
        }
    }

    /// A settle of ours is about to send (or sent) this payment.
    pub fn settling(&self, p: &Payment, valid_before: u64) {
        lock(&self.pending)
            .entry((p.asset, p.payer))
            .or_default()
            .insert(p.nonce, Pending::new(p.value, valid_before));
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
}
