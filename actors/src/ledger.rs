//! The settlement ledger: queries and mutations of `settlements`.
//!
//! One row per payment (its method's ledger key), unique on (network, asset, payer,
//! auth_nonce): the insert is the idempotency point across requests and instances, so that one
//! payment is settled at most once and answered `success` once. Status moves
//! `pending -> submitted(tx hash) -> mined -> confirmed`, or to `failed`.

use alloy::primitives::{Address, B256};
use chrono::{DateTime, Utc};
use entities::settlement::{self, Column, Entity, Model};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QueryTrait, TransactionTrait,
};

use crate::webhooks::{self, EventType, SettlementRef};

mod fleet;
mod group;
mod lists;
mod many;
mod status;
mod svm;
pub use fleet::*;
pub use group::GroupWriter;
pub use lists::{age_secs, of_clients, unresolved_oldest, ListFilter, NextStep};
pub(crate) use many::id_lists;
pub use many::mark_mined_many;
pub use status::{is_success, Status, CONFIRMED, FAILED, MINED, PENDING, SUBMITTED};
pub use svm::*;

/// The identity of an authorization.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub network: String,
    pub asset: String,
    pub payer: String,
    pub auth_nonce: String,
}

impl Key {
    pub fn new(network: &str, asset: Address, payer: Address, nonce: B256) -> Self {
        Self {
            network: network.to_owned(),
            asset: asset.to_checksum(None),
            payer: payer.to_checksum(None),
            auth_nonce: nonce.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewSettlement {
    pub key: Key,
    /// The payee as its network writes it (EVM: checksummed hex; SVM: base58).
    pub pay_to: String,
    pub amount: String,
    pub valid_after: i64,
    pub valid_before: i64,
    pub x402_version: i16,
    pub request_hash: B256,
    pub payment_id: Option<String>,
    pub payload: serde_json::Value,
    pub client_id: Option<String>,
    /// The idempotency key of the claiming request (scoped by `client_id`).
    pub idempotency_key: Option<String>,
    /// The claiming instance.
    pub instance_id: String,
}

pub enum Claim {
    /// We inserted the row: we settle it.
    New(Model),
    /// The authorization has a row already.
    Existing(Model),
}

fn by_key(key: &Key) -> sea_orm::Select<Entity> {
    Entity::find()
        .filter(Column::Network.eq(&key.network))
        .filter(Column::Asset.eq(&key.asset))
        .filter(Column::Payer.eq(&key.payer))
        .filter(Column::AuthNonce.eq(&key.auth_nonce))
}

pub async fn find(db: &impl ConnectionTrait, key: &Key) -> Result<Option<Model>, DbErr> {
    by_key(key).one(db).await
}

/// Insert a `pending` row unless the authorization has one (`ON CONFLICT DO NOTHING`).
pub async fn claim(db: &impl ConnectionTrait, new: &NewSettlement) -> Result<Claim, DbErr> {
    let now = Utc::now();
    let key = &new.key;
    let row = settlement::ActiveModel {
        network: Set(key.network.clone()),
        asset: Set(key.asset.clone()),
        payer: Set(key.payer.clone()),
        auth_nonce: Set(key.auth_nonce.clone()),
        pay_to: Set(new.pay_to.clone()),
        amount: Set(new.amount.clone()),
        valid_after: Set(new.valid_after),
        valid_before: Set(new.valid_before),
        x402_version: Set(new.x402_version),
        request_hash: Set(new.request_hash.to_string()),
        payment_id: Set(new.payment_id.clone()),
        payload: Set(new.payload.clone()),
        status: Set(Status::Pending.as_str().to_owned()),
        client_id: Set(new.client_id.clone()),
        idempotency_key: Set(new.idempotency_key.clone()),
        instance_id: Set(Some(new.instance_id.clone())),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    // Two rounds at most: a row refused and forgotten (`forget_unsent`) between our insert and
    // our read is gone, and the authorization is free again.
    // The insert returns the row it made (one statement: no read after it); none when the
    // authorization has one, which is read.
    let mut insert = Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                Column::Network,
                Column::Asset,
                Column::Payer,
                Column::AuthNonce,
            ])
            .do_nothing()
            .to_owned(),
        )
        .into_query();
    insert.returning_all();
    let insert = db.get_database_backend().build(&insert);
    for _ in 0..2 {
        if let Some(model) = Model::find_by_statement(insert.clone()).one(db).await? {
            return Ok(Claim::New(model));
        }
        if let Some(model) = find(db, key).await? {
            return Ok(Claim::Existing(model));
        }
    }
    Err(DbErr::RecordNotFound(
        "settlement row vanished after insert".into(),
    ))
}

/// The row becomes the new claimant's: its request, client key and idempotency key.
fn claimed_by(
    update: sea_orm::UpdateMany<Entity>,
    new: &NewSettlement,
) -> sea_orm::UpdateMany<Entity> {
    update
        .col_expr(Column::Status, Expr::value(Status::Pending))
        .col_expr(Column::ErrorReason, Expr::value(Option::<String>::None))
        .col_expr(Column::PayTo, Expr::value(new.pay_to.clone()))
        .col_expr(Column::Amount, Expr::value(new.amount.clone()))
        .col_expr(Column::ValidAfter, Expr::value(new.valid_after))
        .col_expr(Column::ValidBefore, Expr::value(new.valid_before))
        .col_expr(Column::X402Version, Expr::value(new.x402_version))
        .col_expr(
            Column::RequestHash,
            Expr::value(new.request_hash.to_string()),
        )
        .col_expr(Column::PaymentId, Expr::value(new.payment_id.clone()))
        .col_expr(Column::Payload, Expr::value(new.payload.clone()))
        .col_expr(Column::ClientId, Expr::value(new.client_id.clone()))
        .col_expr(
            Column::IdempotencyKey,
            Expr::value(new.idempotency_key.clone()),
        )
        .col_expr(Column::InstanceId, Expr::value(new.instance_id.clone()))
        .col_expr(Column::QueuedAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
}

/// A failed row on which nothing was ever broadcast may be settled again: claim it back for
/// `new`.
pub async fn reclaim_unsent(
    db: &DatabaseConnection,
    id: i64,
    new: &NewSettlement,
) -> Result<bool, DbErr> {
    let res = claimed_by(Entity::update_many(), new)
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(Status::Failed))
        .filter(Column::TxHash.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// A pending row nobody has touched for this long, with no transaction, was abandoned (its
/// process died between claiming and sending). Younger ones may be another instance's work in
/// progress.
pub const ABANDONED_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// Pending, no transaction, untouched for `ABANDONED_AFTER`.
pub fn abandoned(row: &Model) -> bool {
    row.status == Status::Pending
        && row.tx_hash.is_none()
        && Utc::now() - row.updated_at > ABANDONED_AFTER
}

/// Take over an abandoned row for `new`, if nobody else did since it was read (optimistic: the
/// `updated_at` seen must still be there).
pub async fn reclaim_abandoned(
    db: &DatabaseConnection,
    row: &Model,
    new: &NewSettlement,
) -> Result<bool, DbErr> {
    let res = claimed_by(Entity::update_many(), new)
        .filter(Column::Id.eq(row.id))
        .filter(Column::Status.eq(Status::Pending))
        .filter(Column::TxHash.is_null())
        .filter(Column::UpdatedAt.eq(row.updated_at))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The lease a write is made under: it counts only while `holder` still holds the lease of
/// (`network`, `signer`) at `epoch` (the epoch fences a paused old holder off the ledger, and so
/// off the chain). Expiry alone does not fence: a
/// lease is only lost once another instance takes it over, which bumps the epoch; until then
/// a late renewal still drives the key alone.
#[derive(Debug, Clone, Copy)]
pub struct Fence<'a> {
    pub network: &'a str,
    pub signer: Address,
    pub holder: &'a str,
    pub epoch: i64,
}

impl Fence<'_> {
    pub(crate) fn holds(&self) -> sea_orm::sea_query::SimpleExpr {
        use entities::signer_lease::{Column as L, Entity as Leases};
        use sea_orm::sea_query::Query;
        Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(Leases)
                .and_where(L::Network.eq(self.network))
                .and_where(L::Signer.eq(self.signer.to_checksum(None)))
                .and_where(L::Holder.eq(self.holder))
                .and_where(L::Epoch.eq(self.epoch))
                .to_owned(),
        )
    }
}

/// Record the transaction about to be broadcast (before it is sent: a crash after the send
/// always leaves its hash here), under the signer's lease. `false`: the lease is lost, and
/// nothing may be sent.
pub async fn mark_submitted(
    db: &DatabaseConnection,
    id: i64,
    tx_hash: B256,
    nonce: u64,
    raw: &[u8],
    fence: &Fence<'_>,
) -> Result<bool, DbErr> {
    let res = Entity::update_many()
        .col_expr(Column::Status, Expr::value(Status::Submitted))
        .col_expr(Column::TxHash, Expr::value(tx_hash.to_string()))
        .col_expr(Column::Signer, Expr::value(fence.signer.to_checksum(None)))
        .col_expr(Column::SignerNonce, Expr::value(nonce as i64))
        .col_expr(Column::RawTx, Expr::value(alloy::hex::encode_prefixed(raw)))
        .col_expr(Column::InstanceId, Expr::value(fence.holder))
        .col_expr(Column::QueuedAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(fence.holds())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The node refused the transaction: nothing was broadcast after all.
pub async fn unmark_submitted(
    db: &DatabaseConnection,
    id: i64,
    tx_hash: B256,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::Status, Expr::value(Status::Pending))
        .col_expr(Column::TxHash, Expr::value(Option::<String>::None))
        .col_expr(Column::RawTx, Expr::value(Option::<String>::None))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::TxHash.eq(tx_hash.to_string()))
        .exec(db)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mined {
    pub success: bool,
    pub block_number: u64,
    pub gas_used: u64,
    pub fee_wei: u128,
    /// Deep enough already (`confirmations` ≤ 1): confirmed at once, not `mined`.
    pub final_at_once: bool,
}

/// Record a mined transaction. Only an unresolved row moves (a row is mined once); returns
/// whether this call moved it, so exactly one caller accounts for the transfer.
pub async fn mark_mined(
    db: &impl ConnectionTrait,
    id: i64,
    tx_hash: B256,
    mined: &Mined,
    reason_if_failed: &str,
) -> Result<bool, DbErr> {
    let done = mined_update(tx_hash, mined, reason_if_failed)
        .filter(Column::Id.eq(id))
        .filter(Column::Status.is_in([Status::Pending, Status::Submitted]))
        .exec(db)
        .await?;
    let moved = done.rows_affected == 1;
    if moved {
        // The webhook events, in the caller's transaction (the group commit's, or one of its
        // own): the settlement as it is now.
        for event in mined_events(mined) {
            webhooks::settlement_event(db, SettlementRef::Id(id), *event, None, false).await?;
        }
    }
    Ok(moved)
}

/// The change `mark_mined` makes to an unresolved row (the caller says which).
fn mined_update(
    tx_hash: B256,
    mined: &Mined,
    reason_if_failed: &str,
) -> sea_orm::UpdateMany<Entity> {
    let now = Utc::now();
    let update = Entity::update_many()
        .col_expr(
            Column::Status,
            Expr::value(match (mined.success, mined.final_at_once) {
                (false, _) => Status::Failed,
                (true, true) => Status::Confirmed,
                (true, false) => Status::Mined,
            }),
        )
        .col_expr(Column::TxHash, Expr::value(tx_hash.to_string()))
        .col_expr(Column::BlockNumber, Expr::value(mined.block_number as i64))
        .col_expr(Column::GasUsed, Expr::value(mined.gas_used as i64))
        .col_expr(Column::FeeWei, Expr::value(mined.fee_wei.to_string()))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .col_expr(Column::ConfirmedAt, Expr::value(now));
    if mined.success {
        update
    } else {
        update.col_expr(Column::ErrorReason, Expr::value(reason_if_failed))
    }
}

/// The webhook events of a row that `mark_mined` moved.
fn mined_events(mined: &Mined) -> &'static [EventType] {
    match (mined.success, mined.final_at_once) {
        (false, _) => &[EventType::SettlementFailed],
        (true, true) => &[EventType::SettlementMined, EventType::SettlementConfirmed],
        (true, false) => &[EventType::SettlementMined],
    }
}

/// What a row keeps of its payload once nothing will be sent for it: nothing. The signed
/// payload (its signature may be kilobytes) and the queued call are only ever needed to send.
fn without_payload(update: sea_orm::UpdateMany<Entity>) -> sea_orm::UpdateMany<Entity> {
    update
        .col_expr(Column::Payload, Expr::value(serde_json::json!({})))
        .col_expr(Column::CallTo, Expr::value(Option::<String>::None))
        .col_expr(Column::Calldata, Expr::value(Option::<String>::None))
}

/// A failure with nothing on chain (before or instead of a broadcast). The row stays, small,
/// for whoever waits on it (a retry of the same idempotent request, the instance that queued
/// it), until `purge_unsent`; a later settle may claim it again. `false` when the row has a
/// transaction (nothing was released).
pub async fn mark_failed_unsent(
    db: &DatabaseConnection,
    id: i64,
    reason: &str,
) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let done = without_payload(Entity::update_many())
        .col_expr(Column::Status, Expr::value(Status::Failed))
        .col_expr(Column::ErrorReason, Expr::value(reason))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::TxHash.is_null())
        .exec(&txn)
        .await?;
    let moved = done.rows_affected == 1;
    if moved {
        failed_after_pending(&txn, id).await?;
    }
    txn.commit().await?;
    Ok(moved)
}

