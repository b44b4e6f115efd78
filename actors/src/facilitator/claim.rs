//! A claimed payment as a value: the ledger row a settle claimed and the credit it was
//! charged. Until it is committed (a transaction may be out), dropping it or abandoning it
//! releases the row — a later settle may claim the payment afresh — and gives the credit back.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use x402::proto::PaymentRequest;
use x402::Reason;

use super::SettlementRow as Row;
use super::{u256_to_i64, Caller, NetworkRuntime, SettleAnswer};
use crate::auth::accounts::{self, Charge};
use crate::error::{ServiceError, ServiceResult};
use crate::ledger::{self, Claim, Key, Status};

/// A claimed, unsent payment. `commit` once something may have been sent; otherwise `abandon`
/// (the node failed us: the row fails, retryable) or `refuse` (a protocol refusal) it, or let
/// it drop (the same as `abandon`, done on the runtime).
#[must_use = "a claim releases its row when dropped"]
pub(crate) struct ClaimedPayment {
    db: DatabaseConnection,
    row: Row,
    id: i64,
    charge: Option<Charge>,
    /// The request carries an idempotency key: a refusal stays readable on the row.
    idempotent: bool,
    armed: bool,
}

impl ClaimedPayment {
    pub(crate) fn new(db: DatabaseConnection, row: Row, idempotent: bool) -> Self {
        Self {
            db,
            id: row.id,
            row,
            charge: None,
            idempotent,
            armed: true,
        }
    }

    /// The claimed ledger row.
    pub(crate) fn row(&self) -> &Row {
        &self.row
    }

    /// The settle was charged: the credit goes back if nothing is sent.
    pub(crate) fn charged(&mut self, charge: Option<Charge>) {
        self.charge = charge;
    }

    /// Something may have been sent: the row and the credit stay.
    pub(crate) fn commit(mut self) {
        self.armed = false;
    }

    /// Hand the charge over (a queued settle: whoever unqueues it gives the credit back); the
    /// row is no longer this claim's to release.
    pub(crate) fn into_charge(mut self) -> Option<Charge> {
        self.armed = false;
        self.charge.take()
    }

    /// Nothing was sent, for a reason of ours (the node did not answer, no signer): the row
    /// fails and may be claimed again; the credit goes back.
    pub(crate) async fn abandon(mut self) -> ServiceResult<()> {
        self.armed = false;
        release(&self.db, self.id, self.charge.take()).await
    }

    /// Refused before anything was sent. Nothing of it is kept: its row is deleted, unless a
    /// retry of the same idempotent request may be waiting on it and must read the refusal
    /// there; that row keeps only the reason, until `ledger::purge_unsent`. Either way a later
    /// settle may claim the payment afresh; the credit goes back.
    pub(crate) async fn refuse(mut self, reason: &str) -> ServiceResult<()> {
        self.armed = false;
        if self.idempotent {
            ledger::mark_failed_unsent(&self.db, self.id, reason).await?;
        } else {
            ledger::forget_unsent(&self.db, self.id).await?;
        }
        refund(&self.db, self.charge.take().as_ref()).await;
        Ok(())
    }
}

impl Drop for ClaimedPayment {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (db, id, charge) = (self.db.clone(), self.id, self.charge.take());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = release(&db, id, charge).await {
                        tracing::warn!(id, error = %e, "dropped claim not released; reconciliation will");
                    }
                });
            }
            Err(_) => tracing::warn!(
                id,
                "claim dropped outside a runtime; reconciliation releases it"
            ),
        }
    }
}

/// The row fails unsent (a later settle may claim it again), then the credit goes back. A row
/// that has a transaction hash by now (the settlement actor wrote it before broadcasting) is
/// not released, and its credit stays spent: the payment may be on its way.
async fn release(db: &DatabaseConnection, id: i64, charge: Option<Charge>) -> ServiceResult<()> {
    if ledger::mark_failed_unsent(db, id, Reason::UnexpectedSettleError.as_str()).await? {
        refund(db, charge.as_ref()).await;
    }
    Ok(())
}

/// Give a settle's credit back; a failure is logged (the credit is lost, the payment is not).
pub(crate) async fn refund(db: &DatabaseConnection, charge: Option<&Charge>) {
    if let Some(charge) = charge {
        if let Err(e) = accounts::refund(db, charge).await {
            let client_id = charge.client_id();
            tracing::error!(client_id, error = %e, "settle credit not given back");
        }
    }
}

