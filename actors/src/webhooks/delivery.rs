//! The delivery worker, one per instance. Each pass:
//!
//! 1. **Fan out**: events not yet fanned out become one delivery per matching endpoint (its
//!    events, key and resource filters), in one transaction with marking them fanned out;
//!    PostgreSQL: the events are taken `FOR UPDATE SKIP LOCKED`, so two instances never fan
//!    out the same one (SQLite has one writer anyway).
//! 2. **Claim**: due deliveries (`pending`, `next_attempt_at` passed, no live lease) are taken
//!    in one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`, which sets
//!    `claimed_by` and `lease_until`: one instance each. A killed instance's claims come back
//!    once their lease runs out (longer than the request timeout).
//! 3. **Send**: a signed POST (`signature.rs`) with a timeout, to the addresses the SSRF rule
//!    lets through (`ssrf.rs`), no redirects followed, no proxy. A 2xx answer: `delivered`;
//!    anything else: retried after an exponential backoff with jitter, until `retry_for` has
//!    passed since the delivery was made (24 h by default), then `failed`. Just before the
//!    request the claim is renewed, only while still this instance's and unexpired, so a live
//!    instance never sends what another has taken over; the outcome is written only while the
//!    claim is this instance's (`claimed_by`, `attempts`). At most `concurrency` are claimed
//!    at a time, so none waits behind the others until its lease runs out.
//!
//! Delivery is at least once: a receiver drops duplicates by event id (an instance killed
//! between a receiver's 2xx and its write leaves that delivery to be sent again).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use entities::{resource, webhook, webhook_delivery, webhook_event};
use futures::StreamExt;
use rand::Rng;
use sea_orm::sea_query::{Condition, Expr, LockBehavior, LockType, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::signature;
use super::ssrf::{refused_literal, AllowList, CheckedResolver};
use super::view::EventBody;
use super::{parse_stored_events, EventType};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How often an idle worker looks for work.
    pub poll_interval: Duration,
    /// One request's bound (connect, send, answer).
    pub timeout: Duration,
    /// How long a claim is this instance's: longer than `timeout`.
    pub lease: Duration,
    /// The first retry's delay; each next one doubles, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Retried until this long after the delivery was made, then `failed`.
    pub retry_for: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Events fanned out per pass.
    pub batch: u64,
    pub allow: AllowList,
    pub require_https: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3600),
            retry_for: Duration::from_secs(24 * 3600),
            concurrency: 16,
            batch: 100,
            allow: AllowList::default(),
            require_https: false,
        }
    }
}

/// The delay before retry number `attempts` (1 = after the first failure): `base * 2^(n-1)`,
/// at most `max`, of which a random half is dropped (jitter: retries of many deliveries that
/// failed together spread out).
pub fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(30));
    let full = exp.min(max);
    let half = full / 2;
    half + half.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
}

/// The worker of this instance (`instance`: its fleet id, written on its claims).
#[derive(Clone)]
pub struct Worker {
    db: DatabaseConnection,
    instance: Arc<str>,
    config: Arc<DeliveryConfig>,
    http: reqwest::Client,
}

impl Worker {
    pub fn new(
        db: DatabaseConnection,
        instance: &str,
        config: DeliveryConfig,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver {
                allow: config.allow.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!(
                "x402-facilitator-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self {
            db,
            instance: instance.into(),
            config: Arc::new(config),
            http,
        })
    }

