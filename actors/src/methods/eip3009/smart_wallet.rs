//! EIP-3009 from a smart wallet (ERC-1271, ERC-6492): which call moves the money when the
//! payer is a contract, and how it is judged.
//!
//! - An EOA signature that recovers to `from`: the `(v, r, s)` overload, nothing to ask.
//! - A deployed wallet (ERC-1271): FiatTokenV2_2's `bytes signature` overload, which checks the
//!   signature with the wallet's `isValidSignature` through `SignatureChecker`.
//! - A counterfactual wallet (ERC-6492: factory, factory calldata, inner signature, magic):
//!   once deployed it is the case above, with the inner signature. Before that, the wallet is
//!   deployed and paid in one transaction — Multicall3 `aggregate3` of the factory call and the
//!   transfer — but only through a factory the network allows (`erc6492_allowed_factories`):
//!   a factory runs arbitrary code, paid with our gas. Anything else is refused before a
//!   transaction exists. One transaction, one authorization: the ledger row is the payment's,
//!   keyed as any other.
//!
//! A wallet's `isValidSignature` is code that may answer on how it is called (`tx.gasprice`,
//! `gasleft()`, `tx.origin`): such a payment is simulated as its transaction will run
//! (`as_sent`): from the signer that sends it, with the fees it will be signed with and the gas
//! limit estimated for it. An `eth_call` with the node's defaults (gas price 0, the block's gas)
//! would pass a wallet that then reverts on chain, at our cost.

use alloy::primitives::{Address, Bytes};
use alloy::providers::Provider;
use alloy::sol_types::{SolCall, SolError};
use x402::exact::evm::{self as exact, SignatureKind, IEIP3009};
use x402::permit2::Phase;
use x402::proto::{Authorization, PaymentRequest};
use x402::Reason;

use super::{Run, Shared};
use crate::chain::multicall::{IMulticall3, MULTICALL3};
use crate::error::{ServiceError, ServiceResult};
use crate::facilitator::NetworkRuntime;
use crate::methods::{Checked, MethodContext, MethodFuture, MethodKey, PaymentMethod, SettleCall};
use crate::{mirror, settlement};

/// What a network does for smart-wallet payers.
#[derive(Debug, Clone)]
pub struct SmartWalletPolicy {
    /// Factories whose ERC-6492 wallets are deployed at settlement. Empty by default.
    pub allowed_factories: Vec<Address>,
    /// Where deploy + transfer are batched.
    pub multicall3: Address,
}

impl Default for SmartWalletPolicy {
    fn default() -> Self {
        Self {
            allowed_factories: Vec::new(),
            multicall3: MULTICALL3,
        }
    }
}

/// The transaction that settles a payment, and the `eth_call` that simulates it.
#[derive(Debug, Clone)]
pub(crate) struct PaymentCall {
    pub to: Address,
    pub data: Bytes,
    /// Same effect as `data`; for a deployment it lets the transfer fail inside the batch, so
    /// that its revert reason can be read.
    pub simulation: Bytes,
    /// Deploys the payer first (the `aggregate3` batch).
    pub deploys: bool,
}

impl PaymentCall {
    pub(crate) fn direct(to: Address, data: Bytes) -> Self {
        Self {
            to,
            simulation: data.clone(),
            data,
            deploys: false,
        }
    }

    /// What a successful `eth_call` of `simulation` returned, judged: the batch of a
    /// deployment succeeds even when its transfer fails, so its results are read.
    pub fn judge(&self, output: &[u8]) -> Result<(), String> {
        if !self.deploys {
            return Ok(());
        }
        let results = IMulticall3::aggregate3Call::abi_decode_returns(output)
            .map_err(|_| format!("Multicall3 gave no results: is it deployed at {}?", self.to))?;
        match results.get(1) {
            Some(r) if r.success => Ok(()),
            Some(r) => Err(alloy::sol_types::Revert::abi_decode(&r.returnData)
                .map(|e| format!("execution reverted: {}", e.reason))
                .unwrap_or_else(|_| "execution reverted".into())),
            None => Err("Multicall3 returned no transfer result".into()),
        }
    }
}

