//! The x402 core: verify and settle, across every served network, whatever the payment
//! method. What differs per method (checks, simulation, the call, its sender, batching, the
//! ledger key) is asked of the request's `crate::methods::PaymentMethod`; what is written here
//! once is the rest.
//!
//! verify: the method's off-chain checks (pure) -> "already used" from memory (`fast`,
//! `crate::authorizations`) -> the method's on-chain judgement (one RPC round trip when the
//! payment is good) -> answer, cached briefly.
//!
//! settle: the method's off-chain checks -> ledger row (the idempotency point; a
//! `ClaimedPayment` until something is sent) -> the method's judgement, as the signer that will
//! send it (the transaction's gas limit: the estimate plus a margin, never above
//! `max_gas_per_settlement`) -> one send path (`SendPath`: direct, batched, or queued for
//! another instance's signer) -> `ReceiptWatcher` (bounded wait) -> ledger outcome. A copy of a
//! payment in flight in this process is refused at once (a retry of the same idempotent request
//! waits for the first's answer); across processes they meet at the ledger's unique key.

mod answers;
mod batched;
mod channel_claimer;
mod claim;
mod fast;
mod finality;
mod fleet;
mod mirrored;
mod outcome;
mod reads;
mod send;
mod svm;
mod verify;

pub use crate::methods::eip3009::SmartWalletPolicy;
pub use crate::methods::SettleCall;
pub use answers::{SettleAnswer, VerifyAnswer};
pub use channel_claimer::ClaimPass;
use claim::ClaimedPayment;
use outcome::{mined, RowRef, Sent};
use send::{Outgoing, SendPath};
pub use svm::{SvmSettleAnswer, SvmVerifyAnswer};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::RootProvider;
use dashmap::DashMap;
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use x402::exact::evm as exact;
use x402::permit2::Phase;
use x402::proto::PaymentRequest;
use x402::Reason;

use crate::auth::accounts::AccountLimits;
use crate::error::{ServiceError, ServiceResult};
use crate::fleet::Fleet;
use crate::ledger::{self, Key};
use crate::methods::{MethodContext, MethodRegistry, PaymentMethod, Resolved};
use crate::metrics::MetricsHandle;
use crate::registry::{NetworkEntry, RegistryHandle};
use crate::settlement::batch::{self, Approach, BatchConfig};
use crate::settlement::{FeePolicy, ReceiptWatcher, SettlementRouter};

/// Seconds since the Unix epoch; injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

/// Everything one served network needs at run time.
pub struct NetworkRuntime {
    pub entry: NetworkEntry,
    pub provider: RootProvider,
    pub router: SettlementRouter,
    pub watcher: ReceiptWatcher,
    pub receipt_timeout: Duration,
    /// An unmined transaction is replaced (same nonce, higher fees) after this long.
    pub replace_after: Duration,
    /// The network's gas limit and fee cap (what a signer must be able to pay).
    pub fees: FeePolicy,
    /// Below this native balance a signer is reported (log, `/status`, Prometheus).
    pub min_signer_balance: U256,
    /// A mined settlement counts as confirmed once its block is this deep (1: at once).
    pub confirmations: u64,
    /// ERC-1271 / ERC-6492 payers: which factories may deploy, through which Multicall3.
    pub smart_wallets: SmartWalletPolicy,
    /// The block-synchronised state mirror (`verify.mirror`); `None`: off.
    pub mirror: Option<Arc<crate::mirror::Mirror>>,
    /// The least a payment may move, per token (`min_amount`), atomic units; a token not here
    /// takes anything above 0.
    pub min_amounts: HashMap<Address, U256>,
}

impl NetworkRuntime {
    /// The economic floor of a payment in `asset` (0 is refused whatever it says).
    pub fn min_amount(&self, asset: &Address) -> U256 {
        self.min_amounts.get(asset).copied().unwrap_or_default()
    }
}

/// A scheme served besides the built-in ones, as `/supported` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedScheme {
    pub x402_version: u8,
    pub scheme: String,
    /// The address its method signs for as a merchant's delegated authorizer
    /// (`extra.receiverAuthorizer`).
    pub receiver_authorizer: Option<Address>,
}

/// A settlement outcome as others can read it back (`GET /settlements/{tx}`).
pub type SettlementRow = entities::settlement::Model;

