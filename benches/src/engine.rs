//! The load loop. It runs on a runtime of its own (its own threads), so the client never shares
//! a thread with a facilitator started in the same process.
//!
//! - Closed loop: `concurrency` workers, each sending its next request when the last answered.
//! - Streams: `streams` workers, worker `w` sending payments `w`, `w + streams`, … in order,
//!   each when the last answered (a payment channel's vouchers, which must arrive in order).
//! - Open loop: request `i` is due at `i / rate` seconds, sent then whatever is in flight, and
//!   its latency runs from that scheduled time, so a server that falls behind shows its queue
//!   in the figures instead of slowing the client down (no coordinated omission).

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, B256};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::time::Instant;

use super::args::Mode;
use super::payments::Payment;

/// A facilitator to send to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Short label for tables ("ours", "reference", or the host).
    pub name: String,
    /// Base URL: `{url}/verify`, `{url}/settle`, `{url}/supported`. Several, comma-separated,
    /// for a fleet of instances of one facilitator: requests go to them round robin.
    pub url: String,
    pub headers: HeaderMap,
}

#[derive(Debug, Clone, Copy)]
pub enum Loop {
    Closed {
        concurrency: usize,
    },
    Open {
        rate: f64,
    },
    /// Payment `i` belongs to stream `i % streams`; a stream's payments go one at a time, in
    /// order.
    Streams {
        streams: usize,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub mode: Mode,
    pub looping: Loop,
    pub duration: Option<Duration>,
    pub timeout: Duration,
}

/// Who pays and what makes one payment unique, as the chain's verdict reads them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentId {
    /// EIP-3009: the buyer and its authorization's nonce.
    Evm { payer: Address, nonce: B256 },
    /// Solana: the buyer and its own signature of the transaction (base58; the transaction's
    /// id is the fee payer's, which only the facilitator makes).
    Svm { payer: String, signature: String },
    /// A payment channel's voucher: the channel and the voucher's ceiling.
    Voucher {
        payer: Address,
        channel: B256,
        ceiling: u128,
    },
}

impl PaymentId {
    pub fn payer(&self) -> String {
        match self {
            PaymentId::Evm { payer, .. } => payer.to_checksum(None),
            PaymentId::Svm { payer, .. } => payer.clone(),
            PaymentId::Voucher { payer, .. } => payer.to_checksum(None),
        }
    }

    /// The EIP-3009 nonce, the buyer's signature, or `channel@ceiling`.
    pub fn nonce(&self) -> String {
        match self {
            PaymentId::Evm { nonce, .. } => nonce.to_string(),
            PaymentId::Svm { signature, .. } => signature.clone(),
            PaymentId::Voucher {
                channel, ceiling, ..
            } => format!("{channel}@{ceiling}"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Ok {
        /// The transaction the answer named, as given (a 0x hash, a base58 signature).
        transaction: Option<String>,
    },
    Failed {
        reason: String,
        /// What the server answered (or the transport error), cut short.
        sample: String,
    },
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }
}

/// One payment as sent: times are offsets from the start of the run.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: PaymentId,
    /// When it was due (closed loop: when a worker took it).
    pub scheduled: Duration,
    pub started: Duration,
    pub finished: Duration,
    pub outcome: Outcome,
}

impl Record {
    /// From the scheduled time, not the send time.
    pub fn latency(&self) -> Duration {
        self.finished.saturating_sub(self.scheduled)
    }
}

/// Counters the progress bar reads while the run goes on.
struct Live {
    done: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicI64,
    latency_us: Mutex<Histogram<u64>>,
}

pub fn latency_histogram() -> Histogram<u64> {
    // 1 µs to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

struct Shared {
    client: reqwest::Client,
    /// The instances, taken round robin.
    urls: Vec<String>,
    next: AtomicUsize,
    mode: Mode,
    t0: Instant,
    live: Live,
}

/// Run `payments` against `target`; returns one record per payment sent, in payment order,
/// and the instant the records' times count from.
pub async fn run(
    target: &Target,
    workload: Workload,
    payments: Vec<Payment>,
    progress_label: String,
) -> anyhow::Result<(Vec<Record>, std::time::Instant)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .default_headers(target.headers.clone())
        .timeout(workload.timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?;
    let url = target.url.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-load".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .map(|rt| rt.block_on(drive(client, url, workload, payments, progress_label)));
            let _ = tx.send(result);
        })?;
    rx.await
        .map_err(|_| anyhow::anyhow!("the load generator stopped"))?
}

