//! x402 rollup: one row per (day, client, network, asset, operation, outcome).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "x402_metrics_daily")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub day: Date,
    pub client_id: String,
    pub network: String,
    pub asset: String,
    /// `verify` or `settle`.
    pub operation: String,
    /// `success` or a reason string.
    pub outcome: String,
    pub count: i64,
    /// Decimal string, atomic units.
    pub amount_sum: String,
    pub gas_used_sum: i64,
    /// Decimal string, the network's smallest native unit: wei on EVM networks, lamports on
    /// SVM networks.
    pub fee_wei_sum: String,
    pub total_latency_us: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
