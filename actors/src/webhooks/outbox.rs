//! The outbox: an event row per ledger change worth telling, written by the caller inside the
//! transaction of that change. Each insert is one `INSERT … SELECT` that copies the settlement
//! (or the key) as it is in that transaction, and inserts nothing unless the user owning the
//! key has an enabled endpoint that wants the event: an account without webhooks pays one
//! indexed `EXISTS` per change and stores nothing.

use chrono::Utc;
use entities::{client, settlement, webhook, webhook_event};
use sea_orm::sea_query::{Condition, Expr, OnConflict, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DbErr};
use sha2::{Digest, Sha256};

use super::EventType;
use crate::ledger::Key;

/// Which settlement an event is about.
#[derive(Debug, Clone, Copy)]
pub enum SettlementRef<'a> {
    Id(i64),
    Key(&'a Key),
}

/// A new event id: `evt_` and 32 hex digits.
fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

/// `EXISTS` an enabled endpoint of the key's user (`clients.user_id`) that wants `event`.
fn subscribed(event: EventType) -> SelectStatement {
    Query::select()
        .expr(Expr::val(1))
        .from(webhook::Entity)
        .and_where(
            Expr::col((webhook::Entity, webhook::Column::UserId))
                .equals((client::Entity, client::Column::UserId)),
        )
        .and_where(Expr::col((webhook::Entity, webhook::Column::Enabled)).eq(true))
        .and_where(
            Expr::col((webhook::Entity, webhook::Column::Events))
                .like(format!("%,{},%", event.as_str())),
        )
        .to_owned()
}

/// Record `event` about a settlement, as the settlement is now in this transaction (call it
/// after the change). `dedup_key`: an event that may be noticed more than once is stored
/// once. `after_pending`: only if a `settlement.pending` was told of this settlement (a
/// failure with nothing sent is news only to someone told it was pending).
pub async fn settlement_event(
    db: &impl ConnectionTrait,
    which: SettlementRef<'_>,
    event: EventType,
    dedup_key: Option<String>,
    after_pending: bool,
) -> Result<(), DbErr> {
    use settlement::Column as S;
    use webhook_event::Column as E;
    let s = settlement::Entity;
    let col = |c: S| Expr::col((s, c));
    let mut select = Query::select();
    select
        .expr(Expr::val(new_event_id()))
        .expr(Expr::val(event.as_str()))
        .expr(Expr::col((client::Entity, client::Column::UserId)))
        .expr(col(S::ClientId))
        .expr(col(S::Id))
        .expr(Expr::val(dedup_key))
        .expr(col(S::Network))
        .expr(col(S::Asset))
        .expr(col(S::Payer))
        .expr(col(S::AuthNonce))
        .expr(col(S::PayTo))
        .expr(col(S::Amount))
        .expr(col(S::Status))
        .expr(col(S::TxHash))
        .expr(col(S::BlockNumber))
        .expr(col(S::GasUsed))
        .expr(col(S::ErrorReason))
        .expr(col(S::ConfirmedAt))
        .expr(col(S::CreatedAt))
        .expr(Expr::val(Utc::now()))
        .from(s)
        .inner_join(
            client::Entity,
            Expr::col((client::Entity, client::Column::ClientId)).equals((s, S::ClientId)),
        )
        .and_where(Expr::exists(subscribed(event)));
    match which {
        SettlementRef::Id(id) => {
            select.and_where(col(S::Id).eq(id));
        }
        SettlementRef::Key(key) => {
            select
                .and_where(col(S::Network).eq(&key.network))
                .and_where(col(S::Asset).eq(&key.asset))
                .and_where(col(S::Payer).eq(&key.payer))
                .and_where(col(S::AuthNonce).eq(&key.auth_nonce));
        }
    }
    if after_pending {
        select.and_where(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(webhook_event::Entity)
                .and_where(Expr::col((webhook_event::Entity, E::SettlementId)).equals((s, S::Id)))
                .and_where(
                    Expr::col((webhook_event::Entity, E::EventType))
                        .eq(EventType::SettlementPending.as_str()),
                )
                .to_owned(),
        ));
    }
    let mut insert = Query::insert();
    insert
        .into_table(webhook_event::Entity)
        .columns([
            E::EventId,
            E::EventType,
            E::UserId,
            E::ClientId,
            E::SettlementId,
            E::DedupKey,
            E::Network,
            E::Asset,
            E::Payer,
            E::AuthNonce,
            E::PayTo,
            E::Amount,
            E::Status,
            E::TxHash,
            E::BlockNumber,
            E::GasUsed,
            E::ErrorReason,
            E::ConfirmedAt,
            E::SettlementCreatedAt,
            E::CreatedAt,
        ])
        .select_from(select)
        .map_err(|e| DbErr::Custom(format!("webhook event insert: {e}")))?
        .on_conflict(OnConflict::column(E::DedupKey).do_nothing().to_owned());
    db.execute(db.get_database_backend().build(&insert)).await?;
    Ok(())
}

