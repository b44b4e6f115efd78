//! `report.json` (every run's figures, the chain's verdict and every payment) and
//! `report.html` (the same as tables and inline SVG charts; it loads nothing from anywhere).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::args::{Family, Mode, Scheme};
use super::chain::OnChain;
use super::channels_chain::ChannelCosts;
use super::charts::{line_chart, Series, PALETTE};
use super::engine::{Outcome, Record};
use super::stats::{ErrorGroup, Latency, Slice, Summary};

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu: Option<String>,
    pub os: String,
}

impl Machine {
    pub fn this() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        });
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkloadInfo {
    pub family: Family,
    pub scheme: Scheme,
    pub mode: Mode,
    pub x402_version: u8,
    pub network: String,
    pub asset: String,
    pub amount: String,
    pub payers: usize,
    /// "closed" or "open".
    pub r#loop: String,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    pub duration_secs: Option<f64>,
    pub count: usize,
    pub self_contained: bool,
    pub rpc_latency_ms: Option<u64>,
    /// The local chain's block gas limit (self-contained runs).
    pub block_gas_limit: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PaymentReport {
    pub payer: String,
    pub nonce: String,
    pub ok: bool,
    pub transaction: Option<String>,
    pub reason: Option<String>,
    pub scheduled_ms: f64,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub name: String,
    pub facilitator: String,
    pub mode: Mode,
    pub count: usize,
    pub ok: usize,
    pub errors: usize,
    pub throughput_rps: f64,
    pub wall_secs: f64,
    pub latency_ms: Latency,
    pub error_reasons: Vec<ErrorGroup>,
    pub onchain: OnChain,
    /// Passed: no error and the chain agrees.
    pub passed: bool,
    pub slice_secs: f64,
    pub timeline: Vec<Slice>,
    pub latency_histogram_ms: Vec<(f64, usize)>,
    /// The facilitator's process, when the bench started it as a child (`--binary`).
    pub memory: Option<ProcessMemory>,
    /// `--scheme batch-settlement`, a voucher run: its deposits, claim and sweep on chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<ChannelCosts>,
    pub payments: Vec<PaymentReport>,
}

/// A facilitator process's memory (`/proc/<pid>/status`), MB.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessMemory {
    /// Resident at the end of its run (`VmRSS`).
    pub rss_mb: f64,
    /// Its peak so far (`VmHWM`).
    pub peak_mb: f64,
    /// Resident once it has settled after its run (the load's connections closed, its
    /// allocator's free pages returned): sampled until it stops falling (`memory::settle`).
    pub rss_mb_settled: Option<f64>,
    /// Resident once every run of the bench is done (idle since its own run).
    pub rss_mb_at_bench_end: Option<f64>,
}

