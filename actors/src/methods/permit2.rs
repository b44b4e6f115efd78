//! Permit2 payments (`exact` via Permit2, with `eip2612GasSponsoring`), and what `upto`
//! (`super::upto`) shares with them.
//!
//! The ledger row is keyed by network, token, owner and the Permit2 nonce as 32 bytes (the
//! parser's EIP-3009-shaped view of the payload). What is Permit2's own is here: the off-chain
//! checks' context, the on-chain judgement (one batched round trip: simulate the proxy's
//! `settle` (at settle, with its gas estimate in the same batch), and read the proxy's code,
//! the owner's balance, its Permit2 allowance and its nonce bit to name a failure), and the
//! call (the proxy, not the token).

use alloy::primitives::{Address, Bytes, U256, U64};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::sol_types::SolCall;
use x402::permit2::{self, abi, Permit2Request, Phase, Verified};
use x402::proto::PaymentRequest;
use x402::Reason;

use super::eip3009::{self, smart_wallet::PaymentCall, Run};
use super::{
    Checked, Family, MethodContext, MethodFuture, MethodKey, PaymentMethod, SettleCall, Transfer,
};
use crate::error::{ServiceError, ServiceResult};
use crate::facilitator::NetworkRuntime;

/// What the chain said about a Permit2 payment.
struct Permit2View {
    simulation: Result<(), String>,
    /// At settle: the gas estimate of the proxy's `settle` (`Err`: it would revert).
    estimate: Option<Result<u64, String>>,
    proxy_code: Option<Bytes>,
    permit2_code: Option<Bytes>,
    balance: Option<U256>,
    allowance: Option<U256>,
    nonce_word: Option<U256>,
}

/// Permit2's errors that mean the signature is not the owner's.
const BAD_SIGNATURE_SELECTORS: [&str; 2] = ["815e1d64", "8baa579f"];

/// The off-chain checks of a Permit2 payment (`x402::permit2::verify_offchain`).
pub(crate) fn check(
    ctx: &MethodContext<'_>,
    req: &PaymentRequest,
    phase: Phase,
) -> Result<Checked, Reason> {
    let Some(p) = &req.permit2 else {
        return Err(Reason::InvalidPayload);
    };
    let pctx = match ctx.runtime {
        None => permit2::Context::default(),
        Some(rt) => permit2::Context {
            network: x402::network::parse_network(&req.network),
            assets: ctx
                .assets()
                .into_iter()
                .filter(|a| a.active)
                .filter_map(|a| a.asset.parse().ok())
                .collect(),
            signers: rt.router.signers(),
            sponsoring: true,
            min_amount: rt.min_amount(&req.asset),
            max_signature_bytes: ctx.max_signature_bytes,
        },
    };
    permit2::verify_offchain(req, p, &pctx, ctx.now(), phase).map(Checked::new)
}

/// The on-chain judgement of a Permit2 payment, with the call that settles it: one batched
/// round trip (`view`).
pub(crate) async fn judge(
    ctx: &MethodContext<'_>,
    req: &PaymentRequest,
    checked: &Checked,
    from: Address,
    phase: Phase,
) -> ServiceResult<Result<SettleCall, Reason>> {
    let (Some(rt), Some(p), Some(v)) = (ctx.runtime, &req.permit2, checked.get::<Verified>())
    else {
        return Ok(Err(Reason::InvalidPayload));
    };
    let view = permit2_view(ctx, rt, req, p, v, from, phase).await?;
    if let Err(reason) = diagnose(p, v, &view) {
        return Ok(Err(reason));
    }
    let (to, data) = (p.kind.proxy(), permit2::settle_calldata(p, v));
    let gas_limit = match view.estimate {
        None => None,
        Some(Ok(gas)) => match rt.fees.gas_limit_for(gas) {
            Some(limit) => Some(limit),
            None => {
                let call = PaymentCall::direct(to, data);
                return Ok(Err(eip3009::over_cap(rt, &call, gas)));
            }
        },
        // The simulation passed only at our clock (a stale latest block): the estimate in
        // that block cannot be had; the network's bound it is.
        Some(Err(_)) => Some(rt.fees.max_gas_per_settlement),
    };
    Ok(Ok(SettleCall {
        to,
        data,
        gas_limit,
    }))
}

