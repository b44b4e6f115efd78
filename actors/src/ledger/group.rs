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

use alloy::primitives::B256;
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use super::{claim, mark_mined, Claim, Mined, NewSettlement};

/// At most this many writes per transaction.
const MAX_GROUP: usize = 256;

enum Write {
    Claim(Box<NewSettlement>),
    Mined {
        id: i64,
        tx_hash: B256,
        mined: Mined,
        reason_if_failed: &'static str,
    },
}

enum Written {
    Claim(Box<Claim>),
    Mined(bool),
}

type Job = (Write, oneshot::Sender<Result<Written, DbErr>>);

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

    async fn write(&self, write: Write) -> Result<Written, DbErr> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((write, tx))
            .map_err(|_| DbErr::Custom("the ledger writer has stopped".into()))?;
        rx.await
            .map_err(|_| DbErr::Custom("the ledger writer dropped a write".into()))?
    }

    /// `ledger::claim`, committed with whatever other writes are queued.
    pub async fn claim(&self, new: &NewSettlement) -> Result<Claim, DbErr> {
        match self.write(Write::Claim(Box::new(new.clone()))).await? {
            Written::Claim(c) => Ok(*c),
            Written::Mined(_) => Err(DbErr::Custom("ledger writer: wrong answer".into())),
        }
    }

    /// `ledger::mark_mined`, committed with whatever other writes are queued.
    pub async fn mark_mined(
        &self,
        id: i64,
        tx_hash: B256,
        mined: &Mined,
        reason_if_failed: &'static str,
    ) -> Result<bool, DbErr> {
        let write = Write::Mined {
            id,
            tx_hash,
            mined: mined.clone(),
            reason_if_failed,
        };
        match self.write(write).await? {
            Written::Mined(moved) => Ok(moved),
            Written::Claim(_) => Err(DbErr::Custom("ledger writer: wrong answer".into())),
        }
    }
}

async fn apply(db: &impl sea_orm::ConnectionTrait, write: &Write) -> Result<Written, DbErr> {
    match write {
        Write::Claim(new) => claim(db, new).await.map(|c| Written::Claim(Box::new(c))),
        Write::Mined {
            id,
            tx_hash,
            mined,
            reason_if_failed,
        } => mark_mined(db, *id, *tx_hash, mined, reason_if_failed)
            .await
            .map(Written::Mined),
    }
}

async fn write_group(db: &DatabaseConnection, group: Vec<Job>) {
    if group.len() > 1 {
        match in_one_transaction(db, &group).await {
            Ok(results) => {
                for ((_, reply), result) in group.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, writes = group.len(), "group commit failed; writing one by one");
            }
        }
    }
    for (write, reply) in group {
        let _ = reply.send(apply(db, &write).await);
    }
}

async fn in_one_transaction(db: &DatabaseConnection, group: &[Job]) -> Result<Vec<Written>, DbErr> {
    let txn = db.begin().await?;
    let mut results = Vec::with_capacity(group.len());
    for (write, _) in group {
        results.push(apply(&txn, write).await?);
    }
    txn.commit().await?;
    Ok(results)
}
