//! Throttling counters kept in the database, so that neither a restart nor a second instance
//! resets them: failed logins per account and per client IP, signups and token refreshes per
//! IP.
//!
//! One row per (scope, subject). An attempt is *charged before it is judged* (an atomic
//! increment), so concurrent attempts cannot all slip under the limit; a login that turns out
//! right is refunded. Past the limit the subject is locked with exponential backoff: the first
//! lock lasts `lockout`, each further lock in the same window twice as long, never longer than
//! the window. After a lock one more attempt is judged before the next one. Attempts refused
//! for a lock are not counted, so a flood cannot extend the lock forever.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entities::throttle::{Column, Entity};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Failed logins of one account (subject: the normalised email).
    LoginAccount,
    /// Failed logins from one client IP.
    LoginIp,
    /// Signups from one client IP.
    SignupIp,
    /// Token refreshes from one client IP.
    RefreshIp,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::LoginAccount => "login_account",
            Scope::LoginIp => "login_ip",
            Scope::SignupIp => "signup_ip",
            Scope::RefreshIp => "refresh_ip",
        }
    }
}

/// The limit of one scope.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts allowed in a window before the first lock.
    pub limit: u32,
    pub window: Duration,
    /// The first lock; each further lock in the window doubles it (capped at the window).
    pub lockout: Duration,
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; try again after this long.
    Locked {
        retry_after: Duration,
    },
}

impl Verdict {
    pub fn is_allowed(self) -> bool {
        self == Verdict::Allowed
    }
}

fn by_subject(scope: Scope, subject: &str) -> sea_orm::Select<Entity> {
    Entity::find()
        .filter(Column::Scope.eq(scope.as_str()))
        .filter(Column::Subject.eq(subject))
}

/// Not locked at `now`.
fn unlocked(now: DateTime<Utc>) -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(Column::LockedUntil.is_null())
        .add(Column::LockedUntil.lte(now))
}

fn left(until: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (until - now).to_std().unwrap_or_default()
}

fn lock_length(policy: &Policy, locks_so_far: i32) -> Duration {
    let factor = 1u32 << locks_so_far.clamp(0, 20);
    policy.lockout.saturating_mul(factor).min(policy.window)
}

/// Charge one attempt of `subject` and judge it.
pub async fn attempt(
    db: &DatabaseConnection,
    scope: Scope,
    subject: &str,
    policy: &Policy,
) -> Result<Verdict, DbErr> {
    if policy.limit == 0 {
        return Ok(Verdict::Allowed);
    }
    let now = Utc::now();
    let window = chrono::Duration::from_std(policy.window).unwrap_or(chrono::Duration::MAX);
    if let Some(row) = by_subject(scope, subject).one(db).await? {
        if let Some(until) = row.locked_until.filter(|u| *u > now) {
            return Ok(Verdict::Locked {
                retry_after: left(until, now),
            });
        }
        if now - row.window_started_at >= window {
            // A quiet window: start over (optimistic; a concurrent reset is as good).
            Entity::update_many()
                .col_expr(Column::Attempts, Expr::value(0))
                .col_expr(Column::Locks, Expr::value(0))
                .col_expr(Column::WindowStartedAt, Expr::value(now))
                .col_expr(
                    Column::LockedUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .col_expr(Column::UpdatedAt, Expr::value(now))
                .filter(Column::Id.eq(row.id))
                .filter(Column::WindowStartedAt.eq(row.window_started_at))
                .exec(db)
                .await?;
        }
    }
    // Charge first: the increment is atomic and RETURNING gives this attempt's own count, so
    // concurrent attempts are counted one by one and exactly as many as allowed are judged.
    let charged = charge(db, scope, subject, now).await?;
    if let Some(until) = charged.locked_until.filter(|u| *u > now) {
        // Locked between the check above and the charge: not judged, not counted.
        refund(db, scope, subject).await?;
        return Ok(Verdict::Locked {
            retry_after: left(until, now),
        });
    }
    // Each lock that has run out allows one more attempt before the next lock.
    if charged.attempts <= policy.limit as i32 + charged.locks {
        return Ok(Verdict::Allowed);
    }
    // Over the limit: lock, unless a concurrent attempt already did. The attempt that locks is
    // not counted either, so that one attempt is judged after the lock runs out.
    let length = lock_length(policy, charged.locks);
    let until = now + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX);
    let locked = Entity::update_many()
        .col_expr(Column::LockedUntil, Expr::value(until))
        .col_expr(Column::Locks, Expr::col(Column::Locks).add(1))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Scope.eq(scope.as_str()))
        .filter(Column::Subject.eq(subject))
        .filter(unlocked(now))
        .exec(db)
        .await?;
    refund(db, scope, subject).await?;
    if locked.rows_affected == 1 {
        return Ok(Verdict::Locked {
            retry_after: length,
        });
    }
    let until = by_subject(scope, subject)
        .one(db)
        .await?
        .and_then(|r| r.locked_until)
        .unwrap_or(until);
    Ok(Verdict::Locked {
        retry_after: left(until, now),
    })
}

