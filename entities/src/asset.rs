//! A token accepted for payment on one network.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "assets")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// v1 network name, e.g. `base-sepolia`.
    pub network: String,
    /// EIP-55 checksummed address.
    pub address: String,
    pub symbol: String,
    pub decimals: i16,
    /// EIP-712 domain name/version of the token (EIP-3009 signatures are bound to them).
    pub eip712_name: Option<String>,
    pub eip712_version: Option<String>,
    pub active: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
