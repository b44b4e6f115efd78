//! The facilitator's numbers: `MetricsHandle` records events, the `MetricsActor` owns their
//! daily rollups, `reports` answers the metrics endpoints from them, and `prometheus` renders
//! the scrape.
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

mod events;
mod prometheus;
pub mod reports;
mod rollup;
mod rpc;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use alloy_primitives::U256;
use chrono::NaiveDate;
use sea_orm::DatabaseConnection;

pub use events::{
    is_success, HttpEvent, Operation, X402Event, CONFIRMED, REVERTED, SUCCESS, SUCCESS_REPEAT,
};
pub use prometheus::{KeyGasToday, SignerGauge};
pub use rollup::{http_rows, parse_sum, x402_rows, MetricsActor};
pub use rpc::RpcMetrics;

use prometheus::Prom;
use rollup::{lock, micros, Flush, HttpKey, HttpSum, Pending, X402Key, X402Sum};

use crate::ServiceResult;

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
        let addr = MetricsActor::new(db, pending.clone(), flush_every).start();
        Self {
            addr,
            pending,
            prom: Arc::new(Prom::new()),
        }
    }

    pub fn record_http(&self, e: HttpEvent) {
        self.prom.record_http(&e);
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
        self.prom.record_x402(&e);
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
        lock(&self.pending).unflushed_transfers(day)
    }

    /// A mined settlement was moved or taken out of the chain by a reorg.
    pub fn settlement_reorged(&self, network: &str) {
        self.prom.settlement_reorged(network);
    }

    /// Set the gauges of today's spend to `keys` (every key that spent today), and each
    /// account's to the sum of its keys; series of keys not given are dropped.
    pub fn set_gas_today(&self, keys: &[KeyGasToday]) {
        self.prom.set_gas_today(keys);
    }

    /// The chain-access layer's metrics (RPC latency, errors and health per endpoint).
    pub fn rpc(&self) -> RpcMetrics {
        self.prom.rpc.clone()
    }

    /// Write everything recorded so far; returns once it is in the database.
    pub async fn flush(&self) -> ServiceResult<()> {
        self.addr.send(Flush).await?
    }

    /// The Prometheus text exposition, with the signers' gauges as given.
    pub fn render(&self, signers: &[SignerGauge]) -> String {
        self.prom.render(signers)
    }
}
