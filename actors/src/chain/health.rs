//! What chain access shows of itself: the redacted endpoint label, each endpoint's and the
//! network's health for `/status`, and the background probe that re-admits endpoints, marks
//! lagging ones and publishes the best head (`SeenHead`).

use std::sync::Arc;
use std::time::Instant;

use alloy::primitives::{B256, U64};
use alloy::rpc::json_rpc::{Id, Request, RequestPacket, ResponsePayload};
use alloy::transports::http::reqwest::Url;
use serde::{Deserialize, Serialize};

use super::endpoint::{AttemptError, Endpoint, Head, Outstanding};
use super::{ProbeFamily, Shared};

/// An RPC URL as it may be shown: scheme, host and port. Path, query and userinfo (where
/// providers put API keys) are elided.
pub fn redact(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let hidden = !matches!(url.path(), "" | "/")
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some();
    format!(
        "{}://{host}{port}{}",
        url.scheme(),
        if hidden { "/…" } else { "" }
    )
}

/// A network's state as `/status` shows it: `active` (every RPC endpoint healthy), `degraded`
/// (some), `down` (none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkStatus {
    /// Every endpoint is healthy.
    Active,
    /// Some endpoint is unhealthy or lagging, at least one is healthy.
    Degraded,
    /// No endpoint is healthy.
    Down,
}

/// `unhealthy`: its last call or probe failed (skipped while another endpoint is healthy);
/// `lagging`: its head is behind the best endpoint's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = RpcEndpointStatus)]
pub enum EndpointStatus {
    Healthy,
    /// Its last attempt or probe failed: skipped while another endpoint is healthy.
    Unhealthy,
    /// Answers, but its head is behind the best endpoint's by more than `max_head_lag`.
    Lagging,
}

/// One RPC endpoint of a network and its health.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RpcEndpoint)]
pub struct EndpointHealth {
    /// Scheme, host and port only: path and query (where API keys live) are elided.
    #[schema(example = "https://base-sepolia.g.alchemy.com/…")]
    pub url: String,
    pub status: EndpointStatus,
    /// Latest block it reported to the probe.
    pub block: Option<u64>,
    /// Smoothed latency of its answers, milliseconds.
    pub latency_ms: Option<f64>,
    /// Attempts sent to it (calls and probes).
    pub requests: u64,
    /// Attempts that failed (no answer in time, connection or HTTP error).
    pub errors: u64,
    pub last_error: Option<String>,
}

/// A network's chain access at one instant.
#[derive(Debug, Clone)]
pub struct NetworkHealth {
    pub status: NetworkStatus,
    /// The best head among the endpoints that are not unhealthy.
    pub block: Option<u64>,
    /// Its timestamp (Unix seconds, the chain's clock).
    pub block_timestamp: Option<u64>,
    pub endpoints: Vec<EndpointHealth>,
}

impl NetworkHealth {
    /// What a network without chain access looks like.
    pub fn unknown() -> Self {
        Self {
            status: NetworkStatus::Down,
            block: None,
            block_timestamp: None,
            endpoints: Vec::new(),
        }
    }

    /// Seconds between the head block's timestamp and `now` (Unix seconds).
    pub fn block_age_secs(&self, now: u64) -> Option<u64> {
        self.block_timestamp.map(|t| now.saturating_sub(t))
    }
}

/// The best head the probe saw (the highest among the usable endpoints), and when: what the
/// state mirror (`crate::mirror`) follows, so that it needs no poller of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenHead {
    pub number: u64,
    pub hash: B256,
    pub timestamp: u64,
    pub seen_at: Instant,
}

#[derive(Deserialize)]
struct BlockHead {
    number: U64,
    /// Absent from some test doubles: a zero hash never matches a real block's parent.
    #[serde(default)]
    hash: B256,
    timestamp: U64,
}

