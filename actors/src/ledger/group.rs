//! Group commit of the ledger's two writes per settlement, the claim and the mined outcome:
//! those that arrive while a commit is under way are committed together, in one transaction,
//! after it. One disk flush for the group instead of one each (a durable commit, SQLite
//! `synchronous=FULL` or PostgreSQL `synchronous_commit=on`, waits for the disk), and on SQLite
//! no writers queued on the file lock with its sleeping busy handler. No write waits for
//! company: an idle writer commits the first one at once.
//!
//! Each caller gets its own write's result, and only after the commit: a claim is `New` only
//! once its row is durable. A group whose transaction fails is written again one by one, so
//! one bad write fails alone.

use std::collections::HashSet;

use alloy::primitives::B256;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use super::{claim, mark_mined, mark_mined_many, Claim, Mined, NewSettlement};

/// At most this many writes per transaction.
const MAX_GROUP: usize = 256;

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
    async fn apply(&self, db: &impl ConnectionTrait) -> Result<Written, DbErr> {
        match self {
            Job::Claim(new, _) => claim(db, new).await.map(|c| Written::Claim(Box::new(c))),
            Job::Mined {
                id,
                tx_hash,
                mined,
                reason_if_failed,
                ..
            } => mark_mined(db, *id, *tx_hash, mined, reason_if_failed)
                .await
                .map(Written::Mined),
        }
    }

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
    let started = std::time::Instant::now();
    let claims = group.iter().filter(|j| matches!(j, Job::Claim(..))).count();
    let writes = group.len();
    write_group_timed(db, group).await;
    tracing::debug!(
        writes,
        claims,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "ledger group committed"
    );
}

async fn write_group_timed(db: &DatabaseConnection, group: Vec<Job>) {
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
        let result = alone(db, &job).await;
        job.reply(result);
    }
}

/// One write in its own transaction (a mined outcome and its webhook events commit together).
async fn alone(db: &DatabaseConnection, job: &Job) -> Result<Written, DbErr> {
    let txn = db.begin().await?;
    let written = job.apply(&txn).await?;
    txn.commit().await?;
    Ok(written)
}

async fn in_one_transaction(db: &DatabaseConnection, group: &[Job]) -> Result<Vec<Written>, DbErr> {
    let txn = db.begin().await?;
    let mut results: Vec<Option<Written>> = group.iter().map(|_| None).collect();
    for (i, job) in group.iter().enumerate() {
        if results[i].is_some() {
            continue; // written with an earlier one of its transaction
        }
        let alike = alike_mined(group, i);
        if alike.len() > 1 {
            // One transaction's outcome for several rows (a batch's payments): one statement.
            let Job::Mined {
                tx_hash,
                mined,
                reason_if_failed,
                ..
            } = job
            else {
                unreachable!("only mined outcomes are alike")
            };
            let ids: Vec<i64> = alike.iter().map(|&j| mined_id(&group[j])).collect();
            let mut moved: HashSet<i64> =
                mark_mined_many(&txn, &ids, *tx_hash, mined, reason_if_failed)
                    .await?
                    .into_iter()
                    .collect();
            for (&j, id) in alike.iter().zip(ids) {
                // A row named twice moved once: its first write says so.
                results[j] = Some(Written::Mined(moved.remove(&id)));
            }
            continue;
        }
        results[i] = Some(job.apply(&txn).await?);
    }
    txn.commit().await?;
    Ok(results
        .into_iter()
        .map(|r| r.expect("every write of the group was applied"))
        .collect())
}

/// The positions from `i` on of the mined outcomes written exactly as `group[i]` (same
/// transaction, same outcome): none unless `group[i]` is one.
fn alike_mined(group: &[Job], i: usize) -> Vec<usize> {
    let Job::Mined {
        tx_hash,
        mined,
        reason_if_failed,
        ..
    } = &group[i]
    else {
        return Vec::new();
    };
    (i..group.len())
        .filter(|&j| {
            matches!(&group[j], Job::Mined { tx_hash: t, mined: m, reason_if_failed: r, .. }
                if t == tx_hash && m == mined && r == reason_if_failed)
        })
        .collect()
}

fn mined_id(job: &Job) -> i64 {
    match job {
        Job::Mined { id, .. } => *id,
        Job::Claim(..) => unreachable!("a claim is not a mined outcome"),
    }
}