pub struct FacilitatorConfig {
    pub verify_cache_ttl: Duration,
    /// How long a transaction is still watched after its request answered
    /// `settlement_pending`; zero = not at all (reconciliation alone resolves it).
    pub background_watch: Duration,
    /// Other instances may hold signer leases (a shared PostgreSQL database): a settle this
    /// instance cannot send itself is queued for them.
    pub fleet: bool,
    /// How long a queued settle waits for a lease holder to take it.
    pub queue_pickup: Duration,
    /// How often signer balances are read.
    pub funds_poll: Duration,
    /// Batched settlement (`settlement.batch_max`, `settlement.batch_window_ms`); `None`: off.
    pub batch: Option<BatchConfig>,
    /// The longest contract-wallet (ERC-1271) or ERC-6492 signature accepted, bytes.
    pub max_signature_bytes: usize,
    /// Payment methods served besides the built-in ones (`MethodRegistry::builtin`).
    pub methods: Vec<Arc<dyn PaymentMethod>>,
    /// The SVM (Solana) networks served (`crate::svm`).
    pub svm: Vec<Arc<crate::svm::SvmRuntime>>,
    /// Serve the `batch-settlement` scheme (`settlement.channels`; a preview, off by default).
    pub channels: bool,
    /// The key the facilitator signs claims and refunds with for merchants who delegate their
    /// channels' `receiverAuthorizer` to it (`settlement.channels_authorizer_key_*`).
    pub channels_authorizer: Option<alloy::signers::local::PrivateKeySigner>,
}

impl Default for FacilitatorConfig {
    fn default() -> Self {
        Self {
            verify_cache_ttl: Duration::from_secs(5),
            background_watch: Duration::from_secs(30 * 60),
            fleet: false,
            queue_pickup: Duration::from_secs(5),
            funds_poll: Duration::from_secs(5),
            batch: None,
            max_signature_bytes: exact::DEFAULT_MAX_SIGNATURE_BYTES,
            methods: Vec::new(),
            svm: Vec::new(),
            channels: false,
            channels_authorizer: None,
        }
    }
}

#[derive(Clone)]
pub struct Facilitator {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    /// The claims and mined outcomes of settles, group-committed (`ledger::GroupWriter`).
    writer: ledger::GroupWriter,
    fleet: Fleet,
    registry: RegistryHandle,
    /// The payment methods served, by (x402 version, scheme, network family, transfer).
    methods: MethodRegistry,
    networks: HashMap<u64, Arc<NetworkRuntime>>,
    verify_cache: DashMap<B256, (Instant, VerifyAnswer)>,
    /// Inserts into `verify_cache`; every `VERIFY_CACHE_SWEEP_EVERY`th drops expired entries.
    verify_cache_inserts: std::sync::atomic::AtomicUsize,
    /// Taken authorizations and known contracts, in memory (the verify fast path).
    fast: fast::FastPath,
    /// One batcher per network when `settlement.batch_max` ≥ 2.
    batching: batched::Batching,
    in_flight: DashMap<Key, InFlightSettle>,
    /// Ledger rows whose receipt a background task is waiting for.
    watched: DashMap<i64, ()>,
    clock: Clock,
    config: FacilitatorConfig,
    metrics: MetricsHandle,
}

/// Who asks for a settlement: the client key, whether it has a credit balance, the limits of
/// its account, and the idempotency key its request carries (an `Idempotency-Key` header or a
/// v2 payment id).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub client_id: String,
    pub credits_limited: bool,
    pub account: AccountLimits,
    pub idempotency_key: Option<String>,
}

impl Caller {
    /// May this caller be answered from a ledger row (or an in-flight settle) that another
    /// call claimed? Only a retry of the same idempotent request: same client key, same
    /// idempotency key. Anyone else is a copy of a payment that is already being used.
    fn resumes(&self, client_id: Option<&str>, idempotency_key: Option<&str>) -> bool {
        self.idempotency_key.is_some()
            && client_id == Some(self.client_id.as_str())
            && idempotency_key == self.idempotency_key.as_deref()
    }
}

/// An in-process settle of one authorization, for the copies that arrive meanwhile.
struct InFlightSettle {
    client_id: Option<String>,
    idempotency_key: Option<String>,
    answer: watch::Receiver<Option<SettleAnswer>>,
}

