//! A payment channel (`batch-settlement`) this facilitator serves: its config, its on-chain
//! state as last read, and the highest voucher accepted. Amounts are 39-digit zero-padded
//! decimal strings (`uint128`), so that SQL compares them as numbers.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "channels")]
pub struct Model {
    /// 0x + 64 lowercase hex digits.
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel_id: String,
    /// The network's v1 name.
    pub network: String,
    pub payer: String,
    pub payer_authorizer: String,
    pub receiver: String,
    pub receiver_authorizer: String,
    pub token: String,
    pub withdraw_delay: i64,
    pub salt: String,
    pub balance: String,
    pub total_claimed: String,
    /// Unix seconds; 0: no withdrawal pending.
    pub withdraw_requested_at: i64,
    /// Decimal.
    pub refund_nonce: String,
    pub accepted: String,
    pub accepted_signature: Option<String>,
    /// The ledger row (`settlements.id`) of a deposit not mined yet whose voucher is the
    /// accepted one; `prior_*`: the voucher accepted before it, returned to if it fails.
    pub deposit_row: Option<i64>,
    pub prior_accepted: Option<String>,
    pub prior_signature: Option<String>,
    /// Unix seconds when the on-chain fields were read.
    pub synced_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
