//! A client API key: public `client_id`, secret token stored only as a keyed hash.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clients")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub client_id: String,
    pub user_id: i64,
    pub title: String,
    /// Comma-separated operations, e.g. `verify,settle`.
    pub scope: String,
    /// Comma-separated v1 network names the key may pay on; `None` = all served networks.
    pub networks: Option<String>,
    /// Settlements the key may still make; `None` = unlimited.
    pub settle_credits: Option<i64>,
    /// Hex HMAC-SHA256 of the token under the server's client-token key.
    pub token_hash: String,
    pub created_at: DateTimeUtc,
    pub expires_at: Option<DateTimeUtc>,
    /// Set when the key is revoked (soft delete).
    pub revoked_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
    /// Set while the owner has paused the key (it authenticates nothing until resumed).
    pub paused_at: Option<DateTimeUtc>,
    /// Requests per second on `/verify`, `/settle`, `/supported`; `None` = the default.
    pub rate_limit_per_second: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