/// Removes an authorization from the in-flight map when its leader is done (or dropped).
struct InFlightGuard {
    inner: Arc<Inner>,
    key: Key,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.inner.in_flight.remove(&self.key);
    }
}

/// What the metrics need to account for one mined settlement transaction.
#[derive(Clone)]
pub(super) struct Transfer {
    client_id: Option<String>,
    network: String,
    asset: String,
    amount: U256,
    /// The authorization (a batch transaction's receipt is read per payment).
    payer: Address,
    nonce: B256,
    /// Payments the transaction carries, when known (`batch::share`): 1 for a plain call.
    calls: Option<u64>,
}

impl Transfer {
    fn of(row: &SettlementRow) -> Self {
        Self {
            client_id: row.client_id.clone(),
            network: row.network.clone(),
            asset: row.asset.clone(),
            amount: row.amount.parse().unwrap_or_default(),
            payer: row.payer.parse().unwrap_or_default(),
            nonce: row.auth_nonce.parse().unwrap_or_default(),
            calls: None,
        }
    }
}

impl Facilitator {
    pub fn new(
        db: DatabaseConnection,
        fleet: Fleet,
        registry: RegistryHandle,
        networks: Vec<Arc<NetworkRuntime>>,
        clock: Clock,
        config: FacilitatorConfig,
        metrics: MetricsHandle,
    ) -> Self {
        let mut methods = MethodRegistry::builtin();
        if config.channels {
            methods.register(Arc::new(crate::methods::channels::BatchSettlement {
                authorizer: config.channels_authorizer.clone(),
                ..Default::default()
            }));
        }
        for method in &config.methods {
            methods.register(method.clone());
        }
        Self {
            inner: Arc::new(Inner {
                methods,
                writer: ledger::GroupWriter::start(db.clone()),
                db,
                fleet,
                registry,
                networks: networks
                    .into_iter()
                    .map(|n| (n.entry.info.chain_id, n))
                    .collect(),
                verify_cache: DashMap::new(),
                verify_cache_inserts: Default::default(),
                fast: fast::FastPath::new(config.fleet),
                batching: batched::Batching::new(config.batch),
                in_flight: DashMap::new(),
                watched: DashMap::new(),
                clock,
                config,
                metrics,
            }),
        }
    }

    /// Nothing was sent for this row after all: it fails, and a later settle may claim it.
    async fn release_unsent(&self, id: i64) -> Result<(), sea_orm::DbErr> {
        ledger::mark_failed_unsent(&self.inner.db, id, Reason::UnexpectedSettleError.as_str())
            .await
            .map(|_| ())
    }

    /// This instance's id in the fleet (written on the rows it is responsible for).
    pub fn instance_id(&self) -> &str {
        self.inner.fleet.id()
    }

    /// Unix seconds by the facilitator's clock.
    pub fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    pub fn network_runtimes(&self) -> impl Iterator<Item = &Arc<NetworkRuntime>> {
        self.inner.networks.values()
    }

    /// This instance's membership of the fleet (the operator's view of instances and leases).
    pub fn fleet(&self) -> &Fleet {
        &self.inner.fleet
    }

    /// The schemes of methods registered besides the built-in ones (whose kinds `/supported`
    /// lists network by network as it always has), in a stable order.
    pub fn added_schemes(&self) -> Vec<AddedScheme> {
        let methods = &self.inner.methods;
        let mut schemes: Vec<AddedScheme> = methods
            .keys()
            .into_iter()
            .filter(|k| !crate::methods::BUILTIN_SCHEMES.contains(&k.scheme.as_str()))
            .map(|k| AddedScheme {
                x402_version: k.x402_version,
                scheme: k.scheme.clone(),
                receiver_authorizer: methods.receiver_authorizer(k),
            })
            .collect();
        schemes.dedup();
        schemes
    }

    fn runtime_for(&self, req: &PaymentRequest) -> Option<&Arc<NetworkRuntime>> {
        let info = x402::network::parse_network(&req.network)?;
        self.inner.networks.get(&info.chain_id)
    }

    /// What a payment method may read of `rt` (the request's network, when it is served).
    fn method_context<'a>(&'a self, rt: Option<&'a NetworkRuntime>) -> MethodContext<'a> {
        MethodContext {
            runtime: rt,
            db: &self.inner.db,
            registry: &self.inner.registry,
            clock: &self.inner.clock,
            max_signature_bytes: self.inner.config.max_signature_bytes,
        }
    }

