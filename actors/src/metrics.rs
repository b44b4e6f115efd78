//! `MetricsActor`: the facilitator's numbers.
//!
//! The HTTP middleware and the x402 handlers add their events up in memory per rollup key, in
//! the caller's thread (a short lock; no message, so no wake-up of another thread per request,
//! and the request path never waits on a metrics write). The actor flushes the sums to the
//! database in one transaction per batch, on a timer, on demand
//! (before a metrics read, so a reader sees everything acknowledged before it asked) and on
//! graceful shutdown. A failed flush keeps its batch for the next one: nothing is lost.
//!
//! Prometheus counters and histograms are updated in the caller's thread (atomics), and the
//! text exposition is rendered on scrape.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use alloy_primitives::{Address, U256};
use chrono::NaiveDate;
use entities::{http_metrics_daily as http_row, x402_metrics_daily as x402_row};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};

use crate::{ServiceError, ServiceResult};

/// One HTTP request, as the middleware saw it.
#[derive(Debug, Clone)]
pub struct HttpEvent {
    pub day: NaiveDate,
    pub method: String,
    /// The matched route pattern (`/api/v1/clients/{id}`), never the raw path.
    pub route: String,
    pub status: u16,
    pub latency: Duration,
}

/// One verify or settle outcome.
#[derive(Debug, Clone)]
pub struct X402Event {
    pub day: NaiveDate,
    pub client_id: String,
    /// v1 network name.
    pub network: String,
    pub asset: String,
    pub operation: Operation,
    /// `success`, `success_repeat` (settle only), or the reason string.
    pub outcome: String,
    pub amount: U256,
    pub gas_used: u64,
    pub fee_wei: U256,
    pub latency: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Verify,
    Settle,
    /// A settlement transaction mined (once per ledger row): outcome `confirmed` or
    /// `reverted`, with the amount moved, gas and fee.
    Transfer,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Verify => "verify",
            Operation::Settle => "settle",
            Operation::Transfer => "transfer",
        }
    }
}

pub const CONFIRMED: &str = "confirmed";
pub const REVERTED: &str = "reverted";

pub const SUCCESS: &str = "success";
/// A settle answered with the outcome of an earlier (or concurrent) settle of the same
/// authorization: a success for the caller, but no money moved and no fee paid by this call.
pub const SUCCESS_REPEAT: &str = "success_repeat";

/// Whether an outcome string is a success (first or repeated).
pub fn is_success(outcome: &str) -> bool {
    outcome == SUCCESS || outcome == SUCCESS_REPEAT
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HttpKey {
    day: NaiveDate,
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Default)]
struct HttpSum {
    count: i64,
    total_latency_us: i64,
    max_latency_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct X402Key {
    day: NaiveDate,
    client_id: String,
    network: String,
    asset: String,
    operation: Operation,
    outcome: String,
}

#[derive(Debug, Clone, Default)]
struct X402Sum {
    count: i64,
    amount: U256,
    gas_used: i64,
    fee_wei: U256,
    total_latency_us: i64,
}

#[derive(Default)]
struct Batch {
    http: HashMap<HttpKey, HttpSum>,
    x402: HashMap<X402Key, X402Sum>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.http.is_empty() && self.x402.is_empty()
    }

    fn add_http(&mut self, key: HttpKey, sum: &HttpSum) {
        let s = self.http.entry(key).or_default();
        s.count += sum.count;
        s.total_latency_us += sum.total_latency_us;
        s.max_latency_us = s.max_latency_us.max(sum.max_latency_us);
    }

    fn add_x402(&mut self, key: X402Key, sum: &X402Sum) {
        let s = self.x402.entry(key).or_default();
        s.count += sum.count;
        s.amount = s.amount.saturating_add(sum.amount);
        s.gas_used += sum.gas_used;
        s.fee_wei = s.fee_wei.saturating_add(sum.fee_wei);
        s.total_latency_us += sum.total_latency_us;
    }

