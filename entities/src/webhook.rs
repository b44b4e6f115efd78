//! A user's webhook endpoint: where events are POSTed, which ones, and the secret they are
//! signed with.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub url: String,
    /// The events wanted, comma-separated and comma-wrapped: `,settlement.mined,key.credits_low,`.
    pub events: String,
    /// JSON array of client ids, or null: every key of the user.
    pub client_ids: Option<String>,
    /// JSON array of resource ids, or null: every resource.
    pub resource_ids: Option<String>,
    /// The HMAC-SHA256 signing secret (`whsec_…`).
    pub secret: String,
    pub enabled: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