    /// Run until the runtime stops.
    pub fn start(self) {
        tokio::spawn(async move {
            loop {
                match self.pass().await {
                    Ok(0) => tokio::time::sleep(self.config.poll_interval).await,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook delivery pass failed");
                        tokio::time::sleep(self.config.poll_interval).await;
                    }
                }
            }
        });
    }

    /// One pass: fan out, claim, send. Returns how much was done (0: idle).
    pub async fn pass(&self) -> Result<usize, DbErr> {
        let fanned = fan_out(&self.db, self.config.batch).await?;
        let claimed = self.claim().await?;
        let n = claimed.len();
        futures::stream::iter(claimed)
            .for_each_concurrent(self.config.concurrency.max(1), |d| async move {
                if let Err(e) = self.deliver(d).await {
                    tracing::warn!(error = %e, "webhook delivery outcome not recorded; its lease will expire");
                }
            })
            .await;
        Ok(fanned + n)
    }

    async fn claim(&self) -> Result<Vec<webhook_delivery::Model>, DbErr> {
        use webhook_delivery::Column as D;
        let now = Utc::now();
        let backend = self.db.get_database_backend();
        let mut pick = Query::select();
        pick.column(D::Id)
            .from(webhook_delivery::Entity)
            .and_where(D::Status.eq(PENDING))
            .and_where(D::NextAttemptAt.lte(now))
            .cond_where(
                Condition::any()
                    .add(D::LeaseUntil.is_null())
                    .add(D::LeaseUntil.lt(now)),
            )
            .order_by(D::NextAttemptAt, sea_orm::Order::Asc)
            // No more than can be sent at once: a claim waiting behind others could outlive
            // its lease and be taken (and sent) by another instance too.
            .limit(self.config.concurrency.max(1) as u64);
        if backend == DatabaseBackend::Postgres {
            pick.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let lease = chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        let take = Query::update()
            .table(webhook_delivery::Entity)
            .value(D::ClaimedBy, self.instance.as_ref())
            .value(D::LeaseUntil, now + lease)
            .value(D::UpdatedAt, now)
            .and_where(D::Id.in_subquery(pick))
            .returning_all()
            .to_owned();
        webhook_delivery::Entity::find()
            .from_raw_sql(backend.build(&take))
            .all(&self.db)
            .await
    }

    /// Attempt one claimed delivery and record the outcome.
    async fn deliver(&self, d: webhook_delivery::Model) -> Result<(), DbErr> {
        let hook = webhook::Entity::find_by_id(d.webhook_id)
            .one(&self.db)
            .await?;
        let event = webhook_event::Entity::find_by_id(d.event_row_id)
            .one(&self.db)
            .await?;
        let (Some(hook), Some(event)) = (hook, event) else {
            // Deleted meanwhile (the delivery goes with its endpoint).
            return Ok(());
        };
        if !self.still_ours(&d).await? {
            return Ok(());
        }
        let outcome = if hook.enabled {
            self.send(&hook, &event).await
        } else {
            Err((None, "endpoint disabled".to_owned()))
        };
        self.record(&d, outcome).await
    }

    /// Renew the claim for one more lease, just before sending: `false` if it is no longer
    /// ours (it outlived its lease and another instance took it), and nothing is sent. The
    /// request is bounded by `timeout`, well inside the renewed lease.
    async fn still_ours(&self, d: &webhook_delivery::Model) -> Result<bool, DbErr> {
        use webhook_delivery::Column as D;
        let now = Utc::now();
        let lease = chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        let res = webhook_delivery::Entity::update_many()
            .col_expr(D::LeaseUntil, Expr::value(now + lease))
            .filter(D::Id.eq(d.id))
            .filter(D::ClaimedBy.eq(self.instance.as_ref()))
            .filter(D::Attempts.eq(d.attempts))
            .filter(D::Status.eq(PENDING))
            .filter(D::LeaseUntil.gt(now))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// POST the event; `Ok(status)` on a 2xx answer, else the status (if any) and why.
    async fn send(
        &self,
        hook: &webhook::Model,
        event: &webhook_event::Model,
    ) -> Result<u16, (Option<u16>, String)> {
        let url = reqwest::Url::parse(&hook.url).map_err(|e| (None, format!("bad url: {e}")))?;
        if self.config.require_https && url.scheme() != "https" {
            return Err((None, "https is required in production".to_owned()));
        }
        if let Some(refused) = refused_literal(&url, &self.config.allow) {
            return Err((None, refused.to_string()));
        }
        let body = serde_json::to_vec(&EventBody::of(event)).map_err(|e| (None, e.to_string()))?;
        let t = Utc::now().timestamp();
        let res = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::HEADER, signature::sign(&hook.secret, t, &body))
            .header(signature::EVENT_ID_HEADER, &event.event_id)
            .header(signature::EVENT_TYPE_HEADER, &event.event_type)
            .body(body)
            .send()
            .await
            .map_err(|e| (None, error_chain(&e)))?;
        let status = res.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err((Some(status.as_u16()), format!("answered {status}")))
        }
    }

    async fn record(
        &self,
        d: &webhook_delivery::Model,
        outcome: Result<u16, (Option<u16>, String)>,
    ) -> Result<(), DbErr> {
        use webhook_delivery::Column as D;
        let now = Utc::now();
        let attempts = d.attempts + 1;
        let mut update = webhook_delivery::Entity::update_many()
            .col_expr(D::Attempts, Expr::value(attempts))
            .col_expr(D::ClaimedBy, Expr::value(Option::<String>::None))
            .col_expr(
                D::LeaseUntil,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .col_expr(D::UpdatedAt, Expr::value(now));
        update = match outcome {
            Ok(code) => update
                .col_expr(D::Status, Expr::value(DELIVERED))
                .col_expr(D::LastStatusCode, Expr::value(code as i32))
                .col_expr(D::LastError, Expr::value(Option::<String>::None))
                .col_expr(D::DeliveredAt, Expr::value(now)),
            Err((code, why)) => {
                let window = chrono::Duration::from_std(self.config.retry_for).unwrap_or_default();
                let delay = backoff(
                    attempts as u32,
                    self.config.backoff_base,
                    self.config.backoff_max,
                );
                let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
                let status = if next - d.created_at > window {
                    FAILED
                } else {
                    PENDING
                };
                tracing::info!(delivery = d.id, attempts, %why, status, "webhook not delivered");
                update
                    .col_expr(D::Status, Expr::value(status))
                    .col_expr(D::LastStatusCode, Expr::value(code.map(i32::from)))
                    .col_expr(D::LastError, Expr::value(truncate(&why, 500)))
                    .col_expr(D::NextAttemptAt, Expr::value(next))
            }
        };
        update
            .filter(D::Id.eq(d.id))
            .filter(D::ClaimedBy.eq(self.instance.as_ref()))
            .filter(D::Attempts.eq(d.attempts))
            .filter(D::Status.eq(PENDING))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// An error with its causes (reqwest's own message says little: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Whether a settlement (its `payTo` and `asset`) pays one of these resources' `accepts`.
fn pays_resource(event: &webhook_event::Model, resources: &[&resource::Model]) -> bool {
    let same = |a: Option<&str>, b: Option<&String>| match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, _) => true,
        (Some(_), None) => false,
    };
    resources.iter().any(|r| {
        r.accepts.as_array().into_iter().flatten().any(|a| {
            a["payTo"].as_str().is_some()
                && same(a["payTo"].as_str(), event.pay_to.as_ref())
                && same(a["asset"].as_str(), event.asset.as_ref())
        })
    })
}