    /// Put a batch that failed to write back in front of what came in meanwhile.
    fn merge(&mut self, other: Batch) {
        for (k, v) in other.http {
            self.add_http(k, &v);
        }
        for (k, v) in other.x402 {
            self.add_x402(k, &v);
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Sums not yet written, shared by the recording callers and the actor.
type Pending = Arc<std::sync::Mutex<Batch>>;

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, Batch> {
    // A panic while adding up leaves sums, not broken invariants: keep using them.
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct MetricsActor {
    db: DatabaseConnection,
    pending: Pending,
    flush_every: Duration,
}

impl Actor for MetricsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.flush_every, |_, ctx| ctx.notify(Flush));
    }
}

/// Write everything pending; answers once it is in the database.
#[derive(Message)]
#[rtype(result = "ServiceResult<()>")]
struct Flush;

impl Handler<Flush> for MetricsActor {
    // Atomic: one flush at a time; events recorded meanwhile go to the next batch.
    type Result = AtomicResponse<Self, ServiceResult<()>>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let batch = std::mem::take(&mut *lock(&self.pending));
        let db = self.db.clone();
        AtomicResponse::new(Box::pin(
            async move {
                if batch.is_empty() {
                    return Ok(());
                }
                match write(&db, &batch).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err((batch, e)),
                }
            }
            .into_actor(self)
            .map(|result, act, _| match result {
                Ok(()) => Ok(()),
                Err((batch, e)) => {
                    tracing::warn!(error = %e, "metrics flush failed; kept for the next one");
                    lock(&act.pending).merge(batch);
                    Err(e)
                }
            }),
        ))
    }
}

/// Add a batch to the rollup rows, in one transaction. Rows are read with a row lock on
/// PostgreSQL (several instances may share the database). On SQLite the transaction takes the
/// write lock first, with a write that changes nothing: a transaction that reads and then
/// writes fails at once ("database is locked", no busy wait) when another writer committed
/// in between, which lost whole batches under load.
async fn write(db: &DatabaseConnection, batch: &Batch) -> ServiceResult<()> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Sqlite {
        txn.execute_unprepared("UPDATE http_metrics_daily SET count = count WHERE 0")
            .await?;
    }
    for (k, v) in &batch.http {
        let existing = http_row::Entity::find()
            .filter(http_row::Column::Day.eq(k.day))
            .filter(http_row::Column::Method.eq(k.method.as_str()))
            .filter(http_row::Column::Route.eq(k.route.as_str()))
            .filter(http_row::Column::Status.eq(k.status as i16))
            .lock_exclusive()
            .one(&txn)
            .await?;
        match existing {
            Some(row) => {
                let mut active: http_row::ActiveModel = row.clone().into();
                active.count = Set(row.count + v.count);
                active.total_latency_us = Set(row.total_latency_us + v.total_latency_us);
                active.max_latency_us = Set(row.max_latency_us.max(v.max_latency_us));
                active.update(&txn).await?;
            }
            None => {
                http_row::ActiveModel {
                    day: Set(k.day),
                    method: Set(k.method.clone()),
                    route: Set(k.route.clone()),
                    status: Set(k.status as i16),
                    count: Set(v.count),
                    total_latency_us: Set(v.total_latency_us),
                    max_latency_us: Set(v.max_latency_us),
                    ..Default::default()
                }
                .insert(&txn)
                .await?;
            }
        }
    }
    for (k, v) in &batch.x402 {
        let existing = x402_row::Entity::find()
            .filter(x402_row::Column::Day.eq(k.day))
            .filter(x402_row::Column::ClientId.eq(k.client_id.as_str()))
            .filter(x402_row::Column::Network.eq(k.network.as_str()))
            .filter(x402_row::Column::Asset.eq(k.asset.as_str()))
            .filter(x402_row::Column::Operation.eq(k.operation.as_str()))
            .filter(x402_row::Column::Outcome.eq(k.outcome.as_str()))
            .lock_exclusive()
            .one(&txn)
            .await?;
        match existing {
            Some(row) => {
                let amount = parse_sum(&row.amount_sum)?.saturating_add(v.amount);
                let fee = parse_sum(&row.fee_wei_sum)?.saturating_add(v.fee_wei);
                let mut active: x402_row::ActiveModel = row.clone().into();
                active.count = Set(row.count + v.count);
                active.amount_sum = Set(amount.to_string());
                active.gas_used_sum = Set(row.gas_used_sum + v.gas_used);
                active.fee_wei_sum = Set(fee.to_string());
                active.total_latency_us = Set(row.total_latency_us + v.total_latency_us);
                active.update(&txn).await?;
            }
            None => {
                x402_row::ActiveModel {
                    day: Set(k.day),
                    client_id: Set(k.client_id.clone()),
                    network: Set(k.network.clone()),
                    asset: Set(k.asset.clone()),
                    operation: Set(k.operation.as_str().to_owned()),
                    outcome: Set(k.outcome.clone()),
                    count: Set(v.count),
                    amount_sum: Set(v.amount.to_string()),
                    gas_used_sum: Set(v.gas_used),
                    fee_wei_sum: Set(v.fee_wei.to_string()),
                    total_latency_us: Set(v.total_latency_us),
                    ..Default::default()
                }
                .insert(&txn)
                .await?;
            }
        }
    }
    txn.commit().await?;
    Ok(())
}

