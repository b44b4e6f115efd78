//! Housekeeping: what start-up catches up on before serving (signer leases, the authorization
//! index, settlements a previous run left in flight) and the tasks that then run every few
//! minutes (reconciliation; purges of expired idempotency keys, throttling counters, idle
//! rate-limit rows and unsent failed settlements) or seconds (giving freed memory back).

use std::time::Duration;

use facilitator_actors::facilitator::Facilitator;
use facilitator_actors::{idempotency, ledger, throttle};
use sea_orm::DatabaseConnection;

use crate::config::Settings;

/// Throttling counters untouched this long (and not locked) are forgotten.
const THROTTLE_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Catch up with what a previous run left, then start the periodic tasks. `shared`: other
/// instances use the database too (PostgreSQL), so rate-limit rows live there.
pub async fn start(
    facilitator: &Facilitator,
    db: &DatabaseConnection,
    settings: &Settings,
    shared: bool,
) {
    // Our share of the signer leases before the first request, then kept in the background
    // with the signers' balances (and the fleet's queued settles).
    if let Err(e) = facilitator.keep_leases_once().await {
        tracing::warn!(error = %e, "signer leases not taken at start; retrying in the background");
    }
    facilitator.start_fleet_work();
    // The authorizations a previous run took, in memory for verify (until then, and if this
    // fails, verify reads the ledger).
    if let Err(e) = facilitator.load_authorization_index().await {
        tracing::warn!(error = %e, "authorization index not loaded; verify reads the ledger");
    }
    // Rows a previous run left in flight: resolve what the chain already knows.
    match facilitator.reconcile().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(resolved = n, "reconciled in-flight settlements"),
        Err(e) => tracing::warn!(error = %e, "start-up reconciliation incomplete"),
    }
    let every = Duration::from_secs(settings.settlement.reconcile_interval_secs.max(1));
    spawn_periodic(facilitator.clone(), db.clone(), every, shared);
    // Free pages back to the system after a burst (glibc keeps them otherwise).
    crate::memory::spawn_trimmer(Duration::from_secs(settings.memory.trim_interval_secs));
}

/// Every `every`: rows whose background watch ran out and abandoned claims are reconciled;
/// idempotency keys, throttling counters and refused payments past their time are purged.
fn spawn_periodic(facilitator: Facilitator, db: DatabaseConnection, every: Duration, shared: bool) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            match facilitator.reconcile().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(resolved = n, "reconciled settlements"),
                Err(e) => tracing::warn!(error = %e, "periodic reconciliation incomplete"),
            }
            if let Err(e) = idempotency::purge_expired(&db).await {
                tracing::warn!(error = %e, "expired idempotency keys not purged");
            }
            if let Err(e) = throttle::purge(&db, THROTTLE_MEMORY).await {
                tracing::warn!(error = %e, "old throttling counters not purged");
            }
            if shared {
                if let Err(e) = crate::rate_limit::purge_idle(&db).await {
                    tracing::warn!(error = %e, "idle rate-limit states not purged");
                }
            }
            // Refused payments (nothing sent) keep no row past their time.
            if let Err(e) = ledger::purge_unsent(&db, facilitator.now()).await {
                tracing::warn!(error = %e, "unsent failed settlements not purged");
            }
        }
    });
}