    /// The request's payment method, checked off-chain. `Err(reason)` is a protocol answer.
    fn resolve(&self, req: &PaymentRequest, phase: Phase) -> Result<Resolved, Reason> {
        let rt = self.runtime_for(req).map(Arc::as_ref);
        self.inner
            .methods
            .resolve(&self.method_context(rt), req, phase)
    }

    /// The payment's ledger key, by its method (the key's first: they share it).
    fn ledger_key(&self, rt: &NetworkRuntime, req: &PaymentRequest) -> Key {
        let network = rt.entry.info.v1_name;
        match self.inner.methods.candidates(req).first() {
            Some(method) => method.ledger_key(network, req),
            None => {
                let a = &req.payload.authorization;
                Key::new(network, req.asset, a.from, a.nonce)
            }
        }
    }

    /// The methods served: their keys, for `/supported`.
    pub fn methods(&self) -> &MethodRegistry {
        &self.inner.methods
    }

    /// Settle a payment. One authorization is settled at most once, and exactly one settle of
    /// it ever answers `success: true`: a copy — concurrent or later, from any client key or
    /// instance — is answered `invalid_exact_evm_nonce_already_used` at once. The one exception
    /// is a retry of the same idempotent request (same client key, same idempotency key), which
    /// gets the original outcome.
    pub async fn settle(
        &self,
        req: &PaymentRequest,
        caller: Option<Caller>,
    ) -> ServiceResult<SettleAnswer> {
        let payer = Some(req.payload.authorization.from);
        let amount = req.payload.authorization.value;
        let resolved = match self.resolve(req, Phase::Settle) {
            Ok(r) => r,
            Err(reason) => return Ok(SettleAnswer::failed(reason, payer, amount)),
        };
        let Some(rt) = self.runtime_for(req).cloned() else {
            return Ok(SettleAnswer::failed(Reason::InvalidNetwork, payer, amount));
        };
        let network = rt.entry.info.v1_name;
        let ctx = self.method_context(Some(&rt));
        let key = match resolved.method.settle_key(&ctx, req, network).await? {
            Some(key) => key,
            None => resolved.method.ledger_key(network, req),
        };
        let caller = caller.unwrap_or_default();
        // No signer can pay for gas anywhere: fail before any work, with a clear reason.
        if let Some(why) = self.cannot_send(&rt) {
            return Err(ServiceError::NoSigner(why));
        }

        // One settle per authorization in this process: a copy is refused without waiting; a
        // retry of the same idempotent request waits for the leader's answer.
        let (tx, follow) = match self.inner.in_flight.entry(key.clone()) {
            dashmap::mapref::entry::Entry::Occupied(e) => {
                let leader = e.get();
                if !caller.resumes(
                    leader.client_id.as_deref(),
                    leader.idempotency_key.as_deref(),
                ) {
                    return Ok(SettleAnswer::failed(
                        Reason::InvalidExactEvmNonceAlreadyUsed,
                        payer,
                        amount,
                    ));
                }
                (None, Some(leader.answer.clone()))
            }
            dashmap::mapref::entry::Entry::Vacant(v) => {
                let (tx, rx) = watch::channel(None);
                v.insert(InFlightSettle {
                    client_id: (!caller.client_id.is_empty()).then(|| caller.client_id.clone()),
                    idempotency_key: caller.idempotency_key.clone(),
                    answer: rx,
                });
                (Some(tx), None)
            }
        };
        if let Some(mut rx) = follow {
            let answer = rx
                .wait_for(Option::is_some)
                .await
                .map(|a| a.clone())
                .ok()
                .flatten();
            return match answer {
                // The same request's outcome; the transaction was the leader's, not this call's.
                Some(a) => Ok(SettleAnswer {
                    mined_here: false,
                    ..a
                }),
                // The leader failed unexpectedly: read the ledger.
                None => self.answer_from_ledger(&rt, &key, req).await,
            };
        }
        let tx = tx.expect("leader has a sender");
        // A settle that may join the network's batch is counted as on its way from here, so
        // that an open batch window waits for it (and closes at once when nothing is coming).
        let approach = resolved
            .method
            .required_sender(req)
            .is_none()
            .then(|| self.batcher(&rt).map(|b| b.approach()))
            .flatten();
        let guard = InFlightGuard {
            inner: self.inner.clone(),
            key: key.clone(),
        };
        // A verify answered from the cache must not call this payment valid any more.
        self.inner.verify_cache.remove(&req.request_hash);
        // The leader runs to its end even if the HTTP request that started it goes away: a
        // settle cut off between the ledger and the chain would leave work for reconciliation.
        let this = self.clone();
        let req = req.clone();
        let leader = tokio::spawn(async move {
            let _guard = guard;
            let mut result = this
                .settle_as_leader(&rt, &req, &resolved, key.clone(), &caller, approach)
                .await;
            if let Some(answer) = result.as_mut().ok().filter(|a| a.success && a.mined_here) {
                // The method's own bookkeeping of a mined payment (a channel's new balance).
                let ctx = this.method_context(Some(&rt));
                let tx = answer.transaction.unwrap_or_default();
                match resolved
                    .method
                    .settled(&ctx, &req, &resolved.checked, tx)
                    .await
                {
                    Ok(settled) => {
                        answer.extra = settled.extra;
                        answer.amount = settled.amount.unwrap_or(answer.amount);
                        answer.amount_empty = settled.amount_empty;
                    }
                    Err(e) => tracing::warn!(error = %e, "after a mined settlement"),
                }
            }
            let valid_before = req.payload.authorization.valid_before;
            let now = (this.inner.clock)();
            this.inner.fast.settled(&key, valid_before, &result, now);
            this.mirror_settled(&rt, resolved.method.as_ref(), &req, &result);
            if let Ok(answer) = &result {
                if answer.error_reason == Some(Reason::SettlementPending) {
                    // Endpoints that want it hear that the outcome is not known yet; the
                    // background watch's ledger change tells them the rest.
                    if let Err(e) =
                        crate::webhooks::announce_pending(&this.inner.db, &key, answer.transaction)
                            .await
                    {
                        tracing::warn!(error = %e, "settlement.pending event not recorded");
                    }
                }
                let _ = tx.send(Some(answer.clone()));
            }
            result
        });
        leader.await?
    }