/// A decimal sum column.
pub fn parse_sum(s: &str) -> ServiceResult<U256> {
    s.parse()
        .map_err(|_| ServiceError::Internal(format!("bad decimal in a metrics row: {s}")))
}

/// Rollup rows in a day range (inclusive), for the metrics endpoints.
pub async fn http_rows(
    db: &DatabaseConnection,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> ServiceResult<Vec<http_row::Model>> {
    let mut q = http_row::Entity::find();
    if let Some(f) = from {
        q = q.filter(http_row::Column::Day.gte(f));
    }
    if let Some(t) = to {
        q = q.filter(http_row::Column::Day.lte(t));
    }
    Ok(q.order_by_asc(http_row::Column::Day).all(db).await?)
}

/// x402 rollup rows in a day range, of the given client keys (`None`: all of them).
pub async fn x402_rows(
    db: &DatabaseConnection,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    clients: Option<&[String]>,
) -> ServiceResult<Vec<x402_row::Model>> {
    let mut q = x402_row::Entity::find();
    if let Some(f) = from {
        q = q.filter(x402_row::Column::Day.gte(f));
    }
    if let Some(t) = to {
        q = q.filter(x402_row::Column::Day.lte(t));
    }
    if let Some(ids) = clients {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        q = q.filter(x402_row::Column::ClientId.is_in(ids.iter().cloned()));
    }
    Ok(q.order_by_asc(x402_row::Column::Day).all(db).await?)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    network: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetworkLabels {
    network: String,
}

/// An account (user id).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    account: String,
}

/// A client key and its account.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    account: String,
    client_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignerLabels {
    network: String,
    signer: String,
}

/// One RPC endpoint: its URL redacted to scheme and host (`chain::redact`), never whole.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    network: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcCallLabels {
    network: String,
    endpoint: String,
    /// The JSON-RPC method, or `batch`.
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcErrorLabels {
    network: String,
    endpoint: String,
    /// `timeout`, `slow`, `connect`, `http_<status>`, `transport`, `decode`, `rpc`.
    kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The chain-access layer's numbers, per RPC endpoint. Cheap to clone (the families are
/// shared); updated in the caller's thread.
#[derive(Clone)]
pub struct RpcMetrics {
    latency: HistogramFamily<RpcCallLabels>,
    errors: Family<RpcErrorLabels, Counter>,
    healthy: Family<EndpointLabels, Gauge>,
    head: Family<EndpointLabels, Gauge>,
    mirror_verifies: Family<OutcomeLabels, Counter>,
    mirror_settles: Family<OutcomeLabels, Counter>,
    mirror_block: Family<NetworkLabels, Gauge>,
    mirror_accounts: Family<NetworkLabels, Gauge>,
}

impl RpcMetrics {
    fn new(registry: &mut Registry) -> Self {
        let latency: HistogramFamily<RpcCallLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "x402_rpc_request_duration",
            "answered RPC calls by network, endpoint (redacted) and method",
            Unit::Seconds,
            latency.clone(),
        );
        let errors = Family::<RpcErrorLabels, Counter>::default();
        registry.register(
            "x402_rpc_errors",
            "failed RPC attempts by network, endpoint (redacted) and kind",
            errors.clone(),
        );
        let healthy = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "x402_rpc_endpoint_healthy",
            "1 while an RPC endpoint is used first, 0 while it is skipped (unhealthy or lagging)",
            healthy.clone(),
        );
        let head = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "x402_rpc_endpoint_head_block",
            "the latest block an RPC endpoint reported to the health probe",
            head.clone(),
        );
        let mirror_verifies = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "x402_verify_mirror",
            "verifies the state mirror answered (`answered`) or left to the simulation \
             (`fallback_<why>`), by network",
            mirror_verifies.clone(),
        );
        let mirror_settles = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "x402_settle_mirror",
            "batched settles the state mirror cleared without a simulation (`answered`) or \
             left to it (`fallback_<why>`, `refused`), by network",
            mirror_settles.clone(),
        );
        let mirror_block = Family::<NetworkLabels, Gauge>::default();
        registry.register(
            "x402_mirror_block",
            "the last block the state mirror applied",
            mirror_block.clone(),
        );
        let mirror_accounts = Family::<NetworkLabels, Gauge>::default();
        registry.register(
            "x402_mirror_accounts",
            "accounts (payers and payees) the state mirror keeps",
            mirror_accounts.clone(),
        );
        Self {
            latency,
            errors,
            healthy,
            head,
            mirror_verifies,
            mirror_settles,
            mirror_block,
            mirror_accounts,
        }
    }

    fn endpoint(network: &str, endpoint: &str) -> EndpointLabels {
        EndpointLabels {
            network: network.to_owned(),
            endpoint: endpoint.to_owned(),
        }
    }

    pub fn answered(&self, network: &str, endpoint: &str, method: &str, latency: Duration) {
        self.latency
            .get_or_create(&RpcCallLabels {
                network: network.to_owned(),
                endpoint: endpoint.to_owned(),
                method: method.to_owned(),
            })
            .observe(latency.as_secs_f64());
    }

    pub fn failed(&self, network: &str, endpoint: &str, kind: &str) {
        self.errors
            .get_or_create(&RpcErrorLabels {
                network: network.to_owned(),
                endpoint: endpoint.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn set_healthy(&self, network: &str, endpoint: &str, healthy: bool) {
        self.healthy
            .get_or_create(&Self::endpoint(network, endpoint))
            .set(i64::from(healthy));
    }

    fn outcome(network: &str, outcome: &str) -> OutcomeLabels {
        OutcomeLabels {
            network: network.to_owned(),
            outcome: outcome.to_owned(),
        }
    }

    /// A verify the state mirror answered or left to the simulation.
    pub fn mirror_verify(&self, network: &str, outcome: &str) {
        self.mirror_verifies
            .get_or_create(&Self::outcome(network, outcome))
            .inc();
    }

    /// A batched settle the state mirror cleared, refused or left to the simulation.
    pub fn mirror_settle(&self, network: &str, outcome: &str) {
        self.mirror_settles
            .get_or_create(&Self::outcome(network, outcome))
            .inc();
    }

    pub fn set_mirror(&self, network: &str, block: u64, accounts: usize) {
        let labels = NetworkLabels {
            network: network.to_owned(),
        };
        self.mirror_block
            .get_or_create(&labels)
            .set(i64::try_from(block).unwrap_or(i64::MAX));
        self.mirror_accounts
            .get_or_create(&labels)
            .set(accounts as i64);
    }

    pub fn set_head(&self, network: &str, endpoint: &str, block: u64) {
        self.head
            .get_or_create(&Self::endpoint(network, endpoint))
            .set(i64::try_from(block).unwrap_or(i64::MAX));
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

struct Prom {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: HistogramFamily<RouteLabels>,
    verify: Family<OutcomeLabels, Counter>,
    settle: Family<OutcomeLabels, Counter>,
    settle_latency: HistogramFamily<NetworkLabels>,
    transfers: Family<OutcomeLabels, Counter>,
    gas_used: Family<NetworkLabels, Counter>,
    reverted_gas: Family<NetworkLabels, Counter>,
    reverted_fee: Family<NetworkLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    reorgs: Family<NetworkLabels, Counter>,
    signer_in_flight: Family<SignerLabels, Gauge>,
    signer_nonce: Family<SignerLabels, Gauge>,
    signer_balance: Family<SignerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    signer_below_floor: Family<SignerLabels, Gauge>,
    signer_leased: Family<SignerLabels, Gauge>,
    signer_funded: Family<SignerLabels, Gauge>,
    account_gas_today: Family<AccountLabels, Gauge>,
    account_fee_today: Family<AccountLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    key_gas_today: Family<KeyLabels, Gauge>,
    key_fee_today: Family<KeyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    rpc: RpcMetrics,
}

impl Prom {
    fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route pattern and status",
            http_requests.clone(),
        );
        let http_latency: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency by method and route pattern",
            Unit::Seconds,
            http_latency.clone(),
        );
        let verify = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "x402_verify",
            "verify outcomes by network and outcome (success or reason)",
            verify.clone(),
        );
        let settle = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "x402_settle",
            "settle outcomes by network and outcome (success or reason)",
            settle.clone(),
        );
        let settle_latency: HistogramFamily<NetworkLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "x402_settle_duration",
            "settle latency, request to answer, by network",
            Unit::Seconds,
            settle_latency.clone(),
        );
        let transfers = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "x402_transfers",
            "settlement transactions mined, by network and outcome (confirmed, reverted)",
            transfers.clone(),
        );
        let gas_used = Family::<NetworkLabels, Counter>::default();
        registry.register(
            "x402_gas_used",
            "gas used by mined settlement transactions, by network",
            gas_used.clone(),
        );
        // What reverted settlements cost the operator: each is also on its ledger row, charged
        // to the client key that asked for it (`gas_used`, `fee_wei`).
        let reverted_gas = Family::<NetworkLabels, Counter>::default();
        registry.register(
            "x402_reverted_settlement_gas",
            "gas burnt by settlements that reverted on chain (a batch: the reverted payments' shares), by network",
            reverted_gas.clone(),
        );
        let reverted_fee = Family::<NetworkLabels, Counter<f64, _>>::default();
        registry.register(
            "x402_reverted_settlement_fee_wei",
            "fees (wei) paid for settlements that reverted on chain, by network",
            reverted_fee.clone(),
        );
        let reorgs = Family::<NetworkLabels, Counter>::default();
        registry.register(
            "x402_settlement_reorgs",
            "mined settlements a reorg moved or took out of the chain (re-sent or resolved), by network",
            reorgs.clone(),
        );
        let signer_in_flight = Family::<SignerLabels, Gauge>::default();
        registry.register(
            "x402_signer_in_flight_transactions",
            "settlement transactions of a signer awaiting their receipt",
            signer_in_flight.clone(),
        );
        let signer_nonce = Family::<SignerLabels, Gauge>::default();
        registry.register(
            "x402_signer_last_nonce",
            "the last nonce a signer used",
            signer_nonce.clone(),
        );
        let signer_balance = Family::<SignerLabels, Gauge<f64, _>>::default();
        registry.register(
            "x402_signer_balance_native",
            "a signer's native-coin balance (ether units), as last read (every few seconds)",
            signer_balance.clone(),
        );
        let signer_below_floor = Family::<SignerLabels, Gauge>::default();
        registry.register(
            "x402_signer_below_floor",
            "1 when a signer's balance is below the network's min_signer_balance_eth",
            signer_below_floor.clone(),
        );
        let signer_leased = Family::<SignerLabels, Gauge>::default();
        registry.register(
            "x402_signer_leased",
            "1 while this instance holds the signer's lease (drives its nonce)",
            signer_leased.clone(),
        );
        let signer_funded = Family::<SignerLabels, Gauge>::default();
        registry.register(
            "x402_signer_funded",
            "1 while the signer can pay a settlement's gas (gets new settlements)",
            signer_funded.clone(),
        );
        // Today's spend per account and per key, from the shared database: one series per key
        // (and account) that spent gas today, all of them dropped at each scrape and set anew,
        // so that a day's keys leave at midnight UTC.
        let account_gas_today = Family::<AccountLabels, Gauge>::default();
        registry.register(
            "x402_account_gas_used_today",
            "gas used today (UTC) by the settlement transactions of an account's keys, reverted \
             ones included (fleet-wide, from the database)",
            account_gas_today.clone(),
        );
        let account_fee_today = Family::<AccountLabels, Gauge<f64, _>>::default();
        registry.register(
            "x402_account_fee_wei_today",
            "native fee (wei) paid today (UTC) for the settlement transactions of an account's \
             keys, reverted ones included; what its daily gas budget counts",
            account_fee_today.clone(),
        );
        let key_gas_today = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "x402_client_gas_used_today",
            "gas used today (UTC) by a client key's settlement transactions, reverted ones included",
            key_gas_today.clone(),
        );
        let key_fee_today = Family::<KeyLabels, Gauge<f64, _>>::default();
        registry.register(
            "x402_client_fee_wei_today",
            "native fee (wei) paid today (UTC) for a client key's settlement transactions, \
             reverted ones included",
            key_fee_today.clone(),
        );
        let rpc = RpcMetrics::new(&mut registry);
        Self {
            registry,
            http_requests,
            http_latency,
            verify,
            settle,
            settle_latency,
            transfers,
            gas_used,
            reverted_gas,
            reverted_fee,
            reorgs,
            signer_in_flight,
            signer_nonce,
            signer_balance,
            signer_below_floor,
            signer_leased,
            signer_funded,
            account_gas_today,
            account_fee_today,
            key_gas_today,
            key_fee_today,
            rpc,
        }
    }
}

