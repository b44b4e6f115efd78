//! The events the metrics add up: one HTTP request, one verify or settle outcome, one mined
//! settlement transaction; and the outcome words the rollups and reports share.

use std::time::Duration;

use alloy_primitives::U256;
use chrono::NaiveDate;

/// One HTTP request, as the middleware saw it.
#[derive(Debug, Clone)]
pub struct HttpEvent {
    pub day: NaiveDate,
    pub method: String,
    /// The matched route pattern (`/api/v1/clients/{id}`), never the raw path.
    pub route: String,
    pub status: u16,
    pub latency: Duration,
}

/// One verify or settle outcome.
#[derive(Debug, Clone)]
pub struct X402Event {
    pub day: NaiveDate,
    pub client_id: String,
    /// v1 network name.
    pub network: String,
    pub asset: String,
    pub operation: Operation,
    /// `success`, `success_repeat` (settle only), or the reason string.
    pub outcome: String,
    pub amount: U256,
    /// Gas of an EVM transaction; 0 on SVM networks (compute units are not counted).
    pub gas_used: u64,
    /// The transaction's fee in the network's smallest native unit: wei on EVM networks,
    /// lamports on SVM networks.
    pub fee_wei: U256,
    pub latency: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Verify,
    Settle,
    /// A settlement transaction mined, or on SVM landed (once per ledger row): outcome
    /// `confirmed` or `reverted` (on SVM: landed with an error, its fee paid), with the amount
    /// moved, gas and fee. An SVM transaction that expired unlanded is none.
    Transfer,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Verify => "verify",
            Operation::Settle => "settle",
            Operation::Transfer => "transfer",
        }
    }
}

pub const CONFIRMED: &str = "confirmed";
pub const REVERTED: &str = "reverted";

pub const SUCCESS: &str = "success";
/// A settle answered with the outcome of an earlier (or concurrent) settle of the same
/// authorization: a success for the caller, but no money moved and no fee paid by this call.
pub const SUCCESS_REPEAT: &str = "success_repeat";

/// Whether an outcome string is a success (first or repeated).
pub fn is_success(outcome: &str) -> bool {
    outcome == SUCCESS || outcome == SUCCESS_REPEAT
}
