//! The x402 core: verify and settle, across every served network.
//!
//! verify: off-chain checks (`x402::exact::evm`, pure) -> "already used" from memory
//! (`fast`, `crate::authorizations`) -> one RPC round trip, the simulation of
//! `transferWithAuthorization` (only when it fails, one more batch: `authorizationState`,
//! `balanceOf`, `name`, `version` to name the failure) -> answer, cached briefly.
//!
//! settle: off-chain checks -> ledger row (the idempotency point) -> simulate, as the signer
//! that will send it, by estimating the call's gas (the transaction's gas limit: the estimate
//! plus a margin, never above `max_gas_per_settlement`) -> the network's `SettlementRouter`
//! (nonce, sign, persist hash, broadcast) -> `ReceiptWatcher` (bounded wait)
//! -> ledger outcome. Concurrent settles of one authorization in this process share one
//! in-flight future; across processes they meet at the ledger's unique key.

mod batched;
mod fast;
mod finality;
mod fleet;
mod mirrored;
mod permit2;
mod smart_wallet;

use fast::Run;
use smart_wallet::PaymentCall;
pub use smart_wallet::{SmartWalletPolicy, MULTICALL3};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolCall;
use dashmap::DashMap;
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use x402::exact::evm::{self as exact, IEIP3009};
use x402::permit2::Phase;
use x402::proto::PaymentRequest;
use x402::Reason;

use crate::auth::accounts::{self, AccountLimits, Charge};
use crate::error::{ServiceError, ServiceResult};
use crate::fleet::Fleet;
use crate::ledger::{self, Claim, Key, Mined};
use crate::metrics::{self, MetricsHandle, Operation, X402Event};
use crate::registry::{NetworkEntry, RegistryHandle};
use crate::settlement::batch::{self, BatchConfig};
use crate::settlement::{
    Broadcast, BroadcastError, Broadcasted, FeePolicy, ReceiptWatcher, SettlementRouter,
};

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

#[derive(Debug, Clone)]
pub struct VerifyAnswer {
    pub is_valid: bool,
    pub invalid_reason: Option<Reason>,
    pub payer: Option<Address>,
    pub cached: bool,
}

#[derive(Debug, Clone)]
pub struct SettleAnswer {
    pub success: bool,
    pub error_reason: Option<Reason>,
    pub transaction: Option<B256>,
    pub payer: Option<Address>,
    pub block_number: Option<u64>,
    pub amount: U256,
    /// This call mined the transaction; `false` for a repeated or concurrent settle of the
    /// same authorization answered with another call's outcome (and when nothing was mined).
    pub mined_here: bool,
}

impl VerifyAnswer {
    pub fn rejected(reason: Reason) -> Self {
        Self {
            is_valid: false,
            invalid_reason: Some(reason),
            payer: None,
            cached: false,
        }
    }
}

impl SettleAnswer {
    pub fn rejected(reason: Reason) -> Self {
        Self::failed(reason, None, U256::ZERO)
    }