/// Whether `hook` wants `event`.
fn wants(
    hook: &webhook::Model,
    event: &webhook_event::Model,
    resources: &HashMap<i64, resource::Model>,
) -> bool {
    let Some(kind) = EventType::parse(&event.event_type) else {
        return false;
    };
    if !hook.enabled || !parse_stored_events(&hook.events).contains(&kind) {
        return false;
    }
    if hook.created_at > event.created_at {
        return false; // registered after it happened
    }
    if let Some(keys) = hook.client_ids.as_deref() {
        let keys: Vec<String> = serde_json::from_str(keys).unwrap_or_default();
        if !event.client_id.as_ref().is_some_and(|c| keys.contains(c)) {
            return false;
        }
    }
    if let Some(ids) = hook.resource_ids.as_deref() {
        if event.settlement_id.is_none() {
            return true; // a key event belongs to no resource
        }
        let ids: Vec<i64> = serde_json::from_str(ids).unwrap_or_default();
        let chosen: Vec<&resource::Model> = ids.iter().filter_map(|i| resources.get(i)).collect();
        if !pays_resource(event, &chosen) {
            return false;
        }
    }
    true
}

/// Make the deliveries of up to `batch` events not yet fanned out; returns how many events.
pub async fn fan_out(db: &DatabaseConnection, batch: u64) -> Result<usize, DbErr> {
    use webhook_event::Column as E;
    let txn = db.begin().await?;
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        // Take the write lock first (a write that changes nothing): a read that later wants to
        // write would be refused (busy) if another writer committed meanwhile.
        webhook_event::Entity::update_many()
            .col_expr(E::FannedOut, Expr::col(E::FannedOut).into())
            .filter(E::Id.eq(-1))
            .exec(&txn)
            .await?;
    }
    let mut pick = webhook_event::Entity::find()
        .filter(E::FannedOut.eq(false))
        .order_by_asc(E::Id)
        .limit(batch);
    if db.get_database_backend() == DatabaseBackend::Postgres {
        pick = pick.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let events = pick.all(&txn).await?;
    if events.is_empty() {
        return Ok(0);
    }
    let users: Vec<i64> = events.iter().map(|e| e.user_id).collect();
    let hooks = webhook::Entity::find()
        .filter(webhook::Column::UserId.is_in(users.clone()))
        .filter(webhook::Column::Enabled.eq(true))
        .all(&txn)
        .await?;
    let resources: HashMap<i64, resource::Model> = if hooks.iter().any(|h| h.resource_ids.is_some())
    {
        resource::Entity::find()
            .filter(resource::Column::UserId.is_in(users))
            .all(&txn)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect()
    } else {
        HashMap::new()
    };
    let now = Utc::now();
    let mut rows = Vec::new();
    for event in &events {
        for hook in hooks.iter().filter(|h| h.user_id == event.user_id) {
            if wants(hook, event, &resources) {
                rows.push(webhook_delivery::ActiveModel {
                    webhook_id: Set(hook.id),
                    event_row_id: Set(event.id),
                    status: Set(PENDING.to_owned()),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                });
            }
        }
    }
    for chunk in rows.chunks(500) {
        webhook_delivery::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    webhook_delivery::Column::WebhookId,
                    webhook_delivery::Column::EventRowId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .do_nothing()
            .exec(&txn)
            .await?;
    }
    webhook_event::Entity::update_many()
        .col_expr(E::FannedOut, Expr::value(true))
        .filter(E::Id.is_in(events.iter().map(|e| e.id)))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(events.len())
}

