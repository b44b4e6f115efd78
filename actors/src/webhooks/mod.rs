//! Webhooks: a user's endpoints are told when a payment is final (and when its key runs out of
//! credits), by signed HTTP POSTs from a durable outbox.
//!
//! - `outbox.rs`: the event rows, written in the same database transaction as the ledger
//!   change that causes each (no event lost, none invented); only when the user has an
//!   enabled endpoint that wants the event.
//! - `subscriptions.rs`: the endpoints (`/api/v1/webhooks`): create, list, update, delete,
//!   rotate the secret, the delivery log, redeliver.
//! - `delivery.rs`: the worker: fans events out into deliveries, claims due ones under a lease
//!   (`FOR UPDATE SKIP LOCKED` on PostgreSQL), POSTs them, retries with exponential backoff and
//!   jitter, then gives up (`failed`).
//! - `signature.rs`: `X402-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`.
//! - `ssrf.rs`: which addresses a webhook may reach, checked after DNS at delivery.
//! - `view.rs`: the settlement as `GET /settlements/{tx}` shows it, also each event's data.

pub mod delivery;
mod outbox;
pub mod signature;
pub mod ssrf;
pub mod subscriptions;
mod view;

pub use outbox::{
    announce_pending, key_credit_events, settlement_event, settlement_events, SettlementRef,
};
pub use view::Settlement;

static CREDITS_LOW_MARK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(10);

/// `key.credits_low` is sent when a limited key's settle credits fall to this many
/// (`webhooks.credits_low_at`, 10 by default).
pub fn credits_low_mark() -> i64 {
    CREDITS_LOW_MARK.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set at start-up from the configuration.
pub fn set_credits_low_mark(n: i64) {
    CREDITS_LOW_MARK.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// What an endpoint can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A settlement's transaction was mined and succeeded (not yet `confirmations` deep).
    SettlementMined,
    /// Deep enough: final.
    SettlementConfirmed,
    /// Reverted, or undone by a reorg, or (after a `settlement.pending`) never sent.
    SettlementFailed,
    /// The settle answered `settlement_pending`: its transaction was not mined in time.
    SettlementPending,
    /// A reorg moved the payment to another block or transaction, or took it out for good.
    SettlementReorged,
    /// A limited key's settle credits fell to the low mark.
    KeyCreditsLow,
    /// A limited key's settle credits are spent (0 left).
    KeyBudgetSpent,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::SettlementMined,
        EventType::SettlementConfirmed,
        EventType::SettlementFailed,
        EventType::SettlementPending,
        EventType::SettlementReorged,
        EventType::KeyCreditsLow,
        EventType::KeyBudgetSpent,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::SettlementMined => "settlement.mined",
            EventType::SettlementConfirmed => "settlement.confirmed",
            EventType::SettlementFailed => "settlement.failed",
            EventType::SettlementPending => "settlement.pending",
            EventType::SettlementReorged => "settlement.reorged",
            EventType::KeyCreditsLow => "key.credits_low",
            EventType::KeyBudgetSpent => "key.budget_spent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// How a set of event types is stored (`webhooks.events`): comma-separated and comma-wrapped,
/// so that one type is found with `LIKE '%,type,%'`.
pub(crate) fn stored_events(events: &[EventType]) -> String {
    let mut s = String::from(",");
    for e in events {
        s.push_str(e.as_str());
        s.push(',');
    }
    s
}

/// The event types of a stored set (unknown ones skipped).
pub(crate) fn parse_stored_events(s: &str) -> Vec<EventType> {
    s.split(',').filter_map(EventType::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_sets_round_trip_through_their_stored_form() {
        let set = [EventType::SettlementMined, EventType::KeyCreditsLow];
        let stored = stored_events(&set);
        assert_eq!(stored, ",settlement.mined,key.credits_low,");
        assert_eq!(parse_stored_events(&stored), set);
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
        }
        assert_eq!(EventType::parse("settlement"), None);
    }
}
