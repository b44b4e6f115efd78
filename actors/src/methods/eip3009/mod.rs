//! EIP-3009 `transferWithAuthorization` payments (the x402 `exact` scheme on EVM networks):
//! what the EOA and smart-wallet methods share — the off-chain checks
//! (`x402::exact::evm::verify_offchain`), the call, the simulation and the diagnosis of a
//! failed one.
//!
//! The verify fast path: the simulation (`eth_call` of the settlement) goes alone; at settle it
//! is the `eth_estimateGas` of the very call instead (`Run::Estimate`): the same round trip
//! judges the payment and yields its gas limit. Only when it fails are the diagnosis calls made
//! (`authorizationState`, `balanceOf`, `name`, `version`, in one batch) to name the failure. A
//! call to an address without code "succeeds": whether an asset is a contract is asked once
//! per asset (`eth_getCode`, in the simulation's batch) and remembered.

mod eoa;
pub mod smart_wallet;

pub use eoa::Eoa;
pub use smart_wallet::{SmartWallet, SmartWalletPolicy};

use std::sync::Arc;

use alloy::primitives::{Address, Bytes, U256, U64};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::sol_types::SolCall;
use dashmap::DashMap;
use x402::exact::evm::{self as exact, IEIP3009};
use x402::proto::PaymentRequest;
use x402::Reason;

use super::{Checked, Family, MethodContext, MethodKey, Transfer};
use crate::error::{ServiceError, ServiceResult};
use crate::facilitator::NetworkRuntime;
use smart_wallet::PaymentCall;

/// What both EIP-3009 methods keep: the assets known to have code, per chain.
#[derive(Clone, Default)]
pub struct Shared {
    contracts: Arc<DashMap<(u64, Address), ()>>,
}

/// The keys of EIP-3009 payments: `exact`, an authorization payload, x402 v1 and v2.
fn keys() -> Vec<MethodKey> {
    [1, 2]
        .into_iter()
        .map(|v| MethodKey::new(v, "exact", Family::Eip155, Transfer::Authorization))
        .collect()
}

/// The off-chain checks, in the x402 exact scheme's order (`x402::exact::evm`).
fn check(ctx: &MethodContext<'_>, req: &PaymentRequest) -> Result<Checked, Reason> {
    let mut vctx = exact::VerifyContext {
        max_signature_bytes: ctx.max_signature_bytes,
        ..exact::VerifyContext::default()
    };
    if let Some(rt) = ctx.runtime {
        vctx.network_enabled = true;
        vctx.assets = ctx
            .assets()
            .into_iter()
            .filter_map(|a| {
                let address = a.asset.parse().ok()?;
                Some(exact::AllowedAsset {
                    address,
                    eip712_name: a.eip712_name?,
                    eip712_version: a.eip712_version?,
                    min_amount: rt.min_amount(&address),
                })
            })
            .collect();
    }
    exact::verify_offchain(req, &vctx, ctx.now()).map(Checked::new)
}

/// What the checks established, for an EIP-3009 method.
fn verified(checked: &Checked) -> Result<&exact::OffchainVerified, Reason> {
    checked
        .get::<exact::OffchainVerified>()
        .ok_or(Reason::InvalidPayload)
}

/// The call that moves the money: the (v, r, s) overload for EOA signatures, the `bytes`
/// overload (ERC-1271 smart wallets) otherwise.
pub(crate) fn transfer_calldata(req: &PaymentRequest, verified: &exact::OffchainVerified) -> Bytes {
    let a = &req.payload.authorization;
    match exact::split_signature(&req.payload.signature) {
        Ok((v, r, s)) if !verified.needs_onchain_signature_check => {
            IEIP3009::transferWithAuthorization_0Call {
                from: a.from,
                to: a.to,
                value: a.value,
                validAfter: a.valid_after,
                validBefore: a.valid_before,
                nonce: a.nonce,
                v,
                r,
                s,
            }
            .abi_encode()
            .into()
        }
        _ => smart_wallet::bytes_overload(a, req.payload.signature.clone()),
    }
}

/// A revert of FiatToken's own time checks (`authorization is not yet valid` / `is expired`).
pub(crate) fn time_refusal(message: &str) -> bool {
    message.contains("not yet valid") || message.contains("authorization is expired")
}

