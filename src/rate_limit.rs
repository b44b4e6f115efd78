//! Per-client-key rate limits on `/verify`, `/settle` and `/supported`: a token bucket per key
//! (`governor`'s GCRA), so that one leaked key cannot flood the service and burn the operator's
//! gas. The default comes from `limits.client_rate_limit_per_second` (`0` = unlimited); the
//! operator overrides one key with `PATCH /admin/clients/{id}` `{"rateLimitPerSecond": n}`.
//! An account has a bucket of its own that all its keys draw from besides theirs
//! (`limits.account_rate_limit_per_second`, `PATCH /admin/users/{id}`), so that more keys do not
//! buy more requests.
//!
//! Buckets live in this instance's memory: with N instances behind a load balancer a key gets
//! up to N times its limit (README).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponse;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

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

pub struct ClientRateLimits {
    default_per_second: u32,
    account_default_per_second: u32,
    /// Per subject (a client id, or `account:<user id>`): the rate its bucket was built for,
    /// and the bucket.
    buckets: DashMap<String, (u32, Arc<Bucket>)>,
    clock: DefaultClock,
}

impl ClientRateLimits {
    pub fn new(default_per_second: u32) -> Self {
        Self {
            default_per_second,
            account_default_per_second: 0,
            buckets: DashMap::new(),
            clock: DefaultClock::default(),
        }
    }

    /// The limit of an account that has none of its own (`0` = unlimited).
    pub fn with_account_default(mut self, per_second: u32) -> Self {
        self.account_default_per_second = per_second;
        self
    }

    /// Take one request of `client_id` from its bucket. `own` is the key's own limit (`0` =
    /// unlimited), `None` = the default. `Ok(None)`: unlimited.
    pub fn check(&self, client_id: &str, own: Option<u32>) -> Result<Option<Allowance>, ApiError> {
        self.take(
            client_id,
            own.unwrap_or(self.default_per_second),
            "this client key",
        )
    }

    /// Take one request of an account (all its keys together) from its bucket. `own` is the
    /// account's own limit (`0` = unlimited), `None` = the account default.
    pub fn check_account(
        &self,
        user_id: i64,
        own: Option<u32>,
    ) -> Result<Option<Allowance>, ApiError> {
        self.take(
            &format!("account:{user_id}"),
            own.unwrap_or(self.account_default_per_second),
            "this account",
        )
    }

    /// Take one request of `subject` from its bucket at `rate` per second (`0` = unlimited);
    /// `whose` names it in the refusal.
    fn take(&self, subject: &str, rate: u32, whose: &str) -> Result<Option<Allowance>, ApiError> {
        let Some(per_second) = NonZeroU32::new(rate) else {
            self.buckets.remove(subject);
            return Ok(None);
        };
        let bucket = {
            let mut entry = self
                .buckets
                .entry(subject.to_owned())
                .or_insert_with(|| (rate, Arc::new(bucket(per_second))));
            if entry.0 != rate {
                // The operator changed the key's limit: a fresh bucket at the new rate.
                *entry = (rate, Arc::new(bucket(per_second)));
            }
            entry.1.clone()
        };
        match bucket.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                // Each used cell comes back after 1/rate s.
                let used = rate.saturating_sub(remaining) as u64;
                Ok(Some(Allowance {
                    limit: rate,
                    remaining,
                    reset_secs: used.div_ceil(rate as u64),
                }))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let secs = retry_after_secs(wait);
                let denied = Allowance {
                    limit: rate,
                    remaining: 0,
                    reset_secs: secs.max(1),
                };
                let mut err = ApiError::too_many_requests(
                    format!("rate limit of {whose} exceeded ({rate} requests per second)"),
                    wait.max(Duration::from_millis(1)),
                );
                for (name, value) in denied.headers() {
                    err = err.with_header(name, value);
                }
                Err(err)
            }
        }
    }
}

fn bucket(per_second: NonZeroU32) -> Bucket {
    RateLimiter::direct(Quota::per_second(per_second))
        .with_middleware::<StateInformationMiddleware>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_limit_is_refused_with_headers_and_other_keys_are_not() {
        let limits = ClientRateLimits::new(0);
        let mut allowed = 0;
        let mut refused = None;
        for _ in 0..8 {
            match limits.check("a", Some(5)) {
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
        assert_eq!(limits.check("b", None).unwrap(), None);
        assert!(limits.check("c", Some(5)).unwrap().is_some());
    }

    #[test]
    fn a_changed_limit_gets_a_fresh_bucket() {
        let limits = ClientRateLimits::new(1);
        assert!(limits.check("a", None).is_ok());
        assert!(limits.check("a", None).is_err());
        assert_eq!(limits.check("a", Some(3)).unwrap().unwrap().remaining, 2);
    }
}
