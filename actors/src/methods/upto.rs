//! `upto` (x402 `upto` scheme on EVM, through Permit2): the payer signs a maximum, the resource
//! server settles what it used. Its checks, judgement and call are Permit2's (`super::permit2`);
//! what is its own: the proxy takes the settlement only from `witness.facilitator`, so that
//! signer must send it (never another instance's, never in a batch).

use alloy::primitives::Address;
use x402::permit2::Phase;
use x402::proto::PaymentRequest;
use x402::Reason;

use super::{permit2, Checked, MethodContext, MethodFuture, MethodKey, PaymentMethod, SettleCall};

/// The `upto` method.
pub struct Upto;

impl PaymentMethod for Upto {
    fn name(&self) -> &'static str {
        "permit2-upto"
    }

    fn keys(&self) -> Vec<MethodKey> {
        permit2::keys("upto")
    }

    fn check(
        &self,
        ctx: &MethodContext<'_>,
        req: &PaymentRequest,
        phase: Phase,
    ) -> Result<Checked, Reason> {
        permit2::check(ctx, req, phase)
    }

    fn judge<'a>(
        &'a self,
        ctx: &'a MethodContext<'a>,
        req: &'a PaymentRequest,
        checked: &'a Checked,
        from: Address,
        phase: Phase,
    ) -> MethodFuture<'a, Result<SettleCall, Reason>> {
        Box::pin(permit2::judge(ctx, req, checked, from, phase))
    }

    fn required_sender(&self, req: &PaymentRequest) -> Option<Address> {
        permit2::required_sender(req)
    }

    /// As Permit2 `exact`: the amount settled is pending against the owner while in flight.
    fn pending_transfer(&self, req: &PaymentRequest) -> Option<crate::mirror::Payment> {
        Some(super::mirror_transfer(req))
    }
}
