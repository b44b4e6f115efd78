//! The rollups: events added up in memory per (day, key), and the `MetricsActor` that owns
//! writing them to the daily rows (`http_metrics_daily`, `x402_metrics_daily`) and reading them
//! back for the reports.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use alloy_primitives::U256;
use chrono::NaiveDate;
use entities::{http_metrics_daily as http_row, x402_metrics_daily as x402_row};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};

use super::Operation;
use crate::{ServiceError, ServiceResult};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct HttpKey {
    pub(super) day: NaiveDate,
    pub(super) method: String,
    pub(super) route: String,
    pub(super) status: u16,
}

#[derive(Debug, Clone, Default)]
pub(super) struct HttpSum {
    pub(super) count: i64,
    pub(super) total_latency_us: i64,
    pub(super) max_latency_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct X402Key {
    pub(super) day: NaiveDate,
    pub(super) client_id: String,
    pub(super) network: String,
    pub(super) asset: String,
    pub(super) operation: Operation,
    pub(super) outcome: String,
}

#[derive(Debug, Clone, Default)]
pub(super) struct X402Sum {
    pub(super) count: i64,
    pub(super) amount: U256,
    pub(super) gas_used: i64,
    pub(super) fee_wei: U256,
    pub(super) total_latency_us: i64,
}

#[derive(Default)]
pub(super) struct Batch {
    http: HashMap<HttpKey, HttpSum>,
    x402: HashMap<X402Key, X402Sum>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.http.is_empty() && self.x402.is_empty()
    }

    pub(super) fn add_http(&mut self, key: HttpKey, sum: &HttpSum) {
        let s = self.http.entry(key).or_default();
        s.count += sum.count;
        s.total_latency_us += sum.total_latency_us;
        s.max_latency_us = s.max_latency_us.max(sum.max_latency_us);
    }

    pub(super) fn add_x402(&mut self, key: X402Key, sum: &X402Sum) {
        let s = self.x402.entry(key).or_default();
        s.count += sum.count;
        s.amount = s.amount.saturating_add(sum.amount);
        s.gas_used += sum.gas_used;
        s.fee_wei = s.fee_wei.saturating_add(sum.fee_wei);
        s.total_latency_us += sum.total_latency_us;
    }

    /// Gas and fee of the mined settlement transactions of `day` in this batch, per client key.
    pub(super) fn unflushed_transfers(&self, day: NaiveDate) -> Vec<(String, u64, U256)> {
        self.x402
            .iter()
            .filter(|(k, _)| k.day == day && k.operation == Operation::Transfer)
            .map(|(k, v)| (k.client_id.clone(), v.gas_used.max(0) as u64, v.fee_wei))
            .collect()
    }

    /// Put a batch that failed to write back in front of what came in meanwhile.
    fn merge(&mut self, other: Batch) {
        for (k, v) in other.http {
            self.add_http(k, &v);
        }
        for (k, v) in other.x402 {
            self.add_x402(k, &v);
        }
    }
}

pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Sums not yet written, shared by the recording callers and the actor.
pub(super) type Pending = Arc<std::sync::Mutex<Batch>>;

pub(super) fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, Batch> {
    // A panic while adding up leaves sums, not broken invariants: keep using them.
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct MetricsActor {
    db: DatabaseConnection,
    pending: Pending,
    flush_every: Duration,
}

impl MetricsActor {
    pub(super) fn new(db: DatabaseConnection, pending: Pending, flush_every: Duration) -> Self {
        Self {
            db,
            pending,
            flush_every,
        }
    }
}

impl Actor for MetricsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.flush_every, |_, ctx| ctx.notify(Flush));
    }
}

/// Write everything pending; answers once it is in the database.
#[derive(Message)]
#[rtype(result = "ServiceResult<()>")]
pub(super) struct Flush;

impl Handler<Flush> for MetricsActor {
    // Atomic: one flush at a time; events recorded meanwhile go to the next batch.
    type Result = AtomicResponse<Self, ServiceResult<()>>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let batch = std::mem::take(&mut *lock(&self.pending));
        let db = self.db.clone();
        AtomicResponse::new(Box::pin(
            async move {
                if batch.is_empty() {
                    return Ok(());
                }
                match write(&db, &batch).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err((batch, e)),
                }
            }
            .into_actor(self)
            .map(|result, act, _| match result {
                Ok(()) => Ok(()),
                Err((batch, e)) => {
                    tracing::warn!(error = %e, "metrics flush failed; kept for the next one");
                    lock(&act.pending).merge(batch);
                    Err(e)
                }
            }),
        ))
    }
}

