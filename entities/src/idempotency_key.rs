//! An idempotency key of one client key (`Idempotency-Key` header or v2 `payment-identifier`):
//! the request it was first used with and, once known, the answer to replay.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub client_id: String,
    /// The key, prefixed by where it came from (`h:` header, `p:` payment identifier).
    pub idem_key: String,
    /// The canonical hash of the first request's payment (`PaymentRequest::request_hash`).
    pub request_hash: String,
    pub response_status: Option<i16>,
    /// The answer's JSON body, byte for byte as first sent.
    pub response_body: Option<String>,
    /// The answer cannot change any more (anything but `settlement_pending`).
    pub is_final: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
