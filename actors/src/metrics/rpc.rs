//! The chain-access layer's Prometheus numbers: RPC latency, errors and health per endpoint,
//! and the state mirror's answers.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::prometheus::{latency_histogram, HistogramFamily, NetworkLabels, OutcomeLabels};

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
    pub(super) fn new(registry: &mut Registry) -> Self {
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
