//! Settlement: sending a network's settlement transactions and learning their outcome.
//!
//! - `actor`: `SettlementActor`, one per (network, signer key), the owner of its signer's
//!   nonce: assigns it, signs, records the hash under the signer's lease, broadcasts.
//! - `router`: `SettlementRouter`, which spreads a network's transactions over the signers held
//!   here, and each signer's state (`SignerStats`: lease, funds, load).
//! - `watcher`: `ReceiptWatcher`, one per network, which hands each awaited transaction its
//!   receipt.
//! - `fees`: `FeePolicy`, EIP-1559 fees under the network's cap, a transaction's gas limit.
//! - `batch`: several payments in one Multicall3 transaction.
//!
//! What a caller sends (`Broadcast`) and gets back (`Broadcasted`, `BroadcastError`) is here.

use std::collections::HashMap;

use actix::prelude::*;
use alloy::primitives::{Address, Bytes, B256};
use alloy::signers::local::PrivateKeySigner;

mod actor;
pub mod batch;
mod fees;
mod router;
mod watcher;

pub use actor::{NetworkSide, SettlementActor, LEASE_LOST};
pub use fees::{fees_now, FeePolicy, GAS_MARGIN};
pub use router::{InFlight, SettlementRouter, SignerSnapshot, SignerStats};
pub use watcher::ReceiptWatcher;

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

    const KEY_A: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    const KEY_B: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

    #[test]
    fn signer_keys_are_read_once_each_in_order() {
        let raw = format!("{KEY_A},\n# a comment\n {KEY_B} \n{KEY_A}\n");
        let keys = parse_signer_keys(&raw).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys[0].address(),
            KEY_A.parse::<PrivateKeySigner>().unwrap().address()
        );
        assert_eq!(
            keys[1].address(),
            KEY_B.parse::<PrivateKeySigner>().unwrap().address()
        );
        assert!(parse_signer_keys("").unwrap().is_empty());
    }

    #[test]
    fn a_bad_signer_key_is_named_by_position_never_echoed() {
        let err = parse_signer_keys(&format!("{KEY_A},0xdeadbeef")).unwrap_err();
        assert_eq!(err, "signer key #2 is not a 32-byte hex private key");
        assert!(!err.contains("deadbeef"));
    }
}
