//! Which instance drives a (network, signer key), under which epoch, until when.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signer_leases")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub network: String,
    pub signer: String,
    /// The holder's instance id.
    pub holder: String,
    /// Bumped at every takeover: writes under an older epoch are refused.
    pub epoch: i64,
    pub expires_at: DateTimeUtc,
    pub renewed_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
