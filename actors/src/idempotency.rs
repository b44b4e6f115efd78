//! Idempotency keys of `/settle` (an `Idempotency-Key` header, or a v2 `payment-identifier`
//! id), stored in the database so that they survive a restart and are shared by the instances
//! on one database (IETF httpapi idempotency-key draft; x402 `payment_identifier.md`).
//!
//! A key belongs to one client key and is bound to the first request it came with (the
//! payment's canonical hash): the same key with another payment is a conflict. The answer to
//! that request is stored once it is final and replayed byte for byte to every repeat. Until
//! then a repeat settles again: the ledger answers a retry of the same idempotent request with
//! the first outcome (waiting for it while it is in flight), so nothing is sent twice.

use std::time::Duration;

use alloy::primitives::B256;
use chrono::Utc;
use entities::idempotency_key::{self, Column, Entity, Model};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

/// Where a key came from; the two never collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyKey {
    /// `Idempotency-Key` request header.
    Header(String),
    /// v2 `paymentPayload.extensions["payment-identifier"].info.id`.
    PaymentId(String),
}

impl IdempotencyKey {
    /// The stored form: prefixed by its source.
    pub fn stored(&self) -> String {
        match self {
            IdempotencyKey::Header(k) => format!("h:{k}"),
            IdempotencyKey::PaymentId(k) => format!("p:{k}"),
        }
    }
}

/// The longest `Idempotency-Key` accepted.
pub const MAX_KEY_LEN: usize = 255;

/// Parse an `Idempotency-Key` header value: a structured-field string (`"…"`) as the draft
/// defines it, or the bare token most clients send; 1–255 visible ASCII characters.
pub fn parse_header(raw: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    let key = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner,
        None => raw,
    };
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err("Idempotency-Key must be 1 to 255 characters");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err("Idempotency-Key must be visible ASCII characters (no quotes or backslashes)");
    }
    Ok(key.to_owned())
}

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub status: u16,
    pub body: String,
}

/// What to do with a request that carries a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The key is new: this request is the original.
    New,
    /// The key was first used with another request: 409.
    Conflict,
    /// The original's final answer: replay it.
    Replay(Stored),
    /// The original is still in flight, or its answer can still change
    /// (`settlement_pending`): settle again; the ledger answers with the first outcome.
    Retry,
}

fn by_key(client_id: &str, key: &str) -> sea_orm::Select<Entity> {
    Entity::find()
        .filter(Column::ClientId.eq(client_id))
        .filter(Column::IdemKey.eq(key))
}

fn stored(row: &Model) -> Option<Stored> {
    Some(Stored {
        status: row.response_status? as u16,
        body: row.response_body.clone()?,
    })
}

/// Record that `client_id` uses `key` for the request `request_hash` (`INSERT … ON CONFLICT DO
/// NOTHING` is the race-free point), or tell how the key was used before.
pub async fn begin(
    db: &DatabaseConnection,
    client_id: &str,
    key: &IdempotencyKey,
    request_hash: B256,
    ttl: Duration,
) -> Result<Begin, DbErr> {
    let key = key.stored();
    let hash = request_hash.to_string();
    // Two rounds at most: an expired key found in the first is deleted, then inserted anew.
    for _ in 0..2 {
        let now = Utc::now();
        let inserted = Entity::insert(idempotency_key::ActiveModel {
            client_id: Set(client_id.to_owned()),
            idem_key: Set(key.clone()),
            request_hash: Set(hash.clone()),
            response_status: Set(None),
            response_body: Set(None),
            is_final: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
            expires_at: Set(now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([Column::ClientId, Column::IdemKey])
                .do_nothing()
                .to_owned(),
        )
        .exec(db)
        .await;
        match inserted {
            Ok(_) => return Ok(Begin::New),
            Err(DbErr::RecordNotInserted) => {}
            Err(e) => return Err(e),
        }
        let Some(row) = by_key(client_id, &key).one(db).await? else {
            continue; // purged meanwhile: insert again
        };
        if row.expires_at <= now {
            Entity::delete_many()
                .filter(Column::Id.eq(row.id))
                .filter(Column::ExpiresAt.lte(now))
                .exec(db)
                .await?;
            continue;
        }
        if row.request_hash != hash {
            return Ok(Begin::Conflict);
        }
        return Ok(match stored(&row) {
            Some(answer) if row.is_final => Begin::Replay(answer),
            _ => Begin::Retry,
        });
    }
    // Still racing with a purge after two rounds: the request settles without replay.
    Ok(Begin::Retry)
}

/// Store an answer to the key's request, unless a final one is there already, and return the
/// answer every repeat must see: the stored final one if there is one, else `answer`.
pub async fn complete(
    db: &DatabaseConnection,
    client_id: &str,
    key: &IdempotencyKey,
    answer: Stored,
    is_final: bool,
) -> Result<Stored, DbErr> {
    let key = key.stored();
    Entity::update_many()
        .col_expr(Column::ResponseStatus, Expr::value(answer.status as i16))
        .col_expr(Column::ResponseBody, Expr::value(answer.body.clone()))
        .col_expr(Column::IsFinal, Expr::value(is_final))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::ClientId.eq(client_id))
        .filter(Column::IdemKey.eq(&key))
        .filter(Column::IsFinal.eq(false))
        .exec(db)
        .await?;
    let row = by_key(client_id, &key).one(db).await?;
    Ok(row
        .filter(|r| r.is_final)
        .and_then(|r| stored(&r))
        .unwrap_or(answer))
}

/// Delete keys past their expiry; returns how many.
pub async fn purge_expired(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let res = Entity::delete_many()
        .filter(Column::ExpiresAt.lte(Utc::now()))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_parse_as_the_draft_and_as_clients_send_them() {
        assert_eq!(parse_header("\"8e03978e-40d5\"").unwrap(), "8e03978e-40d5");
        assert_eq!(parse_header(" order-42 ").unwrap(), "order-42");
        assert!(parse_header("").is_err());
        assert!(parse_header("\"\"").is_err());
        assert!(parse_header("has space").is_err());
        assert!(parse_header(&"k".repeat(256)).is_err());
        assert!(parse_header(&"k".repeat(255)).is_ok());
        assert!(parse_header("tab\there").is_err());
    }

    #[test]
    fn header_keys_and_payment_ids_never_collide() {
        let a = IdempotencyKey::Header("same_id_0123456789".into());
        let b = IdempotencyKey::PaymentId("same_id_0123456789".into());
        assert_ne!(a.stored(), b.stored());
    }
}
