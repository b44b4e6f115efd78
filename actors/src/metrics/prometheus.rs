//! The Prometheus / OpenMetrics numbers: counters and histograms updated in the caller's thread
//! (atomics), gauges set at scrape time, and the text exposition rendered on scrape.

use std::collections::HashMap;

use alloy_primitives::{Address, U256};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::rpc::RpcMetrics;
use super::{HttpEvent, Operation, X402Event, REVERTED};

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
pub(super) struct OutcomeLabels {
    pub(super) network: String,
    pub(super) outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NetworkLabels {
    pub(super) network: String,
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

pub(super) type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub(super) fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub(super) struct Prom {
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
    pub(super) rpc: RpcMetrics,
}

impl Prom {
    pub(super) fn new() -> Self {
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
            "settlement transactions mined (EVM) or landed (SVM), by network and outcome \
             (confirmed, reverted: on SVM, landed with an error)",
            transfers.clone(),
        );
        let gas_used = Family::<NetworkLabels, Counter>::default();
        registry.register(
            "x402_gas_used",
            "gas used by mined settlement transactions, by network (EVM; 0 on SVM networks, \
             whose compute units are not counted)",
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
            "fees paid for settlements that reverted on chain, by network, in the network's \
             smallest native unit (wei on EVM networks, lamports on SVM ones)",
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
            "native fee paid today (UTC) for the settlement transactions of an account's \
             keys, reverted ones included; what its daily gas budget counts. Summed over \
             networks, each in its smallest native unit (wei on EVM, lamports on SVM)",
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
            "native fee paid today (UTC) for a client key's settlement transactions, \
             reverted ones included. Summed over networks, each in its smallest native unit \
             (wei on EVM, lamports on SVM)",
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

impl Prom {
    pub(super) fn record_http(&self, e: &HttpEvent) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: e.method.clone(),
                route: e.route.clone(),
                status: e.status.to_string(),
            })
            .inc();
        self.http_latency
            .get_or_create(&RouteLabels {
                method: e.method.clone(),
                route: e.route.clone(),
            })
            .observe(e.latency.as_secs_f64());
    }

    pub(super) fn record_x402(&self, e: &X402Event) {
        let p = self;
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
    }

    /// A mined settlement was moved or taken out of the chain by a reorg.
    pub(super) fn settlement_reorged(&self, network: &str) {
        self.reorgs
            .get_or_create(&NetworkLabels {
                network: network.to_owned(),
            })
            .inc();
    }

    /// Set the gauges of today's spend to `keys` (every key that spent today), and each
    /// account's to the sum of its keys; series of keys not given are dropped.
    pub(super) fn set_gas_today(&self, keys: &[KeyGasToday]) {
        let p = self;
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

    /// The Prometheus text exposition, with the signers' gauges as given.
    pub(super) fn render(&self, signers: &[SignerGauge]) -> String {
        let p = self;
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
