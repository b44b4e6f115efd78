//! The webhook outbox: one row per event, written in the transaction of the ledger change that
//! causes it. A settlement event keeps the settlement as it was then (the columns of
//! `GET /settlements/{tx}`); a key event keeps its data as JSON.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `evt_<32 hex>`: sent in the body and the `X402-Event-Id` header; receivers drop
    /// duplicates by it.
    pub event_id: String,
    pub event_type: String,
    pub user_id: i64,
    pub client_id: Option<String>,
    pub settlement_id: Option<i64>,
    /// Unique when set: an event that may be noticed more than once is written once.
    #[sea_orm(unique)]
    pub dedup_key: Option<String>,
    pub network: Option<String>,
    pub asset: Option<String>,
    pub payer: Option<String>,
    pub auth_nonce: Option<String>,
    pub pay_to: Option<String>,
    pub amount: Option<String>,
    pub status: Option<String>,
    pub tx_hash: Option<String>,
    pub block_number: Option<i64>,
    pub gas_used: Option<i64>,
    pub error_reason: Option<String>,
    pub confirmed_at: Option<DateTimeUtc>,
    pub settlement_created_at: Option<DateTimeUtc>,
    /// A key event's data (JSON text).
    pub data: Option<String>,
    /// Deliveries were made for it (one per matching endpoint).
    pub fanned_out: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
