//! Chain access: a network's RPC endpoints behind one alloy transport, so every provider call
//! (`RootProvider` in the facilitator, the settlement actors and the receipt watcher) is
//! bounded in time and fails over, without those callers knowing.
//!
//! - **Bounded.** A call (one JSON-RPC request or batch) has one deadline, `timeout`, across
//!   every attempt; past it the call fails with a transport error naming each endpoint's
//!   failure.
//! - **Failover.** The healthy endpoints are tried in configured order, then the others. An
//!   attempt that fails (connection refused, HTTP error, unreadable answer) starts the next
//!   endpoint at once. One still waiting starts the next endpoint beside it when its share of
//!   the timeout (`timeout / healthy endpoints`) is over, or sooner when its endpoint has
//!   *stalled*: it has requests on the wire and has answered none, of any caller, for
//!   `max(250 ms, 4 × its usual latency)`. A frozen node is thus passed over after a quarter
//!   second, while a busy node that keeps answering others is not hedged against (no
//!   duplicate load for one slow call). The first answer wins; a slow endpoint that answers
//!   after all still counts. A JSON-RPC error response (a revert, "nonce too low") is an
//!   answer, not a failure: it is returned as it is.
//! - **Sends.** `eth_sendRawTransaction` follows the same rule: the signed bytes go to the
//!   first healthy endpoint, and to the next only after an unclear failure (no answer in its
//!   share, or a transport error). The same raw transaction has the same hash everywhere, so
//!   a second copy is at worst "already known".
//! - **Health.** Each endpoint keeps its counts, latency (EWMA), last error and latest block.
//!   Any failed attempt (an error, its share run out, or silence while another endpoint
//!   answered) marks it unhealthy: it is skipped while another endpoint is healthy, and tried
//!   last otherwise (so a single-endpoint network recovers on the next call, no probe needed). A
//!   background probe (`eth_getBlockByNumber("latest")` every `probe_interval`, each bounded
//!   by `timeout`) re-admits it, and marks an endpoint whose head is more than `max_head_lag`
//!   older than the best one *lagging* (skipped like an unhealthy one).
//! - **Secrets.** RPC URLs often carry an API key (in the path, the query, or userinfo). The
//!   URL is used for requests only: logs, errors, metrics and the status page name an
//!   endpoint by [`redact`]ed label (scheme, host and port). That is also why requests go out
//!   through our own few lines of reqwest rather than alloy's `Http` transport, whose
//!   tracing span records the full URL.
//!
//! Why not alloy's `FallbackLayer` (alloy-transport 1.8): it sends every read to the top
//! `active_transport_count` transports *in parallel* (each call costs N provider requests,
//! or, with a count of 1, a failed call is not retried elsewhere: only the ranking changes),
//! has no timeout (a frozen node's call never ends, and one outrun in parallel is dropped
//! without being counted, so the ranking never learns), keeps its scores private (nothing to
//! show on `/status`), and neither re-probes nor tracks heads. `RetryBackoffLayer` retries
//! rate-limit answers on the *same* transport after sleeping, which works against a bounded
//! answer time; here a 429 is a failed attempt and the next endpoint takes the call.
//!
//! Here: `ChainAccess` (one network's handle) and what its endpoints share; `endpoint` (one
//! URL, its counters, when it is stalled); `failover` (one call across the endpoints, and the
//! alloy transport); `health` (what `/status` shows, and the probe); `multicall` (Multicall3's
//! address and ABI, for smart-wallet deployments and batches); `erc1271` (asking a contract
//! wallet whether a signature is its own).

mod endpoint;
pub mod erc1271;
mod failover;
mod health;
pub mod multicall;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::providers::RootProvider;
use alloy::rpc::client::RpcClient;
use alloy::transports::http::reqwest::{self, Url};

use crate::metrics::RpcMetrics;
use endpoint::{Endpoint, EndpointState};
pub use failover::FailoverTransport;
pub use health::{redact, EndpointHealth, EndpointStatus, NetworkHealth, NetworkStatus, SeenHead};

