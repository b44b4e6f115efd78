//! Payment methods: one module per way of paying, behind one trait, picked by a registry.
//!
//! A method owns what differs between ways of paying: its off-chain checks, its on-chain
//! judgement (simulation, and naming a failure), the call that settles it (to, calldata, gas
//! limit), who must send that call, whether it may join a batch, and its ledger key. What is
//! the same for every payment — the claim, idempotency, the send path, the receipt wait,
//! metrics — is the facilitator's (`crate::facilitator`) and asks the method.
//!
//! The registry is keyed by (x402 version, scheme, network family, transfer method): the key
//! narrows a request to a payload type and its checks; a method under the key may then claim
//! the checked payment (an EIP-3009 payment signed by `from` itself is an EOA's, anything else
//! a smart wallet's). Built in: [`eip3009::Eoa`], [`eip3009::SmartWallet`], [`permit2::Exact`]
//! and [`upto::Upto`]; a caller adds its own with [`MethodRegistry::register`].

pub mod channels;
pub mod eip3009;
pub mod permit2;
pub mod svm;
pub mod upto;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use alloy::primitives::{Address, Bytes, B256, U256};
use futures::future::BoxFuture;
/// Whether a payment is judged for `/verify` or about to be sent for `/settle`.
pub use x402::permit2::Phase;
use x402::proto::PaymentRequest;
use x402::Reason;

use crate::error::ServiceResult;
use crate::facilitator::{Clock, NetworkRuntime};
use crate::ledger::Key;
use crate::mirror;
use crate::registry::{AssetView, RegistryHandle};

/// The schemes of the built-in methods: `exact` (EIP-3009, Permit2) and `upto` (Permit2).
pub const BUILTIN_SCHEMES: [&str; 2] = ["exact", "upto"];

/// A future a method returns (the trait is used as `dyn PaymentMethod`).
pub type MethodFuture<'a, T> = BoxFuture<'a, ServiceResult<T>>;

/// A family of networks that share an address format and a signing scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// EVM chains (CAIP-2 namespace `eip155`).
    Eip155,
    /// SVM clusters (CAIP-2 namespace `solana`): a payment is a transaction the buyer signed
    /// (`svm`).
    Svm,
}

impl Family {
    /// The family of a request's network, by its x402 v1 name or CAIP-2 id.
    pub fn of(network: &str) -> Option<Self> {
        if x402::svm::is_svm(network) {
            return Some(Family::Svm);
        }
        (x402::network::parse_network(network).is_some() || network.starts_with("eip155:"))
            .then_some(Family::Eip155)
    }
}

/// How the payload moves the money, as its shape says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transfer {
    /// A signed authorization to move `value` from `from` to `to` once, by `nonce`
    /// (`payload.authorization` + `payload.signature`; EIP-3009's shape).
    Authorization,
    /// A Permit2 `permitWitnessTransferFrom` (`payload.permit2Authorization`).
    Permit2,
    /// A serialized transaction the buyer signed and the facilitator co-signs as fee payer
    /// (`payload.transaction`; SVM).
    Transaction,
    /// A payment channel's payload (`batch-settlement`: deposit, voucher, refund, claim, settle).
    Channel,
}

impl Transfer {
    pub fn of(req: &PaymentRequest) -> Self {
        if req.svm.is_some() {
            Transfer::Transaction
        } else if req.channel.is_some() {
            Transfer::Channel
        } else if req.permit2.is_some() {
            Transfer::Permit2
        } else {
            Transfer::Authorization
        }
    }
}

/// What the registry is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodKey {
    pub x402_version: u8,
    pub scheme: String,
    pub family: Family,
    pub transfer: Transfer,
}

impl MethodKey {
    pub fn new(x402_version: u8, scheme: &str, family: Family, transfer: Transfer) -> Self {
        Self {
            x402_version,
            scheme: scheme.to_owned(),
            family,
            transfer,
        }
    }