    fn failed(reason: Reason, payer: Option<Address>, amount: U256) -> Self {
        Self {
            success: false,
            error_reason: Some(reason),
            transaction: None,
            payer,
            block_number: None,
            amount,
            mined_here: false,
        }
    }
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

/// `verify_cache` drops its expired answers every this many inserts.
const VERIFY_CACHE_SWEEP_EVERY: usize = 4096;

/// What the metrics need to account for one mined settlement transaction.
#[derive(Clone)]
struct Transfer {
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

/// What the chain said about a payment: the simulation, and when it failed, why (`fast`).
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

/// The transaction that settles a payment, as the chain judged it.
#[derive(Debug, Clone)]
pub(crate) struct SettleCall {
    pub to: Address,
    pub data: Bytes,
    /// Its gas limit: the estimate of the very call plus the margin
    /// (`FeePolicy::gas_limit_for`). `None` only at verify of an EOA's payment, which is
    /// simulated without an estimate.
    pub gas_limit: Option<u64>,
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
        Self {
            inner: Arc::new(Inner {
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

    /// Record a mined transaction in the ledger; the one call that resolves the row also
    /// accounts for the transfer (amount moved, gas, fee) in the metrics, whichever path got
    /// there first (the settle itself, a retry, a status read, or start-up reconciliation).
    async fn resolve_mined(
        &self,
        id: i64,
        tx_hash: B256,
        mined: &Mined,
        transfer: Transfer,
    ) -> ServiceResult<()> {
        let moved = self
            .inner
            .writer
            .mark_mined(id, tx_hash, mined, Reason::InvalidTransactionState.as_str())
            .await?;
        if moved {
            self.inner.metrics.record_x402(X402Event {
                day: chrono::Utc::now().date_naive(),
                client_id: transfer.client_id.unwrap_or_default(),
                network: transfer.network,
                asset: transfer.asset,
                operation: Operation::Transfer,
                outcome: if mined.success {
                    metrics::CONFIRMED
                } else {
                    metrics::REVERTED
                }
                .to_owned(),
                amount: if mined.success {
                    transfer.amount
                } else {
                    U256::ZERO
                },
                gas_used: mined.gas_used,
                fee_wei: U256::from(mined.fee_wei),
                latency: Duration::ZERO,
            });
        }
        Ok(())
    }

    /// What `receipt` says of row `id`'s payment (`mined`). A batch transaction's gas and fee
    /// are shared by every payment it carries: when `transfer` does not say how many (a row
    /// resolved from the ledger), the ledger does.
    async fn mined_of(
        &self,
        rt: &NetworkRuntime,
        id: i64,
        receipt: &TransactionReceipt,
        mut transfer: Transfer,
    ) -> (Mined, Transfer) {
        if transfer.calls.is_none() && batch::is_batch(receipt) {
            match ledger::payments_of_transaction(&self.inner.db, id).await {
                Ok(n) => transfer.calls = Some(n),
                Err(e) => tracing::warn!(id, error = %e, "payments of a batch not counted"),
            }
        }
        (mined(receipt, rt.confirmations, &transfer), transfer)
    }

    /// `resolve_mined`, retried in the background if the database refuses it now: a mined
    /// transaction is never reported as a failure because of our own storage.
    async fn record_mined(&self, id: i64, tx_hash: B256, mined: Mined, transfer: Transfer) {
        let first = self
            .resolve_mined(id, tx_hash, &mined, transfer.clone())
            .await;
        let Err(e) = first else { return };
        tracing::warn!(id, %tx_hash, error = %e, "mined settlement not recorded yet; retrying");
        let this = self.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(200);
            for _ in 0..8 {
                tokio::time::sleep(wait).await;
                match this
                    .resolve_mined(id, tx_hash, &mined, transfer.clone())
                    .await
                {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(id, %tx_hash, error = %e, "mined settlement still not recorded")
                    }
                }
                wait *= 2;
            }
            tracing::error!(id, %tx_hash, "mined settlement not recorded; reconciliation will");
        });
    }

    /// Keep waiting for a transaction after its request has answered (`settlement_pending`),
    /// so the ledger and the metrics resolve without anyone asking again. One task per row.
    fn watch_in_background(
        &self,
        rt: &Arc<NetworkRuntime>,
        id: i64,
        hashes: Vec<B256>,
        transfer: Transfer,
    ) {
        if self.inner.config.background_watch.is_zero()
            || self.inner.watched.insert(id, ()).is_some()
        {
            return;
        }
        let this = self.clone();
        let rt = rt.clone();
        let watch_for = self.inner.config.background_watch;
        tokio::spawn(async move {
            match rt.watcher.wait_any(&hashes, watch_for).await {
                Some(receipt) => {
                    let (mined, transfer) = this.mined_of(&rt, id, &receipt, transfer).await;
                    let tx_hash = receipt.transaction_hash;
                    if let Err(e) = this.resolve_mined(id, tx_hash, &mined, transfer).await {
                        tracing::warn!(id, %tx_hash, error = %e, "mined settlement not recorded");
                    }
                }
                None => tracing::warn!(
                    id,
                    "settlement still unmined after the background watch; a retry, a status \
                     read or the next start resolves it"
                ),
            }
            this.inner.watched.remove(&id);
        });
    }

    /// Nothing was sent for this row after all: it fails, and a later settle may claim it.
    async fn release_unsent(&self, id: i64) -> Result<(), sea_orm::DbErr> {
        ledger::mark_failed_unsent(&self.inner.db, id, Reason::UnexpectedSettleError.as_str()).await
    }

    /// A claimed payment refused before anything was sent. Nothing of it is kept: its row is
    /// deleted, unless a retry of the same idempotent request may be waiting on it (it carries
    /// an idempotency key) and must read the refusal there; that row keeps only the reason,
    /// until `ledger::purge_unsent`. Either way a later settle may claim the payment afresh.
    async fn refuse_unsent(&self, id: i64, reason: &str, caller: &Caller) -> ServiceResult<()> {
        if caller.idempotency_key.is_some() {
            ledger::mark_failed_unsent(&self.inner.db, id, reason).await?;
        } else {
            ledger::forget_unsent(&self.inner.db, id).await?;
        }
        Ok(())
    }

    async fn refund_credit(&self, credit: Option<&Charge>) {
        if let Some(charge) = credit {
            if let Err(e) = accounts::refund(&self.inner.db, charge).await {
                let client_id = charge.client_id();
                tracing::error!(client_id, error = %e, "settle credit not given back");
            }
        }
    }

    /// Unix seconds by the facilitator's clock.
    pub fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    pub fn network_runtimes(&self) -> impl Iterator<Item = &Arc<NetworkRuntime>> {
        self.inner.networks.values()
    }

