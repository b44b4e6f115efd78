//! `AuthorizationIndex`: the authorizations this instance knows to be taken (a settle began:
//! in flight, sent, mined), in memory, so that `/verify` answers "already used" without a
//! database read.
//!
//! The ledger stays the truth; the index is what this instance has seen of it:
//!
//! - Alone on its database (SQLite), every claim goes through this process, so once the rows a
//!   previous run left are loaded (`load`), an authorization missing here is free: verify needs
//!   no database read at all.
//! - With other instances on the database (PostgreSQL), another instance may have claimed an
//!   authorization this one never saw: a miss is only "not known here", and the caller reads
//!   the ledger (alongside the simulation, so it costs no extra round trip).
//!
//! Only authorizations still inside their validity window matter (an expired one is refused
//! off-chain), so entries leave once `valid_before` has passed. Memory is bounded: past
//! `MAX_ENTRIES` the oldest-expiring entries are dropped and the index stops answering "free"
//! (every miss reads the ledger again), which keeps it correct.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use alloy::primitives::{keccak256, B256};
use dashmap::DashMap;
use entities::settlement::{Column, Entity};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};

use crate::ledger::{self, Key};

/// network, asset, payer, auth_nonce, valid_before, status, tx_hash.
type LoadedRow = (String, String, String, String, i64, String, Option<String>);

/// Entries kept at most (about 80 bytes each).
pub const MAX_ENTRIES: usize = 200_000;

/// Expired entries are swept every this many insertions.
const SWEEP_EVERY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A settle began: the authorization is used.
    Taken,
    /// A settle ended in an error whose ledger state is unknown here: read the ledger.
    Unsure,
}

/// What the index says about an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Used (a settle of it began, here or in a row loaded from the ledger).
    Taken,
    /// Not used as far as the ledger goes: no read needed.
    Free,
    /// Not known here: the ledger must be read.
    Ask,
}

pub struct AuthorizationIndex {
    entries: DashMap<B256, (State, u64)>,
    /// Other instances write the same ledger: a miss proves nothing.
    shared: bool,
    /// Every taken row of the ledger is in the index (loaded, and never truncated since).
    complete: AtomicBool,
    inserts: AtomicUsize,
}

/// The index key of a ledger key (32 bytes instead of four strings).
fn digest(key: &Key) -> B256 {
    let mut buf = Vec::with_capacity(160);
    for part in [&key.network, &key.asset, &key.payer, &key.auth_nonce] {
        buf.extend_from_slice(part.as_bytes());
        buf.push(0);
    }
    keccak256(buf)
}

/// `valid_before` (seconds) as stored, clamped at 0.
fn secs(valid_before: i64) -> u64 {
    valid_before.max(0) as u64
}

impl AuthorizationIndex {
    pub fn new(shared: bool) -> Self {
        Self {
            entries: DashMap::new(),
            shared,
            complete: AtomicBool::new(false),
            inserts: AtomicUsize::new(0),
        }
    }

    pub fn lookup(&self, key: &Key) -> Lookup {
        match self.entries.get(&digest(key)).map(|e| *e.value()) {
            Some((State::Taken, _)) => Lookup::Taken,
            Some((State::Unsure, _)) => Lookup::Ask,
            None if !self.shared && self.complete.load(Ordering::Acquire) => Lookup::Free,
            None => Lookup::Ask,
        }
    }

    /// A settle of `key` began and its authorization is used (whatever the outcome: sent,
    /// mined, reverted, or another call's).
    pub fn taken(&self, key: &Key, valid_before: i64, now: u64) {
        self.insert(key, State::Taken, valid_before, now);
    }

    /// A settle of `key` ended without the ledger state being known here.
    pub fn unsure(&self, key: &Key, valid_before: i64, now: u64) {
        self.insert(key, State::Unsure, valid_before, now);
    }

    /// A settle of `key` ended with nothing sent: the ledger lets it be settled again.
    pub fn free(&self, key: &Key) {
        self.entries.remove(&digest(key));
    }

    fn insert(&self, key: &Key, state: State, valid_before: i64, now: u64) {
        self.entries
            .insert(digest(key), (state, secs(valid_before)));
        if self.inserts.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
    }

