//! Housekeeping: what start-up catches up on before serving (signer leases, the authorization
//! index, settlements a previous run left in flight) and the tasks that then run every few
//! minutes (reconciliation; purges of expired idempotency keys, throttling counters, idle
//! rate-limit rows, unsent failed settlements and old webhook events) or seconds (giving freed
//! memory back), and the webhook delivery worker.

use std::time::Duration;

use facilitator_actors::facilitator::Facilitator;
use facilitator_actors::{idempotency, ledger, throttle, webhooks};
use sea_orm::DatabaseConnection;

use crate::config::{Environment, Settings};

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
    let keep_webhook_events = chrono::Duration::days(settings.webhooks.keep_days.max(1) as i64);
    spawn_periodic(
        facilitator.clone(),
        db.clone(),
        every,
        shared,
        keep_webhook_events,
    );
    start_webhooks(facilitator, db, settings);
    start_channel_claimer(facilitator, settings);
    // Free pages back to the system after a burst (glibc keeps them otherwise).
    crate::memory::spawn_trimmer(Duration::from_secs(settings.memory.trim_interval_secs));
}

/// The managed claimer of payment channels (`channel_claimer`), when channels are served and
/// the facilitator holds a delegated authorizer key: every `channels_claim_interval_secs` the
/// channels of that key with a withdrawal pending are claimed, every `channels_claim_all_secs`
/// all with an accepted voucher not yet claimed.
fn start_channel_claimer(facilitator: &Facilitator, settings: &Settings) {
    if facilitator.channels_claimer_key().is_none() {
        return;
    }
    let every = Duration::from_secs(settings.settlement.channels_claim_interval_secs.max(1));
    let all_every = Duration::from_secs(settings.settlement.channels_claim_all_secs.max(1));
    let facilitator = facilitator.clone();
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_all = std::time::Instant::now();
        loop {
            tick.tick().await;
            let all = last_all.elapsed() >= all_every;
            match facilitator.claim_channels(all).await {
                Ok(pass) => {
                    if all {
                        last_all = std::time::Instant::now();
                    }
                    if pass.claims > 0 {
                        tracing::info!(
                            claims = pass.claims,
                            channels = pass.claimed,
                            "claimed channel vouchers"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "channel claimer pass incomplete"),
            }
        }
    });
}

/// The webhook delivery worker of this instance (unless `webhooks.deliver` is off).
fn start_webhooks(facilitator: &Facilitator, db: &DatabaseConnection, settings: &Settings) {
    webhooks::set_credits_low_mark(settings.webhooks.credits_low_at);
    if !settings.webhooks.deliver {
        return;
    }
    let production = settings.environment == Environment::Production;
    let config = settings.webhooks.delivery_config(production);
    match webhooks::delivery::Worker::new(db.clone(), facilitator.instance_id(), config) {
        Ok(worker) => worker.start(),
        Err(e) => tracing::error!(error = %e, "webhook delivery not started"),
    }
}

/// Every `every`: rows whose background watch ran out and abandoned claims are reconciled;
/// idempotency keys, throttling counters, refused payments and webhook events past their time
/// are purged.
fn spawn_periodic(
    facilitator: Facilitator,
    db: DatabaseConnection,
    every: Duration,
    shared: bool,
    keep_webhook_events: chrono::Duration,
) {
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
            if let Err(e) = webhooks::delivery::purge(&db, keep_webhook_events).await {
                tracing::warn!(error = %e, "old webhook events not purged");
            }
        }
    });
}
