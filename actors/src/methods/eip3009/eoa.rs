//! EIP-3009 from an EOA: the payer's own 65-byte ECDSA signature (it recovers to `from`). The
//! `(v, r, s)` overload of `transferWithAuthorization`, simulated with one `eth_call` at verify
//! and one `eth_estimateGas` at settle; any signer may send it, so it may join a batch, and the
//! state mirror can judge it without the node.

use alloy::primitives::Address;
use x402::exact::evm as exact;
use x402::permit2::Phase;
use x402::proto::PaymentRequest;
use x402::Reason;

use super::smart_wallet::PaymentCall;
use super::{Run, Shared};
use crate::methods::{Checked, MethodContext, MethodFuture, MethodKey, PaymentMethod, SettleCall};
use crate::mirror;

/// The EIP-3009 method of EOA payers.
pub struct Eoa {
    shared: Shared,
}

impl Eoa {
    pub fn new(shared: Shared) -> Self {
        Self { shared }
    }
}

/// The payer's own ECDSA signature: what the token checks without calling a wallet.
fn is_eoa(checked: &Checked) -> bool {
    checked
        .get::<exact::OffchainVerified>()
        .is_some_and(|v| !v.needs_onchain_signature_check)
}

impl PaymentMethod for Eoa {
    fn name(&self) -> &'static str {
        "eip3009-eoa"
    }

    fn keys(&self) -> Vec<MethodKey> {
        super::keys()
    }

    fn claims(&self, _req: &PaymentRequest, checked: &Checked) -> bool {
        is_eoa(checked)
    }

    fn check(
        &self,
        ctx: &MethodContext<'_>,
        req: &PaymentRequest,
        _phase: Phase,
    ) -> Result<Checked, Reason> {
        super::check(ctx, req)
    }

    fn judge<'a>(
        &'a self,
        ctx: &'a MethodContext<'a>,
        req: &'a PaymentRequest,
        checked: &'a Checked,
        from: Address,
        phase: Phase,
    ) -> MethodFuture<'a, Result<SettleCall, Reason>> {
        Box::pin(async move {
            let (Some(rt), Ok(v)) = (ctx.runtime, super::verified(checked)) else {
                return Ok(Err(Reason::InvalidNetwork));
            };
            let call = PaymentCall::direct(req.asset, super::transfer_calldata(req, v));
            let run = match phase {
                Phase::Verify => Run::Call,
                Phase::Settle => Run::Estimate,
            };
            let view = self
                .shared
                .simulate_then_diagnose(ctx, rt, req, from, call, run)
                .await?;
            Ok(view.judged(req))
        })
    }

    fn batchable(&self, req: &PaymentRequest, call: &SettleCall) -> bool {
        call.to == req.asset
    }

    fn mirror_payment(&self, req: &PaymentRequest) -> Option<mirror::Payment> {
        Some(crate::methods::mirror_transfer(req))
    }

    fn unsimulated_call(&self, req: &PaymentRequest, checked: &Checked) -> Option<SettleCall> {
        let v = super::verified(checked).ok()?;
        is_eoa(checked).then(|| SettleCall {
            to: req.asset,
            data: super::transfer_calldata(req, v),
            gas_limit: None,
        })
    }
}
