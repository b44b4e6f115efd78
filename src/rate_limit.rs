//! Per-client-key rate limits on `/verify`, `/settle` and `/supported`: a token bucket per key
//! (GCRA), so that one leaked key cannot flood the service and burn the operator's gas. The
//! default comes from `limits.client_rate_limit_per_second` (`0` = unlimited); the operator
//! overrides one key with `PATCH /admin/clients/{id}` `{"rateLimitPerSecond": n}`. An account
//! has a bucket of its own that all its keys draw from besides theirs
//! (`limits.account_rate_limit_per_second`, `PATCH /admin/users/{id}`; `Subject::Account`), so
//! that more keys do not buy more requests.
//!
//! On PostgreSQL the bucket is a row shared by every instance (`rate_limit_states`: its
//! theoretical arrival time, moved by one atomic upsert per request on the database's clock),
//! so a fleet lets a key through at its limit, not at N times it. That costs a limited key one
//! database round trip per request; an unlimited one makes no call. SQLite serves one
//! instance: its buckets stay in memory (`governor`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponse;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use facilitator_actors::ServiceError;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement};

use crate::config::LimitSettings;
use crate::error::{retry_after_secs, ApiError};

type Bucket = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// Where a key stands after a request it was allowed (the `RateLimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
}

impl Allowance {
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (IETF httpapi ratelimit
    /// headers draft).
    fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("RateLimit-Limit", self.limit.to_string()),
            ("RateLimit-Remaining", self.remaining.to_string()),
            ("RateLimit-Reset", self.reset_secs.to_string()),
        ]
    }

    /// Of a key's and its account's allowances, the one that runs out first (the one the
    /// headers describe).
    pub fn tighter(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.remaining < a.remaining { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Add the headers to a response of a request this allowance let through.
    pub fn apply(allowance: Option<Self>, mut res: HttpResponse) -> HttpResponse {
        use actix_web::http::header::{HeaderName, HeaderValue};
        for (name, value) in allowance.iter().flat_map(Allowance::headers) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                res.headers_mut().insert(name, value);
            }
        }
        res
    }
}

/// Who a limit applies to.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// One client key, by id.
    Key(&'a str),
    /// All the keys of one account, by user id.
    Account(i64),
}

impl Subject<'_> {
    /// The bucket's name (also the row of the shared state).
    fn name(&self) -> String {
        match self {
            Subject::Key(id) => format!("key:{id}"),
            Subject::Account(id) => format!("account:{id}"),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Subject::Key(_) => "this client key",
            Subject::Account(_) => "this account",
        }
    }
}

pub struct ClientRateLimits {
    default_per_second: u32,
    account_default_per_second: u32,
    buckets: Buckets,
}

enum Buckets {
    /// Per subject: the rate its bucket was built for, and the bucket.
    Memory {
        buckets: DashMap<String, (u32, Arc<Bucket>)>,
        clock: DefaultClock,
    },
    /// Rows of `rate_limit_states`, on PostgreSQL.
    Shared(DatabaseConnection),
}

/// One microsecond, the unit of the shared state.
const MICROS_PER_SECOND: i64 = 1_000_000;

/// One request of `$1` against its bucket, as GCRA (the algorithm `governor` runs in memory):
/// with `$2` = the emission interval 1/rate and `$3` = the burst tolerance rate × interval, a
/// request is let through when `max(tat, now) + interval - now <= tolerance`, and then moves
/// the theoretical arrival time `tat` to `max(tat, now) + interval`. The test and the move are
/// one conditional upsert, so concurrent requests of any instance cannot both take the last
/// cell; `now` is the database's clock, the one clock the instances share. Answers `now`, the
/// new `tat` when let through (else NULL), and the `tat` that refused it.
const TAKE_ONE: &str = "\
WITH clock AS (SELECT (extract(epoch FROM now()) * 1000000)::bigint AS now_us), \
taken AS ( \
    INSERT INTO rate_limit_states (subject, tat) SELECT $1, now_us + $2 FROM clock \
    ON CONFLICT (subject) DO UPDATE \
        SET tat = GREATEST(rate_limit_states.tat + $2, EXCLUDED.tat) \
        WHERE GREATEST(rate_limit_states.tat + $2, EXCLUDED.tat) - (EXCLUDED.tat - $2) <= $3 \
    RETURNING tat) \
SELECT (SELECT now_us FROM clock) AS now_us, (SELECT tat FROM taken) AS taken, \
    (SELECT tat FROM rate_limit_states WHERE subject = $1) AS refused_by";