/// The keys of a Permit2 scheme: a Permit2 payload, x402 v1 and v2.
pub(crate) fn keys(scheme: &str) -> Vec<MethodKey> {
    [1, 2]
        .into_iter()
        .map(|v| MethodKey::new(v, scheme, Family::Eip155, Transfer::Permit2))
        .collect()
}

/// Permit2 `exact`: the proxy moves the permitted amount to `witness.to`; any of our signers
/// may send it.
pub struct Exact;

impl PaymentMethod for Exact {
    fn name(&self) -> &'static str {
        "permit2-exact"
    }

    fn keys(&self) -> Vec<MethodKey> {
        keys("exact")
    }

    fn check(
        &self,
        ctx: &MethodContext<'_>,
        req: &PaymentRequest,
        phase: Phase,
    ) -> Result<Checked, Reason> {
        check(ctx, req, phase)
    }

    fn judge<'a>(
        &'a self,
        ctx: &'a MethodContext<'a>,
        req: &'a PaymentRequest,
        checked: &'a Checked,
        from: Address,
        phase: Phase,
    ) -> MethodFuture<'a, Result<SettleCall, Reason>> {
        Box::pin(judge(ctx, req, checked, from, phase))
    }

    fn required_sender(&self, req: &PaymentRequest) -> Option<Address> {
        required_sender(req)
    }

    /// The proxy moves the owner's tokens: pending against the owner while in flight.
    fn pending_transfer(&self, req: &PaymentRequest) -> Option<crate::mirror::Payment> {
        Some(super::mirror_transfer(req))
    }
}

async fn permit2_view(
    ctx: &MethodContext<'_>,
    rt: &NetworkRuntime,
    req: &PaymentRequest,
    p: &Permit2Request,
    v: &Verified,
    from: Address,
    phase: Phase,
) -> ServiceResult<Permit2View> {
    let a = &p.payload.permit2_authorization;
    let proxy = p.kind.proxy();
    let calldata = permit2::settle_calldata(p, v);
    let rpc = |e: alloy::transports::TransportError| ServiceError::Unavailable(format!("rpc: {e}"));
    let mut batch = alloy::rpc::client::BatchRequest::new(rt.provider.client());
    let call = |to: Address, data: Vec<u8>| {
        (
            TransactionRequest::default()
                .from(from)
                .to(to)
                .input(TransactionInput::new(data.into())),
            "latest",
        )
    };
    let sim = batch
        .add_call::<_, Bytes>("eth_call", &call(proxy, calldata.to_vec()))
        .map_err(rpc)?;
    // At settle the transaction's gas limit comes in the same round trip.
    let estimate = match phase {
        Phase::Verify => None,
        Phase::Settle => Some(
            batch
                .add_call::<_, U64>("eth_estimateGas", &call(proxy, calldata.to_vec()))
                .map_err(rpc)?,
        ),
    };
    let proxy_code = batch
        .add_call::<_, Bytes>("eth_getCode", &(proxy, "latest"))
        .map_err(rpc)?;
    let permit2_code = batch
        .add_call::<_, Bytes>("eth_getCode", &(permit2::PERMIT2, "latest"))
        .map_err(rpc)?;
    let balance = batch
        .add_call::<_, Bytes>(
            "eth_call",
            &call(
                req.asset,
                abi::IERC20::balanceOfCall { account: a.from }.abi_encode(),
            ),
        )
        .map_err(rpc)?;
    let allowance = batch
        .add_call::<_, Bytes>(
            "eth_call",
            &call(
                req.asset,
                abi::IERC20::allowanceCall {
                    owner: a.from,
                    spender: permit2::PERMIT2,
                }
                .abi_encode(),
            ),
        )
        .map_err(rpc)?;
    let (word, _) = permit2::nonce_word_and_bit(a.nonce);
    let nonce_word = batch
        .add_call::<_, Bytes>(
            "eth_call",
            &call(
                permit2::PERMIT2,
                abi::IPermit2::nonceBitmapCall {
                    owner: a.from,
                    wordPos: word,
                }
                .abi_encode(),
            ),
        )
        .map_err(rpc)?;
    batch.send().await.map_err(rpc)?;
    let estimate = match estimate {
        None => None,
        Some(waiter) => Some(match waiter.await {
            Ok(gas) => Ok(gas.to::<u64>()),
            Err(alloy::transports::RpcError::ErrorResp(e)) => Err(e.message.to_string()),
            Err(e) => return Err(rpc(e)),
        }),
    };
    let simulation = match sim.await {
        Ok(_) => Ok(()),
        Err(alloy::transports::RpcError::ErrorResp(e)) => Err(format!(
            "{} {}",
            e.message,
            e.data.as_ref().map(|d| d.get()).unwrap_or_default()
        )),
        Err(e) => return Err(rpc(e)),
    };
    // The node simulates in its latest block, which on an idle chain may be older than the
    // witness's `validAfter`: judge it at our clock, as for EIP-3009.
    let simulation = match simulation {
        Err(m) => match eip3009::simulate_at(
            rt,
            from,
            &PaymentCall::direct(proxy, calldata.clone()),
            Run::Call,
            ctx.now(),
        )
        .await
        {
            Some(Ok(())) => Ok(()),
            _ => Err(m),
        },
        ok => ok,
    };
    let word = |b: Bytes| U256::try_from_be_slice(&b);
    // A call that passes while its estimate fails (a gas-dependent revert): refused.
    let simulation = match (&simulation, &estimate) {
        (Ok(()), Some(Err(m))) if !eip3009::time_refusal(m) => Err(m.clone()),
        _ => simulation,
    };
    Ok(Permit2View {
        simulation,
        estimate,
        proxy_code: proxy_code.await.ok(),
        permit2_code: permit2_code.await.ok(),
        balance: balance.await.ok().filter(|b| b.len() == 32).and_then(word),
        allowance: allowance
            .await
            .ok()
            .filter(|b| b.len() == 32)
            .and_then(word),
        nonce_word: nonce_word
            .await
            .ok()
            .filter(|b| b.len() == 32)
            .and_then(word),
    })
}

