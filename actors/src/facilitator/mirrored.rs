//! The state mirror in verify and settle (`crate::mirror`): a mirrored EOA payer's verify is
//! answered from memory, and a batched settle of one is cleared without a simulation; our
//! settles count against their payer until the chain shows them.

use std::sync::Arc;

use x402::permit2::Phase;
use x402::proto::PaymentRequest;
use x402::Reason;

use super::{Facilitator, NetworkRuntime, SettleAnswer, VerifyAnswer};
use crate::error::ServiceResult;
use crate::methods::{Checked, PaymentMethod, Resolved, SettleCall};
use crate::mirror::{self, Fallback, Judged, Mirror};
use crate::settlement::batch;

/// The mirror of the payment's network, and the payment as it counts it (`None`: no mirror,
/// or a method the mirror does not follow: those are left to the simulation).
fn mirrored<'a>(
    rt: &'a NetworkRuntime,
    method: &dyn PaymentMethod,
    req: &PaymentRequest,
) -> Option<(&'a Arc<Mirror>, mirror::Payment)> {
    let payment = method.mirror_payment(req)?;
    Some((rt.mirror.as_ref()?, payment))
}

impl Facilitator {
    /// The answer of the mirror, when it can give one: `None` means simulate (and, for an
    /// account it does not know, it is seeded meanwhile).
    pub(super) fn verify_from_mirror(
        &self,
        req: &PaymentRequest,
        now: u64,
    ) -> Option<VerifyAnswer> {
        let rt = self.runtime_for(req)?;
        let first = self.inner.methods.candidates(req).first()?.clone();
        let (mirror, payment) = mirrored(rt, first.as_ref(), req)?;
        let answer = |reason: Option<Reason>| VerifyAnswer {
            is_valid: reason.is_none(),
            invalid_reason: reason,
            payer: Some(payment.payer),
            cached: false,
            extra: None,
        };
        let Resolved { method, checked } = match self.resolve(req, Phase::Verify) {
            Ok(r) => r,
            Err(reason) => return Some(answer(Some(reason))),
        };
        // Only a payment whose call the mirror can judge (an EOA's own signature).
        method.unsimulated_call(req, &checked)?;
        // Ours first: settled or settling here. Not known here (another instance may have
        // it): the ledger must be read, so the usual path answers.
        match self.taken_here(&method.ledger_key(rt.entry.info.v1_name, req)) {
            Some(true) => return Some(answer(Some(Reason::InvalidExactEvmNonceAlreadyUsed))),
            Some(false) => {}
            None => return None,
        }
        match mirror.judge(&payment, now) {
            Judged::Valid => Some(answer(None)),
            Judged::Refused(reason) => Some(answer(Some(reason))),
            Judged::Fallback(f) => {
                learn_in_background(mirror, &payment, f);
                None
            }
        }
    }

    /// The call of a batched settle when the mirror clears it at the current head, so that it
    /// is not simulated (`settlement.batch_mirror_precheck`): an EIP-3009 payment of a
    /// mirrored EOA payer, on a network where a signer of ours sends the batch. Its amount is
    /// pending against the payer from the same lock that judged it, so two settles that the
    /// balance cannot both cover are not both cleared. `None`: simulate. A clearance that the
    /// chain disagrees with (a transfer in a block the mirror has not applied) costs that
    /// call's gas in the batch, fails alone (`allowFailure`) and is answered from its own log.
    pub(super) fn cleared_by_mirror(
        &self,
        rt: &NetworkRuntime,
        method: &dyn PaymentMethod,
        req: &PaymentRequest,
        checked: &Checked,
    ) -> Option<SettleCall> {
        if !self.mirror_precheck() || !rt.router.has_available() {
            return None;
        }
        if method.required_sender(req).is_some() {
            return None;
        }
        let call = method.unsimulated_call(req, checked)?;
        if !method.batchable(req, &call) {
            return None;
        }
        let (mirror, payment) = mirrored(rt, method, req)?;
        let now = (self.inner.clock)();
        match mirror.reserve(&payment, now, valid_before(req)) {
            Judged::Valid => Some(SettleCall {
                gas_limit: Some(batch::MIRRORED_GAS_LIMIT),
                ..call
            }),
            Judged::Fallback(f) => {
                learn_in_background(mirror, &payment, f);
                None
            }
            Judged::Refused(_) => None,
        }
    }

    /// A settle is about to send `req`: its amount is pending against the payer (every method
    /// that moves a mirrored token: EIP-3009 and Permit2 alike).
    pub(super) fn mirror_settling(
        &self,
        rt: &NetworkRuntime,
        method: &dyn PaymentMethod,
        req: &PaymentRequest,
    ) {
        if let Some((mirror, payment)) = pending(rt, method, req) {
            mirror.settling(&payment, valid_before(req));
        }
    }

    /// A settle leader ended: unless the money moved (or may still), it is not pending.
    /// A mined one stays pending until the mirror has applied its block (its `Transfer` is in
    /// the mirrored balance from then on; an EIP-3009 one also ends at its `AuthorizationUsed`).
    pub(super) fn mirror_settled(
        &self,
        rt: &NetworkRuntime,
        method: &dyn PaymentMethod,
        req: &PaymentRequest,
        result: &ServiceResult<SettleAnswer>,
    ) {
        let Some((mirror, payment)) = pending(rt, method, req) else {
            return;
        };
        match result {
            Ok(a) if a.success => {
                if let Some(block) = a.block_number {
                    mirror.mined_in(&payment, block);
                }
            }
            Ok(a) if a.error_reason == Some(Reason::SettlementPending) => {}
            Ok(_) => mirror.not_settled(&payment),
            // Unknown: counted until its `validBefore` (refusing too much, never too little).
            Err(_) => {}
        }
    }
}

/// The mirror of the payment's network and the transfer a settle of it makes (`None`: no
/// mirror, or a method that moves nothing the mirror follows).
fn pending<'a>(
    rt: &'a NetworkRuntime,
    method: &dyn PaymentMethod,
    req: &PaymentRequest,
) -> Option<(&'a Arc<Mirror>, mirror::Payment)> {
    let payment = method.pending_transfer(req)?;
    Some((rt.mirror.as_ref()?, payment))
}

/// What the mirror lacked to judge `payment`, read in the background for the next time: its
/// payer and payee (not mirrored), or its nonce (a payer seeded without its history).
fn learn_in_background(mirror: &Arc<Mirror>, payment: &mirror::Payment, why: Fallback) {
    let (mirror, p) = (mirror.clone(), *payment);
    match why {
        Fallback::UnknownAccount => {
            tokio::spawn(async move { mirror.seed(p.asset, &[p.payer, p.pay_to]).await });
        }
        Fallback::UnknownNonce => {
            tokio::spawn(async move { mirror.read_nonce(p.asset, p.payer, p.nonce).await });
        }
        _ => {}
    }
}

/// The authorization's `validBefore`, in Unix seconds.
fn valid_before(req: &PaymentRequest) -> u64 {
    u64::try_from(req.payload.authorization.valid_before).unwrap_or(u64::MAX)
}