/// `transferWithAuthorization(…, bytes signature)`: FiatTokenV2_2 checks `signature` with
/// ECDSA for an EOA and with ERC-1271 for a contract.
pub(crate) fn bytes_overload(a: &Authorization, signature: Bytes) -> Bytes {
    IEIP3009::transferWithAuthorization_1Call {
        from: a.from,
        to: a.to,
        value: a.value,
        validAfter: a.valid_after,
        validBefore: a.valid_before,
        nonce: a.nonce,
        signature,
    }
    .abi_encode()
    .into()
}

fn deploy_and_transfer(
    multicall3: Address,
    factory: Address,
    factory_calldata: Bytes,
    asset: Address,
    transfer: Bytes,
) -> PaymentCall {
    let batch = |transfer_may_fail| -> Bytes {
        IMulticall3::aggregate3Call {
            calls: vec![
                // May fail: someone else may have deployed the wallet meanwhile; the transfer
                // then needs no deployment, and fails if the wallet is still missing.
                IMulticall3::Call3 {
                    target: factory,
                    allowFailure: true,
                    callData: factory_calldata.clone(),
                },
                IMulticall3::Call3 {
                    target: asset,
                    allowFailure: transfer_may_fail,
                    callData: transfer.clone(),
                },
            ],
        }
        .abi_encode()
        .into()
    };
    PaymentCall {
        to: multicall3,
        data: batch(false),
        simulation: batch(true),
        deploys: true,
    }
}

/// The call that settles `req` (`direct`: the one for an EOA payer), or the reason it is
/// refused before anything is simulated or sent. Asks the chain only when the signature is
/// not the payer's own ECDSA one.
pub(crate) async fn payment_call(
    rt: &NetworkRuntime,
    req: &PaymentRequest,
    verified: &exact::OffchainVerified,
    direct: Bytes,
) -> ServiceResult<Result<PaymentCall, Reason>> {
    let asset = req.asset;
    if !verified.needs_onchain_signature_check {
        return Ok(Ok(PaymentCall::direct(asset, direct)));
    }
    let auth = &req.payload.authorization;
    let code = rt
        .provider
        .get_code_at(auth.from)
        .await
        .map_err(|e| ServiceError::Unavailable(format!("rpc: {e}")))?;
    let deployed = !code.is_empty();
    let call = match exact::classify_signature(&req.payload.signature) {
        SignatureKind::Erc6492 {
            factory,
            factory_calldata,
            inner,
        } => {
            let transfer = bytes_overload(auth, inner);
            if deployed {
                PaymentCall::direct(asset, transfer)
            } else if !rt.smart_wallets.allowed_factories.contains(&factory) {
                tracing::info!(%factory, payer = %auth.from, "ERC-6492 factory not allowed");
                return Ok(Err(Reason::Eip6492FactoryNotAllowed));
            } else {
                // Its gas is estimated under the network's bound (`as_sent`): a factory runs
                // code of its own, paid with our gas.
                deploy_and_transfer(
                    rt.smart_wallets.multicall3,
                    factory,
                    factory_calldata,
                    asset,
                    transfer,
                )
            }
        }
        // A wallet's signature (not 64/65 bytes) for an address without code: nothing can
        // check it, and no deployment data came with it.
        SignatureKind::Other if !deployed => {
            return Ok(Err(Reason::InvalidExactEvmPayloadUndeployedSmartWallet))
        }
        _ => PaymentCall::direct(asset, direct),
    };
    Ok(Ok(call))
}

/// How a smart wallet's payment runs when sent by `from`: the fees its transaction will be
/// signed with now `(maxFeePerGas, maxPriorityFeePerGas)`, and the estimate of the very call
/// with them (`eth_estimateGas` from `from`); `Err(message)`: the estimate failed, as the
/// transaction would.
pub(crate) async fn estimate_as_sent(
    rt: &NetworkRuntime,
    from: Address,
    call: &PaymentCall,
) -> ServiceResult<((u128, u128), Result<u64, String>)> {
    let fees = settlement::fees_now(&rt.provider, &rt.fees)
        .await
        .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
    // The transaction's own calldata: a deployment's transfer may not fail.
    let request = Run::Estimate
        .request(from, call)
        .max_fee_per_gas(fees.0)
        .max_priority_fee_per_gas(fees.1);
    match rt.provider.estimate_gas(request).await {
        Ok(gas) => Ok((fees, Ok(gas))),
        Err(alloy::transports::RpcError::ErrorResp(e)) => Ok((fees, Err(e.message.to_string()))),
        Err(e) => Err(ServiceError::Unavailable(format!("rpc: {e}"))),
    }
}