/// Add a batch to the rollup rows, in one transaction. Rows are read with a row lock on
/// PostgreSQL (several instances may share the database). On SQLite the transaction takes the
/// write lock first, with a write that changes nothing: a transaction that reads and then
/// writes fails at once ("database is locked", no busy wait) when another writer committed
/// in between, which lost whole batches under load.
async fn write(db: &DatabaseConnection, batch: &Batch) -> ServiceResult<()> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Sqlite {
        txn.execute_unprepared("UPDATE http_metrics_daily SET count = count WHERE 0")
            .await?;
    }
    for (k, v) in &batch.http {
        let existing = http_row::Entity::find()
            .filter(http_row::Column::Day.eq(k.day))
            .filter(http_row::Column::Method.eq(k.method.as_str()))
            .filter(http_row::Column::Route.eq(k.route.as_str()))
            .filter(http_row::Column::Status.eq(k.status as i16))
            .lock_exclusive()
            .one(&txn)
            .await?;
        match existing {
            Some(row) => {
                let mut active: http_row::ActiveModel = row.clone().into();
                active.count = Set(row.count + v.count);
                active.total_latency_us = Set(row.total_latency_us + v.total_latency_us);
                active.max_latency_us = Set(row.max_latency_us.max(v.max_latency_us));
                active.update(&txn).await?;
            }
            None => {
                http_row::ActiveModel {
                    day: Set(k.day),
                    method: Set(k.method.clone()),
                    route: Set(k.route.clone()),
                    status: Set(k.status as i16),
                    count: Set(v.count),
                    total_latency_us: Set(v.total_latency_us),
                    max_latency_us: Set(v.max_latency_us),
                    ..Default::default()
                }
                .insert(&txn)
                .await?;
            }
        }
    }
    for (k, v) in &batch.x402 {
        let existing = x402_row::Entity::find()
            .filter(x402_row::Column::Day.eq(k.day))
            .filter(x402_row::Column::ClientId.eq(k.client_id.as_str()))
            .filter(x402_row::Column::Network.eq(k.network.as_str()))
            .filter(x402_row::Column::Asset.eq(k.asset.as_str()))
            .filter(x402_row::Column::Operation.eq(k.operation.as_str()))
            .filter(x402_row::Column::Outcome.eq(k.outcome.as_str()))
            .lock_exclusive()
            .one(&txn)
            .await?;
        match existing {
            Some(row) => {
                let amount = parse_sum(&row.amount_sum)?.saturating_add(v.amount);
                let fee = parse_sum(&row.fee_wei_sum)?.saturating_add(v.fee_wei);
                let mut active: x402_row::ActiveModel = row.clone().into();
                active.count = Set(row.count + v.count);
                active.amount_sum = Set(amount.to_string());
                active.gas_used_sum = Set(row.gas_used_sum + v.gas_used);
                active.fee_wei_sum = Set(fee.to_string());
                active.total_latency_us = Set(row.total_latency_us + v.total_latency_us);
                active.update(&txn).await?;
            }
            None => {
                x402_row::ActiveModel {
                    day: Set(k.day),
                    client_id: Set(k.client_id.clone()),
                    network: Set(k.network.clone()),
                    asset: Set(k.asset.clone()),
                    operation: Set(k.operation.as_str().to_owned()),
                    outcome: Set(k.outcome.clone()),
                    count: Set(v.count),
                    amount_sum: Set(v.amount.to_string()),
                    gas_used_sum: Set(v.gas_used),
                    fee_wei_sum: Set(v.fee_wei.to_string()),
                    total_latency_us: Set(v.total_latency_us),
                    ..Default::default()
                }
                .insert(&txn)
                .await?;
            }
        }
    }
    txn.commit().await?;
    Ok(())
}

/// A decimal sum column.
pub fn parse_sum(s: &str) -> ServiceResult<U256> {
    s.parse().map_err(|_| ServiceError::Corrupt {
        what: "metrics sum",
        value: s.to_owned(),
    })
}

/// Rollup rows in a day range (inclusive), for the metrics endpoints.
pub async fn http_rows(
    db: &DatabaseConnection,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> ServiceResult<Vec<http_row::Model>> {
    let mut q = http_row::Entity::find();
    if let Some(f) = from {
        q = q.filter(http_row::Column::Day.gte(f));
    }
    if let Some(t) = to {
        q = q.filter(http_row::Column::Day.lte(t));
    }
    Ok(q.order_by_asc(http_row::Column::Day).all(db).await?)
}

/// x402 rollup rows in a day range, of the given client keys (`None`: all of them).
pub async fn x402_rows(
    db: &DatabaseConnection,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    clients: Option<&[String]>,
) -> ServiceResult<Vec<x402_row::Model>> {
    let mut q = x402_row::Entity::find();
    if let Some(f) = from {
        q = q.filter(x402_row::Column::Day.gte(f));
    }
    if let Some(t) = to {
        q = q.filter(x402_row::Column::Day.lte(t));
    }
    if let Some(ids) = clients {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        q = q.filter(x402_row::Column::ClientId.is_in(ids.iter().cloned()));
    }
    Ok(q.order_by_asc(x402_row::Column::Day).all(db).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SUCCESS;

    #[test]
    fn batches_merge_exactly() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let key = X402Key {
            day,
            client_id: "c".into(),
            network: "base".into(),
            asset: "0xa".into(),
            operation: Operation::Settle,
            outcome: SUCCESS.into(),
        };
        let mut a = Batch::default();
        a.add_x402(
            key.clone(),
            &X402Sum {
                count: 1,
                amount: U256::from(u128::MAX),
                gas_used: 10,
                fee_wei: U256::from(7),
                total_latency_us: 5,
            },
        );
        let mut b = Batch::default();
        b.add_x402(
            key.clone(),
            &X402Sum {
                count: 2,
                amount: U256::from(u128::MAX),
                gas_used: 1,
                fee_wei: U256::from(3),
                total_latency_us: 1,
            },
        );
        a.merge(b);
        let s = &a.x402[&key];
        assert_eq!(s.count, 3);
        assert_eq!(s.amount, U256::from(u128::MAX) * U256::from(2));
        assert_eq!(s.gas_used, 11);
        assert_eq!(s.fee_wei, U256::from(10));
    }
}