async fn drive(
    client: reqwest::Client,
    url: String,
    workload: Workload,
    payments: Vec<Payment>,
    progress_label: String,
) -> (Vec<Record>, std::time::Instant) {
    let n = payments.len();
    // Serialised before the clock starts, like the signatures.
    let bodies: Arc<Vec<(PaymentId, String)>> = Arc::new(
        payments
            .into_iter()
            .map(|p| (p.id, p.body.to_string()))
            .collect(),
    );
    let shared = Arc::new(Shared {
        client,
        urls: base_urls(&url),
        next: AtomicUsize::new(0),
        mode: workload.mode,
        t0: Instant::now(),
        live: Live {
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            latency_us: Mutex::new(latency_histogram()),
        },
    });
    let bar = progress_bar(n as u64, progress_label);
    let ticker = {
        let shared = shared.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(200));
            loop {
                every.tick().await;
                update_bar(&bar, &shared.live);
            }
        })
    };
    let t0 = shared.t0;
    let limit = workload.duration;
    let due = move |at: Duration| limit.is_none_or(|d| at < d);

    let mut records: Vec<(usize, Record)> = Vec::with_capacity(n);
    match workload.looping {
        Loop::Closed { concurrency } => {
            let next = Arc::new(AtomicUsize::new(0));
            let workers: Vec<_> = (0..concurrency.min(n).max(1))
                .map(|_| {
                    let (shared, bodies, next) = (shared.clone(), bodies.clone(), next.clone());
                    tokio::spawn(async move {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let scheduled = t0.elapsed();
                            if i >= bodies.len() || !due(scheduled) {
                                break;
                            }
                            out.push((i, send(&shared, &bodies[i], scheduled).await));
                        }
                        out
                    })
                })
                .collect();
            for w in workers {
                records.extend(w.await.expect("a load worker panicked"));
            }
        }
        Loop::Streams { streams } => {
            let streams = streams.max(1);
            let workers: Vec<_> = (0..streams.min(n))
                .map(|w| {
                    let (shared, bodies) = (shared.clone(), bodies.clone());
                    tokio::spawn(async move {
                        let mut out = Vec::new();
                        for i in (w..bodies.len()).step_by(streams) {
                            let scheduled = t0.elapsed();
                            if !due(scheduled) {
                                break;
                            }
                            out.push((i, send(&shared, &bodies[i], scheduled).await));
                        }
                        out
                    })
                })
                .collect();
            for w in workers {
                records.extend(w.await.expect("a load worker panicked"));
            }
        }
        Loop::Open { rate } => {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..n {
                let at = Duration::from_secs_f64(i as f64 / rate);
                if !due(at) {
                    break;
                }
                tokio::time::sleep_until(t0 + at).await;
                let (shared, bodies) = (shared.clone(), bodies.clone());
                set.spawn(async move { (i, send(&shared, &bodies[i], at).await) });
            }
            while let Some(r) = set.join_next().await {
                records.push(r.expect("a request task panicked"));
            }
        }
    }
    ticker.abort();
    update_bar(&bar, &shared.live);
    bar.finish();
    records.sort_by_key(|(i, _)| *i);
    (records.into_iter().map(|(_, r)| r).collect(), t0.into_std())
}

fn progress_bar(len: u64, label: String) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} {elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} {msg}",
        )
        .expect("valid progress template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label);
    bar
}

fn update_bar(bar: &ProgressBar, live: &Live) {
    let (p50, p99) = {
        let h = live.latency_us.lock().expect("latency lock");
        (
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
        )
    };
    bar.set_position(live.done.load(Ordering::Relaxed));
    bar.set_message(format!(
        "in flight {} | errors {} | p50 {p50:.1} ms | p99 {p99:.1} ms",
        live.in_flight.load(Ordering::Relaxed),
        live.errors.load(Ordering::Relaxed),
    ));
}

