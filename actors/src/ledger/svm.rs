//! The ledger's SVM rows: marked as sent (the signature before the send), unmarked, resolved.

use super::*;

/// An SVM settlement about to be sent: its signature (the transaction's id, base58), the fee
/// payer, the signed transaction (base64) and the fee it costs if it lands (lamports), written before the send so that a crash after
/// it always leaves a row naming the transaction.
pub async fn mark_svm_submitted(
    db: &DatabaseConnection,
    id: i64,
    signature: &str,
    fee_payer: &str,
    signed_base64: &str,
    fee_lamports: u64,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::Status, Expr::value(Status::Submitted))
        .col_expr(Column::FeeWei, Expr::value(fee_lamports.to_string()))
        .col_expr(Column::TxHash, Expr::value(signature))
        .col_expr(Column::Signer, Expr::value(fee_payer))
        .col_expr(Column::RawTx, Expr::value(signed_base64))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// An SVM settlement the node refused before broadcasting it (its preflight failed): nothing
/// was sent, so the row fails without a transaction and may be claimed again.
pub async fn unmark_svm_submitted(
    db: &DatabaseConnection,
    id: i64,
    reason: &str,
) -> Result<(), DbErr> {
    without_payload(Entity::update_many())
        .col_expr(Column::Status, Expr::value(Status::Failed))
        .col_expr(Column::TxHash, Expr::value(Option::<String>::None))
        .col_expr(Column::RawTx, Expr::value(Option::<String>::None))
        .col_expr(Column::ErrorReason, Expr::value(reason))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// An SVM settlement's outcome: landed (`confirmed`, at `slot`, its fee in lamports) or failed
/// (landed with an error, or its blockhash expired unlanded). Only an unresolved row moves:
/// `true` when this call moved it.
pub async fn resolve_svm(
    db: &DatabaseConnection,
    id: i64,
    landed: Option<(u64, u64)>,
    error: Option<&str>,
) -> Result<bool, DbErr> {
    let now = Utc::now();
    let mut update = Entity::update_many().col_expr(Column::UpdatedAt, Expr::value(now));
    update = match (landed, error) {
        (Some((slot, fee)), None) => update
            .col_expr(Column::Status, Expr::value(Status::Confirmed))
            .col_expr(Column::BlockNumber, Expr::value(slot as i64))
            .col_expr(Column::FeeWei, Expr::value(fee.to_string()))
            .col_expr(Column::ConfirmedAt, Expr::value(now)),
        (landed, error) => update
            .col_expr(Column::Status, Expr::value(Status::Failed))
            .col_expr(Column::BlockNumber, Expr::value(landed.map(|l| l.0 as i64)))
            .col_expr(
                Column::ErrorReason,
                Expr::value(error.unwrap_or("transaction_failed")),
            ),
    };
    let done = update
        .filter(Column::Id.eq(id))
        .filter(Column::Status.is_in([Status::Pending, Status::Submitted]))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}
