//! The verify fast path: at most one round trip to the node when a payment is good.
//!
//! - The simulation (`eth_call` of the settlement) goes alone. At settle it is the
//!   `eth_estimateGas` of the very call instead (`Run::Estimate`): the same round trip judges
//!   the payment and yields its gas limit. Only when it fails are the diagnosis calls made
//!   (`authorizationState`, `balanceOf`, `name`, `version`, in one batch), to name the failure.
//! - A call to an address without code "succeeds": whether an asset is a contract is asked
//!   once per asset (`eth_getCode`, in the simulation's batch) and remembered.
//! - "Already used" comes from memory (`AuthorizationIndex`), not from the ledger; a miss the
//!   index cannot answer (other instances on the database) reads the ledger concurrently with
//!   the simulation.

use std::time::Instant;

use alloy::primitives::{Address, Bytes, U256, U64};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::sol_types::SolCall;
use dashmap::DashMap;
use x402::exact::evm::IEIP3009;
use x402::proto::PaymentRequest;

use super::smart_wallet::PaymentCall;
use super::{time_refusal, ChainView, Facilitator, NetworkRuntime, SettleAnswer};
use crate::authorizations::{AuthorizationIndex, Lookup};
use crate::error::{ServiceError, ServiceResult};
use crate::ledger::Key;
use x402::Reason;

/// What the fast path keeps in memory.
pub(super) struct FastPath {
    pub(super) index: AuthorizationIndex,
    /// Assets known to have code, per chain.
    contracts: DashMap<(u64, Address), ()>,
}

impl FastPath {
    pub(super) fn new(shared_ledger: bool) -> Self {
        Self {
            index: AuthorizationIndex::new(shared_ledger),
            contracts: DashMap::new(),
        }
    }

    /// Record a settle leader's end in the index.
    pub(super) fn settled(
        &self,
        key: &Key,
        valid_before: U256,
        result: &ServiceResult<SettleAnswer>,
        now: u64,
    ) {
        let before = i64::try_from(valid_before).unwrap_or(i64::MAX);
        match result {
            Ok(a)
                if a.success
                    || a.transaction.is_some()
                    || matches!(
                        a.error_reason,
                        Some(Reason::InvalidExactEvmNonceAlreadyUsed | Reason::SettlementPending)
                    ) =>
            {
                self.index.taken(key, before, now)
            }
            // Refused before anything was sent: the ledger lets it be settled again.
            Ok(_) => self.index.free(key),
            Err(_) => self.index.unsure(key, before, now),
        }
    }
}

fn rpc(e: alloy::transports::TransportError) -> ServiceError {
    ServiceError::Unavailable(format!("rpc: {e}"))
}

impl Facilitator {
    /// Is this authorization known taken, or known free, without the database? `None`: ask it.
    pub(super) fn taken_here(&self, key: &Key) -> Option<bool> {
        if self.inner.in_flight.contains_key(key) {
            return Some(true);
        }
        match self.inner.fast.index.lookup(key) {
            Lookup::Taken => Some(true),
            Lookup::Free => Some(false),
            Lookup::Ask => None,
        }
    }

    /// Load the ledger's taken authorizations into memory (start-up): from then on, alone on
    /// the database, verify reads no ledger row.
    pub async fn load_authorization_index(&self) -> ServiceResult<usize> {
        let now = (self.inner.clock)();
        let started = Instant::now();
        let n = self.inner.fast.index.load(&self.inner.db, now).await?;
        tracing::info!(
            authorizations = n,
            answers_misses = self.inner.fast.index.answers_misses(),
            took_ms = started.elapsed().as_millis() as u64,
            "authorization index loaded"
        );
        Ok(n)
    }

    /// Simulate the payment's call from `from` as `run` says; only if that fails, ask what
    /// is wrong.
    pub(super) async fn simulate_then_diagnose(
        &self,
        rt: &NetworkRuntime,
        req: &PaymentRequest,
        from: Address,
        payment: PaymentCall,
        run: Run,
    ) -> ServiceResult<ChainView> {
        let asset = req.asset;
        let chain = rt.entry.info.chain_id;
        let call = (run.request(from, &payment), "latest");
        let code_known = self.inner.fast.contracts.contains_key(&(chain, asset));
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
                self.inner.fast.contracts.insert((chain, asset), ());
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
                let at = self
                    .simulate_at(rt, from, &payment, run, (self.inner.clock)())
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
        self.diagnosis(rt, req, from, payment, simulation).await
    }

    /// The calls that name a failed simulation, in one batch.
    pub(super) async fn diagnosis(
        &self,
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
}

/// How a payment's call is simulated.
#[derive(Debug, Clone, Copy)]
pub(super) enum Run {
    /// `eth_call` with the node's defaults: verify of an EOA's `(v, r, s)` payment, whose
    /// outcome no gas price or limit changes (the fast path: one call).
    Call,
    /// `eth_estimateGas` of the very call, in the `eth_call`'s place: settle of an EOA's
    /// payment. It fails as the call would, and its answer is the transaction's gas limit.
    Estimate,
    /// `eth_call` as the settlement transaction will run: its gas limit and fees (a smart
    /// wallet may answer on `gasleft()` or `tx.gasprice`; `smart_wallet::as_sent`).
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
    pub(super) fn request(self, from: Address, payment: &PaymentCall) -> TransactionRequest {
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
pub(super) fn over_cap(rt: &NetworkRuntime, payment: &PaymentCall, gas: u64) -> Reason {
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