async fn probe(ep: &Endpoint, family: ProbeFamily) -> Result<Head, AttemptError> {
    let req = match family {
        ProbeFamily::Evm => {
            Request::new("eth_getBlockByNumber", Id::Number(1), ("latest", false)).serialize()
        }
        ProbeFamily::Svm => Request::new(
            "getBlockHeight",
            Id::Number(1),
            [serde_json::json!({ "commitment": "confirmed" })],
        )
        .serialize(),
    }
    .map_err(|_| AttemptError::Decode)?;
    let answer = ep.send(&RequestPacket::Single(req)).await?;
    match answer.single_payload() {
        Some(ResponsePayload::Success(raw)) => match family {
            ProbeFamily::Evm => serde_json::from_str::<BlockHead>(raw.get()).map(|b| Head {
                number: b.number.to(),
                hash: b.hash,
                timestamp: b.timestamp.to(),
            }),
            ProbeFamily::Svm => serde_json::from_str::<u64>(raw.get()).map(|height| Head {
                number: height,
                hash: B256::ZERO,
                timestamp: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            }),
        }
        .map_err(|_| AttemptError::NoHead),
        Some(ResponsePayload::Failure(e)) => Err(AttemptError::Rpc(
            e.message.chars().take(200).collect::<String>(),
        )),
        None => Err(AttemptError::Decode),
    }
}
impl Shared {
    /// Ask every endpoint for its latest block (concurrently, each bounded by the timeout),
    /// then judge lag against the best head.
    pub(super) async fn probe_all(self: &Arc<Self>) {
        let probes = (0..self.endpoints.len()).map(|i| async move {
            let on_the_wire = Outstanding::new(self, i);
            let started = Instant::now();
            let result = match tokio::time::timeout(
                self.config.timeout,
                probe(on_the_wire.endpoint(), self.config.family),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(AttemptError::Timeout(self.config.timeout)),
            };
            (started.elapsed(), result)
        });
        let results = futures::future::join_all(probes).await;
        let best = results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|h| h.timestamp)
            .max();
        for (i, (latency, result)) in results.into_iter().enumerate() {
            match result {
                Ok(head) => {
                    let lag = best
                        .unwrap_or(head.timestamp)
                        .saturating_sub(head.timestamp);
                    let lagging = lag > self.config.max_head_lag.as_secs();
                    let ep = &self.endpoints[i];
                    let was = {
                        let mut s = ep.lock();
                        s.head = Some(head);
                        let was = (s.healthy, s.lagging);
                        s.lagging = lagging;
                        was
                    };
                    if let Some(m) = &self.metrics {
                        m.set_head(self.network, &ep.label, head.number);
                    }
                    if lagging && !was.1 {
                        tracing::warn!(network = self.network, endpoint = %ep.label, lag_secs = lag, "RPC endpoint lagging");
                    }
                    let method = match self.config.family {
                        ProbeFamily::Evm => "eth_getBlockByNumber",
                        ProbeFamily::Svm => "getBlockHeight",
                    };
                    self.answered(i, method, latency);
                    if was.0 && was.1 != lagging {
                        if let Some(m) = &self.metrics {
                            m.set_healthy(self.network, &ep.label, !lagging);
                        }
                    }
                }
                Err(e) => self.failed(i, &e),
            }
        }
        // The best head of a usable endpoint, stamped now: even an unchanged head says the
        // node was heard from (the mirror's staleness bound).
        let best = self
            .endpoints
            .iter()
            .filter_map(|ep| {
                let s = ep.lock();
                (s.healthy && !s.lagging).then_some(s.head).flatten()
            })
            .max_by_key(|h| h.number);
        if let Some(h) = best {
            self.heads.send_replace(Some(SeenHead {
                number: h.number,
                hash: h.hash,
                timestamp: h.timestamp,
                seen_at: Instant::now(),
            }));
        }
    }

    pub(super) fn health(&self) -> NetworkHealth {
        let endpoints: Vec<EndpointHealth> = self
            .endpoints
            .iter()
            .map(|ep| {
                let s = ep.lock();
                EndpointHealth {
                    url: ep.label.clone(),
                    status: match (s.healthy, s.lagging) {
                        (false, _) => EndpointStatus::Unhealthy,
                        (true, true) => EndpointStatus::Lagging,
                        (true, false) => EndpointStatus::Healthy,
                    },
                    block: s.head.map(|h| h.number),
                    latency_ms: s.latency.map(|l| (l * 1e4).round() / 10.0),
                    requests: s.requests,
                    errors: s.errors,
                    last_error: s.last_error.clone(),
                }
            })
            .collect();
        let healthy = endpoints
            .iter()
            .filter(|e| e.status == EndpointStatus::Healthy)
            .count();
        let status = match healthy {
            0 => NetworkStatus::Down,
            n if n == endpoints.len() => NetworkStatus::Active,
            _ => NetworkStatus::Degraded,
        };
        let head = self
            .endpoints
            .iter()
            .filter_map(|ep| {
                let s = ep.lock();
                s.healthy.then_some(s.head).flatten()
            })
            .max_by_key(|h| h.number);
        NetworkHealth {
            status,
            block: head.map(|h| h.number),
            block_timestamp: head.map(|h| h.timestamp),
            endpoints,
        }
    }
}
