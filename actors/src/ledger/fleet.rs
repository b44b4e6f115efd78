//! The ledger across a fleet: rows queued for a signer lease holder, taken, and the rows of
//! dead instances adopted.

use super::*;

/// Hand a claimed row to whichever instance holds a signer lease of its network: it waits,
/// with the call to make, until a holder takes it (`take_queued`).
pub async fn queue(
    db: &DatabaseConnection,
    id: i64,
    to: Address,
    calldata: &[u8],
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::QueuedAt, Expr::value(Utc::now()))
        .col_expr(Column::CallTo, Expr::value(to.to_checksum(None)))
        .col_expr(
            Column::Calldata,
            Expr::value(alloy::hex::encode_prefixed(calldata)),
        )
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(Status::Pending))
        .filter(Column::TxHash.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Nobody took a queued row in time: it fails with nothing sent, unless a holder took it
/// meanwhile (`false`).
pub async fn unqueue(db: &DatabaseConnection, id: i64, reason: &str) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let res = without_payload(Entity::update_many())
        .col_expr(Column::Status, Expr::value(Status::Failed))
        .col_expr(Column::ErrorReason, Expr::value(reason))
        .col_expr(Column::QueuedAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(Status::Pending))
        .filter(Column::QueuedAt.is_not_null())
        .filter(Column::TxHash.is_null())
        .exec(&txn)
        .await?;
    let moved = res.rows_affected == 1;
    if moved {
        failed_after_pending(&txn, id).await?;
    }
    txn.commit().await?;
    Ok(moved)
}

/// Take up to `limit` queued rows of `network` for `holder` to send: each goes to exactly one
/// holder (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer anyway).
pub async fn take_queued(
    db: &DatabaseConnection,
    network: &str,
    holder: &str,
    limit: u64,
) -> Result<Vec<Model>, DbErr> {
    use sea_orm::sea_query::{LockBehavior, LockType, Query};
    use sea_orm::{ConnectionTrait, DatabaseBackend};
    let backend = db.get_database_backend();
    let mut pick = Query::select();
    pick.column(Column::Id)
        .from(Entity)
        .and_where(Column::Network.eq(network))
        .and_where(Column::Status.eq(Status::Pending))
        .and_where(Column::QueuedAt.is_not_null())
        .and_where(Column::TxHash.is_null())
        .order_by(Column::Id, sea_orm::Order::Asc)
        .limit(limit);
    if backend == DatabaseBackend::Postgres {
        pick.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let take = Query::update()
        .table(Entity)
        .value(Column::QueuedAt, Option::<DateTime<Utc>>::None)
        .value(Column::InstanceId, holder)
        .value(Column::UpdatedAt, Utc::now())
        .and_where(Column::Id.in_subquery(pick.to_owned()))
        .returning_all()
        .to_owned();
    Entity::find()
        .from_raw_sql(backend.build(&take))
        .all(db)
        .await
}

/// Unresolved rows of `network` whose responsible instance is not among `live`: their
/// instance died (or stopped) before finishing them.
pub async fn orphans(
    db: &DatabaseConnection,
    network: &str,
    live: &[String],
) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .filter(Column::Network.eq(network))
        .filter(Column::Status.is_in([Status::Pending, Status::Submitted]))
        .filter(Column::InstanceId.is_not_null())
        .filter(Column::InstanceId.is_not_in(live.iter().cloned()))
        .order_by_asc(Column::Id)
        .all(db)
        .await
}

/// Make `instance` responsible for an orphaned row, if it is still `from`'s.
pub async fn adopt(
    db: &DatabaseConnection,
    id: i64,
    from: &str,
    instance: &str,
) -> Result<bool, DbErr> {
    let res = Entity::update_many()
        .col_expr(Column::InstanceId, Expr::value(instance))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::InstanceId.eq(from))
        .filter(Column::Status.is_in([Status::Pending, Status::Submitted]))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Submitted rows of one signer (a lease just taken over: its previous holder's in flight).
pub async fn in_flight_of(
    db: &DatabaseConnection,
    network: &str,
    signer: Address,
) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .filter(Column::Network.eq(network))
        .filter(Column::Signer.eq(signer.to_checksum(None)))
        .filter(Column::Status.eq(Status::Submitted))
        .order_by_asc(Column::SignerNonce)
        .all(db)
        .await
}