/// Claiming a payment's row and admitting it by its key's and account's limits.
impl super::Facilitator {
    /// Claim the payment's ledger row. `Err(answer)`: it is another settle's (a copy is
    /// refused; a retry of the same idempotent request gets the first one's outcome).
    pub(super) async fn claim(
        &self,
        rt: &Arc<NetworkRuntime>,
        req: &PaymentRequest,
        key: &Key,
        caller: &Caller,
    ) -> ServiceResult<Result<ClaimedPayment, SettleAnswer>> {
        let client_id = (!caller.client_id.is_empty()).then_some(caller.client_id.as_str());
        let auth = &req.payload.authorization;
        let new = ledger::NewSettlement {
            key: key.clone(),
            pay_to: req.pay_to.to_checksum(None),
            amount: auth.value.to_string(),
            valid_after: u256_to_i64(auth.valid_after),
            valid_before: u256_to_i64(auth.valid_before),
            x402_version: req.x402_version as i16,
            request_hash: req.request_hash,
            payment_id: req.payment_id.clone(),
            payload: serde_json::to_value(&req.payload).unwrap_or_default(),
            client_id: client_id.map(str::to_owned),
            idempotency_key: caller.idempotency_key.clone(),
            instance_id: self.inner.fleet.id().to_owned(),
        };
        match self.claim_row(&new, caller).await? {
            Ok(claim) => Ok(Ok(claim)),
            Err(row) => {
                if caller.resumes(row.client_id.as_deref(), row.idempotency_key.as_deref()) {
                    return self.answer_from_ledger(rt, key, req).await.map(Err);
                }
                Ok(Err(SettleAnswer::failed(
                    Reason::InvalidExactEvmNonceAlreadyUsed,
                    Some(auth.from),
                    auth.value,
                )))
            }
        }
    }

    /// Claim a payment's ledger row, whatever its family: `Err(row)` when another settle holds
    /// it (the caller answers a copy, or a retry of the same idempotent request, from it).
    pub(super) async fn claim_row(
        &self,
        new: &ledger::NewSettlement,
        caller: &Caller,
    ) -> ServiceResult<Result<ClaimedPayment, Row>> {
        let row = match self.inner.writer.claim(new).await? {
            Claim::New(row) => row,
            Claim::Existing(row) => {
                // Nothing was ever sent for it: a failed row, or one whose process died
                // between claiming and sending, may be settled again by whoever asks.
                let again = if row.status == Status::Failed && row.tx_hash.is_none() {
                    ledger::reclaim_unsent(&self.inner.db, row.id, new).await?
                } else if ledger::abandoned(&row) {
                    ledger::reclaim_abandoned(&self.inner.db, &row, new).await?
                } else {
                    false
                };
                if !again {
                    return Ok(Err(row));
                }
                row
            }
        };
        let idempotent = caller.idempotency_key.is_some();
        Ok(Ok(ClaimedPayment::new(
            self.inner.db.clone(),
            row,
            idempotent,
        )))
    }

