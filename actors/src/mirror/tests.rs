//! The mirror's bookkeeping without a chain: eviction and the effect of each token log.

use std::collections::{HashMap, HashSet};

use alloy::primitives::{Address, B256, U256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;
use x402::exact::evm::IFiatTokenState as Token;

use super::follow::apply_log;
use super::seed::evict;
use super::{Account, State, TokenState};

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