/// One signer's state at scrape time.
#[derive(Debug, Clone)]
pub struct SignerGauge {
    pub network: String,
    pub signer: Address,
    pub last_nonce: Option<u64>,
    pub in_flight: i64,
    /// Wei; `None` when not read yet.
    pub balance_wei: Option<U256>,
    pub below_floor: bool,
    pub leased: bool,
    pub funded: bool,
}

/// One client key's spend today, for the gauges.
#[derive(Debug, Clone)]
pub struct KeyGasToday {
    /// The key's account (user id).
    pub account: i64,
    pub client_id: String,
    pub gas_used: u64,
    pub fee_wei: U256,
}

/// The way in: record events, flush, render Prometheus text.
#[derive(Clone)]
pub struct MetricsHandle {
    addr: Addr<MetricsActor>,
    pending: Pending,
    prom: Arc<Prom>,
}

impl MetricsHandle {
    pub fn start(db: DatabaseConnection, flush_every: Duration) -> Self {
        let pending = Pending::default();
        let addr = MetricsActor {
            db,
            pending: pending.clone(),
            flush_every,
        }
        .start();
        Self {
            addr,
            pending,
            prom: Arc::new(Prom::new()),
        }
    }

    pub fn record_http(&self, e: HttpEvent) {
        let p = &self.prom;
        p.http_requests
            .get_or_create(&HttpLabels {
                method: e.method.clone(),
                route: e.route.clone(),
                status: e.status.to_string(),
            })
            .inc();
        p.http_latency
            .get_or_create(&RouteLabels {
                method: e.method.clone(),
                route: e.route.clone(),
            })
            .observe(e.latency.as_secs_f64());
        let latency = micros(e.latency);
        lock(&self.pending).add_http(
            HttpKey {
                day: e.day,
                method: e.method,
                route: e.route,
                status: e.status,
            },
            &HttpSum {
                count: 1,
                total_latency_us: latency,
                max_latency_us: latency,
            },
        );
    }

