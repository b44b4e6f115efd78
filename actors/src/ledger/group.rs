//! Group commit of the ledger's two writes per settlement, the claim and the mined outcome:
//! those that arrive while a commit is under way are committed together, in one transaction,
//! after it. One disk flush for the group instead of one each (a durable commit, SQLite
//! `synchronous=FULL` or PostgreSQL `synchronous_commit=on`, waits for the disk), and on SQLite
//! no writers queued on the file lock with its sleeping busy handler. No write waits for
//! company: an idle writer commits the first one at once.
//!
//! Inside the transaction a group is a few statements, not one or two per write (`apply_all`):
//! the writer is one task, and under load (a block's worth of receipts and the next batch's
//! claims arriving together) a statement at a time kept the next batch from being sent for
//! over a second.
//!
//! Each caller gets its own write's result, and only after the commit: a claim is `New` only
//! once its row is durable. A group whose transaction fails is written again one by one, so
//! one bad write fails alone.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use alloy::primitives::B256;
use chrono::Utc;
use entities::settlement::{Column, Entity, Model};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryTrait, TransactionTrait,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    already_claimed, find, mined_update, pending_row, Claim, Key, Mined, NewSettlement, PENDING,
    SUBMITTED,
};

/// At most this many writes per transaction.
const MAX_GROUP: usize = 256;

/// At most this many rows per multi-row statement. Measured (10000 settles at 1000 in flight,
/// batch 100): 8 rows gave 960 ok/s against 908 with 1 on 300M-gas blocks, but 4 MB more RSS
/// after the run (66.9 against 62.5 MB: each statement shape is prepared and cached per
/// connection), and the same ~517 ok/s on 30M-gas blocks, where block gas binds. With 1, a
/// claim is still one statement (`INSERT … RETURNING`, where `claim` is an insert and a select).
const MAX_ROWS: usize = 1;

/// One queued write and where its own result goes.
enum Job {
    Claim(Box<NewSettlement>, oneshot::Sender<Result<Claim, DbErr>>),
    Mined {
        id: i64,
        tx_hash: B256,
        mined: Mined,
        reason_if_failed: &'static str,
        reply: oneshot::Sender<Result<bool, DbErr>>,
    },
}

/// A job's result, held until its group commits.
enum Written {
    Claim(Box<Claim>),
    Mined(bool),
}

impl Job {
    /// Hand the result to the caller (who may have gone away).
    fn reply(self, result: Result<Written, DbErr>) {
        match (self, result) {
            (Job::Claim(_, reply), r) => {
                let _ = reply.send(r.map(|w| match w {
                    Written::Claim(c) => *c,
                    Written::Mined(_) => unreachable!("a claim's result is a claim"),
                }));
            }
            (Job::Mined { reply, .. }, r) => {
                let _ = reply.send(r.map(|w| matches!(w, Written::Mined(true))));
            }
        }
    }
}

/// The handle; the writer task ends when every handle is dropped.
#[derive(Clone)]
pub struct GroupWriter {
    queue: mpsc::UnboundedSender<Job>,
}

impl GroupWriter {
    /// Start the writer on the current runtime.
    pub fn start(db: DatabaseConnection) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                write_group(&db, group).await;
            }
        });
        Self { queue }
    }

    async fn write<T>(
        &self,
        job: Job,
        rx: oneshot::Receiver<Result<T, DbErr>>,
    ) -> Result<T, DbErr> {
        self.queue
            .send(job)
            .map_err(|_| DbErr::Custom("the ledger writer has stopped".into()))?;
        rx.await
            .map_err(|_| DbErr::Custom("the ledger writer dropped a write".into()))?
    }

    /// `ledger::claim`, committed with whatever other writes are queued.
    pub async fn claim(&self, new: &NewSettlement) -> Result<Claim, DbErr> {
        let (tx, rx) = oneshot::channel();
        self.write(Job::Claim(Box::new(new.clone()), tx), rx).await
    }

    /// `ledger::mark_mined`, committed with whatever other writes are queued.
    pub async fn mark_mined(
        &self,
        id: i64,
        tx_hash: B256,
        mined: &Mined,
        reason_if_failed: &'static str,
    ) -> Result<bool, DbErr> {
        let (reply, rx) = oneshot::channel();
        let job = Job::Mined {
            id,
            tx_hash,
            mined: mined.clone(),
            reason_if_failed,
            reply,
        };
        self.write(job, rx).await
    }
}