impl RunReport {
    pub fn new(
        name: String,
        facilitator: String,
        mode: Mode,
        summary: Summary,
        onchain: OnChain,
        records: &[Record],
    ) -> Self {
        let payments = records
            .iter()
            .map(|r| {
                let (ok, transaction, reason) = match &r.outcome {
                    Outcome::Ok { transaction } => (true, transaction.clone(), None),
                    Outcome::Failed { reason, .. } => (false, None, Some(reason.clone())),
                };
                PaymentReport {
                    payer: r.id.payer(),
                    nonce: r.id.nonce(),
                    ok,
                    transaction,
                    reason,
                    scheduled_ms: r.scheduled.as_secs_f64() * 1000.0,
                    latency_ms: r.latency().as_secs_f64() * 1000.0,
                }
            })
            .collect();
        Self {
            passed: summary.count > 0 && summary.errors == 0 && onchain.consistent,
            name,
            facilitator,
            mode,
            count: summary.count,
            ok: summary.ok,
            errors: summary.errors,
            throughput_rps: summary.throughput_rps,
            wall_secs: summary.wall_secs,
            latency_ms: summary.latency_ms,
            error_reasons: summary.error_reasons,
            onchain,
            slice_secs: summary.slice_secs,
            timeline: summary.timeline,
            latency_histogram_ms: summary.histogram,
            memory: None,
            channels: None,
            payments,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub generated_at: String,
    /// The command line, header values redacted.
    pub command: Vec<String>,
    pub machine: Machine,
    pub workload: WorkloadInfo,
    pub passed: bool,
    pub runs: Vec<RunReport>,
}

impl Report {
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = dir.join("report.json");
        std::fs::write(&json, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", json.display()))?;
        let html = dir.join("report.html");
        std::fs::write(&html, self.html()?)
            .with_context(|| format!("cannot write {}", html.display()))?;
        Ok(())
    }

    fn charts(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let per_run = |f: &dyn Fn(&RunReport) -> Vec<(f64, f64)>| -> Vec<Series> {
            self.runs
                .iter()
                .enumerate()
                .map(|(i, r)| Series {
                    label: r.name.clone(),
                    color: PALETTE[i % PALETTE.len()].0,
                    points: f(r),
                })
                .collect()
        };
        let throughput = per_run(&|r| {
            r.timeline
                .iter()
                .map(|s| (s.t_secs, s.throughput_rps))
                .collect()
        });
        let mut percentiles = Vec::new();
        for (i, r) in self.runs.iter().enumerate() {
            let (main, light) = PALETTE[i % PALETTE.len()];
            let pick = |f: fn(&Slice) -> Option<f64>| -> Vec<(f64, f64)> {
                r.timeline
                    .iter()
                    .filter_map(|s| f(s).map(|v| (s.t_secs, v)))
                    .collect()
            };
            percentiles.push(Series {
                label: format!("{} p50", r.name),
                color: main,
                points: pick(|s| s.p50_ms),
            });
            percentiles.push(Series {
                label: format!("{} p99", r.name),
                color: light,
                points: pick(|s| s.p99_ms),
            });
        }
        let histogram = per_run(&|r| {
            let width = r.latency_histogram_ms.first().map_or(0.0, |b| b.0);
            // A step outline: each bin is flat across its width.
            let mut pts = vec![(0.0, 0.0)];
            for (upper, n) in &r.latency_histogram_ms {
                pts.push((upper - width, *n as f64));
                pts.push((*upper, *n as f64));
            }
            pts
        });
        let in_flight = per_run(&|r| {
            std::iter::once((0.0, 0.0))
                .chain(r.timeline.iter().map(|s| (s.t_secs, s.in_flight as f64)))
                .collect()
        });
        Ok(vec![
            (
                "throughput",
                line_chart(
                    "Throughput over time",
                    "seconds",
                    "successful requests / s",
                    &throughput,
                )?,
            ),
            (
                "latency-percentiles",
                line_chart(
                    "Latency percentiles over time",
                    "seconds (by answer time)",
                    "ms",
                    &percentiles,
                )?,
            ),
            (
                "latency-histogram",
                line_chart("Latency histogram", "ms", "requests", &histogram)?,
            ),
            (
                "in-flight",
                line_chart("In flight over time", "seconds", "requests", &in_flight)?,
            ),
        ])
    }

    pub fn html(&self) -> anyhow::Result<String> {
        let w = &self.workload;
        let mut h = String::new();
        h.push_str(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>x402 facilitator bench</title><style>\
             body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}\
             table{border-collapse:collapse;margin:8px 0 20px}\
             td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}\
             th:first-child,td:first-child{text-align:left}\
             .pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}\
             code{background:#f4f4f4;padding:1px 4px}figure{margin:12px 0}\
             </style></head><body>\n<h1>x402 facilitator bench</h1>\n",
        );
        let verdict = if self.passed {
            "<span class=\"pass\">PASS</span>"
        } else {
            "<span class=\"fail\">FAIL</span>"
        };
        let _ = writeln!(
            h,
            "<p>{verdict}: {} on {} ({} CPUs{}), {}</p>\n<p><code>{}</code></p>",
            esc(&self.generated_at),
            esc(&self.machine.os),
            self.machine.cpus,
            self.machine
                .cpu
                .as_deref()
                .map(|c| format!(", {}", esc(c)))
                .unwrap_or_default(),
            esc(&format!("{} {}", self.tool, self.version)),
            esc(&self.command.join(" "))
        );
        let looping = match (w.concurrency, w.rate) {
            (_, Some(rate)) => format!("open loop, {rate} requests/s"),
            (Some(c), None) => format!("closed loop, concurrency {c}"),
            _ => w.r#loop.clone(),
        };
        h.push_str("<h2>Workload</h2>\n<table>\n");
        for (k, v) in [
            (
                "scheme",
                serde_json::to_value(w.scheme)?
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            ("mode", format!("{:?}", w.mode).to_lowercase()),
            ("x402 version", w.x402_version.to_string()),
            ("payments per run", w.count.to_string()),
            ("load", looping),
            (
                "duration limit",
                w.duration_secs.map_or("none".into(), |d| format!("{d} s")),
            ),
            ("network", w.network.clone()),
            ("asset", w.asset.clone()),
            ("amount (atomic units)", w.amount.clone()),
            ("payers", w.payers.to_string()),
            (
                "chain",
                if w.self_contained {
                    "self-contained (local anvil, Circle's USDC)".into()
                } else {
                    "given".into()
                },
            ),
            (
                "added RPC latency",
                w.rpc_latency_ms
                    .map_or("none".into(), |ms| format!("{ms} ms per round trip")),
            ),
            (
                "block gas limit",
                w.block_gas_limit.map_or("given".into(), |g| g.to_string()),
            ),
        ] {
            let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&v));
        }
        h.push_str("</table>\n<h2>Results</h2>\n<table id=\"results\">\n<tr><th></th>");
        for r in &self.runs {
            let _ = write!(
                h,
                "<th>{}<br><small>{}</small></th>",
                esc(&r.name),
                esc(&r.facilitator)
            );
        }
        for head in ratio_heads(&self.runs) {
            let _ = write!(h, "<th>{}</th>", esc(&head));
        }
        h.push_str("</tr>\n");
        for row in rows(&self.runs) {
            let _ = write!(h, "<tr><td>{}</td>", esc(&row.label));
            for v in &row.values {
                let _ = write!(h, "<td>{}</td>", esc(v));
            }
            for r in &row.ratios {
                let _ = write!(h, "<td>{}</td>", esc(&r.clone().unwrap_or_default()));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
        for r in &self.runs {
            if !r.onchain.problems.is_empty() {
                let _ = writeln!(h, "<h3>{}: the chain disagrees</h3><ul>", esc(&r.name));
                for p in &r.onchain.problems {
                    let _ = writeln!(h, "<li>{}</li>", esc(p));
                }
                h.push_str("</ul>\n");
            }
            if !r.error_reasons.is_empty() {
                let _ = writeln!(
                    h,
                    "<h3>{}: errors by reason</h3>\n<table><tr><th>reason</th><th>count</th><th>sample</th></tr>",
                    esc(&r.name)
                );
                for e in &r.error_reasons {
                    let _ = writeln!(
                        h,
                        "<tr><td>{}</td><td>{}</td><td style=\"text-align:left\"><code>{}</code></td></tr>",
                        esc(&e.reason),
                        e.count,
                        esc(&e.sample)
                    );
                }
                h.push_str("</table>\n");
            }
        }
        h.push_str("<h2>Charts</h2>\n");
        for (id, svg) in self.charts()? {
            let _ = writeln!(h, "<figure id=\"{id}\">{svg}</figure>");
        }
        h.push_str("</body></html>\n");
        Ok(h)
    }
}

pub struct Row {
    pub label: String,
    pub values: Vec<String>,
    /// Each later run over the first (`ratio_heads`), for numbers where that means something.
    pub ratios: Vec<Option<String>>,
}

/// The heads of the ratio columns: each later run over the first.
pub fn ratio_heads(runs: &[RunReport]) -> Vec<String> {
    runs.iter()
        .skip(1)
        .map(|r| format!("{}/{}", r.name, runs[0].name))
        .collect()
}

fn ratio(a: f64, b: f64) -> Option<String> {
    (a > 0.0).then(|| format!("{:.2}x", b / a))
}

/// The comparison table, for the terminal and the page.
pub fn rows(runs: &[RunReport]) -> Vec<Row> {
    let svm = runs
        .first()
        .is_some_and(|r| r.onchain.family == Family::Svm);
    let channels = runs.iter().any(|r| r.channels.is_some());
    let num = |label: &str, f: &dyn Fn(&RunReport) -> f64, digits: usize| -> Row {
        let values: Vec<f64> = runs.iter().map(f).collect();
        Row {
            label: label.to_owned(),
            values: values.iter().map(|v| format!("{v:.digits$}")).collect(),
            ratios: values
                .iter()
                .skip(1)
                .map(|&v| ratio(values[0], v))
                .collect(),
        }
    };
    let text = |label: &str, f: &dyn Fn(&RunReport) -> String| Row {
        label: label.to_owned(),
        values: runs.iter().map(f).collect(),
        ratios: vec![None; runs.len().saturating_sub(1)],
    };
    let mut rows = vec![
        text("result", &|r| {
            if r.passed {
                "PASS".into()
            } else {
                "FAIL".into()
            }
        }),
        text("ok / sent", &|r| format!("{} / {}", r.ok, r.count)),
        text("errors", &|r| r.errors.to_string()),
        num("throughput (ok/s)", &|r| r.throughput_rps, 1),
        num("wall time (s)", &|r| r.wall_secs, 2),
        num("latency p50 (ms)", &|r| r.latency_ms.p50, 1),
        num("latency p90 (ms)", &|r| r.latency_ms.p90, 1),
        num("latency p99 (ms)", &|r| r.latency_ms.p99, 1),
        num("latency max (ms)", &|r| r.latency_ms.max, 1),
        text("latency mean (blocks)", &|r| {
            r.onchain
                .latency_blocks_mean
                .map_or("-".into(), |b| format!("{b:.2}"))
        }),
        text("chain agrees", &|r| {
            if r.onchain.consistent {
                "yes".into()
            } else {
                format!("NO ({} problems)", r.onchain.problems.len())
            }
        }),
        text("payee received", &|r| {
            format!(
                "{} (expected {})",
                r.onchain.payee_delta, r.onchain.expected_delta
            )
        }),
        num("transactions", &|r| r.onchain.transactions as f64, 0),
        num(
            if svm {
                "compute units per settlement"
            } else if channels {
                "gas per settlement (channels: per paid request)"
            } else {
                "gas per settlement"
            },
            &|r| r.onchain.gas_per_settlement,
            0,
        ),
        if svm {
            num(
                "fee per settlement (lamports)",
                &|r| r.onchain.fee_per_settlement_wei,
                0,
            )
        } else {
            num(
                "fee per settlement (gwei)",
                &|r| r.onchain.fee_per_settlement_wei / 1e9,
                1,
            )
        },
        num(
            if svm { "slots" } else { "blocks" },
            &|r| r.onchain.blocks as f64,
            0,
        ),
        text("process RSS after its run (MB)", &|r| {
            r.memory
                .as_ref()
                .map_or("-".into(), |m| format!("{:.1}", m.rss_mb))
        }),
        text("process RSS settled after its run (MB)", &|r| {
            r.memory
                .as_ref()
                .and_then(|m| m.rss_mb_settled)
                .map_or("-".into(), |v| format!("{v:.1}"))
        }),
        text("process RSS at the bench's end (MB)", &|r| {
            r.memory
                .as_ref()
                .and_then(|m| m.rss_mb_at_bench_end)
                .map_or("-".into(), |v| format!("{v:.1}"))
        }),
        text("process peak RSS (MB)", &|r| {
            r.memory
                .as_ref()
                .map_or("-".into(), |m| format!("{:.1}", m.peak_mb))
        }),
        num(
            if svm {
                "settlements per slot (mean)"
            } else {
                "settlements per block (mean)"
            },
            &|r| r.onchain.settlements_per_block_mean,
            1,
        ),
        num(
            if svm {
                "settlements per slot (max)"
            } else {
                "settlements per block (max)"
            },
            &|r| r.onchain.settlements_per_block_max as f64,
            0,
        ),
    ];
    if channels {
        let of = |f: fn(&ChannelCosts) -> String| {
            move |r: &RunReport| r.channels.as_ref().map_or("-".into(), f)
        };
        rows.extend([
            text(
                "channels: paid requests (deposit vouchers + vouchers)",
                &of(|c| format!("{} ({} + {})", c.paid_requests, c.channels, c.vouchers_ok)),
            ),
            text(
                "channels: gas deposits / claim / sweep",
                &of(|c| format!("{} / {} / {}", c.deposit_gas, c.claim_gas, c.sweep_gas)),
            ),
            text(
                "channels: gas per paid request, claim + sweep only",
                &of(|c| format!("{:.0}", c.gas_per_paid_request_after_deposits)),
            ),
        ]);
    }
    rows
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