/// A row failed with nothing sent: news (`settlement.failed`) only to an endpoint that was
/// told it was pending.
async fn failed_after_pending(db: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    webhooks::settlement_event(
        db,
        SettlementRef::Id(id),
        EventType::SettlementFailed,
        None,
        true,
    )
    .await
}

/// A claimed row refused before anything was sent, that nobody can be waiting on: deleted,
/// so that a refused payment leaves nothing behind. Only a `pending` row without a transaction
/// goes: one that has a transaction, or that another instance was handed (queued), stays.
pub async fn forget_unsent(db: &DatabaseConnection, id: i64) -> Result<(), DbErr> {
    Entity::delete_many()
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(Status::Pending))
        .filter(Column::TxHash.is_null())
        .filter(Column::QueuedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// How long a failed row with nothing sent is kept for those who wait on it (a waiter gives up
/// after a receipt timeout at most); past it, or once its authorization has expired, it goes.
pub const UNSENT_KEPT_FOR: chrono::Duration = chrono::Duration::minutes(10);

/// Delete failed rows on which nothing was ever sent, once untouched for `UNSENT_KEPT_FOR` or
/// past their `validBefore` (`now`, Unix seconds): they cannot be settled by anyone any more, or
/// may be claimed afresh. Never a row with a transaction. Returns how many went.
pub async fn purge_unsent(db: &DatabaseConnection, now: u64) -> Result<u64, DbErr> {
    use sea_orm::sea_query::Condition;
    let res = Entity::delete_many()
        .filter(Column::Status.eq(Status::Failed))
        .filter(Column::TxHash.is_null())
        .filter(
            Condition::any()
                .add(Column::UpdatedAt.lt(Utc::now() - UNSENT_KEPT_FOR))
                .add(Column::ValidBefore.lt(i64::try_from(now).unwrap_or(i64::MAX))),
        )
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// The signed transaction of a submitted row: its own, or, for a row a batch carries, the
/// batch's first row's (the bytes are kept once per transaction).
pub async fn raw_tx_of(
    db: &DatabaseConnection,
    row: &Model,
) -> Result<Option<alloy::primitives::Bytes>, DbErr> {
    let raw = match (&row.raw_tx, &row.tx_hash) {
        (Some(raw), _) => Some(raw.clone()),
        (None, Some(hash)) => Entity::find()
            .filter(Column::TxHash.eq(hash))
            .filter(Column::RawTx.is_not_null())
            .one(db)
            .await?
            .and_then(|r| r.raw_tx),
        (None, None) => None,
    };
    Ok(raw.and_then(|r| r.parse().ok()))
}

/// A client's own settlement in transaction `tx_hash` (`GET /settlements/{tx}`), written as the
/// ledger writes it (an EVM hash in lowercase 0x hex, a Solana signature in base58). The owner is
/// part of the query: a batch transaction carries the settlements of many keys, and another
/// key's row must neither hide this key's nor be shown to it.
pub async fn find_by_tx_hash(
    db: &DatabaseConnection,
    tx_hash: &str,
    client_id: &str,
) -> Result<Option<Model>, DbErr> {
    Entity::find()
        .filter(Column::TxHash.eq(tx_hash))
        .filter(Column::ClientId.eq(client_id))
        .order_by_desc(Column::Id)
        .one(db)
        .await
}

/// A client's own settlement of an authorization (`GET /settlements?network=&payer=&nonce=`);
/// with no asset given, the newest of the client's rows for it.
pub async fn find_by_authorization(
    db: &DatabaseConnection,
    network: &str,
    payer: Address,
    nonce: B256,
    asset: Option<Address>,
    client_id: &str,
) -> Result<Option<Model>, DbErr> {
    let mut query = Entity::find()
        .filter(Column::Network.eq(network))
        .filter(Column::Payer.eq(payer.to_checksum(None)))
        .filter(Column::AuthNonce.eq(nonce.to_string()))
        .filter(Column::ClientId.eq(client_id));
    if let Some(asset) = asset {
        query = query.filter(Column::Asset.eq(asset.to_checksum(None)));
    }
    query.order_by_desc(Column::Id).one(db).await
}

pub async fn find_by_id(db: &DatabaseConnection, id: i64) -> Result<Option<Model>, DbErr> {
    Entity::find_by_id(id).one(db).await
}

/// How many rows the transaction of row `id` carries: a batch's payments share its signer and
/// nonce, through every replacement. 1 for a row of its own (or not sent).
pub async fn payments_of_transaction(db: &DatabaseConnection, id: i64) -> Result<u64, DbErr> {
    let Some(row) = find_by_id(db, id).await? else {
        return Ok(1);
    };
    let (Some(signer), Some(nonce)) = (row.signer, row.signer_nonce) else {
        return Ok(1);
    };
    let n = Entity::find()
        .filter(Column::Network.eq(row.network))
        .filter(Column::Signer.eq(signer))
        .filter(Column::SignerNonce.eq(nonce))
        .count(db)
        .await?;
    Ok(n.max(1))
}

/// Mined rows of a network not yet `confirmations` deep, by signer and nonce (the order a
/// reorged signer's transactions must be re-sent in).
pub async fn mined_rows(db: &DatabaseConnection, network: &str) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .filter(Column::Network.eq(network))
        .filter(Column::Status.eq(Status::Mined))
        .order_by_asc(Column::Signer)
        .order_by_asc(Column::SignerNonce)
        .all(db)
        .await
}

/// A mined row is deep enough: confirmed.
pub async fn confirm(db: &DatabaseConnection, id: i64, block_number: u64) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let res = Entity::update_many()
        .col_expr(Column::Status, Expr::value(Status::Confirmed))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(Status::Mined))
        .filter(Column::BlockNumber.eq(block_number as i64))
        .exec(&txn)
        .await?;
    let moved = res.rows_affected == 1;
    if moved {
        webhooks::settlement_event(
            &txn,
            SettlementRef::Id(id),
            EventType::SettlementConfirmed,
            None,
            false,
        )
        .await?;
    }
    txn.commit().await?;
    Ok(moved)
}