impl ClientRateLimits {
    /// The buckets of `limits`: in `shared` when a fleet shares that database (a key's rate
    /// limit is held together), else in this instance's memory.
    pub fn for_limits(limits: &LimitSettings, shared: Option<DatabaseConnection>) -> Self {
        let key_default = limits.client_rate_limit_per_second;
        match shared {
            Some(db) => Self::shared(key_default, db),
            None => Self::in_memory(key_default),
        }
        .with_account_default(limits.account_rate_limit_per_second)
    }

    /// Buckets in this instance's memory: one instance (SQLite).
    pub fn in_memory(default_per_second: u32) -> Self {
        Self {
            default_per_second,
            account_default_per_second: 0,
            buckets: Buckets::Memory {
                buckets: DashMap::new(),
                clock: DefaultClock::default(),
            },
        }
    }

    /// Buckets in `db`, a PostgreSQL database every instance of the fleet shares.
    pub fn shared(default_per_second: u32, db: DatabaseConnection) -> Self {
        Self {
            default_per_second,
            account_default_per_second: 0,
            buckets: Buckets::Shared(db),
        }
    }

    /// The limit of an account that has none of its own (`0` = unlimited).
    pub fn with_account_default(mut self, per_second: u32) -> Self {
        self.account_default_per_second = per_second;
        self
    }

    /// A key's rate: its own limit (`0` = unlimited), or the default when it has none.
    pub fn key_rate(&self, own: Option<u32>) -> u32 {
        own.unwrap_or(self.default_per_second)
    }

    /// An account's rate: its own limit (`0` = unlimited), or the account default.
    pub fn account_rate(&self, own: Option<u32>) -> u32 {
        own.unwrap_or(self.account_default_per_second)
    }

    /// Take one request of `subject` from its bucket at `rate` per second (`0` = unlimited:
    /// no bucket, no database call). `Ok(None)`: unlimited.
    pub async fn check(
        &self,
        subject: Subject<'_>,
        rate: u32,
    ) -> Result<Option<Allowance>, ApiError> {
        let name = subject.name();
        let Some(per_second) = NonZeroU32::new(rate) else {
            if let Buckets::Memory { buckets, .. } = &self.buckets {
                buckets.remove(&name);
            }
            return Ok(None);
        };
        let taken = match &self.buckets {
            Buckets::Memory { buckets, clock } => take_in_memory(buckets, clock, name, per_second),
            Buckets::Shared(db) => take_shared(db, name, per_second).await?,
        };
        taken.map(Some).map_err(|wait| {
            let secs = retry_after_secs(wait);
            let denied = Allowance {
                limit: rate,
                remaining: 0,
                reset_secs: secs.max(1),
            };
            let mut err = ApiError::too_many_requests(
                format!(
                    "rate limit of {} exceeded ({rate} requests per second)",
                    subject.what()
                ),
                wait.max(Duration::from_millis(1)),
            );
            for (name, value) in denied.headers() {
                err = err.with_header(name, value);
            }
            err
        })
    }
}

/// Forget the shared state (PostgreSQL) of buckets that are full again, idle subjects: such a
/// row means no more than no row, so a request racing the purge is judged the same.
pub async fn purge_idle(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let done = db
        .execute(Statement::from_string(
            DatabaseBackend::Postgres,
            "DELETE FROM rate_limit_states \
             WHERE tat < (extract(epoch FROM now()) * 1000000)::bigint",
        ))
        .await?;
    Ok(done.rows_affected())
}

/// Where a bucket of `rate` stands after letting a request through.
fn allowance(rate: u32, remaining: u32) -> Allowance {
    // Each used cell comes back after 1/rate s.
    Allowance {
        limit: rate,
        remaining,
        reset_secs: (rate.saturating_sub(remaining) as u64).div_ceil(rate as u64),
    }
}

