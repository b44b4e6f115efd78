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

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use alloy::primitives::{B256, U64};
use alloy::providers::RootProvider;
use alloy::rpc::client::RpcClient;
use alloy::rpc::json_rpc::{Id, Request, RequestPacket, ResponsePacket, ResponsePayload};
use alloy::transports::http::reqwest::{self, Url};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};
use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};

use crate::metrics::RpcMetrics;

/// How a network's endpoints are used.
#[derive(Debug, Clone, Copy)]
pub struct ChainConfig {
    /// Bound of one call, every attempt included.
    pub timeout: Duration,
    /// Every endpoint's latest block is asked for this often.
    pub probe_interval: Duration,
    /// An endpoint whose head is this much older than the best one is lagging.
    pub max_head_lag: Duration,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            probe_interval: Duration::from_secs(1),
            max_head_lag: Duration::from_secs(30),
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

impl NetworkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkStatus::Active => "active",
            NetworkStatus::Degraded => "degraded",
            NetworkStatus::Down => "down",
        }
    }
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

/// Why one attempt on one endpoint did not answer. Its text never holds the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AttemptError {
    /// The call's deadline passed with this attempt still waiting.
    Timeout(Duration),
    /// No answer within its share of the timeout; the next endpoint was started.
    Slow(Duration),
    /// It answered nothing for this long while another endpoint answered the call.
    Stalled(Duration),
    Connect,
    Http(u16),
    /// Any other transport failure (reset, broken body), reqwest's text without the URL.
    Transport(String),
    /// An answer that is not JSON-RPC.
    Decode,
    /// The probe's `eth_getBlockByNumber` got an error answer.
    Rpc(String),
    /// The probe's answer is not a block.
    NoHead,
}