fn rpc(e: alloy::transports::TransportError) -> ServiceError {
    ServiceError::Unavailable(format!("rpc: {e}"))
}

/// What the chain said about a payment: the simulation, and when it failed, why.
struct ChainView {
    /// The call that settles it, or why none may be sent (a smart wallet's refusal, a gas
    /// estimate above the network's bound).
    call: Result<PaymentCall, Reason>,
    simulation: Result<(), String>,
    /// The settlement transaction's gas limit, when the simulation estimated it.
    gas_limit: Option<u64>,
    authorization_used: Option<bool>,
    balance: Option<U256>,
    name: Option<String>,
    version: Option<String>,
}

impl ChainView {
    /// The judgement: the call with its gas limit, or the named failure.
    fn judged(self, req: &PaymentRequest) -> Result<super::SettleCall, Reason> {
        diagnose(req, &self)?;
        let gas_limit = self.gas_limit;
        self.call.map(|c| super::SettleCall {
            to: c.to,
            data: c.data,
            gas_limit,
        })
    }
}

/// Name the on-chain failure (x402 exact scheme on EVM, verification step "simulate the
/// transfer"): what the token says, in the order a payer can act on.
fn diagnose(req: &PaymentRequest, view: &ChainView) -> Result<(), Reason> {
    // A smart wallet's refusal comes before anything the token says.
    view.call.as_ref().map_err(|reason| *reason)?;
    // A call to an address without code "succeeds" with empty output: an asset that cannot
    // answer balanceOf is not a token here, whatever the registry says.
    if view.balance.is_none() {
        return Err(Reason::InvalidPaymentRequirements);
    }
    if view.simulation.is_ok() {
        return Ok(());
    }
    let auth = &req.payload.authorization;
    if view.authorization_used == Some(true) {
        return Err(Reason::InvalidExactEvmNonceAlreadyUsed);
    }
    if view.balance.is_some_and(|b| b < auth.value) {
        return Err(Reason::InsufficientFunds);
    }
    if let (Some(extra_name), Some(name)) = (req.extra_name.as_deref(), view.name.as_deref()) {
        if extra_name != name {
            return Err(Reason::InvalidExactEvmTokenNameMismatch);
        }
    }
    if let (Some(extra_version), Some(version)) =
        (req.extra_version.as_deref(), view.version.as_deref())
    {
        if extra_version != version {
            return Err(Reason::InvalidExactEvmTokenNameMismatch);
        }
    }
    let message = view
        .simulation
        .as_ref()
        .err()
        .map(String::as_str)
        .unwrap_or_default();
    if message.contains("invalid signature") {
        return Err(Reason::InvalidExactEvmPayloadSignature);
    }
    tracing::info!(
        revert = message,
        "transferWithAuthorization simulation reverted"
    );
    Err(Reason::InvalidTransactionState)
}

