//! The state mirror in verify and settle (`crate::mirror`): a mirrored EOA payer's verify is
//! answered from memory, and a batched settle of one is cleared without a simulation; our
//! settles count against their payer until the chain shows them.

use std::sync::Arc;

use alloy::primitives::{Address, Bytes};
use x402::exact::evm as exact;
use x402::permit2::Phase;
use x402::proto::PaymentRequest;
use x402::Reason;

use super::permit2::Verified;
use super::{
    ledger_key, transfer_calldata, Facilitator, NetworkRuntime, SettleAnswer, VerifyAnswer,
};
use crate::error::ServiceResult;
use crate::mirror::{self, Fallback, Judged, Mirror};

/// The mirror of an EIP-3009 payment's network, and the payment as it judges it (`None`:
/// no mirror, or a Permit2 payment: those are left to the simulation).
fn mirrored<'a>(
    rt: &'a NetworkRuntime,
    req: &PaymentRequest,
) -> Option<(&'a Arc<Mirror>, mirror::Payment)> {
    if req.permit2.is_some() {
        return None;
    }
    let auth = &req.payload.authorization;
    Some((
        rt.mirror.as_ref()?,
        mirror::Payment {
            asset: req.asset,
            payer: auth.from,
            pay_to: auth.to,
            value: auth.value,
            nonce: auth.nonce,
        },
    ))
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
        let (mirror, payment) = mirrored(rt, req)?;
        let answer = |reason: Option<Reason>| VerifyAnswer {
            is_valid: reason.is_none(),
            invalid_reason: reason,
            payer: Some(payment.payer),
            cached: false,
        };
        let verified = match self.verify_offchain(req, now, Phase::Verify) {
            Ok(Verified::Eip3009(v)) => v,
            Ok(Verified::Permit2(_)) => return None,
            Err(reason) => return Some(answer(Some(reason))),
        };
        if !is_eoa_signature(&verified) {
            return None;
        }
        // Ours first: settled or settling here. Not known here (another instance may have
        // it): the ledger must be read, so the usual path answers.
        match self.taken_here(&ledger_key(rt, req)) {
            Some(true) => return Some(answer(Some(Reason::InvalidExactEvmNonceAlreadyUsed))),
            Some(false) => {}
            None => return None,
        }
        match mirror.judge(&payment, now) {
            Judged::Valid => Some(answer(None)),
            Judged::Refused(reason) => Some(answer(Some(reason))),
            Judged::Fallback(Fallback::UnknownAccount) => {
                seed_in_background(mirror, &payment);
                None
            }
            Judged::Fallback(_) => None,
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
        req: &PaymentRequest,
        verified: &Verified,
    ) -> Option<(Address, Bytes)> {
        if !self.mirror_precheck() || !rt.router.has_available() {
            return None;
        }
        let Verified::Eip3009(v) = verified else {
            return None;
        };
        if !is_eoa_signature(v) || super::permit2::required_sender(req).is_some() {
            return None;
        }
        let (mirror, payment) = mirrored(rt, req)?;
        let now = (self.inner.clock)();
        match mirror.reserve(&payment, now, valid_before(req)) {
            Judged::Valid => Some((req.asset, transfer_calldata(req, v))),
            Judged::Fallback(Fallback::UnknownAccount) => {
                seed_in_background(mirror, &payment);
                None
            }
            _ => None,
        }
    }

    /// A settle is about to send `req`: its amount is pending against the payer.
    pub(super) fn mirror_settling(&self, rt: &NetworkRuntime, req: &PaymentRequest) {
        if let Some((mirror, payment)) = mirrored(rt, req) {
            mirror.settling(&payment, valid_before(req));
        }
    }

    /// A settle leader ended: unless the money moved (or may still), it is not pending.
    /// A mined one stays pending until the mirror applies its block (`AuthorizationUsed`).
    pub(super) fn mirror_settled(
        &self,
        rt: &NetworkRuntime,
        req: &PaymentRequest,
        result: &ServiceResult<SettleAnswer>,
    ) {
        let Some((mirror, payment)) = mirrored(rt, req) else {
            return;
        };
        match result {
            Ok(a) if a.success || a.error_reason == Some(Reason::SettlementPending) => {}
            Ok(_) => mirror.not_settled(&payment),
            // Unknown: counted until its `validBefore` (refusing too much, never too little).
            Err(_) => {}
        }
    }
}

/// Mirror the payer and payee of `payment` (a judgement could not be made without them).
fn seed_in_background(mirror: &Arc<Mirror>, payment: &mirror::Payment) {
    let (mirror, payment) = (mirror.clone(), *payment);
    tokio::spawn(async move {
        mirror
            .seed(payment.asset, &[payment.payer, payment.pay_to])
            .await
    });
}

/// The authorization's `validBefore`, in Unix seconds.
fn valid_before(req: &PaymentRequest) -> u64 {
    u64::try_from(req.payload.authorization.valid_before).unwrap_or(u64::MAX)
}

/// The payer's own 65-byte ECDSA signature: what the token checks without calling a wallet.
fn is_eoa_signature(verified: &exact::OffchainVerified) -> bool {
    !verified.needs_onchain_signature_check
}