impl AttemptError {
    fn kind(&self) -> String {
        match self {
            AttemptError::Timeout(_) => "timeout".into(),
            AttemptError::Slow(_) | AttemptError::Stalled(_) => "slow".into(),
            AttemptError::Connect => "connect".into(),
            AttemptError::Http(s) => format!("http_{s}"),
            AttemptError::Transport(_) => "transport".into(),
            AttemptError::Decode => "decode".into(),
            AttemptError::Rpc(_) | AttemptError::NoHead => "rpc".into(),
        }
    }

    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_connect() {
            AttemptError::Connect
        } else {
            AttemptError::Transport(e.without_url().to_string())
        }
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Timeout(d) => write!(f, "no answer within {}ms", d.as_millis()),
            AttemptError::Slow(d) => write!(f, "no answer within its {}ms share", d.as_millis()),
            AttemptError::Stalled(d) => write!(
                f,
                "silent for {}ms while another endpoint answered",
                d.as_millis()
            ),
            AttemptError::Connect => write!(f, "connection failed"),
            AttemptError::Http(s) => write!(f, "HTTP {s}"),
            AttemptError::Transport(m) => write!(f, "transport: {m}"),
            AttemptError::Decode => write!(f, "answer is not JSON-RPC"),
            AttemptError::Rpc(m) => write!(f, "error answer: {m}"),
            AttemptError::NoHead => write!(f, "no readable latest block"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Head {
    number: u64,
    hash: B256,
    timestamp: u64,
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

#[derive(Debug)]
struct EndpointState {
    healthy: bool,
    lagging: bool,
    requests: u64,
    errors: u64,
    /// Seconds, exponentially weighted (alpha 0.2).
    latency: Option<f64>,
    last_error: Option<String>,
    head: Option<Head>,
    /// Requests on the wire now (calls and probes).
    outstanding: u32,
    /// When `outstanding` last went from 0 to 1.
    busy_since: Option<Instant>,
    /// When the last HTTP answer (of any status) arrived.
    last_answer: Option<Instant>,
}

impl EndpointState {
    fn new() -> Self {
        Self {
            healthy: true,
            lagging: false,
            requests: 0,
            errors: 0,
            latency: None,
            last_error: None,
            head: None,
            outstanding: 0,
            busy_since: None,
            last_answer: None,
        }
    }
}

/// However fast an endpoint usually is, it is not called stalled before this.
const STALL_FLOOR: Duration = Duration::from_millis(250);

/// One RPC URL. The URL is only ever used to send; everything else says `label`.
struct Endpoint {
    label: String,
    url: Url,
    http: reqwest::Client,
    state: Mutex<EndpointState>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// One HTTP round trip, unbounded: the caller bounds it (dropping the future cancels it)
    /// and counts it on the wire (`Outstanding`).
    async fn send(&self, req: &RequestPacket) -> Result<ResponsePacket, AttemptError> {
        let resp = self
            .http
            .post(self.url.clone())
            .headers(req.headers())
            .json(req)
            .send()
            .await
            .map_err(AttemptError::from_reqwest)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(AttemptError::from_reqwest)?;
        self.lock().last_answer = Some(Instant::now());
        if !status.is_success() {
            return Err(AttemptError::Http(status.as_u16()));
        }
        serde_json::from_slice(&body).map_err(|_| AttemptError::Decode)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EndpointState> {
        // A panic while holding this lock leaves plain counters: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When this endpoint counts as stalled if nothing arrives before: it has requests on
    /// the wire and has answered none of them for `max(STALL_FLOOR, 4 × its usual latency)`
    /// (at most `cap`). `None` while it has nothing on the wire. An endpoint that keeps
    /// answering *other* requests is not stalled by one slow call: no hedge, no duplicate
    /// load on a busy but live node.
    fn stalled_at(&self, cap: Duration) -> Option<Instant> {
        let s = self.lock();
        if s.outstanding == 0 {
            return None;
        }
        let usual = Duration::from_secs_f64(s.latency.unwrap_or(0.0) * 4.0);
        let quiet = usual.clamp(STALL_FLOOR, cap.max(STALL_FLOOR));
        let since = match (s.busy_since, s.last_answer) {
            (Some(b), Some(a)) => b.max(a),
            (b, a) => b.or(a)?,
        };
        Some(since + quiet)
    }

    fn stalled(&self, now: Instant, cap: Duration) -> bool {
        self.stalled_at(cap).is_some_and(|t| t <= now)
    }

    /// Worth trying first: healthy, not lagging, not stalled right now.
    fn usable(&self, now: Instant, cap: Duration) -> bool {
        {
            let s = self.lock();
            if !s.healthy || s.lagging {
                return false;
            }
        }
        !self.stalled(now, cap)
    }
}

/// Counts one request on the wire of an endpoint from its creation (before the request's
/// future first runs, so a call started just now already counts) until dropped.
struct Outstanding {
    shared: Arc<Shared>,
    endpoint: usize,
}

impl Outstanding {
    fn new(shared: &Arc<Shared>, endpoint: usize) -> Self {
        let mut s = shared.endpoints[endpoint].lock();
        if s.outstanding == 0 {
            s.busy_since = Some(Instant::now());
        }
        s.outstanding += 1;
        drop(s);
        Self {
            shared: shared.clone(),
            endpoint,
        }
    }

    fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoints[self.endpoint]
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        let mut s = self.endpoint().lock();
        s.outstanding = s.outstanding.saturating_sub(1);
    }
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

type Attempt = Pin<Box<dyn Future<Output = (usize, Result<ResponsePacket, AttemptError>)> + Send>>;

/// One attempt of a call that has not ended.
#[derive(Clone, Copy)]
struct InFlight {
    endpoint: usize,
    at: Instant,
    /// Its failure is already counted against its endpoint.
    counted: bool,
    /// The next endpoint was started because this one had stalled.
    passed_over: bool,
}

fn sleep_until(t: Instant) -> tokio::time::Sleep {
    tokio::time::sleep_until(tokio::time::Instant::from_std(t))
}

/// The JSON-RPC method of a call, for metrics: its name, or `batch`.
fn method_label(req: &RequestPacket) -> String {
    match req {
        RequestPacket::Single(r) => r.method().to_owned(),
        RequestPacket::Batch(_) => "batch".into(),
    }
}

impl Shared {
    fn answered(&self, i: usize, method: &str, latency: Duration) {
        let ep = &self.endpoints[i];
        let recovered = {
            let mut s = ep.lock();
            s.requests += 1;
            let secs = latency.as_secs_f64();
            s.latency = Some(match s.latency {
                Some(l) => l * 0.8 + secs * 0.2,
                None => secs,
            });
            !std::mem::replace(&mut s.healthy, true)
        };
        if let Some(m) = &self.metrics {
            m.answered(self.network, &ep.label, method, latency);
        }
        if recovered {
            self.health_changed(i, true, None);
        }
    }

    fn failed(&self, i: usize, error: &AttemptError) {
        let ep = &self.endpoints[i];
        let was_healthy = {
            let mut s = ep.lock();
            s.requests += 1;
            s.errors += 1;
            s.last_error = Some(error.to_string());
            std::mem::replace(&mut s.healthy, false)
        };
        if let Some(m) = &self.metrics {
            m.failed(self.network, &ep.label, &error.kind());
        }
        if was_healthy {
            self.health_changed(i, false, Some(error));
        }
    }

    fn health_changed(&self, i: usize, healthy: bool, error: Option<&AttemptError>) {
        let ep = &self.endpoints[i];
        if let Some(m) = &self.metrics {
            m.set_healthy(self.network, &ep.label, healthy && !ep.lock().lagging);
        }
        match error {
            Some(e) => {
                tracing::warn!(network = self.network, endpoint = %ep.label, error = %e, "RPC endpoint unhealthy")
            }
            None => {
                tracing::info!(network = self.network, endpoint = %ep.label, "RPC endpoint healthy again")
            }
        }
    }

    /// The attempt order: usable endpoints (configured order), then the others. The first
    /// group shares the timeout; the second is reached only once the first's attempts have
    /// failed or the latest one's endpoint has stalled. With no usable endpoint, all are in
    /// the first group.
    fn plan(&self) -> (VecDeque<usize>, VecDeque<usize>) {
        let now = Instant::now();
        let cap = self.stall_cap();
        let (usable, other): (VecDeque<usize>, VecDeque<usize>) =
            (0..self.endpoints.len()).partition(|&i| self.endpoints[i].usable(now, cap));
        if usable.is_empty() {
            (other, VecDeque::new())
        } else {
            (usable, other)
        }
    }

    /// An endpoint is never called stalled later than this.
    fn stall_cap(&self) -> Duration {
        self.config.timeout / 2
    }

    fn attempt(self: &Arc<Self>, i: usize, req: &RequestPacket) -> Attempt {
        let on_the_wire = Outstanding::new(self, i);
        let req = req.clone();
        Box::pin(async move {
            let result = on_the_wire.endpoint().send(&req).await;
            (i, result)
        })
    }

    async fn call(self: Arc<Self>, req: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let deadline = Instant::now() + self.config.timeout;
        let method = method_label(&req);
        let cap = self.stall_cap();
        let (mut hedged, mut last_resort) = self.plan();
        let share = self.config.timeout / u32::try_from(hedged.len().max(1)).unwrap_or(1);
        let mut running = FuturesUnordered::new();
        let mut in_flight: Vec<InFlight> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        let start = |i: usize, running: &mut FuturesUnordered<Attempt>, in_flight: &mut Vec<_>| {
            running.push(self.attempt(i, &req));
            in_flight.push(InFlight {
                endpoint: i,
                at: Instant::now(),
                counted: false,
                passed_over: false,
            });
        };
        match hedged.pop_front().or_else(|| last_resort.pop_front()) {
            Some(i) => start(i, &mut running, &mut in_flight),
            None => return Err(TransportErrorKind::custom_str("no RPC endpoint configured")),
        }
        loop {
            // The next endpoint starts when the latest attempt's share is over, or sooner once
            // its endpoint has stalled (answers nothing at all).
            let next = hedged.front().or(last_resort.front());
            let hedge_at = match (next, in_flight.last()) {
                (Some(_), Some(latest)) => {
                    let share_end = latest.at + share;
                    let stall = self.endpoints[latest.endpoint].stalled_at(cap);
                    Some(stall.map_or(share_end, |t| t.min(share_end)))
                }
                _ => None,
            };
            tokio::select! {
                Some((i, result)) = running.next() => {
                    let k = in_flight.iter().position(|f| f.endpoint == i);
                    let attempt = k.map(|k| in_flight.remove(k));
                    let elapsed = attempt.map(|f| f.at.elapsed()).unwrap_or_default();
                    match result {
                        Ok(answer) => {
                            self.answered(i, &method, elapsed);
                            // Passed over for silence and now beaten: it did not answer while
                            // another endpoint did.
                            for f in in_flight.iter().filter(|f| f.passed_over && !f.counted) {
                                self.failed(f.endpoint, &AttemptError::Stalled(f.at.elapsed()));
                            }
                            return Ok(answer);
                        }
                        Err(e) => {
                            if !attempt.is_some_and(|f| f.counted) {
                                self.failed(i, &e);
                            }
                            failures.push(format!("{}: {e}", self.endpoints[i].label));
                            if running.is_empty() {
                                match hedged.pop_front().or_else(|| last_resort.pop_front()) {
                                    Some(next) => start(next, &mut running, &mut in_flight),
                                    None => return Err(all_failed(self.network, &failures)),
                                }
                            }
                        }
                    }
                }
                _ = sleep_until(hedge_at.unwrap_or(deadline)), if hedge_at.is_some() => {
                    let now = Instant::now();
                    let Some(latest) = in_flight.last_mut() else { continue };
                    let share_over = now >= latest.at + share;
                    if !share_over && !self.endpoints[latest.endpoint].stalled(now, cap) {
                        continue; // it answered something meanwhile: look again later
                    }
                    latest.passed_over = true;
                    // Out of its share: counted against it now. Only stalled: counted if
                    // another endpoint answers first (see above).
                    for f in in_flight.iter_mut().filter(|f| !f.counted && now >= f.at + share) {
                        f.counted = true;
                        self.failed(f.endpoint, &AttemptError::Slow(share));
                    }
                    if let Some(next) = hedged.pop_front().or_else(|| last_resort.pop_front()) {
                        start(next, &mut running, &mut in_flight);
                    }
                }
                _ = sleep_until(deadline) => {
                    let e = AttemptError::Timeout(self.config.timeout);
                    for f in &in_flight {
                        if !f.counted {
                            self.failed(f.endpoint, &e);
                        }
                        failures.push(format!("{}: {e}", self.endpoints[f.endpoint].label));
                    }
                    return Err(all_failed(self.network, &failures));
                }
            }
        }
    }

    /// Ask every endpoint for its latest block (concurrently, each bounded by the timeout),
    /// then judge lag against the best head.
    async fn probe_all(self: &Arc<Self>) {
        let probes =
            (0..self.endpoints.len()).map(|i| async move {
                let on_the_wire = Outstanding::new(self, i);
                let started = Instant::now();
                let result =
                    match tokio::time::timeout(self.config.timeout, probe(on_the_wire.endpoint()))
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
                    self.answered(i, "eth_getBlockByNumber", latency);
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

    fn health(&self) -> NetworkHealth {
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

fn all_failed(network: &str, failures: &[String]) -> TransportError {
    TransportErrorKind::custom_str(&format!(
        "{network}: no RPC endpoint answered ({})",
        failures.join("; ")
    ))
}

#[derive(Deserialize)]
struct BlockHead {
    number: U64,
    /// Absent from some test doubles: a zero hash never matches a real block's parent.
    #[serde(default)]
    hash: B256,
    timestamp: U64,
}

async fn probe(ep: &Endpoint) -> Result<Head, AttemptError> {
    let req = Request::new("eth_getBlockByNumber", Id::Number(1), ("latest", false))
        .serialize()
        .map_err(|_| AttemptError::Decode)?;
    let answer = ep.send(&RequestPacket::Single(req)).await?;
    match answer.single_payload() {
        Some(ResponsePayload::Success(raw)) => serde_json::from_str::<BlockHead>(raw.get())
            .map(|b| Head {
                number: b.number.to(),
                hash: b.hash,
                timestamp: b.timestamp.to(),
            })
            .map_err(|_| AttemptError::NoHead),
        Some(ResponsePayload::Failure(e)) => Err(AttemptError::Rpc(
            e.message.chars().take(200).collect::<String>(),
        )),
        None => Err(AttemptError::Decode),
    }
}

/// The alloy transport over a network's endpoints (a `tower::Service`, so `RpcClient` and
/// `RootProvider` take it as they take alloy's own).
#[derive(Clone, Debug)]
pub struct FailoverTransport {
    shared: Arc<Shared>,
}

impl tower::Service<RequestPacket> for FailoverTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPacket) -> Self::Future {
        Box::pin(self.shared.clone().call(req))
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

    pub fn network(&self) -> &'static str {
        self.shared.network
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::providers::Provider;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn redaction_keeps_scheme_host_and_port_only() {
        let r = |s: &str| redact(&s.parse().unwrap());
        assert_eq!(
            r("https://base-mainnet.g.alchemy.com/v2/SECRETKEY"),
            "https://base-mainnet.g.alchemy.com/…"
        );
        assert_eq!(
            r("https://rpc.example/?apikey=SECRET"),
            "https://rpc.example/…"
        );
        assert_eq!(r("https://user:pass@rpc.example"), "https://rpc.example/…");
        assert_eq!(r("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(r("http://[::1]:8545/"), "http://[::1]:8545");
    }

    #[test]
    fn bad_urls_are_refused_without_being_echoed() {
        let cfg = ChainConfig::default();
        let err = ChainAccess::new(
            "base",
            &["http://ok.example".into(), "key-123".into()],
            cfg,
            None,
        )
        .unwrap_err();
        assert_eq!(err, ChainError::BadUrl(2));
        assert!(!err.to_string().contains("key-123"));
        assert_eq!(
            ChainAccess::new("base", &[], cfg, None).unwrap_err(),
            ChainError::NoUrl
        );
        assert_eq!(
            ChainAccess::new("base", &["ws://node.example".into()], cfg, None).unwrap_err(),
            ChainError::BadUrl(1)
        );
    }

    #[test]
    fn same_host_endpoints_get_distinct_labels() {
        let access = ChainAccess::new(
            "base",
            &[
                "https://node.example/key-1".into(),
                "https://node.example/key-2".into(),
            ],
            ChainConfig::default(),
            None,
        )
        .unwrap();
        let labels: Vec<String> = access
            .health()
            .endpoints
            .into_iter()
            .map(|e| e.url)
            .collect();
        assert_eq!(
            labels,
            ["https://node.example/…", "https://node.example/… #2"]
        );
    }

    /// A minimal JSON-RPC node on a free port: answers every call with `chain_id` after
    /// `delay`, or never (`None`: it reads the request and hangs, like a frozen node).
    async fn node(chain_id: u64, delay: Option<Duration>) -> String {
        node_answering(serde_json::json!(format!("{chain_id:#x}")), delay).await
    }

    /// The same, answering every call with `result`.
    async fn node_answering(result: serde_json::Value, delay: Option<Duration>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let result = result.clone();
                tokio::spawn(async move {
                    loop {
                        let result = result.clone();
                        let Some(body) = read_request(&mut sock).await else {
                            return;
                        };
                        let Some(delay) = delay else {
                            std::future::pending::<()>().await;
                            return;
                        };
                        tokio::time::sleep(delay).await;
                        let id = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
                            .clone();
                        let answer =
                            serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": result })
                                .to_string();
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        url
    }

    /// One HTTP/1.1 request's body; `None` when the peer closed.
    async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
            let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return Some(got[end + 4..end + 4 + len].to_vec());
            }
        }
    }

    /// A URL nothing listens on (connection refused).
    async fn closed_port() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        url
    }

    fn access(urls: &[String], timeout_ms: u64) -> ChainAccess {
        let config = ChainConfig {
            timeout: Duration::from_millis(timeout_ms),
            ..ChainConfig::default()
        };
        ChainAccess::new("base", urls, config, None).unwrap()
    }

    fn statuses(a: &ChainAccess) -> Vec<EndpointStatus> {
        a.health().endpoints.iter().map(|e| e.status).collect()
    }

    #[tokio::test]
    async fn a_frozen_first_endpoint_is_passed_over_once_it_stalls_then_skipped() {
        let frozen = node(1, None).await;
        let live = node(7, Some(Duration::ZERO)).await;
        let a = access(&[frozen, live], 1000);
        let p = a.provider();

        let t = Instant::now();
        assert_eq!(p.get_chain_id().await.unwrap(), 7);
        let first = t.elapsed();
        assert!(
            first >= STALL_FLOOR && first < Duration::from_millis(450),
            "the second endpoint starts once the first has been silent for {STALL_FLOOR:?}, \
             before its 500 ms share is over: {first:?}"
        );
        assert_eq!(
            statuses(&a),
            [EndpointStatus::Unhealthy, EndpointStatus::Healthy]
        );
        assert_eq!(a.health().status, NetworkStatus::Degraded);

        let t = Instant::now();
        assert_eq!(p.get_chain_id().await.unwrap(), 7);
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "an unhealthy endpoint is skipped: {:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn a_refused_endpoint_fails_over_at_once() {
        let a = access(
            &[closed_port().await, node(7, Some(Duration::ZERO)).await],
            5000,
        );
        let t = Instant::now();
        assert_eq!(a.provider().get_chain_id().await.unwrap(), 7);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        let h = a.health();
        assert_eq!(h.endpoints[0].status, EndpointStatus::Unhealthy);
        assert_eq!(
            h.endpoints[0].last_error.as_deref(),
            Some("connection failed")
        );
    }

    #[tokio::test]
    async fn a_slow_endpoint_that_answers_first_still_wins() {
        // The first answers after 300 ms, past its 250 ms share; the second never does.
        let a = access(
            &[
                node(1, Some(Duration::from_millis(300))).await,
                node(2, None).await,
            ],
            500,
        );
        assert_eq!(a.provider().get_chain_id().await.unwrap(), 1);
        let h = a.health();
        // Marked slow when its share ran out, re-admitted by its answer; the second, cut off
        // before its own share, is not blamed.
        assert_eq!(h.endpoints[0].errors, 1);
        assert_eq!(
            statuses(&a),
            [EndpointStatus::Healthy, EndpointStatus::Healthy]
        );
    }

    #[tokio::test]
    async fn when_nothing_answers_the_call_ends_at_the_timeout_with_redacted_errors() {
        let frozen = node(1, None).await;
        let secret = format!("{frozen}/SECRET-KEY");
        let a = access(&[secret, closed_port().await], 800);
        let t = Instant::now();
        let err = a.provider().get_chain_id().await.unwrap_err().to_string();
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_millis(1100),
            "{took:?}"
        );
        assert!(!err.contains("SECRET"), "{err}");
        assert!(err.contains("no RPC endpoint answered"), "{err}");
        assert!(err.contains("connection failed"), "{err}");
        assert!(err.contains("no answer within"), "{err}");
        assert_eq!(a.health().status, NetworkStatus::Down);

        // Down: every endpoint is tried again (last resort), so recovery needs no probe.
        let t = Instant::now();
        let _ = a.provider().get_chain_id().await;
        assert!(t.elapsed() < Duration::from_millis(1100));
    }

    #[tokio::test]
    async fn a_probe_readmits_an_endpoint_and_reads_its_head() {
        // The probe's eth_getBlockByNumber gets "0x7" back, not a block: a node must give its
        // latest block to be healthy.
        let a = access(&[node(7, Some(Duration::ZERO)).await], 500);
        a.probe().await;
        let h = a.health();
        assert_eq!(h.endpoints[0].status, EndpointStatus::Unhealthy);
        assert_eq!(
            h.endpoints[0].last_error.as_deref(),
            Some("no readable latest block")
        );
        // Any answered call re-admits it.
        assert_eq!(a.provider().get_chain_id().await.unwrap(), 7);
        assert_eq!(a.health().status, NetworkStatus::Active);
    }

    #[tokio::test]
    async fn an_endpoint_far_behind_the_best_head_is_lagging_and_skipped() {
        let now = 1_800_000_000u64;
        let head = |number: u64, timestamp: u64| serde_json::json!({ "number": format!("{number:#x}"), "timestamp": format!("{timestamp:#x}") });
        let behind = node_answering(head(90, now - 120), Some(Duration::ZERO)).await;
        let current = node_answering(head(100, now), Some(Duration::ZERO)).await;
        let a = access(&[behind, current], 1000);
        a.probe().await;
        let h = a.health();
        assert_eq!(
            statuses(&a),
            [EndpointStatus::Lagging, EndpointStatus::Healthy]
        );
        assert_eq!(h.status, NetworkStatus::Degraded);
        assert_eq!(h.block, Some(100), "the head of a usable endpoint");
        assert_eq!(h.block_age_secs(now + 3), Some(3));
        assert_eq!(h.endpoints[0].block, Some(90));
        assert_eq!(
            a.shared.plan().0,
            [1],
            "the lagging endpoint is not tried first"
        );
    }

    #[tokio::test]
    async fn a_stalled_healthy_endpoint_hands_over_to_an_unhealthy_one_that_answers() {
        // The first looks healthy but is frozen; the second was marked unhealthy (say by a
        // blip) and has not been probed since, but answers.
        let a = access(
            &[node(1, None).await, node(7, Some(Duration::ZERO)).await],
            2000,
        );
        a.shared.failed(1, &AttemptError::Connect);
        let t = Instant::now();
        assert_eq!(a.provider().get_chain_id().await.unwrap(), 7);
        assert!(
            t.elapsed() < Duration::from_millis(700),
            "handed over once the first stalled, not at the 2 s deadline: {:?}",
            t.elapsed()
        );
        assert_eq!(
            statuses(&a),
            [EndpointStatus::Unhealthy, EndpointStatus::Healthy]
        );
    }
}