    /// Admit a new settlement by its key's and its account's limits: a key or an account with
    /// a credit balance pays one credit, given back if nothing is sent. A refusal releases the
    /// claim.
    pub(super) async fn admit(
        &self,
        mut claim: ClaimedPayment,
        caller: &Caller,
    ) -> ServiceResult<ClaimedPayment> {
        if caller.client_id.is_empty() {
            return Ok(claim);
        }
        let admitted = accounts::charge_settle(
            &self.inner.db,
            &self.inner.metrics,
            &caller.client_id,
            caller.credits_limited,
            &caller.account,
        )
        .await?;
        match admitted {
            Ok(charge) => {
                claim.charged(charge);
                Ok(claim)
            }
            Err(refusal) => {
                claim.refuse(refusal.ledger_reason()).await?;
                Err(ServiceError::Forbidden(refusal.message().into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use alloy::primitives::{Address, B256};
    use sea_orm::{ConnectionTrait, Database, EntityTrait, Schema};

    use super::*;
    use crate::ledger::{Claim, Key, NewSettlement, Status};

    /// A ledger (the settlements table, in memory, with the tables its changes' webhook events
    /// read and write) with one claimed row.
    async fn claimed() -> (DatabaseConnection, Row) {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        let backend = db.get_database_backend();
        let schema = Schema::new(backend);
        for table in [
            schema.create_table_from_entity(entities::settlement::Entity),
            schema.create_table_from_entity(entities::client::Entity),
            schema.create_table_from_entity(entities::webhook::Entity),
            schema.create_table_from_entity(entities::webhook_event::Entity),
        ] {
            db.execute(backend.build(&table)).await.unwrap();
        }
        // The ledger's unique key (the migration's), which a claim's insert conflicts on.
        use entities::settlement::Column;
        let unique = sea_orm::sea_query::Index::create()
            .name("settlements_key")
            .table(entities::settlement::Entity)
            .col(Column::Network)
            .col(Column::Asset)
            .col(Column::Payer)
            .col(Column::AuthNonce)
            .unique()
            .to_owned();
        db.execute(backend.build(&unique)).await.unwrap();
        let new = NewSettlement {
            key: Key::new(
                "base-sepolia",
                Address::ZERO,
                Address::repeat_byte(1),
                B256::ZERO,
            ),
            pay_to: Address::repeat_byte(2).to_checksum(None),
            amount: "1000".into(),
            valid_after: 0,
            valid_before: i64::MAX,
            x402_version: 2,
            request_hash: B256::ZERO,
            payment_id: None,
            payload: serde_json::json!({}),
            client_id: None,
            idempotency_key: None,
            instance_id: "test".into(),
        };
        match ledger::claim(&db, &new).await.unwrap() {
            Claim::New(row) => (db, row),
            Claim::Existing(_) => panic!("a fresh ledger"),
        }
    }

    async fn status(db: &DatabaseConnection, id: i64) -> Option<String> {
        entities::settlement::Entity::find_by_id(id)
            .one(db)
            .await
            .unwrap()
            .map(|row| row.status)
    }

    #[tokio::test]
    async fn a_dropped_claim_releases_its_row() {
        let (db, row) = claimed().await;
        drop(ClaimedPayment::new(db.clone(), row.clone(), false));
        // The release runs on the runtime: it is done once the row says so.
        let deadline = Instant::now() + Duration::from_secs(5);
        while status(&db, row.id).await.as_deref() != Some(Status::Failed.as_str()) {
            assert!(
                Instant::now() < deadline,
                "the dropped claim was not released"
            );
            tokio::task::yield_now().await;
        }
        let released = ledger::find_by_id(&db, row.id).await.unwrap().unwrap();
        assert_eq!(
            released.error_reason.as_deref(),
            Some(Reason::UnexpectedSettleError.as_str())
        );
    }

    #[tokio::test]
    async fn a_committed_claim_keeps_its_row_and_a_refused_one_leaves_nothing() {
        let (db, row) = claimed().await;
        ClaimedPayment::new(db.clone(), row.clone(), false).commit();
        tokio::task::yield_now().await;
        assert_eq!(status(&db, row.id).await.as_deref(), Some("pending"));

        ClaimedPayment::new(db.clone(), row.clone(), false)
            .refuse(Reason::InsufficientFunds.as_str())
            .await
            .unwrap();
        assert_eq!(status(&db, row.id).await, None, "deleted");
    }

    #[tokio::test]
    async fn an_idempotent_refusal_stays_readable_and_an_abandoned_claim_fails() {
        let (db, row) = claimed().await;
        ClaimedPayment::new(db.clone(), row.clone(), true)
            .refuse(Reason::InsufficientFunds.as_str())
            .await
            .unwrap();
        let kept = ledger::find_by_id(&db, row.id).await.unwrap().unwrap();
        assert_eq!(kept.status, Status::Failed);
        assert_eq!(
            kept.error_reason.as_deref(),
            Some(Reason::InsufficientFunds.as_str())
        );

        let (db, row) = claimed().await;
        ClaimedPayment::new(db.clone(), row.clone(), false)
            .abandon()
            .await
            .unwrap();
        assert_eq!(status(&db, row.id).await.as_deref(), Some("failed"));
    }

    #[tokio::test]
    async fn a_claim_whose_row_has_a_transaction_is_not_released() {
        let (db, row) = claimed().await;
        // The settlement actor writes the hash before it broadcasts: from then on the payment
        // may be on its way, whatever happens to the claim.
        use entities::settlement::Column;
        use sea_orm::{ColumnTrait, QueryFilter};
        entities::settlement::Entity::update_many()
            .col_expr(
                Column::TxHash,
                sea_orm::sea_query::Expr::value(B256::repeat_byte(7).to_string()),
            )
            .filter(Column::Id.eq(row.id))
            .exec(&db)
            .await
            .unwrap();
        ClaimedPayment::new(db.clone(), row.clone(), false)
            .abandon()
            .await
            .unwrap();
        assert_eq!(status(&db, row.id).await.as_deref(), Some("pending"));
        assert!(!ledger::mark_failed_unsent(&db, row.id, "x").await.unwrap());
    }
}