    /// The key of a request: its version, the requirements' scheme, its network's family and
    /// its payload's shape. `None`: a network of no family served here.
    pub fn of(req: &PaymentRequest) -> Option<Self> {
        Some(Self::new(
            req.x402_version,
            &req.scheme,
            Family::of(&req.network)?,
            Transfer::of(req),
        ))
    }
}

/// What a method's off-chain checks established, kept for its own on-chain judgement: opaque
/// to the shared code.
pub struct Checked(Box<dyn Any + Send + Sync>);

impl Checked {
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self(Box::new(value))
    }

    /// The value a method put here (`None`: another method's).
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

/// The transaction that settles a payment, as the chain judged it.
#[derive(Debug, Clone)]
pub struct SettleCall {
    pub to: Address,
    pub data: Bytes,
    /// Its gas limit: the estimate of the very call plus the margin
    /// (`FeePolicy::gas_limit_for`). `None` only at verify, when the method simulated without
    /// an estimate.
    pub gas_limit: Option<u64>,
}

/// What a method may read: the request's network at run time (when it is served), the
/// accepted assets, the clock and the limits.
pub struct MethodContext<'a> {
    pub runtime: Option<&'a NetworkRuntime>,
    /// The shared database, for a method with state of its own (payment channels).
    pub db: &'a sea_orm::DatabaseConnection,
    pub registry: &'a RegistryHandle,
    pub clock: &'a Clock,
    /// The longest contract-wallet (ERC-1271) or ERC-6492 signature accepted, bytes.
    pub max_signature_bytes: usize,
}

impl MethodContext<'_> {
    /// Unix seconds by the facilitator's clock.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The assets registered on the request's network (none when it is not served).
    pub fn assets(&self) -> Vec<AssetView> {
        self.runtime
            .map(|rt| self.registry.assets_of(rt.entry.info.v1_name))
            .unwrap_or_default()
    }
}