/// `Err(wait)`: refused, allowed again after `wait`.
fn take_in_memory(
    buckets: &DashMap<String, (u32, Arc<Bucket>)>,
    clock: &DefaultClock,
    name: String,
    per_second: NonZeroU32,
) -> Result<Allowance, Duration> {
    let rate = per_second.get();
    let bucket = {
        let mut entry = buckets
            .entry(name)
            .or_insert_with(|| (rate, Arc::new(bucket(per_second))));
        if entry.0 != rate {
            // The operator changed the limit: a fresh bucket at the new rate.
            *entry = (rate, Arc::new(bucket(per_second)));
        }
        entry.1.clone()
    };
    match bucket.check() {
        Ok(snapshot) => Ok(allowance(rate, snapshot.remaining_burst_capacity())),
        Err(not_until) => Err(not_until.wait_time_from(clock.now())),
    }
}

/// [`TAKE_ONE`] for `name`; `Err(wait)`: refused, allowed again after `wait`.
async fn take_shared(
    db: &DatabaseConnection,
    name: String,
    per_second: NonZeroU32,
) -> Result<Result<Allowance, Duration>, ApiError> {
    let rate = per_second.get();
    let interval = (MICROS_PER_SECOND / rate as i64).max(1);
    let tolerance = interval * rate as i64;
    let row = db
        .query_one(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            TAKE_ONE,
            [name.into(), interval.into(), tolerance.into()],
        ))
        .await
        .and_then(|row| {
            let row = row.ok_or_else(|| DbErr::RecordNotFound("rate limit state".into()))?;
            Ok((
                row.try_get::<i64>("", "now_us")?,
                row.try_get::<Option<i64>>("", "taken")?,
                row.try_get::<Option<i64>>("", "refused_by")?,
            ))
        })
        .map_err(|e| ApiError::from(ServiceError::from(e)))?;
    let micros = |us: i64| Duration::from_micros(us.max(0) as u64);
    Ok(match row {
        // The cells in use: how far the theoretical arrival time is ahead of now.
        (now, Some(tat), _) => {
            let used = ((tat - now).max(0) as u64).div_ceil(interval as u64);
            Ok(allowance(rate, rate.saturating_sub(used as u32)))
        }
        // Allowed again once `tat + interval - now` is back within the tolerance.
        (now, None, Some(tat)) => Err(micros(tat + interval - tolerance - now)),
        // Refused by a row that a purge removed meanwhile: the bucket is full again.
        (_, None, None) => Err(Duration::ZERO),
    })
}

fn bucket(per_second: NonZeroU32) -> Bucket {
    RateLimiter::direct(Quota::per_second(per_second))
        .with_middleware::<StateInformationMiddleware>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_burst_past_the_limit_is_refused_with_headers_and_other_keys_are_not() {
        let limits = ClientRateLimits::in_memory(0);
        let mut allowed = 0;
        let mut refused = None;
        for _ in 0..8 {
            match limits.check(Subject::Key("a"), 5).await {
                Ok(Some(a)) => {
                    assert_eq!(a.limit, 5);
                    allowed += 1;
                }
                Ok(None) => panic!("limited key"),
                Err(e) => refused = Some(e),
            }
        }
        assert_eq!(allowed, 5);
        let e = refused.expect("refused");
        assert_eq!(e.code, crate::error::ErrorCode::TooManyRequests);
        let names: Vec<&str> = e.headers.iter().map(|(n, _)| *n).collect();
        assert!(names.contains(&"Retry-After") && names.contains(&"RateLimit-Remaining"));
        // Unlimited by default, and another key has its own bucket.
        assert_eq!(
            limits
                .check(Subject::Key("b"), limits.key_rate(None))
                .await
                .unwrap(),
            None
        );
        assert!(limits.check(Subject::Key("c"), 5).await.unwrap().is_some());
    }

    #[actix_web::test]
    async fn a_changed_limit_gets_a_fresh_bucket() {
        let limits = ClientRateLimits::in_memory(1);
        assert!(limits
            .check(Subject::Key("a"), limits.key_rate(None))
            .await
            .is_ok());
        assert!(limits
            .check(Subject::Key("a"), limits.key_rate(None))
            .await
            .is_err());
        assert_eq!(
            limits
                .check(Subject::Key("a"), 3)
                .await
                .unwrap()
                .unwrap()
                .remaining,
            2
        );
    }
}