    /// Drop what has expired; past `MAX_ENTRIES`, drop the entries that expire first, and
    /// stop answering `Free`.
    pub fn sweep(&self, now: u64) {
        self.entries.retain(|_, (_, before)| *before > now);
        let len = self.entries.len();
        if len <= MAX_ENTRIES {
            return;
        }
        self.complete.store(false, Ordering::Release);
        let mut befores: Vec<u64> = self.entries.iter().map(|e| e.value().1).collect();
        let cut = len - MAX_ENTRIES * 3 / 4;
        befores.select_nth_unstable(cut);
        let threshold = befores[cut];
        self.entries.retain(|_, (_, before)| *before > threshold);
        tracing::warn!(
            kept = self.entries.len(),
            "authorization index full: misses read the ledger from now on"
        );
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a miss means "free" (alone on the database, the ledger's taken rows loaded).
    pub fn answers_misses(&self) -> bool {
        !self.shared && self.complete.load(Ordering::Acquire)
    }

    /// Load the ledger's taken rows still inside their validity window (a previous run's),
    /// then answer misses. The settles of this run that overlap the load are recorded by
    /// their leaders, so nothing is lost in between.
    pub async fn load(&self, db: &DatabaseConnection, now: u64) -> Result<usize, DbErr> {
        let rows: Vec<LoadedRow> = Entity::find()
            .select_only()
            .column(Column::Network)
            .column(Column::Asset)
            .column(Column::Payer)
            .column(Column::AuthNonce)
            .column(Column::ValidBefore)
            .column(Column::Status)
            .column(Column::TxHash)
            .filter(Column::ValidBefore.gt(now as i64))
            .into_tuple()
            .all(db)
            .await?;
        let mut n = 0;
        for (network, asset, payer, auth_nonce, valid_before, status, tx_hash) in rows {
            // As `authorization_taken` reads a row: failed with nothing sent is free.
            if status == ledger::FAILED && tx_hash.is_none() {
                continue;
            }
            let key = Key {
                network,
                asset,
                payer,
                auth_nonce,
            };
            self.entries
                .insert(digest(&key), (State::Taken, secs(valid_before)));
            n += 1;
        }
        if self.entries.len() <= MAX_ENTRIES {
            self.complete.store(true, Ordering::Release);
        } else {
            self.sweep(now);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::Address;

    fn key(n: u8) -> Key {
        Key::new(
            "base-sepolia",
            Address::ZERO,
            Address::repeat_byte(1),
            B256::repeat_byte(n),
        )
    }

    #[test]
    fn a_miss_is_free_only_when_alone_and_loaded() {
        let alone = AuthorizationIndex::new(false);
        assert_eq!(alone.lookup(&key(1)), Lookup::Ask);
        alone.complete.store(true, Ordering::Release);
        assert_eq!(alone.lookup(&key(1)), Lookup::Free);
        alone.taken(&key(1), 100, 0);
        assert_eq!(alone.lookup(&key(1)), Lookup::Taken);
        alone.unsure(&key(1), 100, 0);
        assert_eq!(alone.lookup(&key(1)), Lookup::Ask);
        alone.free(&key(1));
        assert_eq!(alone.lookup(&key(1)), Lookup::Free);

        let shared = AuthorizationIndex::new(true);
        shared.complete.store(true, Ordering::Release);
        assert_eq!(shared.lookup(&key(2)), Lookup::Ask);
        shared.taken(&key(2), 100, 0);
        assert_eq!(shared.lookup(&key(2)), Lookup::Taken);
    }

    #[test]
    fn expired_entries_leave_and_a_full_index_stops_answering_misses() {
        let index = AuthorizationIndex::new(false);
        index.complete.store(true, Ordering::Release);
        index.taken(&key(1), 10, 0);
        index.taken(&key(2), 1000, 0);
        index.sweep(500);
        assert_eq!(index.len(), 1);
        assert_eq!(index.lookup(&key(2)), Lookup::Taken);
        for i in 0..(MAX_ENTRIES + 10) {
            let k = Key::new(
                "n",
                Address::ZERO,
                Address::ZERO,
                B256::from(alloy::primitives::U256::from(i)),
            );
            index
                .entries
                .insert(digest(&k), (State::Taken, 600 + i as u64));
        }
        index.sweep(500);
        assert!(index.len() <= MAX_ENTRIES);
        assert!(!index.answers_misses());
        assert_eq!(index.lookup(&key(3)), Lookup::Ask);
    }
}
