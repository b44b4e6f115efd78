//! One call across a network's endpoints: the order they are tried in, the deadline over every
//! attempt, the hand-over to the next endpoint when one fails, runs out its share or stalls,
//! and the alloy transport (`FailoverTransport`) that routes every provider call through it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};
use futures::stream::{FuturesUnordered, StreamExt};

use super::endpoint::{AttemptError, Outstanding};
use super::Shared;

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
    pub(super) fn answered(&self, i: usize, method: &str, latency: Duration) {
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

    pub(super) fn failed(&self, i: usize, error: &AttemptError) {
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

    pub(super) fn health_changed(&self, i: usize, healthy: bool, error: Option<&AttemptError>) {
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
    pub(super) fn plan(&self) -> (VecDeque<usize>, VecDeque<usize>) {
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
    pub(super) fn stall_cap(&self) -> Duration {
        self.config.timeout / 2
    }

    pub(super) fn attempt(self: &Arc<Self>, i: usize, req: &RequestPacket) -> Attempt {
        let on_the_wire = Outstanding::new(self, i);
        let req = req.clone();
        Box::pin(async move {
            let result = on_the_wire.endpoint().send(&req).await;
            (i, result)
        })
    }

    pub(super) async fn call(
        self: Arc<Self>,
        req: RequestPacket,
    ) -> Result<ResponsePacket, TransportError> {
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
}

fn all_failed(network: &str, failures: &[String]) -> TransportError {
    TransportErrorKind::custom_str(&format!(
        "{network}: no RPC endpoint answered ({})",
        failures.join("; ")
    ))
}

/// The alloy transport over a network's endpoints (a `tower::Service`, so `RpcClient` and
/// `RootProvider` take it as they take alloy's own).
#[derive(Clone, Debug)]
pub struct FailoverTransport {
    pub(super) shared: Arc<Shared>,
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
