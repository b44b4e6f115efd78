//! The verify fast path's memory: "already used" comes from memory (`AuthorizationIndex`),
//! not from the ledger; a miss the index cannot answer (other instances on the database)
//! reads the ledger concurrently with the method's simulation (one round trip when a payment
//! is good: `crate::methods`).

use std::time::Instant;

use alloy::primitives::U256;
use x402::Reason;

use super::{Facilitator, SettleAnswer};
use crate::authorizations::{AuthorizationIndex, Lookup};
use crate::error::ServiceResult;
use crate::ledger::Key;

/// What the fast path keeps in memory.
pub(super) struct FastPath {
    pub(super) index: AuthorizationIndex,
}

impl FastPath {
    pub(super) fn new(shared_ledger: bool) -> Self {
        Self {
            index: AuthorizationIndex::new(shared_ledger),
        }
    }

    /// Record a settle leader's end in the index.
    pub(super) fn settled(
        &self,
        key: &Key,
        valid_before: U256,
        result: &ServiceResult<SettleAnswer>,
        now: u64,
    ) {
        let before = i64::try_from(valid_before).unwrap_or(i64::MAX);
        match result {
            Ok(a)
                if a.success
                    || a.transaction.is_some()
                    || matches!(
                        a.error_reason,
                        Some(Reason::InvalidExactEvmNonceAlreadyUsed | Reason::SettlementPending)
                    ) =>
            {
                self.index.taken(key, before, now)
            }
            // Refused before anything was sent: the ledger lets it be settled again.
            Ok(_) => self.index.free(key),
            Err(_) => self.index.unsure(key, before, now),
        }
    }
}

impl Facilitator {
    /// Is this authorization known taken, or known free, without the database? `None`: ask it.
    pub(super) fn taken_here(&self, key: &Key) -> Option<bool> {
        if self.inner.in_flight.contains_key(key) {
            return Some(true);
        }
        match self.inner.fast.index.lookup(key) {
            Lookup::Taken => Some(true),
            Lookup::Free => Some(false),
            Lookup::Ask => None,
        }
    }

    /// Load the ledger's taken authorizations into memory (start-up): from then on, alone on
    /// the database, verify reads no ledger row.
    pub async fn load_authorization_index(&self) -> ServiceResult<usize> {
        let now = (self.inner.clock)();
        let started = Instant::now();
        let n = self.inner.fast.index.load(&self.inner.db, now).await?;
        tracing::info!(
            authorizations = n,
            answers_misses = self.inner.fast.index.answers_misses(),
            took_ms = started.elapsed().as_millis() as u64,
            "authorization index loaded"
        );
        Ok(n)
    }
}
