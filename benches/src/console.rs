//! The bench's terminal output: one run's figures and the chain's verdict, and the side-by-side
//! table of every target with its ratios (the same rows `report.json` holds).

use crate::args::{Family, Mode};
use crate::engine::Loop;
use crate::report::{self, RunReport};

pub(crate) fn describe_loop(l: Loop) -> String {
    match l {
        Loop::Closed { concurrency } => format!("closed loop, concurrency {concurrency}"),
        Loop::Open { rate } => format!("open loop, {rate} requests/s"),
        Loop::Streams { streams } => format!("{streams} streams, each in order"),
    }
}

pub(crate) fn print_run(r: &RunReport) {
    let l = &r.latency_ms;
    let c = &r.onchain;
    println!(
        "  {} sent, {} ok, {} errors in {:.2} s: {:.1} ok/s\n  latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        r.count, r.ok, r.errors, r.wall_secs, r.throughput_rps, l.p50, l.p90, l.p99, l.max
    );
    if let Some(ch) = &r.channels {
        println!(
            "  chain: {}; payee {} received {} (expected {}, the highest ceiling accepted per channel)\n  \
             gas: {} deposits {}, claim {}, sweep {}: {:.0} per paid request ({} paid: {} deposit vouchers + {} vouchers), {:.0} without the deposits",
            if c.consistent { "agrees" } else { "DISAGREES" },
            c.payee,
            c.payee_delta,
            c.expected_delta,
            ch.channels,
            ch.deposit_gas,
            ch.claim_gas,
            ch.sweep_gas,
            ch.gas_per_paid_request,
            ch.paid_requests,
            ch.channels,
            ch.vouchers_ok,
            ch.gas_per_paid_request_after_deposits,
        );
    } else if r.mode == Mode::Verify {
        println!(
            "  chain: {}; no nonce used, payee {} received {}",
            if c.consistent { "agrees" } else { "DISAGREES" },
            c.payee,
            c.payee_delta
        );
    } else {
        if let Some(b) = c.latency_blocks_mean {
            println!("  latency in blocks (mean, blocks made while a settle waited): {b:.2}");
        }
        let costs = match c.family {
            Family::Evm => format!(
                "{:.0} gas and {:.1} gwei per settlement, {} blocks, {:.1} settlements per block",
                c.gas_per_settlement,
                c.fee_per_settlement_wei / 1e9,
                c.blocks,
                c.settlements_per_block_mean,
            ),
            Family::Svm => format!(
                "{:.0} compute units and {:.0} lamports per settlement, {} slots, {:.1} settlements per slot",
                c.gas_per_settlement,
                c.fee_per_settlement_wei,
                c.blocks,
                c.settlements_per_block_mean,
            ),
        };
        println!(
            "  chain: {}; payee {} received {} (expected {}); {} transactions, {costs} (max {})",
            if c.consistent { "agrees" } else { "DISAGREES" },
            c.payee,
            c.payee_delta,
            c.expected_delta,
            c.transactions,
            c.settlements_per_block_max
        );
    }
    if let Some(m) = &r.memory {
        println!(
            "  memory: its process RSS {:.1} MB at the end of the run, peak {:.1} MB, settled {}",
            m.rss_mb,
            m.peak_mb,
            m.rss_mb_settled
                .map_or("-".into(), |v| format!("{v:.1} MB"))
        );
    }
    for p in &c.problems {
        println!("  chain: {p}");
    }
    for e in &r.error_reasons {
        println!("  error: {} x {}  e.g. {}", e.count, e.reason, e.sample);
    }
}

pub(crate) fn print_comparison(runs: &[RunReport]) {
    let rows = report::rows(runs);
    let width = rows.iter().map(|r| r.label.len()).max().unwrap_or(10);
    let col = runs
        .iter()
        .map(|r| r.name.len())
        .chain(rows.iter().flat_map(|r| r.values.iter().map(String::len)))
        .max()
        .unwrap_or(10)
        .max(12);
    let ratio_heads: Vec<String> = report::ratio_heads(runs);
    let rcol = ratio_heads
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(10)
        .max(10);
    println!();
    let mut head = format!("{:width$}", "");
    for r in runs {
        head.push_str(&format!("  {:>col$}", r.name));
    }
    for h in &ratio_heads {
        head.push_str(&format!("  {h:>rcol$}"));
    }
    println!("{head}");
    for row in rows {
        let mut line = format!("{:width$}", row.label);
        for v in &row.values {
            line.push_str(&format!("  {v:>col$}"));
        }
        for r in &row.ratios {
            line.push_str(&format!("  {:>rcol$}", r.clone().unwrap_or_default()));
        }
        println!("{line}");
    }
}