async fn send(shared: &Shared, body: &(PaymentId, String), scheduled: Duration) -> Record {
    let live = &shared.live;
    live.in_flight.fetch_add(1, Ordering::Relaxed);
    let started = shared.t0.elapsed();
    let outcome = match shared.mode {
        Mode::Verify => verify(shared, &body.1).await,
        Mode::Settle => settle(shared, &body.1).await,
        Mode::Pay => match verify(shared, &body.1).await {
            Outcome::Ok { .. } => settle(shared, &body.1).await,
            Outcome::Failed { reason, sample } => Outcome::Failed {
                reason: format!("verify: {reason}"),
                sample,
            },
        },
    };
    let finished = shared.t0.elapsed();
    live.in_flight.fetch_sub(1, Ordering::Relaxed);
    live.done.fetch_add(1, Ordering::Relaxed);
    if !outcome.is_ok() {
        live.errors.fetch_add(1, Ordering::Relaxed);
    }
    let micros = finished.saturating_sub(scheduled).as_micros() as u64;
    live.latency_us
        .lock()
        .expect("latency lock")
        .saturating_record(micros.max(1));
    Record {
        id: body.0.clone(),
        scheduled,
        started,
        finished,
        outcome,
    }
}

const SAMPLE_CHARS: usize = 300;

fn cut(s: &str) -> String {
    let mut out: String = s.chars().take(SAMPLE_CHARS).collect();
    if s.chars().count() > SAMPLE_CHARS {
        out.push('…');
    }
    out
}

/// POST a body; a 200 with a JSON object is an answer, anything else a failure with a reason.
/// The base URLs of a target (one, or a fleet's, comma-separated), without trailing slashes.
pub fn base_urls(url: &str) -> Vec<String> {
    url.split(',')
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .collect()
}

async fn post(shared: &Shared, path: &str, body: &str) -> Result<Value, Outcome> {
    let i = shared.next.fetch_add(1, Ordering::Relaxed) % shared.urls.len().max(1);
    let res = shared
        .client
        .post(format!("{}{path}", shared.urls[i]))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| transport_failure(&e))?;
    let status = res.status();
    let text = res.text().await.map_err(|e| transport_failure(&e))?;
    let json: Option<Value> = serde_json::from_str(&text).ok().filter(Value::is_object);
    match json {
        Some(v) if status.is_success() => Ok(v),
        other => {
            // Our envelope has a `code`; the reference server an `error`.
            let detail = other
                .as_ref()
                .and_then(|v| v["code"].as_str().or(v["errorReason"].as_str()))
                .map(|c| format!(" {c}"))
                .unwrap_or_default();
            Err(Outcome::Failed {
                reason: format!("http {}{detail}", status.as_u16()),
                sample: cut(&text),
            })
        }
    }
}

fn transport_failure(e: &reqwest::Error) -> Outcome {
    let reason = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    let mut sample = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        sample.push_str(": ");
        sample.push_str(&s.to_string());
        source = s.source();
    }
    Outcome::Failed {
        reason: reason.to_owned(),
        sample: cut(&sample),
    }
}

async fn verify(shared: &Shared, body: &str) -> Outcome {
    match post(shared, "/verify", body).await {
        Ok(v) if v["isValid"] == true => Outcome::Ok { transaction: None },
        Ok(v) => Outcome::Failed {
            reason: v["invalidReason"]
                .as_str()
                .unwrap_or("isValid is not true")
                .to_owned(),
            sample: cut(&v.to_string()),
        },
        Err(failure) => failure,
    }
}

async fn settle(shared: &Shared, body: &str) -> Outcome {
    match post(shared, "/settle", body).await {
        Ok(v) if v["success"] == true => Outcome::Ok {
            transaction: v["transaction"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        },
        Ok(v) => Outcome::Failed {
            reason: v["errorReason"]
                .as_str()
                .unwrap_or("success is not true")
                .to_owned(),
            sample: cut(&v.to_string()),
        },
        Err(failure) => failure,
    }
}