impl Shared {
    /// Simulate the payment's call from `from` as `run` says; only if that fails, ask what
    /// is wrong.
    async fn simulate_then_diagnose(
        &self,
        ctx: &MethodContext<'_>,
        rt: &NetworkRuntime,
        req: &PaymentRequest,
        from: Address,
        payment: PaymentCall,
        run: Run,
    ) -> ServiceResult<ChainView> {
        let asset = req.asset;
        let chain = rt.entry.info.chain_id;
        let call = (run.request(from, &payment), "latest");
        let code_known = self.contracts.contains_key(&(chain, asset));
        let (answer, has_code) = if code_known {
            let answer: Result<serde_json::Value, _> =
                rt.provider.client().request(run.method(), call).await;
            (answer, true)
        } else {
            let mut batch = alloy::rpc::client::BatchRequest::new(rt.provider.client());
            let sim = batch
                .add_call::<_, serde_json::Value>(run.method(), &call)
                .map_err(rpc)?;
            let code = batch
                .add_call::<_, Bytes>("eth_getCode", &(asset, "latest"))
                .map_err(rpc)?;
            batch.send().await.map_err(rpc)?;
            let code = code.await.map_err(rpc)?;
            if !code.is_empty() {
                self.contracts.insert((chain, asset), ());
            }
            (sim.await, !code.is_empty())
        };
        let (simulation, estimate) = match answer {
            Ok(out) => match run.read(&payment, out) {
                Ok(estimate) => (Ok(()), estimate),
                Err(m) => (Err(m), None),
            },
            Err(alloy::transports::RpcError::ErrorResp(e)) => (Err(e.message.to_string()), None),
            Err(e) => return Err(rpc(e)),
        };
        if !has_code {
            // Not a token, whatever the registry says (`diagnose` refuses it).
            return Ok(ChainView {
                call: Ok(payment),
                simulation,
                gas_limit: None,
                authorization_used: None,
                balance: None,
                name: None,
                version: None,
            });
        }
        // The node simulates in its latest block. On an idle chain (a dev chain between
        // payments) that block may be minutes old, and the token's own time checks then refuse
        // an authorization our clock has judged valid: judge it at our clock instead.
        let (simulation, at_our_clock) = match simulation {
            Err(m) if time_refusal(&m) => {
                let at = simulate_at(rt, from, &payment, run, ctx.now())
                    .await
                    .unwrap_or(Err(m));
                (at, true)
            }
            s => (s, false),
        };
        if simulation.is_ok() {
            let (call, gas_limit) = match (run, estimate) {
                (Run::AsSent { gas_limit, .. }, _) => (Ok(payment), Some(gas_limit)),
                // Judged at our clock: no estimate can be had in the latest block, and the
                // transaction goes out with the network's bound.
                (Run::Estimate, _) if at_our_clock => {
                    (Ok(payment), Some(rt.fees.max_gas_per_settlement))
                }
                (Run::Estimate, Some(gas)) => match rt.fees.gas_limit_for(gas) {
                    Some(limit) => (Ok(payment), Some(limit)),
                    None => (Err(over_cap(rt, &payment, gas)), None),
                },
                (Run::Estimate | Run::Call, _) => (Ok(payment), None),
            };
            // A contract, and the transfer goes through: nothing else to ask (`diagnose`
            // reads no balance when the simulation passed).
            return Ok(ChainView {
                call,
                simulation,
                gas_limit,
                authorization_used: None,
                balance: Some(U256::MAX),
                name: None,
                version: None,
            });
        }
        diagnosis(rt, req, from, payment, simulation).await
    }
}

/// The calls that name a failed simulation, in one batch.
async fn diagnosis(
    rt: &NetworkRuntime,
    req: &PaymentRequest,
    from: Address,
    payment: PaymentCall,
    simulation: Result<(), String>,
) -> ServiceResult<ChainView> {
    let auth = &req.payload.authorization;
    let mut batch = alloy::rpc::client::BatchRequest::new(rt.provider.client());
    let mut add = |data: Vec<u8>| {
        let call = TransactionRequest::default()
            .from(from)
            .to(req.asset)
            .input(TransactionInput::new(data.into()));
        batch
            .add_call::<_, Bytes>("eth_call", &(call, "latest"))
            .map_err(rpc)
    };
    let used = add(IEIP3009::authorizationStateCall {
        authorizer: auth.from,
        nonce: auth.nonce,
    }
    .abi_encode())?;
    let balance = add(IEIP3009::balanceOfCall { account: auth.from }.abi_encode())?;
    let name = add(IEIP3009::nameCall {}.abi_encode())?;
    let version = add(IEIP3009::versionCall {}.abi_encode())?;
    batch.send().await.map_err(rpc)?;
    Ok(ChainView {
        call: Ok(payment),
        simulation,
        gas_limit: None,
        authorization_used: used
            .await
            .ok()
            .and_then(|b: Bytes| IEIP3009::authorizationStateCall::abi_decode_returns(&b).ok()),
        balance: balance
            .await
            .ok()
            .and_then(|b: Bytes| IEIP3009::balanceOfCall::abi_decode_returns(&b).ok()),
        name: name
            .await
            .ok()
            .and_then(|b: Bytes| IEIP3009::nameCall::abi_decode_returns(&b).ok()),
        version: version
            .await
            .ok()
            .and_then(|b: Bytes| IEIP3009::versionCall::abi_decode_returns(&b).ok()),
    })
}