    pub fn record_x402(&self, e: X402Event) {
        let p = &self.prom;
        let labels = OutcomeLabels {
            network: e.network.clone(),
            outcome: e.outcome.clone(),
        };
        match e.operation {
            Operation::Verify => {
                p.verify.get_or_create(&labels).inc();
            }
            Operation::Transfer => {
                p.transfers.get_or_create(&labels).inc();
                let network = NetworkLabels {
                    network: e.network.clone(),
                };
                p.gas_used.get_or_create(&network).inc_by(e.gas_used);
                if e.outcome == REVERTED {
                    p.reverted_gas.get_or_create(&network).inc_by(e.gas_used);
                    p.reverted_fee
                        .get_or_create(&network)
                        .inc_by(f64::from(e.fee_wei));
                }
            }
            Operation::Settle => {
                p.settle.get_or_create(&labels).inc();
                p.settle_latency
                    .get_or_create(&NetworkLabels {
                        network: e.network.clone(),
                    })
                    .observe(e.latency.as_secs_f64());
            }
        }
        let sum = X402Sum {
            count: 1,
            amount: e.amount,
            gas_used: i64::try_from(e.gas_used).unwrap_or(i64::MAX),
            fee_wei: e.fee_wei,
            total_latency_us: micros(e.latency),
        };
        lock(&self.pending).add_x402(
            X402Key {
                day: e.day,
                client_id: e.client_id,
                network: e.network,
                asset: e.asset,
                operation: e.operation,
                outcome: e.outcome,
            },
            &sum,
        );
    }