async fn write_group(db: &DatabaseConnection, group: Vec<Job>) {
    if group.len() > 1 {
        match in_one_transaction(db, &group).await {
            Ok(results) => {
                for (job, result) in group.into_iter().zip(results) {
                    job.reply(Ok(result));
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, writes = group.len(), "group commit failed; writing one by one");
            }
        }
    }
    for job in group {
        let result = apply_all(db, std::slice::from_ref(&job))
            .await
            .map(|mut r| r.remove(0));
        job.reply(result);
    }
}

async fn in_one_transaction(db: &DatabaseConnection, group: &[Job]) -> Result<Vec<Written>, DbErr> {
    let txn = db.begin().await?;
    let results = apply_all(&txn, group).await?;
    txn.commit().await?;
    Ok(results)
}

/// The group's writes in a few statements, not one or two each: every claim in one
/// multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING *` (a `SELECT` only for those that
/// found a row already), and the mined outcomes in one `UPDATE … WHERE id IN (…) RETURNING id`
/// per distinct outcome (a batch transaction's rows share theirs). Same results as `claim`
/// and `mark_mined` one at a time, in the group's order.
async fn apply_all(db: &impl ConnectionTrait, group: &[Job]) -> Result<Vec<Written>, DbErr> {
    let mut results: Vec<Option<Written>> = group.iter().map(|_| None).collect();

    // Claims: the first of each authorization goes into the insert; a later one of the
    // same authorization in this group finds the row the first made.
    let mut first_of: HashMap<&Key, usize> = HashMap::new();
    let mut inserting = Vec::new();
    for (i, job) in group.iter().enumerate() {
        if let Job::Claim(new, _) = job {
            if let Entry::Vacant(first) = first_of.entry(&new.key) {
                first.insert(i);
                inserting.push(new.as_ref());
            }
        }
    }
    let mut inserted: HashMap<Key, Model> = HashMap::new();
    for chunk in few_shapes(&inserting) {
        for m in insert_claims(db, chunk).await? {
            inserted.insert(key_of(&m), m);
        }
    }
    let mut existing: HashMap<Key, Model> = HashMap::new();
    for (i, job) in group.iter().enumerate() {
        let Job::Claim(new, _) = job else { continue };
        let mine = first_of.get(&new.key) == Some(&i);
        let claim = match (mine, inserted.get(&new.key)) {
            (true, Some(_)) => Claim::New(inserted.remove(&new.key).expect("just seen")),
            _ => {
                if !existing.contains_key(&new.key) {
                    let row = find(db, &new.key).await?.ok_or_else(|| {
                        DbErr::RecordNotFound("settlement row vanished after insert".into())
                    })?;
                    existing.insert(new.key.clone(), row);
                }
                Claim::Existing(existing[&new.key].clone())
            }
        };
        results[i] = Some(Written::Claim(Box::new(claim)));
    }

    // Mined outcomes, one statement per distinct outcome.
    let mut outcomes: HashMap<Outcome, Vec<(usize, i64)>> = HashMap::new();
    for (i, job) in group.iter().enumerate() {
        if let Job::Mined {
            id,
            tx_hash,
            mined,
            reason_if_failed,
            ..
        } = job
        {
            let outcome = Outcome {
                tx_hash: *tx_hash,
                success: mined.success,
                block_number: mined.block_number,
                gas_used: mined.gas_used,
                fee_wei: mined.fee_wei,
                final_at_once: mined.final_at_once,
                reason_if_failed: (!mined.success).then_some(*reason_if_failed),
            };
            outcomes.entry(outcome).or_default().push((i, *id));
        }
    }
    for (outcome, rows) in outcomes {
        let ids: Vec<i64> = rows.iter().map(|(_, id)| *id).collect();
        let mut moved = HashSet::new();
        for chunk in few_shapes(&ids) {
            moved.extend(mark_mined_many(db, chunk, &outcome).await?);
        }
        for (i, id) in rows {
            // The same row twice in the group (the settle and a status read both saw the
            // receipt): only the first is told it moved the row, so the transfer is accounted once.
            results[i] = Some(Written::Mined(moved.remove(&id)));
        }
    }

    Ok(results
        .into_iter()
        .map(|r| r.expect("every job of the group is written"))
        .collect())
}

