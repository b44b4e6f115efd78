//! Permit2 payments (`exact` via Permit2, `upto`, `eip2612GasSponsoring`) in the facilitator.
//!
//! They share everything with EIP-3009 after the checks: the ledger row (keyed by network,
//! token, owner and the Permit2 nonce as 32 bytes), the one-success rule, the settlement actors
//! and the receipt watch. What differs is here: the off-chain checks' context, the on-chain
//! judgement (one batched round trip: simulate the proxy's `settle` (at settle, with its gas
//! estimate in the same batch), and read the proxy's code, the owner's balance, its Permit2
//! allowance and its nonce bit to name a failure), and the call (the proxy, not the token).

use alloy::primitives::{Address, Bytes, U256, U64};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::sol_types::SolCall;
use x402::exact::evm as exact;
use x402::permit2::{self, abi, Permit2Request, Phase};
use x402::proto::PaymentRequest;
use x402::Reason;

use super::{Facilitator, NetworkRuntime, SettleCall};
use crate::error::{ServiceError, ServiceResult};

/// What the off-chain checks of a payment established, by transfer method.
pub(super) enum Verified {
    Eip3009(exact::OffchainVerified),
    Permit2(permit2::Verified),
}

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

impl Facilitator {
    /// The off-chain checks of either method.
    pub(super) fn verify_offchain(
        &self,
        req: &PaymentRequest,
        now: u64,
        phase: Phase,
    ) -> Result<Verified, Reason> {
        match &req.permit2 {
            None => exact::verify_offchain(req, &self.context(req), now).map(Verified::Eip3009),
            Some(p) => permit2::verify_offchain(req, p, &self.permit2_context(req), now, phase)
                .map(Verified::Permit2),
        }
    }

    fn permit2_context(&self, req: &PaymentRequest) -> permit2::Context {
        let Some(rt) = self.runtime_for(req) else {
            return permit2::Context::default();
        };
        permit2::Context {
            network: x402::network::parse_network(&req.network),
            assets: self
                .inner
                .registry
                .assets_of(rt.entry.info.v1_name)
                .into_iter()
                .filter(|a| a.active)
                .filter_map(|a| a.asset.parse().ok())
                .collect(),
            signers: rt.router.signers(),
            sponsoring: true,
            min_amount: rt.min_amount(&req.asset),
            max_signature_bytes: self.inner.config.max_signature_bytes,
        }
    }

    /// The on-chain judgement of either method, with the call that settles the payment (its
    /// target and calldata): `Ok(Err(reason))` is a protocol answer.
    pub(super) async fn judge_onchain(
        &self,
        rt: &NetworkRuntime,
        req: &PaymentRequest,
        verified: &Verified,
        from: Address,
        phase: Phase,
    ) -> ServiceResult<Result<SettleCall, Reason>> {
        match (verified, &req.permit2) {
            (Verified::Eip3009(v), _) => {
                let view = self.chain_view(rt, req, v, from, phase).await?;
                let gas_limit = view.gas_limit;
                Ok(
                    super::diagnose(req, &view).and(view.call.map(|c| SettleCall {
                        to: c.to,
                        data: c.data,
                        gas_limit,
                    })),
                )
            }
            (Verified::Permit2(v), Some(p)) => {
                let view = self.permit2_view(rt, req, p, v, from, phase).await?;
                if let Err(reason) = diagnose(p, v, &view) {
                    return Ok(Err(reason));
                }
                let (to, data) = settlement_call(req, verified);
                let gas_limit = match view.estimate {
                    None => None,
                    Some(Ok(gas)) => match rt.fees.gas_limit_for(gas) {
                        Some(limit) => Some(limit),
                        None => {
                            let call = super::PaymentCall::direct(to, data);
                            return Ok(Err(super::fast::over_cap(rt, &call, gas)));
                        }
                    },
                    // The simulation passed only at our clock (a stale latest block): the
                    // estimate in that block cannot be had; the network's bound it is.
                    Some(Err(_)) => Some(rt.fees.max_gas_per_settlement),
                };
                Ok(Ok(SettleCall {
                    to,
                    data,
                    gas_limit,
                }))
            }
            (Verified::Permit2(_), None) => Ok(Err(Reason::InvalidPayload)),
        }
    }

    async fn permit2_view(
        &self,
        rt: &NetworkRuntime,
        req: &PaymentRequest,
        p: &Permit2Request,
        v: &permit2::Verified,
        from: Address,
        phase: Phase,
    ) -> ServiceResult<Permit2View> {
        let a = &p.payload.permit2_authorization;
        let proxy = p.kind.proxy();
        let calldata = permit2::settle_calldata(p, v);
        let rpc =
            |e: alloy::transports::TransportError| ServiceError::Unavailable(format!("rpc: {e}"));
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
            Err(m) => match self
                .simulate_at(
                    rt,
                    from,
                    &super::PaymentCall::direct(proxy, calldata.clone()),
                    super::Run::Call,
                    (self.inner.clock)(),
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
            (Ok(()), Some(Err(m))) if !super::time_refusal(m) => Err(m.clone()),
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
}

/// The signer a payment must be sent by: `upto`'s proxy only takes it from
/// `witness.facilitator` (one of ours: the checks made sure).
pub(super) fn required_sender(req: &PaymentRequest) -> Option<Address> {
    let p = req.permit2.as_ref()?;
    match p.kind {
        permit2::Kind::Upto => p.payload.permit2_authorization.witness.facilitator,
        permit2::Kind::Exact => None,
    }
}

/// The transaction that settles a verified payment: (to, calldata).
pub(super) fn settlement_call(req: &PaymentRequest, verified: &Verified) -> (Address, Bytes) {
    match (verified, &req.permit2) {
        (Verified::Permit2(v), Some(p)) => (p.kind.proxy(), permit2::settle_calldata(p, v)),
        (Verified::Eip3009(v), _) => (req.asset, super::transfer_calldata(req, v)),
        (Verified::Permit2(_), None) => (req.asset, Bytes::new()),
    }
}

/// Name the on-chain failure of a Permit2 payment.
fn diagnose(p: &Permit2Request, v: &permit2::Verified, view: &Permit2View) -> Result<(), Reason> {
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