    /// Gas and fee of the settlement transactions mined on `day` that this instance has not
    /// flushed yet, per client key (to add to the rollup rows for an up-to-date spend).
    pub fn unflushed_transfers(&self, day: NaiveDate) -> Vec<(String, u64, U256)> {
        lock(&self.pending)
            .x402
            .iter()
            .filter(|(k, _)| k.day == day && k.operation == Operation::Transfer)
            .map(|(k, v)| (k.client_id.clone(), v.gas_used.max(0) as u64, v.fee_wei))
            .collect()
    }

    /// A mined settlement was moved or taken out of the chain by a reorg.
    pub fn settlement_reorged(&self, network: &str) {
        self.prom
            .reorgs
            .get_or_create(&NetworkLabels {
                network: network.to_owned(),
            })
            .inc();
    }

    /// Set the gauges of today's spend to `keys` (every key that spent today), and each
    /// account's to the sum of its keys; series of keys not given are dropped.
    pub fn set_gas_today(&self, keys: &[KeyGasToday]) {
        let p = &self.prom;
        p.key_gas_today.clear();
        p.key_fee_today.clear();
        p.account_gas_today.clear();
        p.account_fee_today.clear();
        let mut accounts: HashMap<i64, (u64, U256)> = HashMap::new();
        for k in keys {
            let labels = KeyLabels {
                account: k.account.to_string(),
                client_id: k.client_id.clone(),
            };
            p.key_gas_today
                .get_or_create(&labels)
                .set(i64::try_from(k.gas_used).unwrap_or(i64::MAX));
            p.key_fee_today
                .get_or_create(&labels)
                .set(f64::from(k.fee_wei));
            let sum = accounts.entry(k.account).or_default();
            sum.0 = sum.0.saturating_add(k.gas_used);
            sum.1 = sum.1.saturating_add(k.fee_wei);
        }
        for (account, (gas, fee)) in accounts {
            let labels = AccountLabels {
                account: account.to_string(),
            };
            p.account_gas_today
                .get_or_create(&labels)
                .set(i64::try_from(gas).unwrap_or(i64::MAX));
            p.account_fee_today
                .get_or_create(&labels)
                .set(f64::from(fee));
        }
    }

