//! Lists of settlements for people rather than payers: an account's own (the console's
//! merchant view), and the rows still in flight with what reconciliation will do about each
//! (the operator's).

use alloy::primitives::{Address, B256};
use chrono::{DateTime, Utc};
use entities::settlement::{Column, Entity, Model};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{abandoned, Status};

/// What narrows an account's list: a transaction, a payer, an authorization nonce (any of
/// them, all applied together).
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub tx_hash: Option<B256>,
    pub payer: Option<Address>,
    pub nonce: Option<B256>,
    pub network: Option<&'static str>,
}

/// The settlements made with `clients` (an account's keys), newest first. An empty `clients`
/// has none (not everyone's).
pub async fn of_clients(
    db: &DatabaseConnection,
    clients: &[String],
    filter: &ListFilter,
    offset: u64,
    limit: u64,
) -> Result<Vec<Model>, DbErr> {
    if clients.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = Entity::find().filter(Column::ClientId.is_in(clients.iter().cloned()));
    if let Some(tx) = filter.tx_hash {
        query = query.filter(Column::TxHash.eq(tx.to_string()));
    }
    if let Some(payer) = filter.payer {
        query = query.filter(Column::Payer.eq(payer.to_checksum(None)));
    }
    if let Some(nonce) = filter.nonce {
        query = query.filter(Column::AuthNonce.eq(nonce.to_string()));
    }
    if let Some(network) = filter.network {
        query = query.filter(Column::Network.eq(network));
    }
    query
        .order_by_desc(Column::Id)
        .offset(offset)
        .limit(limit)
        .all(db)
        .await
}

/// Rows of every network whose outcome is not known yet (`pending`, `submitted`), oldest
/// first.
pub async fn unresolved_oldest(
    db: &DatabaseConnection,
    offset: u64,
    limit: u64,
) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .filter(Column::Status.is_in([Status::Pending, Status::Submitted]))
        .order_by_asc(Column::CreatedAt)
        .order_by_asc(Column::Id)
        .offset(offset)
        .limit(limit)
        .all(db)
        .await
}

/// What the reconciliation (`Facilitator::reconcile`, at start-up and periodically) will do
/// with an unresolved row, decided by the same rules it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NextStep {
    /// Queued (young) for the instance holding its signer's lease, which sends it.
    AwaitLeaseHolder,
    /// Claimed, nothing sent yet, young: another instance's claim may be in progress; left
    /// alone until `ABANDONED_AFTER`.
    AwaitClaim,
    /// Claimed, nothing sent, abandoned: marked `failed` (nothing moved; the payer may pay
    /// again with a new authorization, the same one may be claimed again).
    FailUnsent,
    /// Sent: the receipt is looked up; mined resolves it (`mined`/`failed`), still in the pool
    /// is watched until mined.
    CheckReceipt,
}

impl NextStep {
    pub fn of(row: &Model) -> Self {
        if row.tx_hash.is_some() {
            NextStep::CheckReceipt
        } else if abandoned(row) {
            NextStep::FailUnsent
        } else if row.queued_at.is_some() {
            NextStep::AwaitLeaseHolder
        } else {
            NextStep::AwaitClaim
        }
    }
}

/// Seconds since the row was claimed.
pub fn age_secs(row: &Model, now: DateTime<Utc>) -> i64 {
    (now - row.created_at).num_seconds().max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, tx: bool, queued: bool, idle: chrono::Duration) -> Model {
        let at = Utc::now() - idle;
        Model {
            id: 1,
            network: "base-sepolia".into(),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            payer: "0x2e646f0000000000000000000000000000505c9e".into(),
            auth_nonce: format!("{}", B256::ZERO),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            amount: "10000".into(),
            valid_after: 0,
            valid_before: i64::MAX,
            x402_version: 1,
            request_hash: String::new(),
            payment_id: None,
            payload: serde_json::json!({}),
            status: status.into(),
            tx_hash: tx.then(|| format!("{}", B256::repeat_byte(1))),
            signer: None,
            signer_nonce: None,
            block_number: None,
            gas_used: None,
            fee_wei: None,
            error_reason: None,
            client_id: None,
            idempotency_key: None,
            instance_id: None,
            queued_at: queued.then_some(at),
            call_to: None,
            calldata: None,
            raw_tx: None,
            created_at: at,
            updated_at: at,
            confirmed_at: None,
        }
    }

    #[test]
    fn the_next_step_is_the_one_reconciliation_takes() {
        let young = chrono::Duration::seconds(5);
        let old = super::super::ABANDONED_AFTER + chrono::Duration::seconds(5);
        assert_eq!(
            NextStep::of(&row(Status::Submitted.as_str(), true, false, old)),
            NextStep::CheckReceipt
        );
        assert_eq!(
            NextStep::of(&row(Status::Pending.as_str(), false, false, young)),
            NextStep::AwaitClaim
        );
        assert_eq!(
            NextStep::of(&row(Status::Pending.as_str(), false, true, young)),
            NextStep::AwaitLeaseHolder
        );
        // Untouched past `ABANDONED_AFTER`, queued or not: reconcile marks it failed unsent.
        for queued in [false, true] {
            let r = row(Status::Pending.as_str(), false, queued, old);
            assert!(abandoned(&r));
            assert_eq!(NextStep::of(&r), NextStep::FailUnsent);
        }
        assert_eq!(age_secs(&row("pending", false, false, old), Utc::now()), 65);
    }
}