/// `items` in chunks of at most `MAX_ROWS` whose lengths are powers of two, largest first (200
/// = 128 + 64 + 8 without the cap). A multi-row statement's text depends on its row count, and
/// each distinct text is prepared and kept in the connection's statement cache (sqlx's, and
/// PostgreSQL's server-side): with any count up to 256 the cache held ~100 large statements
/// (RSS after 10000 settles 87 MB); with powers of two there are a few shapes per statement.
fn few_shapes<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = (1usize << rest.len().ilog2()).min(MAX_ROWS);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

fn key_of(m: &Model) -> Key {
    Key {
        network: m.network.clone(),
        asset: m.asset.clone(),
        payer: m.payer.clone(),
        auth_nonce: m.auth_nonce.clone(),
    }
}

/// `claim`'s insert for many rows at once; returns the rows it inserted (not those whose
/// authorization had a row already).
async fn insert_claims(
    db: &impl ConnectionTrait,
    news: &[&NewSettlement],
) -> Result<Vec<Model>, DbErr> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let mut insert = Entity::insert_many(news.iter().map(|n| pending_row(n, now)))
        .on_conflict(already_claimed())
        .into_query();
    insert.returning_all();
    let stmt = db.get_database_backend().build(&insert);
    Model::find_by_statement(stmt).all(db).await
}

/// A mined outcome, as `mark_mined` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Outcome {
    tx_hash: B256,
    success: bool,
    block_number: u64,
    gas_used: u64,
    fee_wei: u128,
    final_at_once: bool,
    reason_if_failed: Option<&'static str>,
}

/// `mark_mined` for many rows with one outcome; returns the ids this call moved.
async fn mark_mined_many(
    db: &impl ConnectionTrait,
    ids: &[i64],
    o: &Outcome,
) -> Result<HashSet<i64>, DbErr> {
    let mined = Mined {
        success: o.success,
        block_number: o.block_number,
        gas_used: o.gas_used,
        fee_wei: o.fee_wei,
        final_at_once: o.final_at_once,
    };
    let mut update = mined_update(&mined, o.tx_hash, o.reason_if_failed.unwrap_or_default())
        .filter(Column::Id.is_in(ids.iter().copied()))
        .filter(Column::Status.is_in([PENDING, SUBMITTED]))
        .into_query();
    update.returning_col(Column::Id);
    let stmt = db.get_database_backend().build(&update);
    let rows = db.query_all(stmt).await?;
    rows.iter()
        .map(|r| r.try_get::<i64>("", "id"))
        .collect::<Result<HashSet<_>, _>>()
}

#[cfg(test)]
mod tests {
    use super::few_shapes;

    #[test]
    fn chunks_are_powers_of_two_largest_first_and_cover_everything() {
        for n in 0..=300usize {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = few_shapes(&items).collect();
            assert!(
                chunks
                    .iter()
                    .all(|c| c.len().is_power_of_two() && c.len() <= super::MAX_ROWS),
                "{n}"
            );
            assert!(chunks.windows(2).all(|w| w[0].len() >= w[1].len()), "{n}");
            assert_eq!(chunks.concat(), items, "{n}");
        }
    }
}