/// How a network's endpoints are used.
#[derive(Debug, Clone, Copy)]
pub struct ChainConfig {
    /// Bound of one call, every attempt included.
    pub timeout: Duration,
    /// Every endpoint's latest block is asked for this often.
    pub probe_interval: Duration,
    /// An endpoint whose head is this much older than the best one is lagging.
    pub max_head_lag: Duration,
    /// What the probe asks: an EVM node its latest block, an SVM node its block height.
    pub family: ProbeFamily,
}

/// How an endpoint is probed: the same JSON-RPC transport serves EVM and SVM (Solana) nodes;
/// only the question that says "alive, at this height" differs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProbeFamily {
    /// `eth_getBlockByNumber("latest")`: number, hash, timestamp.
    #[default]
    Evm,
    /// `getBlockHeight` (commitment `confirmed`): the height, stamped with our clock (Solana
    /// answers no block time here), so lag is judged by height alone.
    Svm,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            probe_interval: Duration::from_secs(1),
            max_head_lag: Duration::from_secs(30),
            family: ProbeFamily::Evm,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("no RPC URL")]
    NoUrl,
    /// Never echoes the URL: it may hold a key.
    #[error("RPC URL #{0} is not an http(s) URL")]
    BadUrl(usize),
}

/// A network's endpoints and what they share.
struct Shared {
    network: &'static str,
    config: ChainConfig,
    endpoints: Vec<Endpoint>,
    metrics: Option<RpcMetrics>,
    /// Replaced after every probe round that got a head (`ChainAccess::heads`).
    heads: tokio::sync::watch::Sender<Option<SeenHead>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("network", &self.network)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}
/// One network's chain access: the provider to use, its health, its probe.
#[derive(Clone, Debug)]
pub struct ChainAccess {
    shared: Arc<Shared>,
    is_local: bool,
}

impl ChainAccess {
    /// `urls` in order of preference. Errors never echo a URL.
    pub fn new(
        network: &'static str,
        urls: &[String],
        config: ChainConfig,
        metrics: Option<RpcMetrics>,
    ) -> Result<Self, ChainError> {
        if urls.is_empty() {
            return Err(ChainError::NoUrl);
        }
        // Idle connections kept per node: a burst of concurrent calls opens hundreds, each with
        // its buffers; past the burst all but these close (and any idle one after a while).
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|_| ChainError::BadUrl(1))?;
        let mut endpoints: Vec<Endpoint> = Vec::with_capacity(urls.len());
        for (i, raw) in urls.iter().enumerate() {
            let url: Url = raw.trim().parse().map_err(|_| ChainError::BadUrl(i + 1))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ChainError::BadUrl(i + 1));
            }
            let mut label = redact(&url);
            if endpoints.iter().any(|e| e.label == label) {
                label = format!("{label} #{}", i + 1);
            }
            endpoints.push(Endpoint {
                label,
                url,
                http: http.clone(),
                state: Mutex::new(EndpointState::new()),
            });
        }
        let is_local = urls.iter().all(alloy::transports::utils::guess_local_url);
        if let Some(m) = &metrics {
            for ep in &endpoints {
                m.set_healthy(network, &ep.label, true);
            }
        }
        Ok(Self {
            shared: Arc::new(Shared {
                network,
                config,
                endpoints,
                metrics,
                heads: tokio::sync::watch::channel(None).0,
            }),
            is_local,
        })
    }

    /// A provider whose every call goes through this network's endpoints.
    pub fn provider(&self) -> RootProvider {
        RootProvider::new(RpcClient::new(
            FailoverTransport {
                shared: self.shared.clone(),
            },
            self.is_local,
        ))
    }

    /// Probe every endpoint once now.
    pub async fn probe(&self) {
        self.shared.probe_all().await
    }

    /// Probe every `probe_interval` on the current runtime, until every handle is dropped.
    pub fn start_probing(&self) {
        let weak = Arc::downgrade(&self.shared);
        let every = self.shared.config.probe_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                shared.probe_all().await;
            }
        });
    }

    pub fn health(&self) -> NetworkHealth {
        self.shared.health()
    }

    /// The best head of each probe round (`SeenHead`), as it comes.
    pub fn heads(&self) -> tokio::sync::watch::Receiver<Option<SeenHead>> {
        self.shared.heads.subscribe()
    }
}