/// `settlement_event` of each of `events` for each settlement of `ids` (in that order for
/// each), after one query per list of ids for those whose key's user has an enabled endpoint
/// wanting any of them: many settlements of accounts without webhooks cost a query or two, not
/// one insert each.
pub async fn settlement_events(
    db: &impl ConnectionTrait,
    ids: &[i64],
    events: &[EventType],
) -> Result<(), DbErr> {
    use settlement::Column as S;
    let s = settlement::Entity;
    let backend = db.get_database_backend();
    let mut wanting = Condition::any();
    for event in events {
        wanting = wanting.add(Expr::exists(subscribed(*event)));
    }
    for list in crate::ledger::id_lists(ids) {
        let select = Query::select()
            .column((s, S::Id))
            .from(s)
            .inner_join(
                client::Entity,
                Expr::col((client::Entity, client::Column::ClientId)).equals((s, S::ClientId)),
            )
            .and_where(Expr::col((s, S::Id)).is_in(list))
            .cond_where(wanting.clone())
            .to_owned();
        for row in db.query_all(backend.build(&select)).await? {
            let id = row.try_get::<i64>("", "id")?;
            for event in events {
                settlement_event(db, SettlementRef::Id(id), *event, None, false).await?;
            }
        }
    }
    Ok(())
}

/// The settle of `key` answered `settlement_pending` (naming `tx`, if one was sent): told
/// once per settlement and transaction, however many times it is answered so.
pub async fn announce_pending(
    db: &impl ConnectionTrait,
    key: &Key,
    tx: Option<alloy::primitives::B256>,
) -> Result<(), DbErr> {
    let seen = format!(
        "{}|{}|{}|{}|{}",
        key.network,
        key.asset,
        key.payer,
        key.auth_nonce,
        tx.map(|t| t.to_string()).unwrap_or_default()
    );
    let dedup = format!("pending:{}", hex::encode(Sha256::digest(seen.as_bytes())));
    settlement_event(
        db,
        SettlementRef::Key(key),
        EventType::SettlementPending,
        Some(dedup),
        false,
    )
    .await
}

/// The key `client_id` has `left` settle credits after a settle used one: `key.credits_low`
/// when that is the low mark, `key.budget_spent` at 0.
pub async fn key_credit_events(
    db: &impl ConnectionTrait,
    client_id: &str,
    left: i64,
    low_mark: i64,
) -> Result<(), DbErr> {
    let event = match left {
        0 => EventType::KeyBudgetSpent,
        n if n == low_mark => EventType::KeyCreditsLow,
        _ => return Ok(()),
    };
    use webhook_event::Column as E;
    let data = serde_json::json!({
        "key": { "clientId": client_id, "settleCredits": left, "lowMark": low_mark }
    })
    .to_string();
    let mut select = Query::select();
    select
        .expr(Expr::val(new_event_id()))
        .expr(Expr::val(event.as_str()))
        .expr(Expr::col((client::Entity, client::Column::UserId)))
        .expr(Expr::col((client::Entity, client::Column::ClientId)))
        .expr(Expr::val(data))
        .expr(Expr::val(Utc::now()))
        .from(client::Entity)
        .and_where(Expr::col((client::Entity, client::Column::ClientId)).eq(client_id))
        .and_where(Expr::exists(subscribed(event)));
    let mut insert = Query::insert();
    insert
        .into_table(webhook_event::Entity)
        .columns([
            E::EventId,
            E::EventType,
            E::UserId,
            E::ClientId,
            E::Data,
            E::CreatedAt,
        ])
        .select_from(select)
        .map_err(|e| DbErr::Custom(format!("webhook event insert: {e}")))?;
    db.execute(db.get_database_backend().build(&insert)).await?;
    Ok(())
}
