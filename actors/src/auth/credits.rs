//! Settle credits: the balance of a key (`clients.settle_credits`) and of an account
//! (`users.settle_credits`, see `accounts`), how the operator changes one, and how a settle uses
//! and gives back a key's.
//!
//! The balances live in the database, not in the auth actor: every instance of the fleet
//! spends them, and only a conditional update (`settle_credits > 0`) is atomic across all of
//! them. So these are plain functions over the connection.

use entities::client;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};

use crate::error::{ServiceError, ServiceResult};

/// How an operator changes a key's settle credits.
#[derive(Debug, Clone, Copy)]
pub enum CreditChange {
    /// Exactly this many (`None`: unlimited).
    Set(Option<i64>),
    /// Add (or, negative, remove) credits of a limited key.
    Add(i64),
}

/// Refuse a credit change that is wrong whatever the balance.
pub(super) fn check_credit_change(change: CreditChange) -> ServiceResult<()> {
    match change {
        CreditChange::Set(Some(n)) if n < 0 => Err(ServiceError::InvalidInput(
            "settleCredits must be 0 or more (null for unlimited)".into(),
        )),
        CreditChange::Add(0) => Err(ServiceError::InvalidInput(
            "addSettleCredits must not be 0".into(),
        )),
        _ => Ok(()),
    }
}

/// Add a change of the credit balance in `column` (now `current`) to `update`. An addition is
/// atomic against concurrent settles, and the update then matches no row (see
/// `credit_change_refused`) rather than go below zero or past i64::MAX (SQLite would store an
/// overflowing sum as a REAL, which no read of the row could decode). `holder` ("key",
/// "account") names the balance in refusals.
pub(super) fn apply_credit_change<E: EntityTrait>(
    update: sea_orm::UpdateMany<E>,
    column: E::Column,
    current: Option<i64>,
    change: CreditChange,
    holder: &str,
) -> ServiceResult<sea_orm::UpdateMany<E>> {
    match change {
        CreditChange::Set(n) => Ok(update.col_expr(column, Expr::value(n))),
        CreditChange::Add(n) => {
            if current.is_none() {
                return Err(ServiceError::InvalidInput(format!(
                    "this {holder} has no credit limit; set settleCredits first"
                )));
            }
            let within = match n.checked_neg() {
                _ if n > 0 => column.lte(i64::MAX - n),
                Some(least) => column.gte(least),
                // -i64::MIN overflows: nothing holds that many credits to remove.
                None => {
                    return Err(ServiceError::InvalidInput(format!(
                        "cannot remove more credits than the {holder} has"
                    )))
                }
            };
            Ok(update
                .col_expr(column, Expr::col(column).add(n))
                .filter(within))
        }
    }
}

/// Why an update made by `apply_credit_change` matched no row.
pub(super) fn credit_change_refused(change: Option<CreditChange>, holder: &str) -> ServiceError {
    ServiceError::InvalidInput(match change {
        Some(CreditChange::Add(n)) if n > 0 => {
            let article = if holder.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!("{article} {holder} holds at most {} credits", i64::MAX)
        }
        _ => format!("cannot remove more credits than the {holder} has"),
    })
}

/// Use one settle credit of a limited key, atomically; `false` when none is left. In the same
/// transaction, the key's webhook events: `key.credits_low` when the credits left reach the
/// low mark (`webhooks::credits_low_mark`), `key.budget_spent` when they reach 0.
pub async fn use_settle_credit(db: &DatabaseConnection, client_id: &str) -> ServiceResult<bool> {
    let txn = db.begin().await?;
    let used = client::Entity::update_many()
        .col_expr(
            client::Column::SettleCredits,
            Expr::col(client::Column::SettleCredits).sub(1),
        )
        .filter(client::Column::ClientId.eq(client_id))
        .filter(client::Column::SettleCredits.gt(0))
        .exec(&txn)
        .await?;
    if used.rows_affected != 1 {
        return Ok(false);
    }
    let left: Option<Option<i64>> = client::Entity::find()
        .select_only()
        .column(client::Column::SettleCredits)
        .filter(client::Column::ClientId.eq(client_id))
        .into_tuple()
        .one(&txn)
        .await?;
    if let Some(Some(left)) = left {
        crate::webhooks::key_credit_events(
            &txn,
            client_id,
            left,
            crate::webhooks::credits_low_mark(),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// Give back a credit used by a settle that sent nothing (limited keys only).
pub async fn refund_settle_credit(db: &DatabaseConnection, client_id: &str) -> ServiceResult<()> {
    client::Entity::update_many()
        .col_expr(
            client::Column::SettleCredits,
            Expr::col(client::Column::SettleCredits).add(1),
        )
        .filter(client::Column::ClientId.eq(client_id))
        .filter(client::Column::SettleCredits.is_not_null())
        .exec(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credit_change_wrong_whatever_the_balance_is_refused() {
        assert!(check_credit_change(CreditChange::Set(Some(-1))).is_err());
        assert!(check_credit_change(CreditChange::Add(0)).is_err());
        assert!(check_credit_change(CreditChange::Set(None)).is_ok());
        assert!(check_credit_change(CreditChange::Set(Some(0))).is_ok());
        assert!(check_credit_change(CreditChange::Add(-5)).is_ok());
    }

    #[test]
    fn an_unlimited_balance_cannot_be_added_to() {
        let update = client::Entity::update_many();
        let refused = apply_credit_change(
            update,
            client::Column::SettleCredits,
            None,
            CreditChange::Add(3),
            "key",
        );
        assert!(refused.is_err());
        let update = client::Entity::update_many();
        let min = apply_credit_change(
            update,
            client::Column::SettleCredits,
            Some(1),
            CreditChange::Add(i64::MIN),
            "key",
        );
        assert!(min.is_err());
    }

    #[test]
    fn a_refusal_names_its_holder() {
        let msg = |e: ServiceError| match e {
            ServiceError::InvalidInput(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            msg(credit_change_refused(Some(CreditChange::Add(1)), "account")),
            format!("an account holds at most {} credits", i64::MAX)
        );
        assert_eq!(
            msg(credit_change_refused(Some(CreditChange::Add(1)), "key")),
            format!("a key holds at most {} credits", i64::MAX)
        );
        assert_eq!(
            msg(credit_change_refused(Some(CreditChange::Add(-1)), "key")),
            "cannot remove more credits than the key has"
        );
    }
}