/// A mined row's payment now sits in another block, or in another transaction (a reorg
/// re-included it, or the authorization was carried by someone else's transaction).
pub async fn remined(
    db: &DatabaseConnection,
    id: i64,
    tx_hash: B256,
    block_number: u64,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::Condition;
    let txn = db.begin().await?;
    let res = Entity::update_many()
        .col_expr(Column::TxHash, Expr::value(tx_hash.to_string()))
        .col_expr(Column::BlockNumber, Expr::value(block_number as i64))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(Status::Mined))
        .filter(
            Condition::any()
                .add(Column::TxHash.ne(tx_hash.to_string()))
                .add(Column::BlockNumber.ne(block_number as i64))
                .add(Column::BlockNumber.is_null()),
        )
        .exec(&txn)
        .await?;
    if res.rows_affected == 1 {
        webhooks::settlement_event(
            &txn,
            SettlementRef::Id(id),
            EventType::SettlementReorged,
            None,
            false,
        )
        .await?;
    }
    txn.commit().await
}

/// A mined row whose payment a reorg undid for good (re-sent, it reverted, and the
/// authorization is unused): failed after all.
pub async fn unmined(db: &DatabaseConnection, id: i64, reason: &str) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    let res = Entity::update_many()
        .col_expr(Column::Status, Expr::value(Status::Failed))
        .col_expr(Column::ErrorReason, Expr::value(reason))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(Status::Mined))
        .exec(&txn)
        .await?;
    if res.rows_affected == 1 {
        for event in [EventType::SettlementReorged, EventType::SettlementFailed] {
            webhooks::settlement_event(&txn, SettlementRef::Id(id), event, None, false).await?;
        }
    }
    txn.commit().await
}

/// Rows of a network whose outcome is not known yet (for start-up reconciliation).
pub async fn unresolved(db: &DatabaseConnection, network: &str) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .filter(Column::Network.eq(network))
        .filter(Column::Status.is_in([Status::Pending, Status::Submitted]))
        .order_by_asc(Column::Id)
        .all(db)
        .await
}