/// Events (and their deliveries) older than `age` go: the log keeps what a merchant may still
/// ask about. An event whose delivery is still pending stays.
pub async fn purge(db: &DatabaseConnection, age: chrono::Duration) -> Result<u64, DbErr> {
    use webhook_event::Column as E;
    let res = webhook_event::Entity::delete_many()
        .filter(E::CreatedAt.lt(Utc::now() - age))
        .filter(E::FannedOut.eq(true))
        .filter(
            E::Id.not_in_subquery(
                Query::select()
                    .column(webhook_delivery::Column::EventRowId)
                    .from(webhook_delivery::Entity)
                    .and_where(webhook_delivery::Column::Status.eq(PENDING))
                    .to_owned(),
            ),
        )
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_bound() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(3600);
        for n in 1..=12u32 {
            let full = (base * 2u32.pow(n - 1)).min(max);
            for _ in 0..50 {
                let d = backoff(n, base, max);
                assert!(d >= full / 2 && d <= full, "attempt {n}: {d:?} of {full:?}");
            }
        }
        assert!(backoff(60, base, max) <= max);
    }

    #[test]
    fn the_default_retries_last_at_least_a_day() {
        let c = DeliveryConfig::default();
        assert!(c.retry_for >= Duration::from_secs(24 * 3600));
        assert!(c.lease > c.timeout);
    }
}
