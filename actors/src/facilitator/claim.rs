//! A claimed payment as a value: the ledger row a settle claimed and the credit it was
//! charged. Until it is committed (a transaction may be out), dropping it or abandoning it
//! releases the row — a later settle may claim the payment afresh — and gives the credit back.

use sea_orm::DatabaseConnection;
use x402::Reason;

use super::SettlementRow as Row;
use crate::auth::accounts::{self, Charge};
use crate::error::ServiceResult;
use crate::ledger;

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

/// The row fails unsent (a later settle may claim it again), then the credit goes back.
async fn release(db: &DatabaseConnection, id: i64, charge: Option<Charge>) -> ServiceResult<()> {
    ledger::mark_failed_unsent(db, id, Reason::UnexpectedSettleError.as_str()).await?;
    refund(db, charge.as_ref()).await;
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