    /// The chain-access layer's metrics (RPC latency, errors and health per endpoint).
    pub fn rpc(&self) -> RpcMetrics {
        self.prom.rpc.clone()
    }

    /// Write everything recorded so far; returns once it is in the database.
    pub async fn flush(&self) -> ServiceResult<()> {
        self.addr
            .send(Flush)
            .await
            .map_err(|e| ServiceError::Internal(format!("metrics actor: {e}")))?
    }

    /// The Prometheus text exposition, with the signers' gauges as given.
    pub fn render(&self, signers: &[SignerGauge]) -> String {
        let p = &self.prom;
        for s in signers {
            let labels = SignerLabels {
                network: s.network.clone(),
                signer: s.signer.to_checksum(None),
            };
            p.signer_in_flight.get_or_create(&labels).set(s.in_flight);
            if let Some(n) = s.last_nonce {
                p.signer_nonce
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            match s.balance_wei {
                Some(wei) => {
                    let ether = f64::from(wei) / 1e18;
                    p.signer_balance.get_or_create(&labels).set(ether);
                }
                None => {
                    p.signer_balance.remove(&labels);
                }
            }
            p.signer_below_floor
                .get_or_create(&labels)
                .set(i64::from(s.below_floor));
            p.signer_leased
                .get_or_create(&labels)
                .set(i64::from(s.leased));
            p.signer_funded
                .get_or_create(&labels)
                .set(i64::from(s.funded));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &p.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_merge_exactly() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let key = X402Key {
            day,
            client_id: "c".into(),
            network: "base".into(),
            asset: "0xa".into(),
            operation: Operation::Settle,
            outcome: SUCCESS.into(),
        };
        let mut a = Batch::default();
        a.add_x402(
            key.clone(),
            &X402Sum {
                count: 1,
                amount: U256::from(u128::MAX),
                gas_used: 10,
                fee_wei: U256::from(7),
                total_latency_us: 5,
            },
        );
        let mut b = Batch::default();
        b.add_x402(
            key.clone(),
            &X402Sum {
                count: 2,
                amount: U256::from(u128::MAX),
                gas_used: 1,
                fee_wei: U256::from(3),
                total_latency_us: 1,
            },
        );
        a.merge(b);
        let s = &a.x402[&key];
        assert_eq!(s.count, 3);
        assert_eq!(s.amount, U256::from(u128::MAX) * U256::from(2));
        assert_eq!(s.gas_used, 11);
        assert_eq!(s.fee_wei, U256::from(10));
    }
}
