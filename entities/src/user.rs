//! A user account (merchant or admin).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Lower-cased; unique.
    #[sea_orm(unique)]
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Settlements all the account's keys may still make together; `None` = unlimited.
    pub settle_credits: Option<i64>,
    /// Requests per second of all the account's keys together on `/verify`, `/settle`,
    /// `/supported`; `None` = the configured default, `0` = unlimited.
    pub rate_limit_per_second: Option<i32>,
    /// Native fee (wei, decimal string) the account's settlement transactions may spend per
    /// UTC day; `None` = unlimited.
    pub gas_budget_wei: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