    async fn settle_as_leader(
        &self,
        rt: &Arc<NetworkRuntime>,
        req: &PaymentRequest,
        resolved: &Resolved,
        key: Key,
        caller: &Caller,
        mut approach: Option<Approach>,
    ) -> ServiceResult<SettleAnswer> {
        let Resolved { method, checked } = resolved;
        let client_id = (!caller.client_id.is_empty()).then_some(caller.client_id.as_str());
        let (payer, amount) = (
            Some(req.payload.authorization.from),
            req.payload.authorization.value,
        );
        let started = std::time::Instant::now();
        let claim = match self.claim(rt, req, &key, caller).await? {
            Ok(claim) => claim,
            Err(answer) => return Ok(answer),
        };
        // A new settlement (a repeat of the same authorization never reaches here) is admitted
        // by its key's and its account's limits.
        let claim = self.admit(claim, caller).await?;
        // A payment that became valid a moment ago: the block that would carry it may still be
        // stamped at or before its `validAfter` (a chain's clock lags ours), and the token would
        // revert it after we paid the gas. It goes out once no chain within the allowed lag can
        // refuse it (at most `CHAIN_CLOCK_LAG_SECS + 1` s later).
        if let Some(wait) = fresh_payment_wait(req.payload.authorization.valid_after, self.now()) {
            tokio::time::sleep(wait).await;
        }
        let claim_ms = started.elapsed().as_secs_f64() * 1e3;

        // Simulate right before sending, as the signer that will send: never spend gas on a
        // payment that would revert, nor more than its estimate. In a batch, a payment the state
        // mirror clears at the current head is not simulated: its gas is the batch's bound per
        // call, when the network's cap allows it.
        let required = method.required_sender(req);
        let sender = required.or_else(|| rt.router.next_sender());
        let cleared = (batch::MIRRORED_GAS_LIMIT <= rt.fees.max_gas_per_settlement)
            .then(|| self.cleared_by_mirror(rt, method.as_ref(), req, checked))
            .flatten();
        let (judged, simulated) = match cleared {
            Some(call) => (Ok(Ok(call)), false),
            None => {
                let from = sender.unwrap_or_else(|| default_sender(rt, method.as_ref(), req));
                let ctx = self.method_context(Some(rt));
                let judged = method.judge(&ctx, req, checked, from, Phase::Settle).await;
                (judged, true)
            }
        };
        let judged = match judged {
            Ok(Ok(call)) => {
                // The method's bookkeeping that stands or falls with the row, before sending.
                let ctx = self.method_context(Some(rt));
                let row = claim.row().id;
                let reserved = method.reserve(&ctx, req, checked, row).await;
                reserved.map(|r| r.map(|()| call))
            }
            other => other,
        };
        let call = match judged {
            Ok(Ok(call)) => {
                // From here the money may move: the mirror counts it against the payer.
                self.mirror_settling(rt, method.as_ref(), req);
                call
            }
            Ok(Err(reason)) => {
                claim.refuse(reason.as_str()).await?;
                return Ok(SettleAnswer::failed(reason, payer, amount));
            }
            Err(e) => {
                // Nothing was sent (the node did not answer): release the claim so that a
                // retry can proceed.
                claim.abandon().await?;
                return Err(e);
            }
        };
        // The send path, chosen once. A payment that names its sender (upto) is not queued
        // (another instance's signer would be refused) nor batched.
        let queueable = self.inner.config.fleet && required.is_none();
        let batchable = required.is_none() && method.batchable(req, &call);
        let path = if !rt.router.has_available() && queueable {
            // Another instance holds this network's signer leases: it sends, we answer.
            SendPath::Fleet
        } else if let Some(batcher) = self.batcher(rt).filter(|_| batchable) {
            SendPath::Batched(batcher, approach.take())
        } else {
            SendPath::Direct { sender, queueable }
        };
        tracing::debug!(
            claim_ms,
            judge_ms = started.elapsed().as_secs_f64() * 1e3 - claim_ms,
            simulated,
            "settle judged"
        );
        let outgoing = Outgoing {
            rt,
            req,
            to: call.to,
            data: call.data,
            // Every settle path estimates its call: only a verify goes without.
            gas_limit: call.gas_limit.unwrap_or(rt.fees.max_gas_per_settlement),
            simulated,
            client_id,
        };
        self.send(path, &outgoing, claim).await
    }
}

