//! One RPC endpoint: its URL (used only to send), its health counters and latency, and when
//! it counts as stalled; and why one attempt on it did not answer (`AttemptError`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::http::reqwest::{self, Url};

use super::Shared;

/// Why one attempt on one endpoint did not answer. Its text never holds the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AttemptError {
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
    pub(super) fn kind(&self) -> String {
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

    pub(super) fn from_reqwest(e: reqwest::Error) -> Self {
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
pub(super) struct Head {
    pub(super) number: u64,
    pub(super) hash: B256,
    pub(super) timestamp: u64,
}

#[derive(Debug)]
pub(super) struct EndpointState {
    pub(super) healthy: bool,
    pub(super) lagging: bool,
    pub(super) requests: u64,
    pub(super) errors: u64,
    /// Seconds, exponentially weighted (alpha 0.2).
    pub(super) latency: Option<f64>,
    pub(super) last_error: Option<String>,
    pub(super) head: Option<Head>,
    /// Requests on the wire now (calls and probes).
    pub(super) outstanding: u32,
    /// When `outstanding` last went from 0 to 1.
    pub(super) busy_since: Option<Instant>,
    /// When the last HTTP answer (of any status) arrived.
    pub(super) last_answer: Option<Instant>,
}

impl EndpointState {
    pub(super) fn new() -> Self {
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
pub(super) const STALL_FLOOR: Duration = Duration::from_millis(250);

/// One RPC URL. The URL is only ever used to send; everything else says `label`.
pub(super) struct Endpoint {
    pub(super) label: String,
    pub(super) url: Url,
    pub(super) http: reqwest::Client,
    pub(super) state: Mutex<EndpointState>,
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
    pub(super) async fn send(&self, req: &RequestPacket) -> Result<ResponsePacket, AttemptError> {
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

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, EndpointState> {
        // A panic while holding this lock leaves plain counters: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When this endpoint counts as stalled if nothing arrives before: it has requests on
    /// the wire and has answered none of them for `max(STALL_FLOOR, 4 × its usual latency)`
    /// (at most `cap`). `None` while it has nothing on the wire. An endpoint that keeps
    /// answering *other* requests is not stalled by one slow call: no hedge, no duplicate
    /// load on a busy but live node.
    pub(super) fn stalled_at(&self, cap: Duration) -> Option<Instant> {
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

    pub(super) fn stalled(&self, now: Instant, cap: Duration) -> bool {
        self.stalled_at(cap).is_some_and(|t| t <= now)
    }

    /// Worth trying first: healthy, not lagging, not stalled right now.
    pub(super) fn usable(&self, now: Instant, cap: Duration) -> bool {
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
pub(super) struct Outstanding {
    shared: Arc<Shared>,
    endpoint: usize,
}

impl Outstanding {
    pub(super) fn new(shared: &Arc<Shared>, endpoint: usize) -> Self {
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

    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoints[self.endpoint]
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        let mut s = self.endpoint().lock();
        s.outstanding = s.outstanding.saturating_sub(1);
    }
}
