//! Concurrent settlement and verify throughput, end to end: the real application over HTTP on
//! a real database, settling on anvil with Circle's USDC.
//!
//!   cargo bench --bench settle                 # defaults: N=200
//!   SETTLES=400 cargo bench --bench settle
//!
//! Each scenario starts a fresh chain and database, fires N settles (distinct authorizations,
//! all at once) and waits for every answer, then checks that all N succeeded and that the
//! payee's on-chain balance rose by exactly their sum. Machines here are noisy: compare the
//! ratios within one run (BENCHMARKS.md), not absolute numbers across runs.

#[allow(dead_code)]
#[path = "../tests/api/chain_helpers.rs"]
mod chain_helpers;
#[allow(dead_code)]
#[path = "../tests/api/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use devnet::{Devnet, DevnetOptions};
use futures::future::join_all;
use serde_json::Value;

use chain_helpers::*;
use helpers::*;

struct Scenario {
    name: &'static str,
    db: Db,
    signers: usize,
    block_time: Option<u64>,
}

struct Run {
    settle: Duration,
    verify_cold: Duration,
    verify_cached: Duration,
}

async fn fire(app: &ChainApp, path: &'static str, bodies: &[Value]) -> (Duration, Vec<Value>) {
    let started = Instant::now();
    let answers = join_all(bodies.iter().map(|b| async move {
        let res = app.post_x402(path, b).await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    }))
    .await;
    (started.elapsed(), answers)
}

async fn run(s: &Scenario, n: usize) -> Run {
    let devnet = Devnet::start(DevnetOptions {
        payers: 8,
        block_time: s.block_time,
        gas_limit: Some(300_000_000),
        ..DevnetOptions::default()
    })
    .await
    .expect("devnet");
    let db = TestDb::create(s.db).await;
    let app = ChainApp::start_app(db, &devnet, devnet.facilitator_keys[..s.signers].to_vec()).await;
    let app = ChainApp::with_merchant(app, devnet).await;
    let bodies: Vec<Value> = (0..n)
        .map(|i| {
            let p = Payment::new(&app, i % 8, 1_000 + i as u64);
            p.v1(&p.sign(app.payer(i % 8)), 1_000 + i as u64)
        })
        .collect();
    let expected: U256 = (0..n).map(|i| U256::from(1_000 + i as u64)).sum();
    let before = app.balance(PAY_TO).await;

    // Verify: every check including the batched on-chain read, then the same again (cache).
    let (verify_cold, answers) = fire(&app, "/api/v1/verify", &bodies).await;
    assert!(
        answers.iter().all(|a| a["isValid"] == true),
        "verify failed"
    );
    let (verify_cached, answers) = fire(&app, "/api/v1/verify", &bodies).await;
    assert!(answers.iter().all(|a| a["cachedResult"] == true));

    let (settle, answers) = fire(&app, "/api/v1/settle", &bodies).await;
    let failed: Vec<&Value> = answers.iter().filter(|a| a["success"] != true).collect();
    assert!(
        failed.is_empty(),
        "{} settles failed: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(
        app.balance(PAY_TO).await - before,
        expected,
        "ledger matches chain"
    );
    Run {
        settle,
        verify_cold,
        verify_cached,
    }
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("SETTLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let scenarios = [
        Scenario {
            name: "sqlite, 1 signer, automine",
            db: Db::Sqlite,
            signers: 1,
            block_time: None,
        },
        Scenario {
            name: "sqlite, 4 signers, automine",
            db: Db::Sqlite,
            signers: 4,
            block_time: None,
        },
        Scenario {
            name: "postgres, 1 signer, automine",
            db: Db::Postgres,
            signers: 1,
            block_time: None,
        },
        Scenario {
            name: "postgres, 4 signers, automine",
            db: Db::Postgres,
            signers: 4,
            block_time: None,
        },
        Scenario {
            name: "sqlite, 1 signer, 1 s blocks",
            db: Db::Sqlite,
            signers: 1,
            block_time: Some(1),
        },
    ];
    actix_web::rt::System::new().block_on(async move {
        println!("N = {n} concurrent requests per phase\n");
        println!("| scenario | settle wall | settles/s | verify (cold) /s | verify (cached) /s |");
        println!("|---|---|---|---|---|");
        let mut baseline = None;
        for s in &scenarios {
            let r = run(s, n).await;
            let rate = per_sec(n, r.settle);
            let base = *baseline.get_or_insert(rate);
            println!(
                "| {} | {:.2} s | {:.0} ({:.2}x) | {:.0} | {:.0} |",
                s.name,
                r.settle.as_secs_f64(),
                rate,
                rate / base,
                per_sec(n, r.verify_cold),
                per_sec(n, r.verify_cached),
            );
        }
    });
}