/// Who a payment is simulated as when no signer is picked yet (verify): the one it must be
/// sent by (`upto`), else the network's first signer.
fn default_sender(
    rt: &NetworkRuntime,
    method: &dyn PaymentMethod,
    req: &PaymentRequest,
) -> Address {
    method
        .required_sender(req)
        .or_else(|| rt.router.signers().first().copied())
        .unwrap_or(Address::ZERO)
}

/// How far behind our clock a chain's next block may be stamped (anvil starts up to a second
/// behind the wall clock; a sequencer stamps a block at its slot's start).
pub const CHAIN_CLOCK_LAG_SECS: u64 = 2;

/// How long to hold a payment valid from `valid_after` (already judged valid at `now`) so that
/// a block stamped up to `CHAIN_CLOCK_LAG_SECS` behind our clock is still after it: the token
/// wants `block.timestamp > validAfter`. `None` for every payment valid for a while.
fn fresh_payment_wait(valid_after: U256, now: u64) -> Option<std::time::Duration> {
    let valid_after = u64::try_from(valid_after).ok()?;
    let ready_at = valid_after.checked_add(CHAIN_CLOCK_LAG_SECS + 1)?;
    (valid_after <= now && now < ready_at).then(|| std::time::Duration::from_secs(ready_at - now))
}

fn u256_to_i64(v: U256) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_payment_valid_a_moment_ago_waits() {
        let wait = |after: u64, now: u64| fresh_payment_wait(U256::from(after), now);
        // Valid this second: held until a block stamped 2 s behind us is past it.
        assert_eq!(wait(100, 100), Some(std::time::Duration::from_secs(3)));
        assert_eq!(wait(100, 102), Some(std::time::Duration::from_secs(1)));
        assert_eq!(wait(100, 103), None);
        // Valid for long (what the official clients sign: now - 600), or not valid yet (verify
        // refuses it before this): no wait.
        assert_eq!(wait(0, 100), None);
        assert_eq!(wait(101, 100), None);
        assert_eq!(fresh_payment_wait(U256::MAX, 100), None);
    }
}