/// The signer a payment must be sent by: `upto`'s proxy only takes it from
/// `witness.facilitator` (one of ours: the checks made sure).
pub(crate) fn required_sender(req: &PaymentRequest) -> Option<Address> {
    let p = req.permit2.as_ref()?;
    match p.kind {
        permit2::Kind::Upto => p.payload.permit2_authorization.witness.facilitator,
        permit2::Kind::Exact => None,
    }
}

/// Name the on-chain failure of a Permit2 payment.
fn diagnose(p: &Permit2Request, v: &Verified, view: &Permit2View) -> Result<(), Reason> {
    let no_code = |c: &Option<Bytes>| c.as_ref().is_none_or(|c| c.is_empty());
    if no_code(&view.proxy_code) || no_code(&view.permit2_code) {
        return Err(Reason::Permit2ProxyNotDeployed);
    }
    // Not a token (no balanceOf), whatever the registry says.
    if view.balance.is_none() {
        return Err(Reason::InvalidPaymentRequirements);
    }
    if view.simulation.is_ok() {
        return Ok(());
    }
    let a = &p.payload.permit2_authorization;
    let (_, bit) = permit2::nonce_word_and_bit(a.nonce);
    if view.nonce_word.is_some_and(|w| w & bit != U256::ZERO) {
        return Err(Reason::Permit2InvalidNonce);
    }
    // The proxy moves `amount`; Permit2 needs the allowance for it.
    if view.balance.is_some_and(|b| b < v.amount) {
        return Err(Reason::Permit2InsufficientBalance);
    }
    if v.sponsoring.is_none() && view.allowance.is_some_and(|al| al < v.amount) {
        return Err(Reason::Permit2AllowanceRequired);
    }
    let message = view.simulation.as_ref().err().cloned().unwrap_or_default();
    if BAD_SIGNATURE_SELECTORS.iter().any(|s| message.contains(s)) {
        return Err(Reason::InvalidPermit2Signature);
    }
    tracing::info!(revert = %message, "Permit2 settlement simulation reverted");
    Err(Reason::Permit2SimulationFailed)
}
