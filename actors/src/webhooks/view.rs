//! The settlement as `GET /api/v1/settlements/{tx}` shows it: that answer's body, and each
//! settlement event's data (from the copy the outbox took with the event).

use chrono::{DateTime, Utc};
use entities::{settlement, webhook_event};
use serde::Serialize;
use utoipa::ToSchema;

/// A settlement of this client key, by transaction (`GET /api/v1/settlements/{tx}`).
// Fields in alphabetical order of their wire names, the order this answer has always had.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settlement {
    pub amount: String,
    pub asset: String,
    pub block_number: i64,
    #[schema(required = true)]
    pub confirmed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub error_reason: String,
    #[schema(required = true)]
    pub gas_used: Option<i64>,
    pub network: String,
    /// The EIP-3009 authorization nonce.
    pub nonce: String,
    pub pay_to: String,
    pub payer: String,
    /// `pending` or `submitted` (not mined yet: ask again), `mined` (paid; not yet
    /// `confirmations` blocks deep), `confirmed` (paid, deep enough) or `failed`.
    #[schema(example = "confirmed")]
    pub status: String,
    /// `mined` or `confirmed`: the payment moved.
    pub success: bool,
    #[schema(required = true)]
    pub transaction: Option<String>,
}

impl From<settlement::Model> for Settlement {
    fn from(row: settlement::Model) -> Self {
        Self {
            amount: row.amount,
            asset: row.asset,
            block_number: row.block_number.unwrap_or(0),
            confirmed_at: row.confirmed_at,
            created_at: row.created_at,
            error_reason: row.error_reason.unwrap_or_default(),
            gas_used: row.gas_used,
            network: row.network,
            nonce: row.auth_nonce,
            pay_to: row.pay_to,
            payer: row.payer,
            success: crate::ledger::is_success(&row.status),
            status: row.status,
            transaction: row.tx_hash,
        }
    }
}

impl Settlement {
    /// The settlement as a settlement event copied it (`None`: a key event).
    pub fn of_event(e: &webhook_event::Model) -> Option<Self> {
        e.settlement_id?;
        let status = e.status.clone().unwrap_or_default();
        Some(Self {
            amount: e.amount.clone().unwrap_or_default(),
            asset: e.asset.clone().unwrap_or_default(),
            block_number: e.block_number.unwrap_or(0),
            confirmed_at: e.confirmed_at,
            created_at: e.settlement_created_at.unwrap_or(e.created_at),
            error_reason: e.error_reason.clone().unwrap_or_default(),
            gas_used: e.gas_used,
            network: e.network.clone().unwrap_or_default(),
            nonce: e.auth_nonce.clone().unwrap_or_default(),
            pay_to: e.pay_to.clone().unwrap_or_default(),
            payer: e.payer.clone().unwrap_or_default(),
            success: crate::ledger::is_success(&status),
            status,
            transaction: e.tx_hash.clone(),
        })
    }
}

/// The body POSTed for one event (and signed).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventBody {
    /// `evt_…`, also in the `X402-Event-Id` header: the same for every attempt and
    /// redelivery, so a receiver drops what it has seen.
    #[schema(example = "evt_7f9c2b1e0a8d4c6b9e3f1a2b3c4d5e6f")]
    pub id: String,
    /// `settlement.mined`, `settlement.confirmed`, `settlement.failed`, `settlement.pending`,
    /// `settlement.reorged`, `key.credits_low` or `key.budget_spent`.
    #[serde(rename = "type")]
    #[schema(example = "settlement.confirmed")]
    pub kind: String,
    /// When the event happened (Unix seconds).
    pub created: i64,
    /// `{"settlement": …}` (the settlement when the event happened, as
    /// `GET /api/v1/settlements/{tx}` shows it) or `{"key": {clientId, settleCredits, lowMark}}`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl EventBody {
    pub fn of(e: &webhook_event::Model) -> Self {
        let data = match Settlement::of_event(e) {
            Some(s) => serde_json::json!({ "settlement": s }),
            None => e
                .data
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_else(|| serde_json::json!({})),
        };
        Self {
            id: e.event_id.clone(),
            kind: e.event_type.clone(),
            created: e.created_at.timestamp(),
            data,
        }
    }
}