/// One way of paying. Implemented as a unit of its own (a module), registered once.
pub trait PaymentMethod: Send + Sync + 'static {
    /// A short name, for logs.
    fn name(&self) -> &'static str;

    /// The keys this method serves.
    fn keys(&self) -> Vec<MethodKey>;

    /// Among the methods of one key (which share a payload type and its checks), is this
    /// checked payment this method's? A pure classification; the default takes anything.
    fn claims(&self, _req: &PaymentRequest, _checked: &Checked) -> bool {
        true
    }

    /// Every check that needs no chain. `Err(reason)` is the protocol's answer.
    fn check(
        &self,
        ctx: &MethodContext<'_>,
        req: &PaymentRequest,
        phase: Phase,
    ) -> Result<Checked, Reason>;

    /// The chain's judgement of the payment sent by `from`, with the call that settles it:
    /// `Ok(Err(reason))` is a protocol answer, `Err` a failure to ask (nothing was sent).
    fn judge<'a>(
        &'a self,
        ctx: &'a MethodContext<'a>,
        req: &'a PaymentRequest,
        checked: &'a Checked,
        from: Address,
        phase: Phase,
    ) -> MethodFuture<'a, Result<SettleCall, Reason>>;

    /// The signer the call must be sent by, when the payment names one; such a payment is
    /// never queued for another instance's signer.
    fn required_sender(&self, _req: &PaymentRequest) -> Option<Address> {
        None
    }

    /// May this call join the network's batch (any signer may send it, and its outcome can be
    /// read from the batch's receipt)?
    fn batchable(&self, _req: &PaymentRequest, _call: &SettleCall) -> bool {
        false
    }

    /// The ledger row's key: one payment, one row. By default the network, the asset, the
    /// payer and the payload's nonce.
    fn ledger_key(&self, network: &str, req: &PaymentRequest) -> Key {
        let a = &req.payload.authorization;
        Key::new(network, req.asset, a.from, a.nonce)
    }

    /// The payment as the state mirror counts it against its payer (`crate::mirror`), when the
    /// mirror follows this method's transfers.
    fn mirror_payment(&self, _req: &PaymentRequest) -> Option<mirror::Payment> {
        None
    }

    /// The transfer a settle of the payment makes, counted by the state mirror against its
    /// payer's balance from the moment it may be sent until the mirror has applied the block
    /// that mined it: by default `mirror_payment`. A method the mirror cannot judge may still
    /// move the same token (Permit2): its settles in flight must count too.
    fn pending_transfer(&self, req: &PaymentRequest) -> Option<mirror::Payment> {
        self.mirror_payment(req)
    }

    /// The call that settles the payment when the state mirror has judged it, without a
    /// simulation (`None`: the mirror cannot judge this method's payments).
    fn unsimulated_call(&self, _req: &PaymentRequest, _checked: &Checked) -> Option<SettleCall> {
        None
    }

    /// The address this method signs for as a merchant's delegated authorizer (a channel's
    /// `receiverAuthorizer`), advertised in `/supported` `extra.receiverAuthorizer`.
    fn receiver_authorizer(&self) -> Option<Address> {
        None
    }

    /// Does this method answer `/verify` itself ([`PaymentMethod::verify_own`]), with state of
    /// its own (payment channels)? Then the shared verify path (mirror, cache, ledger, `judge`)
    /// is skipped.
    fn answers_verify(&self) -> bool {
        false
    }

    /// The whole `/verify` answer of a method that [`answers_verify`](Self::answers_verify).
    fn verify_own<'a>(
        &'a self,
        _ctx: &'a MethodContext<'a>,
        _req: &'a PaymentRequest,
        _checked: &'a Checked,
    ) -> MethodFuture<'a, channels::OwnVerify> {
        Box::pin(async {
            Ok(channels::OwnVerify {
                reason: Some(Reason::UnexpectedVerifyError),
                extra: None,
            })
        })
    }

    /// The chain judged the payment good and its ledger row (`row`) is this settle's; nothing is
    /// sent yet. The method's own bookkeeping that must stand or fall with the row (a channel
    /// deposit's voucher, accepted as the deposit is). `Ok(Err(reason))` refuses the payment:
    /// nothing is sent, the row is released.
    fn reserve<'a>(
        &'a self,
        _ctx: &'a MethodContext<'a>,
        _req: &'a PaymentRequest,
        _checked: &'a Checked,
        _row: i64,
    ) -> MethodFuture<'a, Result<(), Reason>> {
        Box::pin(async { Ok(Ok(())) })
    }

    /// After the payment's transaction `tx` is mined successfully: the method's own bookkeeping,
    /// and what it adds to the answer.
    fn settled<'a>(
        &'a self,
        _ctx: &'a MethodContext<'a>,
        _req: &'a PaymentRequest,
        _checked: &'a Checked,
        _tx: B256,
    ) -> MethodFuture<'a, Settled> {
        Box::pin(async { Ok(Settled::default()) })
    }

    /// The payment's ledger key when it depends on the chain's state (a channel sweep: the
    /// receiver's claimed and settled totals), read as its settle begins; `None`: `ledger_key`.
    fn settle_key<'a>(
        &'a self,
        _ctx: &'a MethodContext<'a>,
        _req: &'a PaymentRequest,
        _network: &'a str,
    ) -> MethodFuture<'a, Option<Key>> {
        Box::pin(async { Ok(None) })
    }
}

/// What a method adds to the answer of its mined settlement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settled {
    /// What the transaction moved, when it is not the payment's amount (a sweep, a refund).
    pub amount: Option<U256>,
    /// The answer's `extra` (a channel's `channelState`).
    pub extra: Option<serde_json::Value>,
    /// The answer's `amount` is `""`: the transaction moves no funds by its nature (a channel
    /// claim only updates accounting).
    pub amount_empty: bool,
}

