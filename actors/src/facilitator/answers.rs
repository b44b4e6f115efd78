//! What verify and settle answer (the HTTP layer maps them to the wire).

use alloy::primitives::{Address, B256, U256};
use x402::Reason;

#[derive(Debug, Clone)]
pub struct VerifyAnswer {
    pub is_valid: bool,
    pub invalid_reason: Option<Reason>,
    pub payer: Option<Address>,
    pub cached: bool,
    /// The answer's `extra` (a payment channel's snapshot), when the method gives one.
    pub extra: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct SettleAnswer {
    pub success: bool,
    pub error_reason: Option<Reason>,
    pub transaction: Option<B256>,
    pub payer: Option<Address>,
    pub block_number: Option<u64>,
    pub amount: U256,
    /// This call mined the transaction; `false` for a repeated or concurrent settle of the
    /// same authorization answered with another call's outcome (and when nothing was mined).
    pub mined_here: bool,
    /// The answer's `extra` (a payment channel's `channelState`), when the method gives one.
    pub extra: Option<serde_json::Value>,
    /// The answer's `amount` is empty: the mined transaction moved no funds by its nature (a
    /// channel claim, which only updates accounting).
    pub amount_empty: bool,
}

impl VerifyAnswer {
    pub fn rejected(reason: Reason) -> Self {
        Self {
            is_valid: false,
            invalid_reason: Some(reason),
            payer: None,
            cached: false,
            extra: None,
        }
    }
}

impl SettleAnswer {
    pub fn rejected(reason: Reason) -> Self {
        Self::failed(reason, None, U256::ZERO)
    }

    pub(super) fn failed(reason: Reason, payer: Option<Address>, amount: U256) -> Self {
        Self {
            success: false,
            error_reason: Some(reason),
            transaction: None,
            payer,
            block_number: None,
            amount,
            mined_here: false,
            extra: None,
            amount_empty: false,
        }
    }
}