/// An attempt's count right after charging it, the locks so far, and the lock, if any.
struct Charged {
    attempts: i32,
    locks: i32,
    locked_until: Option<DateTime<Utc>>,
}

/// `INSERT … ON CONFLICT DO UPDATE SET attempts = attempts + 1 … RETURNING attempts, locks,
/// locked_until` (PostgreSQL, and SQLite since 3.35).
async fn charge(
    db: &DatabaseConnection,
    scope: Scope,
    subject: &str,
    now: DateTime<Utc>,
) -> Result<Charged, DbErr> {
    use sea_orm::sea_query::Query;
    use sea_orm::ConnectionTrait;
    let insert = Query::insert()
        .into_table(Entity)
        .columns([
            Column::Scope,
            Column::Subject,
            Column::Attempts,
            Column::Locks,
            Column::WindowStartedAt,
            Column::UpdatedAt,
        ])
        .values_panic([
            scope.as_str().into(),
            subject.into(),
            1.into(),
            0.into(),
            now.into(),
            now.into(),
        ])
        .on_conflict(
            OnConflict::columns([Column::Scope, Column::Subject])
                .value(
                    Column::Attempts,
                    Expr::col((Entity, Column::Attempts)).add(1),
                )
                .value(Column::UpdatedAt, Expr::value(now))
                .to_owned(),
        )
        .returning(Query::returning().columns([
            Column::Attempts,
            Column::Locks,
            Column::LockedUntil,
        ]))
        .to_owned();
    let row = db
        .query_one(db.get_database_backend().build(&insert))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("throttle charge returned nothing".into()))?;
    Ok(Charged {
        attempts: row.try_get("", "attempts")?,
        locks: row.try_get("", "locks")?,
        locked_until: row.try_get("", "locked_until")?,
    })
}

/// A success: the subject's count starts over (a login's account).
pub async fn reset(db: &DatabaseConnection, scope: Scope, subject: &str) -> Result<(), DbErr> {
    Entity::delete_many()
        .filter(Column::Scope.eq(scope.as_str()))
        .filter(Column::Subject.eq(subject))
        .filter(unlocked(Utc::now()))
        .exec(db)
        .await?;
    Ok(())
}

/// An attempt that was charged but was no failure after all (a right password, for the IP).
pub async fn refund(db: &DatabaseConnection, scope: Scope, subject: &str) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).sub(1))
        .filter(Column::Scope.eq(scope.as_str()))
        .filter(Column::Subject.eq(subject))
        .filter(Column::Attempts.gt(0))
        .exec(db)
        .await?;
    Ok(())
}

/// Rows whose window is long over and that are not locked: nothing to remember.
pub async fn purge(db: &DatabaseConnection, older_than: Duration) -> Result<u64, DbErr> {
    let now = Utc::now();
    let cutoff = now - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
    let res = Entity::delete_many()
        .filter(Column::UpdatedAt.lt(cutoff))
        .filter(unlocked(now))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_and_stop_at_the_window() {
        let p = Policy {
            limit: 5,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(10),
        };
        assert_eq!(lock_length(&p, 0), Duration::from_secs(10));
        assert_eq!(lock_length(&p, 1), Duration::from_secs(20));
        assert_eq!(lock_length(&p, 2), Duration::from_secs(40));
        assert_eq!(lock_length(&p, 3), Duration::from_secs(60));
        assert_eq!(lock_length(&p, 40), Duration::from_secs(60));
    }
}