/// The EIP-3009 method of smart-wallet payers: a signature that is not `from`'s own ECDSA one.
/// Simulated at verify and settle alike as its transaction will run (`estimate_as_sent`: the
/// fees, then the estimate, then the `eth_call` with that gas limit and those fees), and sent
/// alone, from the signer it was simulated as.
pub struct SmartWallet {
    shared: Shared,
}

impl SmartWallet {
    pub fn new(shared: Shared) -> Self {
        Self { shared }
    }
}

impl PaymentMethod for SmartWallet {
    fn name(&self) -> &'static str {
        "eip3009-smart-wallet"
    }

    fn keys(&self) -> Vec<MethodKey> {
        super::keys()
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
        _phase: Phase,
    ) -> MethodFuture<'a, Result<SettleCall, Reason>> {
        Box::pin(async move {
            let (Some(rt), Ok(v)) = (ctx.runtime, super::verified(checked)) else {
                return Ok(Err(Reason::InvalidNetwork));
            };
            let direct = super::transfer_calldata(req, v);
            let call = match payment_call(rt, req, v, direct).await? {
                Ok(call) => call,
                Err(reason) => return Ok(Err(reason)),
            };
            let ((max_fee_per_gas, max_priority_fee_per_gas), estimate) =
                estimate_as_sent(rt, from, &call).await?;
            let as_sent = |gas_limit| Run::AsSent {
                gas_limit,
                max_fee_per_gas,
                max_priority_fee_per_gas,
            };
            let simulate = |run| {
                self.shared
                    .simulate_then_diagnose(ctx, rt, req, from, call.clone(), run)
            };
            let view = match estimate {
                Ok(gas) => match rt.fees.gas_limit_for(gas) {
                    Some(limit) => simulate(as_sent(limit)).await?,
                    None => return Ok(Err(super::over_cap(rt, &call, gas))),
                },
                // The token's time checks in a stale latest block: judged at our clock by the
                // simulation, as sent under the network's bound.
                Err(message) if super::time_refusal(&message) => {
                    simulate(as_sent(rt.fees.max_gas_per_settlement)).await?
                }
                // The estimate fails as the transaction would: refused. A simulation with the
                // node's defaults names the failure (a deployment's inner transfer's revert
                // shows only with the gas to deploy); if it passes, the estimate's revert is
                // the name.
                Err(message) => {
                    let mut view = simulate(Run::Call).await?;
                    if view.simulation.is_ok() {
                        view.simulation = Err(message);
                    }
                    view
                }
            };
            Ok(view.judged(req))
        })
    }

    fn mirror_payment(&self, req: &PaymentRequest) -> Option<mirror::Payment> {
        Some(crate::methods::mirror_transfer(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::SolValue;

    #[test]
    fn a_deployment_is_judged_by_its_transfer() {
        let call = deploy_and_transfer(
            MULTICALL3,
            Address::repeat_byte(1),
            Bytes::from(vec![1]),
            Address::repeat_byte(2),
            Bytes::from(vec![2]),
        );
        assert_eq!(call.to, MULTICALL3);
        assert_ne!(call.data, call.simulation);
        let answer = |ok: bool, data: Vec<u8>| {
            vec![
                IMulticall3::Result {
                    success: true,
                    returnData: Bytes::new(),
                },
                IMulticall3::Result {
                    success: ok,
                    returnData: data.into(),
                },
            ]
            .abi_encode()
        };
        assert_eq!(call.judge(&answer(true, vec![])), Ok(()));
        let revert = alloy::sol_types::Revert::from("FiatTokenV2: invalid signature").abi_encode();
        assert_eq!(
            call.judge(&answer(false, revert)),
            Err("execution reverted: FiatTokenV2: invalid signature".into())
        );
        assert!(call.judge(&[]).unwrap_err().contains("Multicall3"));
        assert_eq!(
            PaymentCall::direct(MULTICALL3, Bytes::new()).judge(&[]),
            Ok(())
        );
    }
}
