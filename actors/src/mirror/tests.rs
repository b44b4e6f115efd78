//! The mirror's bookkeeping without a chain: eviction, the effect of each token log, and
//! judging from the mirrored state with our pending settles.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::RootProvider;
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;
use tokio::sync::watch;
use x402::exact::evm::IFiatTokenState as Token;
use x402::Reason;

use super::follow::apply_log;
use super::seed::evict;
use super::{lock, Account, Fallback, Judged, Mirror, MirrorConfig, Payment, State, TokenState};
use crate::chain::SeenHead;

fn account(touched: u64) -> Account {
    Account {
        balance: U256::from(10),
        blacklisted: false,
        has_code: false,
        used: HashSet::new(),
        history: true,
        free: HashSet::new(),
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

/// A mirror at block 5 (the probe's last head, just seen) holding `payer` with a balance of
/// 10 and `pay_to`; its provider is never called.
fn mirror_at_head(asset: Address, payer: Address, pay_to: Address) -> Arc<Mirror> {
    let hash = B256::repeat_byte(5);
    let head = SeenHead {
        number: 5,
        hash,
        timestamp: 0,
        seen_at: Instant::now(),
    };
    let config = MirrorConfig {
        max_accounts: 16,
        max_head_age: Duration::from_secs(60),
    };
    let provider = RootProvider::new_http("http://127.0.0.1:1".parse().unwrap());
    let mirror = Mirror::new(
        "base",
        vec![asset],
        config,
        provider,
        watch::channel(Some(head)).1,
        None,
    );
    let mut s = lock(&mirror.state);
    s.block = Some((5, hash));
    let mut t = TokenState {
        paused: false,
        accounts: HashMap::new(),
    };
    t.accounts.insert(payer, account(0));
    t.accounts.insert(pay_to, account(0));
    s.tokens.insert(asset, t);
    drop(s);
    mirror
}

#[test]
fn judging_counts_our_pending_settles_and_used_nonces() {
    let (asset, payer, pay_to) = (
        Address::repeat_byte(0xaa),
        Address::repeat_byte(1),
        Address::repeat_byte(2),
    );
    let mirror = mirror_at_head(asset, payer, pay_to);
    let pay = |value: u64, nonce: u8| Payment {
        asset,
        payer,
        pay_to,
        value: U256::from(value),
        nonce: B256::repeat_byte(nonce),
    };
    let now = 1_000;
    assert_eq!(mirror.judge(&pay(10, 1), now), Judged::Valid);
    assert_eq!(
        mirror.judge(&pay(11, 1), now),
        Judged::Refused(Reason::InsufficientFunds)
    );

    // A settle of 8 in flight leaves 2 for any other payment of this payer, not for itself.
    assert_eq!(mirror.reserve(&pay(8, 1), now, now + 60), Judged::Valid);
    assert_eq!(mirror.judge(&pay(8, 1), now), Judged::Valid);
    assert_eq!(
        mirror.judge(&pay(3, 2), now),
        Judged::Refused(Reason::InsufficientFunds)
    );
    assert_eq!(mirror.judge(&pay(2, 2), now), Judged::Valid);
    // Past its `valid_before` it can no longer go through: it stops counting.
    assert_eq!(mirror.judge(&pay(3, 2), now + 60), Judged::Valid);
    mirror.settling(&pay(8, 1), now + 60);
    mirror.not_settled(&pay(8, 1));
    assert_eq!(mirror.judge(&pay(10, 2), now), Judged::Valid);

    lock(&mirror.state)
        .tokens
        .get_mut(&asset)
        .unwrap()
        .accounts
        .get_mut(&payer)
        .unwrap()
        .used
        .insert(B256::repeat_byte(3));
    assert_eq!(
        mirror.judge(&pay(1, 3), now),
        Judged::Refused(Reason::InvalidExactEvmNonceAlreadyUsed)
    );
    let stranger = Payment {
        payer: Address::repeat_byte(9),
        ..pay(1, 4)
    };
    assert_eq!(
        mirror.judge(&stranger, now),
        Judged::Fallback(Fallback::UnknownAccount)
    );
    // Not at the probe's last head: nothing is answered.
    lock(&mirror.state).block = Some((4, B256::repeat_byte(4)));
    assert_eq!(
        mirror.judge(&pay(1, 1), now),
        Judged::Fallback(Fallback::Stale)
    );
}

/// A settle of ours that logs no `AuthorizationUsed` (Permit2) counts against its payer until
/// the mirror has applied the block that mined it; from then on the balance holds it.
#[test]
fn a_mined_settle_counts_until_its_block_is_applied() {
    let (asset, payer, pay_to) = (
        Address::repeat_byte(0xaa),
        Address::repeat_byte(1),
        Address::repeat_byte(2),
    );
    let mirror = mirror_at_head(asset, payer, pay_to);
    let pay = |value: u64, nonce: u8| Payment {
        asset,
        payer,
        pay_to,
        value: U256::from(value),
        nonce: B256::repeat_byte(nonce),
    };
    let now = 1_000;
    // A Permit2 settle of 8 (its nonce is Permit2's, never in an `AuthorizationUsed`).
    mirror.settling(&pay(8, 0x77), now + 3600);
    assert_eq!(
        mirror.judge(&pay(3, 1), now),
        Judged::Refused(Reason::InsufficientFunds)
    );
    // Mined in block 6; the mirror is still at 5: it still counts.
    mirror.mined_in(&pay(8, 0x77), 6);
    assert_eq!(
        mirror.judge(&pay(3, 1), now),
        Judged::Refused(Reason::InsufficientFunds)
    );
    // Mined in a block the mirror has applied (its Transfer is in the balance): it no longer
    // counts, so it is not taken twice.
    mirror.mined_in(&pay(8, 0x77), 5);
    assert_eq!(mirror.judge(&pay(10, 1), now), Judged::Valid);
    let mut pending = lock(&mirror.pending);
    super::judge::prune(&mut pending, now, Some(5));
    assert!(pending.is_empty(), "pruned once its block is applied");
}

/// An account seeded without its history (the node refused `eth_getLogs` from block 0): a
/// nonce is judged from memory only once read free; a use seen later wins.
#[test]
fn without_history_a_nonce_is_judged_only_once_read() {
    let (asset, payer, pay_to) = (
        Address::repeat_byte(0xaa),
        Address::repeat_byte(1),
        Address::repeat_byte(2),
    );
    let mirror = mirror_at_head(asset, payer, pay_to);
    let account = |m: &Mirror, f: &dyn Fn(&mut Account)| {
        f(lock(&m.state)
            .tokens
            .get_mut(&asset)
            .unwrap()
            .accounts
            .get_mut(&payer)
            .unwrap())
    };
    account(&mirror, &|a| a.history = false);
    let pay = Payment {
        asset,
        payer,
        pay_to,
        value: U256::from(1),
        nonce: B256::repeat_byte(7),
    };
    assert_eq!(
        mirror.judge(&pay, 0),
        Judged::Fallback(Fallback::UnknownNonce)
    );
    account(&mirror, &|a| {
        a.free.insert(B256::repeat_byte(7));
    });
    assert_eq!(mirror.judge(&pay, 0), Judged::Valid);
    // Its `AuthorizationUsed` arrives: used, whatever was read before.
    let mut s = lock(&mirror.state);
    let used_log = Token::AuthorizationUsed {
        authorizer: payer,
        nonce: B256::repeat_byte(7),
    };
    let l = Log {
        inner: alloy::primitives::Log {
            address: asset,
            data: used_log.encode_log_data(),
        },
        ..Default::default()
    };
    assert!(apply_log(&mut s, &l, &mut Vec::new()).is_none());
    drop(s);
    assert_eq!(
        mirror.judge(&pay, 0),
        Judged::Refused(Reason::InvalidExactEvmNonceAlreadyUsed)
    );
}