/// The payment's transfer as the state mirror counts it: `payload.authorization` (for Permit2,
/// the EIP-3009-shaped view `proto` fills: owner, `witness.to`, the amount, the nonce).
pub(crate) fn mirror_transfer(req: &PaymentRequest) -> mirror::Payment {
    let auth = &req.payload.authorization;
    mirror::Payment {
        asset: req.asset,
        payer: auth.from,
        pay_to: auth.to,
        value: auth.value,
        nonce: auth.nonce,
    }
}

/// The methods served, by key. Several methods under one key are asked, in the order they were
/// registered, whether they claim a checked payment.
#[derive(Clone, Default)]
pub struct MethodRegistry {
    by_key: HashMap<MethodKey, Vec<Arc<dyn PaymentMethod>>>,
    /// Who answers a request of no registered key, by its payload shape: the built-in methods,
    /// whose checks name what is wrong (scheme, network) as the x402 exact scheme says.
    fallback: HashMap<Transfer, MethodKey>,
}

/// A request's method, and what its checks established.
pub struct Resolved {
    pub method: Arc<dyn PaymentMethod>,
    pub checked: Checked,
}

impl MethodRegistry {
    /// The built-in methods: EIP-3009 from an EOA and from a smart wallet, Permit2 `exact`
    /// and `upto`, on EVM networks, x402 versions 1 and 2.
    pub fn builtin() -> Self {
        let mut registry = Self::default();
        let eip3009 = eip3009::Shared::default();
        registry.register(Arc::new(eip3009::Eoa::new(eip3009.clone())));
        registry.register(Arc::new(eip3009::SmartWallet::new(eip3009)));
        registry.register(Arc::new(permit2::Exact));
        registry.register(Arc::new(upto::Upto));
        registry.fallback.insert(
            Transfer::Authorization,
            MethodKey::new(2, "exact", Family::Eip155, Transfer::Authorization),
        );
        registry.fallback.insert(
            Transfer::Permit2,
            MethodKey::new(2, "exact", Family::Eip155, Transfer::Permit2),
        );
        registry
    }

    /// Serve `method` under each of its keys (after the methods already there).
    pub fn register(&mut self, method: Arc<dyn PaymentMethod>) {
        for key in method.keys() {
            self.by_key.entry(key).or_default().push(method.clone());
        }
    }

    /// The keys served, in a stable order.
    pub fn keys(&self) -> Vec<&MethodKey> {
        let mut keys: Vec<_> = self.by_key.keys().collect();
        keys.sort_by(|a, b| {
            (a.x402_version, &a.scheme, a.transfer as u8).cmp(&(
                b.x402_version,
                &b.scheme,
                b.transfer as u8,
            ))
        });
        keys
    }

    /// The delegated authorizer a method of `key` signs as, if any.
    pub fn receiver_authorizer(&self, key: &MethodKey) -> Option<Address> {
        self.by_key
            .get(key)
            .and_then(|methods| methods.iter().find_map(|m| m.receiver_authorizer()))
    }

    /// The methods a request's key names (or the fallback for its payload shape).
    pub fn candidates(&self, req: &PaymentRequest) -> &[Arc<dyn PaymentMethod>] {
        let registered = MethodKey::of(req).and_then(|k| self.by_key.get(&k));
        registered
            .or_else(|| {
                let key = self.fallback.get(&Transfer::of(req))?;
                self.by_key.get(key)
            })
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Check a request with its key's methods and pick the one that claims it. The first
    /// method of the key checks (the methods of one key share their checks).
    pub fn resolve(
        &self,
        ctx: &MethodContext<'_>,
        req: &PaymentRequest,
        phase: Phase,
    ) -> Result<Resolved, Reason> {
        let candidates = self.candidates(req);
        let first = candidates.first().ok_or(Reason::InvalidScheme)?;
        let checked = first.check(ctx, req, phase)?;
        let method = candidates
            .iter()
            .find(|m| m.claims(req, &checked))
            .ok_or(Reason::InvalidScheme)?
            .clone();
        Ok(Resolved { method, checked })
    }
}

#[cfg(test)]
mod tests;
