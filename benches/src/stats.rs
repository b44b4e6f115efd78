//! Figures of one run from its records: throughput, HDR-histogram latency percentiles, errors
//! grouped by reason, and the time series the report draws.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::engine::{latency_histogram, Outcome, Record};

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorGroup {
    pub reason: String,
    pub count: usize,
    pub sample: String,
}

/// One slice of the run, by completion time (in flight: at the slice's end).
#[derive(Debug, Clone, Serialize)]
pub struct Slice {
    pub t_secs: f64,
    pub completed: usize,
    pub errors: usize,
    pub throughput_rps: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub in_flight: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: usize,
    pub ok: usize,
    pub errors: usize,
    /// From the first scheduled request to the last answer.
    pub wall_secs: f64,
    /// Successful requests per second over `wall_secs`.
    pub throughput_rps: f64,
    pub latency_ms: Latency,
    pub error_reasons: Vec<ErrorGroup>,
    pub slice_secs: f64,
    pub timeline: Vec<Slice>,
    /// (upper bound of the bin in ms, requests in it).
    pub histogram: Vec<(f64, usize)>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A slice width that gives at most ~60 slices.
fn slice_width(wall: f64) -> f64 {
    [
        0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
    ]
    .into_iter()
    .find(|w| wall / w <= 60.0)
    .unwrap_or(600.0)
}

pub fn summarize(records: &[Record]) -> Summary {
    let mut all = latency_histogram();
    for r in records {
        all.saturating_record((r.latency().as_micros() as u64).max(1));
    }
    let q = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let ok = records.iter().filter(|r| r.outcome.is_ok()).count();
    let wall = records
        .iter()
        .map(|r| r.finished)
        .max()
        .unwrap_or_default()
        .saturating_sub(
            records
                .iter()
                .map(|r| r.scheduled)
                .min()
                .unwrap_or_default(),
        )
        .as_secs_f64();

    let mut groups: BTreeMap<&str, ErrorGroup> = BTreeMap::new();
    for r in records {
        if let Outcome::Failed { reason, sample } = &r.outcome {
            groups
                .entry(reason)
                .or_insert_with(|| ErrorGroup {
                    reason: reason.clone(),
                    count: 0,
                    sample: sample.clone(),
                })
                .count += 1;
        }
    }
    let mut error_reasons: Vec<ErrorGroup> = groups.into_values().collect();
    error_reasons.sort_by_key(|g| std::cmp::Reverse(g.count));

    let width = slice_width(wall);
    let slices = ((wall / width).ceil() as usize).max(1);
    let mut timeline = Vec::with_capacity(slices);
    let mut per_slice: Vec<Vec<&Record>> = vec![Vec::new(); slices];
    for r in records {
        let i = ((r.finished.as_secs_f64() / width) as usize).min(slices - 1);
        per_slice[i].push(r);
    }
    for (i, done) in per_slice.iter().enumerate() {
        let end = (i + 1) as f64 * width;
        let mut h = latency_histogram();
        for r in done {
            h.saturating_record((r.latency().as_micros() as u64).max(1));
        }
        let any = !done.is_empty();
        let at = Duration::from_secs_f64(end);
        timeline.push(Slice {
            t_secs: end,
            completed: done.len(),
            errors: done.iter().filter(|r| !r.outcome.is_ok()).count(),
            throughput_rps: done.iter().filter(|r| r.outcome.is_ok()).count() as f64 / width,
            p50_ms: any.then(|| q(&h, 0.5)),
            p90_ms: any.then(|| q(&h, 0.9)),
            p99_ms: any.then(|| q(&h, 0.99)),
            in_flight: records
                .iter()
                .filter(|r| r.scheduled <= at && r.finished > at)
                .count(),
        });
    }

    // 40 equal bins from 0 to the slowest request.
    let max_ms = records.iter().map(|r| ms(r.latency())).fold(0.0, f64::max);
    let bins = 40;
    let bin = (max_ms / bins as f64).max(0.001);
    let mut histogram: Vec<(f64, usize)> = (1..=bins).map(|i| (i as f64 * bin, 0)).collect();
    for r in records {
        let i = ((ms(r.latency()) / bin) as usize).min(bins - 1);
        histogram[i].1 += 1;
    }

    Summary {
        count: records.len(),
        ok,
        errors: records.len() - ok,
        wall_secs: wall,
        throughput_rps: if wall > 0.0 { ok as f64 / wall } else { 0.0 },
        latency_ms: Latency {
            p50: q(&all, 0.5),
            p90: q(&all, 0.9),
            p99: q(&all, 0.99),
            max: all.max() as f64 / 1000.0,
            mean: all.mean() / 1000.0,
        },
        error_reasons,
        slice_secs: width,
        timeline,
        histogram,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PaymentId;
    use alloy::primitives::{Address, B256};

    fn record(scheduled_ms: u64, started_ms: u64, finished_ms: u64, ok: bool) -> Record {
        Record {
            id: PaymentId::Evm {
                payer: Address::ZERO,
                nonce: B256::ZERO,
            },
            scheduled: Duration::from_millis(scheduled_ms),
            started: Duration::from_millis(started_ms),
            finished: Duration::from_millis(finished_ms),
            outcome: if ok {
                Outcome::Ok { transaction: None }
            } else {
                Outcome::Failed {
                    reason: "insufficient_funds".into(),
                    sample: "{}".into(),
                }
            },
        }
    }

    #[test]
    fn latency_runs_from_the_schedule_and_errors_group_by_reason() {
        // Due every 10 ms; the server answers one every 100 ms.
        let records: Vec<Record> = (0..10)
            .map(|i| record(10 * i, 10 * i, 100 * (i + 1), i != 3 && i != 7))
            .collect();
        let s = summarize(&records);
        assert_eq!((s.count, s.ok, s.errors), (10, 8, 2));
        // The last one was due at 90 ms and answered at 1000 ms.
        assert!((s.latency_ms.max - 910.0).abs() < 1.0, "{:?}", s.latency_ms);
        assert!(
            (s.latency_ms.p50 - 460.0).abs() < 50.0,
            "{:?}",
            s.latency_ms
        );
        assert!((s.wall_secs - 1.0).abs() < 1e-9);
        assert!((s.throughput_rps - 8.0).abs() < 1e-9);
        assert_eq!(s.error_reasons.len(), 1);
        assert_eq!(s.error_reasons[0].reason, "insufficient_funds");
        assert_eq!(s.error_reasons[0].count, 2);
        assert_eq!(s.histogram.iter().map(|b| b.1).sum::<usize>(), 10);
        // Nine are in flight at 100 ms (the first has just answered); none at the end.
        let at_100 = s
            .timeline
            .iter()
            .find(|t| (t.t_secs - 0.1).abs() < 1e-9)
            .unwrap();
        assert_eq!(at_100.in_flight, 9);
        assert_eq!(s.timeline.last().unwrap().in_flight, 0);
        assert_eq!(s.timeline.iter().map(|t| t.completed).sum::<usize>(), 10);
    }
}