    fn runtime_for(&self, req: &PaymentRequest) -> Option<&Arc<NetworkRuntime>> {
        let info = x402::network::parse_network(&req.network)?;
        self.inner.networks.get(&info.chain_id)
    }

    /// The caller's view of the world the pure checks need.
    fn context(&self, req: &PaymentRequest) -> exact::VerifyContext {
        let mut ctx = exact::VerifyContext {
            max_signature_bytes: self.inner.config.max_signature_bytes,
            ..exact::VerifyContext::default()
        };
        if let Some(rt) = self.runtime_for(req) {
            ctx.network_enabled = true;
            ctx.assets = self
                .inner
                .registry
                .assets_of(rt.entry.info.v1_name)
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
        ctx
    }

    pub async fn verify(&self, req: &PaymentRequest) -> ServiceResult<VerifyAnswer> {
        let now = (self.inner.clock)();
        let payer = Some(req.payload.authorization.from);
        // The mirror at the current head, before the cache: its answer costs no RPC call and
        // is never older than the last block.
        if let Some(answer) = self.verify_from_mirror(req, now) {
            return Ok(answer);
        }
        let cached = self
            .inner
            .verify_cache
            .get(&req.request_hash)
            .filter(|hit| hit.value().0.elapsed() < self.inner.config.verify_cache_ttl)
            .map(|hit| hit.value().1.clone());
        if let Some(mut answer) = cached {
            // A cached "valid" is still subject to the ledger: once a settle of the payment
            // has begun (here or on another instance), it is used.
            if answer.is_valid {
                if let Some(rt) = self.runtime_for(req) {
                    if self.authorization_taken(rt, req).await? {
                        return Ok(VerifyAnswer {
                            is_valid: false,
                            invalid_reason: Some(Reason::InvalidExactEvmNonceAlreadyUsed),
                            payer,
                            cached: false,
                        });
                    }
                }
            }
            answer.cached = true;
            return Ok(answer);
        }
        let answer = match self.check(req, now).await? {
            Ok(()) => VerifyAnswer {
                is_valid: true,
                invalid_reason: None,
                payer,
                cached: false,
            },
            Err(reason) => VerifyAnswer {
                is_valid: false,
                invalid_reason: Some(reason),
                payer,
                cached: false,
            },
        };
        // Cache only while the answer cannot change by the clock alone.
        let valid_before = req.payload.authorization.valid_before;
        if !answer.is_valid
            || valid_before > U256::from(now + 6 + self.inner.config.verify_cache_ttl.as_secs())
        {
            self.inner
                .verify_cache
                .insert(req.request_hash, (Instant::now(), answer.clone()));
            let inserts = self
                .inner
                .verify_cache_inserts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if inserts % VERIFY_CACHE_SWEEP_EVERY == VERIFY_CACHE_SWEEP_EVERY - 1 {
                // Expired answers are never served again: without this they stayed forever.
                let ttl = self.inner.config.verify_cache_ttl;
                self.inner.verify_cache.retain(|_, v| v.0.elapsed() < ttl);
            }
        }
        Ok(answer)
    }

    /// All checks, off-chain then on-chain. `Err(reason)` is a protocol answer.
    async fn check(&self, req: &PaymentRequest, now: u64) -> ServiceResult<Result<(), Reason>> {
        let verified = match self.verify_offchain(req, now, Phase::Verify) {
            Ok(v) => v,
            Err(reason) => return Ok(Err(reason)),
        };
        let Some(rt) = self.runtime_for(req) else {
            return Ok(Err(Reason::InvalidNetwork));
        };
        // A payment this facilitator has settled (or is settling) is never valid again. Known
        // in memory, or read from the ledger while the node simulates.
        let key = ledger_key(rt, req);
        match self.taken_here(&key) {
            Some(true) => Ok(Err(Reason::InvalidExactEvmNonceAlreadyUsed)),
            Some(false) => Ok(self
                .judge_onchain(rt, req, &verified, default_sender(rt, req), Phase::Verify)
                .await?
                .map(|_| ())),
            None => {
                let (taken, judged) = tokio::join!(
                    self.authorization_taken(rt, req),
                    self.judge_onchain(rt, req, &verified, default_sender(rt, req), Phase::Verify)
                );
                if taken? {
                    return Ok(Err(Reason::InvalidExactEvmNonceAlreadyUsed));
                }
                Ok(judged?.map(|_| ()))
            }
        }
    }

    /// Has a settle of this authorization begun, in this process or in the ledger (any
    /// instance)? A row that failed without sending anything does not count: it may be settled
    /// again.
    async fn authorization_taken(
        &self,
        rt: &NetworkRuntime,
        req: &PaymentRequest,
    ) -> ServiceResult<bool> {
        let key = ledger_key(rt, req);
        if let Some(known) = self.taken_here(&key) {
            return Ok(known);
        }
        Ok(ledger::find(&self.inner.db, &key)
            .await?
            .is_some_and(|row| row.status != ledger::FAILED || row.tx_hash.is_some()))
    }

    /// The chain's view of an EIP-3009 payment sent by `from`. An EOA's `(v, r, s)` payment
    /// is simulated with one `eth_call` at verify and one `eth_estimateGas` at settle; a smart
    /// wallet's, at both, as its transaction will run (`smart_wallet::estimate_as_sent`: the
    /// fees, then the estimate, then the `eth_call` with that gas limit and those fees).
    async fn chain_view(
        &self,
        rt: &NetworkRuntime,
        req: &PaymentRequest,
        verified: &exact::OffchainVerified,
        from: Address,
        phase: Phase,
    ) -> ServiceResult<ChainView> {
        let call =
            match smart_wallet::payment_call(rt, req, verified, transfer_calldata(req, verified))
                .await?
            {
                Ok(call) => call,
                Err(reason) => return Ok(ChainView::refused(reason)),
            };
        if !verified.needs_onchain_signature_check {
            let run = match phase {
                Phase::Verify => Run::Call,
                Phase::Settle => Run::Estimate,
            };
            return self.simulate_then_diagnose(rt, req, from, call, run).await;
        }
        let ((max_fee_per_gas, max_priority_fee_per_gas), estimate) =
            smart_wallet::estimate_as_sent(rt, from, &call).await?;
        let as_sent = |gas_limit| Run::AsSent {
            gas_limit,
            max_fee_per_gas,
            max_priority_fee_per_gas,
        };
        match estimate {
            Ok(gas) => match rt.fees.gas_limit_for(gas) {
                Some(limit) => {
                    self.simulate_then_diagnose(rt, req, from, call, as_sent(limit))
                        .await
                }
                None => Ok(ChainView::refused(fast::over_cap(rt, &call, gas))),
            },
            // The token's time checks in a stale latest block: judged at our clock by the
            // simulation, as sent under the network's bound.
            Err(message) if time_refusal(&message) => {
                let bound = rt.fees.max_gas_per_settlement;
                self.simulate_then_diagnose(rt, req, from, call, as_sent(bound))
                    .await
            }
            // The estimate fails as the transaction would: refused. A simulation with the
            // node's defaults names the failure (a deployment's inner transfer's revert shows
            // only with the gas to deploy); if it passes, the estimate's revert is the name.
            Err(message) => {
                let mut view = self
                    .simulate_then_diagnose(rt, req, from, call, Run::Call)
                    .await?;
                if view.simulation.is_ok() {
                    view.simulation = Err(message);
                }
                Ok(view)
            }
        }
    }

    /// `eth_call` of `calldata` (shaped as `run` says) in the latest block with its timestamp
    /// overridden to `at` (a block override, as geth and anvil take). `None` when the node
    /// does not take it.
    async fn simulate_at(
        &self,
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

    /// Settle a payment. One authorization is settled at most once, and exactly one settle of
    /// it ever answers `success: true` (DESIGN.md "The ledger"): a copy — concurrent or later,
    /// from any client key or instance — is answered `invalid_exact_evm_nonce_already_used`
    /// at once. The one exception is a retry of the same idempotent request (same client key,
    /// same idempotency key), which gets the original outcome.
    pub async fn settle(
        &self,
        req: &PaymentRequest,
        caller: Option<Caller>,
    ) -> ServiceResult<SettleAnswer> {
        let now = (self.inner.clock)();
        let payer = Some(req.payload.authorization.from);
        let amount = req.payload.authorization.value;
        let verified = match self.verify_offchain(req, now, Phase::Settle) {
            Ok(v) => v,
            Err(reason) => return Ok(SettleAnswer::failed(reason, payer, amount)),
        };
        let Some(rt) = self.runtime_for(req).cloned() else {
            return Ok(SettleAnswer::failed(Reason::InvalidNetwork, payer, amount));
        };
        let key = ledger_key(&rt, req);
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
        let rt_for_mirror = rt.clone();
        let leader = tokio::spawn(async move {
            let _guard = guard;
            let result = this
                .settle_as_leader(&rt, &req, &verified, key.clone(), &caller)
                .await;
            let valid_before = req.payload.authorization.valid_before;
            let now = (this.inner.clock)();
            this.inner.fast.settled(&key, valid_before, &result, now);
            this.mirror_settled(&rt_for_mirror, &req, &result);
            if let Ok(answer) = &result {
                let _ = tx.send(Some(answer.clone()));
            }
            result
        });
        leader
            .await
            .map_err(|e| ServiceError::Internal(format!("settle task: {e}")))?
    }

    async fn settle_as_leader(
        &self,
        rt: &Arc<NetworkRuntime>,
        req: &PaymentRequest,
        verified: &permit2::Verified,
        key: Key,
        caller: &Caller,
    ) -> ServiceResult<SettleAnswer> {
        let client_id = (!caller.client_id.is_empty()).then_some(caller.client_id.as_str());
        let auth = &req.payload.authorization;
        let payer = Some(auth.from);
        let amount = auth.value;
        let new = ledger::NewSettlement {
            key: key.clone(),
            pay_to: req.pay_to,
            amount: amount.to_string(),
            valid_after: u256_to_i64(auth.valid_after),
            valid_before: u256_to_i64(auth.valid_before),
            x402_version: req.x402_version as i16,
            request_hash: req.request_hash,
            payment_id: req.payment_id.clone(),
            payload: serde_json::to_value(&req.payload).unwrap_or_default(),
            client_id: client_id.map(str::to_owned),
            idempotency_key: caller.idempotency_key.clone(),
            instance_id: self.inner.fleet.id().to_owned(),
        };
        let row = match self.inner.writer.claim(&new).await? {
            Claim::New(row) => row,
            Claim::Existing(row) => {
                // Nothing was ever sent for it: a failed row, or one whose process died
                // between claiming and sending, may be settled again by whoever asks.
                let again = if row.status == ledger::FAILED && row.tx_hash.is_none() {
                    ledger::reclaim_unsent(&self.inner.db, row.id, &new).await?
                } else if ledger::abandoned(&row) {
                    ledger::reclaim_abandoned(&self.inner.db, &row, &new).await?
                } else {
                    false
                };
                if !again {
                    if caller.resumes(row.client_id.as_deref(), row.idempotency_key.as_deref()) {
                        return self.answer_from_ledger(rt, &key, req).await;
                    }
                    return Ok(SettleAnswer::failed(
                        Reason::InvalidExactEvmNonceAlreadyUsed,
                        payer,
                        amount,
                    ));
                }
                row
            }
        };

        // A new settlement (a repeat of the same authorization never reaches here) is admitted
        // by its key's and its account's limits: a key or an account with a credit balance
        // pays one credit, given back if nothing is sent.
        let charge = match client_id {
            Some(c) => {
                let admitted = accounts::charge_settle(
                    &self.inner.db,
                    &self.inner.metrics,
                    c,
                    caller.credits_limited,
                    &caller.account,
                )
                .await?;
                match admitted {
                    Ok(charge) => charge,
                    Err(refusal) => {
                        self.refuse_unsent(row.id, refusal.ledger_reason(), caller)
                            .await?;
                        return Err(ServiceError::Forbidden(refusal.message().into()));
                    }
                }
            }
            None => None,
        };
        let credit = charge.as_ref();

        // Simulate right before sending, as the signer that will send: never spend gas on a
        // payment that would revert, nor more than its estimate. In a batch, a payment the state
        // mirror clears at the current head is not simulated: its gas is the batch's bound per
        // call, when the network's cap allows it.
        let sender = permit2::required_sender(req).or_else(|| rt.router.next_sender());
        let cleared = (batch::MIRRORED_GAS_LIMIT <= rt.fees.max_gas_per_settlement)
            .then(|| self.cleared_by_mirror(rt, req, verified))
            .flatten();
        let (judged, simulated) = match cleared {
            Some((to, data)) => {
                let call = SettleCall {
                    to,
                    data,
                    gas_limit: Some(batch::MIRRORED_GAS_LIMIT),
                };
                (Ok(Ok(call)), false)
            }
            None => {
                let from = sender.unwrap_or_else(|| default_sender(rt, req));
                let judged = self
                    .judge_onchain(rt, req, verified, from, Phase::Settle)
                    .await;
                (judged, true)
            }
        };
        let judged = match judged {
            Ok(judged) => judged,
            Err(e) => {
                // Nothing was sent (the node did not answer): release the claim so that a
                // retry can proceed.
                self.release_unsent(row.id).await?;
                self.refund_credit(credit).await;
                return Err(e);
            }
        };
        // The token itself, a Permit2 proxy, or (an ERC-6492 wallet to deploy) Multicall3.
        let SettleCall {
            to,
            data: calldata,
            gas_limit,
        } = match judged {
            Ok(call) => {
                // From here the money may move: the mirror counts it against the payer.
                self.mirror_settling(rt, req);
                call
            }
            Err(reason) => {
                self.refuse_unsent(row.id, reason.as_str(), caller).await?;
                self.refund_credit(credit).await;
                return Ok(SettleAnswer::failed(reason, payer, amount));
            }
        };
        // A payment that names its sender (upto) is not queued: another instance's signer
        // would be refused by the proxy.
        let queueable = self.inner.config.fleet && permit2::required_sender(req).is_none();
        if !rt.router.has_available() && queueable {
            // Another instance holds this network's signer leases: it sends, we answer.
            return self
                .settle_through_the_fleet(rt, &row, to, &calldata, credit, payer, amount)
                .await;
        }
        // Every settle path estimates its call: only a verify goes without.
        let gas_limit = gas_limit.unwrap_or(rt.fees.max_gas_per_settlement);
        // Batched: EOAs' EIP-3009 calls to the token that any signer may send. A smart
        // wallet's goes alone, from the signer it was simulated as.
        let eoa =
            matches!(verified, permit2::Verified::Eip3009(v) if !v.needs_onchain_signature_check);
        let batchable = eoa && to == req.asset && permit2::required_sender(req).is_none();
        if let Some(batcher) = self.batcher(rt).filter(|_| batchable) {
            return self
                .settle_batched(
                    rt, &batcher, &row, req, calldata, simulated, gas_limit, credit, client_id,
                )
                .await;
        }
        let broadcast = rt
            .router
            .broadcast_from(
                sender,
                Broadcast::new(row.id, to, calldata.clone(), gas_limit),
            )
            .await;
        let sent = match broadcast {
            Ok(b) => Sent::Known(b, calldata),
            Err(BroadcastError::NoSigner(why)) if queueable => {
                tracing::debug!(%why, "no signer here after all; queueing for the fleet");
                return self
                    .settle_through_the_fleet(rt, &row, to, &calldata, credit, payer, amount)
                    .await;
            }
            Err(BroadcastError::NoSigner(why)) => {
                self.release_unsent(row.id).await?;
                self.refund_credit(credit).await;
                return Err(ServiceError::NoSigner(self.cannot_send(rt).unwrap_or_else(
                    || format!("network {}: {why}", rt.entry.info.v1_name),
                )));
            }
            Err(BroadcastError::Unknown { tx_hash, error }) => {
                tracing::warn!(%tx_hash, %error, "broadcast outcome unknown; waiting for the chain");
                Sent::Unknown(tx_hash)
            }
            Err(BroadcastError::NotSent(error)) => {
                tracing::error!(network = rt.entry.info.v1_name, %error, "settlement not broadcast");
                self.release_unsent(row.id).await?;
                self.refund_credit(credit).await;
                return Ok(SettleAnswer::failed(
                    Reason::UnexpectedSettleError,
                    payer,
                    amount,
                ));
            }
        };
        let transfer = Transfer {
            client_id: client_id.map(str::to_owned),
            network: row.network.clone(),
            asset: row.asset.clone(),
            amount,
            payer: auth.from,
            nonce: auth.nonce,
            calls: Some(1),
        };
        self.await_outcome(rt, row.id, sent, to, transfer, payer)
            .await
    }

    /// Wait (bounded) for the receipt and record it. A transaction still unmined after
    /// `replace_after` is replaced (same nonce, higher fees) and every version is watched. On
    /// timeout the answer names the transaction: the buyer's money may be moving, and a retry
    /// must not pay twice.
    async fn await_outcome(
        &self,
        rt: &Arc<NetworkRuntime>,
        id: i64,
        sent: Sent,
        to: Address,
        transfer: Transfer,
        payer: Option<Address>,
    ) -> ServiceResult<SettleAnswer> {
        let amount = transfer.amount;
        let deadline = Instant::now() + rt.receipt_timeout;
        // Counted as in flight for its signer (metrics) until this returns.
        let _in_flight = match &sent {
            Sent::Known(b, _) => rt.router.awaiting(b.signer),
            Sent::Unknown(_) => None,
        };
        let (mut hashes, mut latest) = match sent {
            Sent::Known(b, calldata) => (vec![b.tx_hash], Some((b, calldata))),
            Sent::Unknown(h) => (vec![h], None),
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = if latest.is_some() {
                left.min(rt.replace_after)
            } else {
                left
            };
            if let Some(receipt) = rt.watcher.wait_any(&hashes, slice).await {
                let tx_hash = receipt.transaction_hash;
                let mined = mined(&receipt, rt.confirmations, &transfer);
                // The chain has spoken: the answer follows it even if the ledger write fails
                // now (it is retried, and reconciliation would find it anyway).
                self.record_mined(id, tx_hash, mined.clone(), transfer)
                    .await;
                return Ok(SettleAnswer {
                    success: mined.success,
                    error_reason: (!mined.success).then_some(Reason::InvalidTransactionState),
                    transaction: Some(tx_hash),
                    payer,
                    block_number: Some(mined.block_number),
                    amount,
                    mined_here: true,
                });
            }
            if Instant::now() >= deadline {
                self.watch_in_background(rt, id, hashes.clone(), transfer);
                return Ok(SettleAnswer {
                    success: false,
                    error_reason: Some(Reason::SettlementPending),
                    transaction: hashes.last().copied(),
                    payer,
                    block_number: None,
                    amount,
                    mined_here: false,
                });
            }
            if let Some((previous, calldata)) = latest.take() {
                let replaced = rt
                    .router
                    .broadcast(Broadcast {
                        settlement_id: id,
                        to,
                        calldata: calldata.clone(),
                        replacing: Some(previous.clone()),
                        batch: None,
                        gas_limit: previous.gas_limit,
                    })
                    .await;
                match replaced {
                    Ok(b) => {
                        tracing::info!(old = %previous.tx_hash, new = %b.tx_hash, nonce = b.nonce, "replaced an unmined settlement");
                        hashes.push(b.tx_hash);
                        latest = Some((b, calldata));
                    }
                    // Keep watching what is out there; try again after the next slice.
                    Err(_) => latest = Some((previous, calldata)),
                }
            }
        }
    }

    /// The answer to a retry of the idempotent request that claimed this authorization's ledger
    /// row: the outcome of the first settle (or, while it is in flight, a bounded wait for it).
    async fn answer_from_ledger(
        &self,
        rt: &Arc<NetworkRuntime>,
        key: &Key,
        req: &PaymentRequest,
    ) -> ServiceResult<SettleAnswer> {
        let auth = &req.payload.authorization;
        self.answer_from_row(
            rt,
            RowRef::Key(key),
            Some(auth.from),
            auth.value,
            false,
            Instant::now() + rt.receipt_timeout,
        )
        .await
    }

    /// Follow a ledger row to its outcome, until `deadline`: confirmed, failed, or still
    /// pending (with the transaction, if one was sent). `original`: this call is the settle
    /// that row belongs to (a queued one another instance sends), not a retry.
    async fn answer_from_row(
        &self,
        rt: &Arc<NetworkRuntime>,
        which: RowRef<'_>,
        payer: Option<Address>,
        amount: U256,
        original: bool,
        deadline: Instant,
    ) -> ServiceResult<SettleAnswer> {
        let answer = |success, error_reason, transaction, block_number| SettleAnswer {
            success,
            error_reason,
            transaction,
            payer,
            block_number,
            amount,
            mined_here: original && success,
        };
        loop {
            let row = match which {
                RowRef::Key(key) => ledger::find(&self.inner.db, key).await?,
                RowRef::Id(id) => ledger::find_by_id(&self.inner.db, id).await?,
            }
            .ok_or(ServiceError::Internal("ledger row disappeared".into()))?;
            let tx_hash = row.tx_hash.as_deref().and_then(|h| h.parse::<B256>().ok());
            let block = row.block_number.map(|b| b as u64);
            match (row.status.as_str(), tx_hash) {
                (status, Some(h)) if ledger::is_success(status) => {
                    return Ok(answer(true, None, Some(h), block))
                }
                (ledger::FAILED, h) => {
                    let reason = row
                        .error_reason
                        .as_deref()
                        .and_then(Reason::parse)
                        .unwrap_or(Reason::UnexpectedSettleError);
                    return Ok(answer(false, Some(reason), h, block));
                }
                (ledger::SUBMITTED, Some(h)) => {
                    // Another process broadcast it: watch the chain ourselves.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if let Some(receipt) = rt.watcher.wait(h, left).await {
                        let (mined, transfer) = self
                            .mined_of(rt, row.id, &receipt, Transfer::of(&row))
                            .await;
                        self.record_mined(row.id, h, mined.clone(), transfer).await;
                        let reason = (!mined.success).then_some(Reason::InvalidTransactionState);
                        return Ok(answer(
                            mined.success,
                            reason,
                            Some(h),
                            Some(mined.block_number),
                        ));
                    }
                    self.watch_in_background(rt, row.id, vec![h], Transfer::of(&row));
                    return Ok(answer(
                        false,
                        Some(Reason::SettlementPending),
                        Some(h),
                        None,
                    ));
                }
                _ => {
                    if Instant::now() >= deadline {
                        return Ok(answer(false, Some(Reason::SettlementPending), None, None));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// A client's own settlement by transaction hash.
    pub async fn settlement_by_tx(
        &self,
        tx_hash: B256,
        client_id: &str,
    ) -> ServiceResult<SettlementRow> {
        let row = ledger::find_by_tx_hash(&self.inner.db, tx_hash, client_id)
            .await?
            .ok_or(ServiceError::NotFound("settlement"))?;
        self.fresh(row).await
    }

    /// A client's own settlement of an authorization (the caller lost a settle's answer).
    pub async fn settlement_by_authorization(
        &self,
        network: &x402::network::Network,
        payer: Address,
        nonce: B256,
        asset: Option<Address>,
        client_id: &str,
    ) -> ServiceResult<SettlementRow> {
        let row = ledger::find_by_authorization(
            &self.inner.db,
            network.v1_name,
            payer,
            nonce,
            asset,
            client_id,
        )
        .await?
        .ok_or(ServiceError::NotFound("settlement"))?;
        self.fresh(row).await
    }

    /// A row as the chain has it now: a submitted transaction that has been mined is resolved
    /// on the way.
    async fn fresh(&self, row: SettlementRow) -> ServiceResult<SettlementRow> {
        let tx_hash = row.tx_hash.as_deref().and_then(|h| h.parse::<B256>().ok());
        let (ledger::SUBMITTED, Some(tx_hash)) = (row.status.as_str(), tx_hash) else {
            return Ok(row);
        };
        let Some(rt) = x402::network::by_v1_name(&row.network)
            .and_then(|n| self.inner.networks.get(&n.chain_id))
        else {
            return Ok(row);
        };
        if let Ok(Some(receipt)) = rt.provider.get_transaction_receipt(tx_hash).await {
            let (mined, transfer) = self
                .mined_of(rt, row.id, &receipt, Transfer::of(&row))
                .await;
            self.resolve_mined(row.id, tx_hash, &mined, transfer)
                .await?;
            return ledger::find_by_id(&self.inner.db, row.id)
                .await?
                .ok_or(ServiceError::NotFound("settlement"));
        }
        Ok(row)
    }

    /// Resolve rows left in flight (start-up, and periodically): receipts that arrived, and
    /// rows that were never broadcast.
    pub async fn reconcile(&self) -> ServiceResult<usize> {
        let mut resolved = 0;
        for rt in self.inner.networks.values() {
            for row in ledger::unresolved(&self.inner.db, rt.entry.info.v1_name).await? {
                let Some(h) = row.tx_hash.as_deref().and_then(|h| h.parse::<B256>().ok()) else {
                    // The hash is written before any broadcast: no hash, nothing was sent. A
                    // young row may be another instance's claim in progress: leave it.
                    if ledger::abandoned(&row)
                        && self
                            .inner
                            .in_flight
                            .iter()
                            .all(|e| e.key().auth_nonce != row.auth_nonce)
                    {
                        ledger::mark_failed_unsent(
                            &self.inner.db,
                            row.id,
                            Reason::UnexpectedSettleError.as_str(),
                        )
                        .await?;
                        resolved += 1;
                    }
                    continue;
                };
                match rt.provider.get_transaction_receipt(h).await {
                    Ok(Some(receipt)) => {
                        let (mined, transfer) = self
                            .mined_of(rt, row.id, &receipt, Transfer::of(&row))
                            .await;
                        self.resolve_mined(row.id, h, &mined, transfer).await?;
                        resolved += 1;
                    }
                    Ok(None) => {
                        let known = rt
                            .provider
                            .get_transaction_by_hash(h)
                            .await
                            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
                            .is_some();
                        if known {
                            // Still in the pool: a watcher resolves it when it is mined.
                            self.watch_in_background(rt, row.id, vec![h], Transfer::of(&row));
                        } else {
                            tracing::warn!(tx_hash = %h, "in-flight settlement unknown to the node");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reconcile: receipt lookup failed"),
                }
            }
        }
        Ok(resolved)
    }
}

/// A ledger row, by the authorization or by its id.
#[derive(Clone, Copy)]
enum RowRef<'a> {
    Key(&'a Key),
    Id(i64),
}

/// What the first broadcast left us with.
enum Sent {
    /// Sent, with what a replacement needs.
    Known(Broadcasted, Bytes),
    /// Maybe sent: only its hash is known.
    Unknown(B256),
}

/// Who a payment is simulated as when no signer is picked yet (verify): the one it must be
/// sent by (`upto`), else the network's first signer.
fn default_sender(rt: &NetworkRuntime, req: &PaymentRequest) -> Address {
    permit2::required_sender(req)
        .or_else(|| rt.router.signers().first().copied())
        .unwrap_or(Address::ZERO)
}

fn ledger_key(rt: &NetworkRuntime, req: &PaymentRequest) -> Key {
    let auth = &req.payload.authorization;
    Key::new(rt.entry.info.v1_name, req.asset, auth.from, auth.nonce)
}

fn u256_to_i64(v: U256) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What a receipt says of one payment, for the ledger: with `confirmations` ≤ 1 its block is
/// deep enough. A batch transaction is read per payment (`batched::of_batch`).
fn mined(receipt: &TransactionReceipt, confirmations: u64, transfer: &Transfer) -> Mined {
    batched::of_batch(
        receipt,
        transfer,
        Mined {
            success: receipt.status(),
            block_number: receipt.block_number.unwrap_or_default(),
            gas_used: receipt.gas_used,
            fee_wei: receipt
                .effective_gas_price
                .saturating_mul(receipt.gas_used as u128),
            final_at_once: confirmations <= 1,
        },
    )
}

/// The call that moves the money: the (v, r, s) overload for EOA signatures, the `bytes`
/// overload (ERC-1271 smart wallets) otherwise.
fn transfer_calldata(req: &PaymentRequest, verified: &exact::OffchainVerified) -> Bytes {
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
fn time_refusal(message: &str) -> bool {
    message.contains("not yet valid") || message.contains("authorization is expired")
}

impl ChainView {
    /// No call may be sent for this payment: nothing was asked of the token.
    fn refused(reason: Reason) -> Self {
        Self {
            call: Err(reason),
            simulation: Err(reason.as_str().to_owned()),
            gas_limit: None,
            authorization_used: None,
            balance: None,
            name: None,
            version: None,
        }
    }
}

/// Name the on-chain failure (X402.md step 8).
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