/// `eth_call` of the payment (shaped as `run` says) in the latest block with its timestamp
/// overridden to `at` (a block override, as geth and anvil take). `None` when the node does
/// not take it.
pub(crate) async fn simulate_at(
    rt: &NetworkRuntime,
    from: Address,
    payment: &PaymentCall,
    run: Run,
    at: u64,
) -> Option<Result<(), String>> {
    // An estimate is judged as a call: the block override is an `eth_call`'s.
    let run = match run {
        Run::Estimate => Run::Call,
        run => run,
    };
    let call = run.request(from, payment);
    let overrides = serde_json::json!({ "time": format!("{at:#x}") });
    let answer: Result<Bytes, _> = rt
        .provider
        .client()
        .request(
            "eth_call",
            (call, "latest", serde_json::json!({}), overrides),
        )
        .await;
    match answer {
        Ok(out) => Some(payment.judge(&out)),
        Err(alloy::transports::RpcError::ErrorResp(e)) if e.message.contains("revert") => {
            Some(Err(e.message.to_string()))
        }
        Err(_) => None,
    }
}

/// How a payment's call is simulated.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Run {
    /// `eth_call` with the node's defaults: verify of an EOA's `(v, r, s)` payment, whose
    /// outcome no gas price or limit changes (the fast path: one call).
    Call,
    /// `eth_estimateGas` of the very call, in the `eth_call`'s place: settle of an EOA's
    /// payment. It fails as the call would, and its answer is the transaction's gas limit.
    Estimate,
    /// `eth_call` as the settlement transaction will run: its gas limit and fees (a smart
    /// wallet may answer on `gasleft()` or `tx.gasprice`; `smart_wallet`).
    AsSent {
        gas_limit: u64,
        max_fee_per_gas: u128,
        max_priority_fee_per_gas: u128,
    },
}

impl Run {
    fn method(self) -> &'static str {
        match self {
            Run::Estimate => "eth_estimateGas",
            Run::Call | Run::AsSent { .. } => "eth_call",
        }
    }

    /// The request of `payment`'s simulation from `from`.
    pub(crate) fn request(self, from: Address, payment: &PaymentCall) -> TransactionRequest {
        let request = TransactionRequest::default().from(from).to(payment.to);
        match self {
            Run::Call => request.input(TransactionInput::new(payment.simulation.clone())),
            // The estimate is of the transaction itself: a deployment's transfer may not fail.
            Run::Estimate => request.input(TransactionInput::new(payment.data.clone())),
            Run::AsSent {
                gas_limit,
                max_fee_per_gas,
                max_priority_fee_per_gas,
            } => request
                .input(TransactionInput::new(payment.simulation.clone()))
                .gas_limit(gas_limit)
                .max_fee_per_gas(max_fee_per_gas)
                .max_priority_fee_per_gas(max_priority_fee_per_gas),
        }
    }

    /// A successful answer, judged: the gas estimate for `Estimate`.
    fn read(self, payment: &PaymentCall, answer: serde_json::Value) -> Result<Option<u64>, String> {
        let unreadable = |e: serde_json::Error| format!("unreadable node answer: {e}");
        match self {
            Run::Estimate => serde_json::from_value::<U64>(answer)
                .map(|g| Some(g.to::<u64>()))
                .map_err(unreadable),
            Run::Call | Run::AsSent { .. } => {
                let out: Bytes = serde_json::from_value(answer).map_err(unreadable)?;
                payment.judge(&out).map(|()| None)
            }
        }
    }
}

/// The refusal of a call whose gas (`gas`, estimated) passes the network's bound: nothing is
/// sent. A deployment (ERC-6492) has its own reason.
pub(crate) fn over_cap(rt: &NetworkRuntime, payment: &PaymentCall, gas: u64) -> Reason {
    tracing::warn!(
        network = rt.entry.info.v1_name,
        gas,
        max_gas_per_settlement = rt.fees.max_gas_per_settlement,
        to = %payment.to,
        "a settlement would need more gas than max_gas_per_settlement: refused"
    );
    if payment.deploys {
        Reason::SmartWalletDeploymentFailed
    } else {
        Reason::SettlementGasExceedsLimit
    }
}
