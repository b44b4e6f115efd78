//! verify: the method's off-chain checks, "already used" from memory or the ledger, the
//! method's on-chain judgement; the answer cached briefly (and never served once a settle of
//! the payment has begun).

use std::sync::Arc;
use std::time::Instant;

use alloy::primitives::U256;
use x402::permit2::Phase;
use x402::proto::PaymentRequest;
use x402::Reason;

use super::{default_sender, Facilitator, NetworkRuntime, VerifyAnswer};
use crate::error::ServiceResult;
use crate::ledger::{self, Status};
use crate::methods::Resolved;

/// `verify_cache` drops its expired answers every this many inserts.
const VERIFY_CACHE_SWEEP_EVERY: usize = 4096;

impl Facilitator {
    pub async fn verify(&self, req: &PaymentRequest) -> ServiceResult<VerifyAnswer> {
        if let Some(answer) = self.verify_stateful(req).await? {
            return Ok(answer);
        }
        let now = (self.inner.clock)();
        let payer = Some(req.payload.authorization.from);
        // The mirror at the current head, before the cache: its answer costs no RPC call and
        // is never older than the last block.
        if let Some(answer) = self.verify_from_mirror(req, now) {
            return Ok(answer);
        }
        let cached = self
            .inner
            .verify_cache
            .get(&req.request_hash)
            .filter(|hit| hit.value().0.elapsed() < self.inner.config.verify_cache_ttl)
            .map(|hit| hit.value().1.clone());
        if let Some(mut answer) = cached {
            // A cached "valid" is still subject to the ledger: once a settle of the payment
            // has begun (here or on another instance), it is used.
            if answer.is_valid {
                if let Some(rt) = self.runtime_for(req) {
                    if self.authorization_taken(rt, req).await? {
                        return Ok(VerifyAnswer {
                            is_valid: false,
                            invalid_reason: Some(Reason::InvalidExactEvmNonceAlreadyUsed),
                            payer,
                            cached: false,
                            extra: None,
                        });
                    }
                }
            }
            answer.cached = true;
            return Ok(answer);
        }
        let answer = match self.check(req).await? {
            Ok(()) => VerifyAnswer {
                is_valid: true,
                invalid_reason: None,
                payer,
                cached: false,
                extra: None,
            },
            Err(reason) => VerifyAnswer {
                is_valid: false,
                invalid_reason: Some(reason),
                payer,
                cached: false,
                extra: None,
            },
        };
        // Cache only while the answer cannot change by the clock alone.
        let valid_before = req.payload.authorization.valid_before;
        if !answer.is_valid
            || valid_before > U256::from(now + 6 + self.inner.config.verify_cache_ttl.as_secs())
        {
            self.inner
                .verify_cache
                .insert(req.request_hash, (Instant::now(), answer.clone()));
            let inserts = self
                .inner
                .verify_cache_inserts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if inserts % VERIFY_CACHE_SWEEP_EVERY == VERIFY_CACHE_SWEEP_EVERY - 1 {
                // Expired answers are never served again: without this they stayed forever.
                let ttl = self.inner.config.verify_cache_ttl;
                self.inner.verify_cache.retain(|_, v| v.0.elapsed() < ttl);
            }
        }
        Ok(answer)
    }

    /// A method with state of its own (payment channels) answers itself: no mirror, no cache
    /// (a voucher verified twice is a replay the second time), no ledger. `None`: not such a
    /// method.
    async fn verify_stateful(&self, req: &PaymentRequest) -> ServiceResult<Option<VerifyAnswer>> {
        let own = self
            .inner
            .methods
            .candidates(req)
            .first()
            .is_some_and(|m| m.answers_verify());
        if !own {
            return Ok(None);
        }
        let payer = Some(req.payload.authorization.from);
        let answer = |reason: Option<Reason>, extra| VerifyAnswer {
            is_valid: reason.is_none(),
            invalid_reason: reason,
            payer,
            cached: false,
            extra,
        };
        let Resolved { method, checked } = match self.resolve(req, Phase::Verify) {
            Ok(r) => r,
            Err(reason) => return Ok(Some(answer(Some(reason), None))),
        };
        let rt = self.runtime_for(req).map(Arc::as_ref);
        let ctx = self.method_context(rt);
        let own = method.verify_own(&ctx, req, &checked).await?;
        Ok(Some(answer(own.reason, own.extra)))
    }

    /// All checks, off-chain then on-chain. `Err(reason)` is a protocol answer.
    pub(super) async fn check(&self, req: &PaymentRequest) -> ServiceResult<Result<(), Reason>> {
        let Resolved { method, checked } = match self.resolve(req, Phase::Verify) {
            Ok(r) => r,
            Err(reason) => return Ok(Err(reason)),
        };
        let Some(rt) = self.runtime_for(req) else {
            return Ok(Err(Reason::InvalidNetwork));
        };
        // A payment this facilitator has settled (or is settling) is never valid again. Known
        // in memory, or read from the ledger while the node simulates.
        let key = method.ledger_key(rt.entry.info.v1_name, req);
        let ctx = self.method_context(Some(rt));
        let from = default_sender(rt, method.as_ref(), req);
        let judge = method.judge(&ctx, req, &checked, from, Phase::Verify);
        match self.taken_here(&key) {
            Some(true) => Ok(Err(Reason::InvalidExactEvmNonceAlreadyUsed)),
            Some(false) => Ok(judge.await?.map(|_| ())),
            None => {
                let (taken, judged) = tokio::join!(self.authorization_taken(rt, req), judge);
                if taken? {
                    return Ok(Err(Reason::InvalidExactEvmNonceAlreadyUsed));
                }
                Ok(judged?.map(|_| ()))
            }
        }
    }

    /// Has a settle of this authorization begun, in this process or in the ledger (any
    /// instance)? A row that failed without sending anything does not count: it may be settled
    /// again.
    pub(super) async fn authorization_taken(
        &self,
        rt: &NetworkRuntime,
        req: &PaymentRequest,
    ) -> ServiceResult<bool> {
        let key = self.ledger_key(rt, req);
        if let Some(known) = self.taken_here(&key) {
            return Ok(known);
        }
        Ok(ledger::find(&self.inner.db, &key)
            .await?
            .is_some_and(|row| row.status != Status::Failed || row.tx_hash.is_some()))
    }
}
