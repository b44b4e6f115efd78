//! `x402-bench --scheme batch-settlement`: payment channels opened, paid by vouchers, claimed and
//! swept through ours and through the TypeScript reference facilitator (`@x402/evm`'s
//! `BatchSettlementEvmScheme`) on one local chain, the report checked against the chain itself
//! (read here, not through the bench): the receiver's balance is exactly the sum of what the
//! accepted vouchers paid, each channel's `totalClaimed` is its highest accepted ceiling, and
//! the gas reported is the receipts' own.

use std::collections::BTreeMap;
use std::path::Path;

use alloy::primitives::{Address, B256, U256};
use devnet::batch_settlement::BATCH_SETTLEMENT;
use devnet::Devnet;
use serde_json::Value;
use x402_bench::BenchArgs;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.yaml");
const AMOUNT: u128 = 1000;

/// A voucher run against the chain: what the report claims, read back from the node.
async fn assert_voucher_run_matches_chain(devnet: &Devnet, run: &Value, vouchers: u64) {
    assert_eq!(run["count"], vouchers, "{run}");
    assert_eq!(run["ok"], vouchers, "{}", run["error_reasons"]);
    assert_eq!(run["passed"], true, "{}", run["onchain"]);
    // The highest accepted ceiling per channel, from the report's own list of vouchers; the
    // deposit's voucher paid the first `AMOUNT`, so each channel's vouchers pay one more each.
    let mut highest = BTreeMap::<B256, u128>::new();
    let mut per_channel = BTreeMap::<B256, u128>::new();
    for p in run["payments"].as_array().unwrap() {
        assert_eq!(p["ok"], true, "{p}");
        let (channel, ceiling) = p["nonce"].as_str().unwrap().split_once('@').unwrap();
        let (channel, ceiling): (B256, u128) = (channel.parse().unwrap(), ceiling.parse().unwrap());
        let h = highest.entry(channel).or_insert(AMOUNT);
        *h = (*h).max(ceiling);
        *per_channel.entry(channel).or_default() += 1;
    }
    for (channel, n) in &per_channel {
        assert_eq!(highest[channel], AMOUNT * (n + 1), "vouchers in order");
    }
    let expected: u128 = highest.values().sum();
    assert_eq!(
        expected,
        AMOUNT * (u128::from(vouchers) + highest.len() as u128)
    );

    let onchain = &run["onchain"];
    assert_eq!(onchain["consistent"], true, "{onchain}");
    let payee: Address = onchain["payee"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        devnet.usdc_balance(payee).await.unwrap(),
        U256::from(expected),
        "the receiver got exactly what the accepted vouchers paid"
    );
    assert_eq!(onchain["payee_delta"], expected.to_string());
    for (channel, max) in &highest {
        let state = devnet.channel_state(*channel).await.unwrap();
        assert_eq!(state.total_claimed, *max, "channel {channel}");
        assert_eq!(
            state.balance, *max,
            "each deposit was what its vouchers paid"
        );
    }

    // The gas reported is the receipts': deposits, one claim, one sweep.
    let c = &run["channels"];
    assert_eq!(c["channels"], highest.len() as u64, "{c}");
    assert_eq!(c["vouchers_ok"], vouchers);
    let paid = vouchers + highest.len() as u64;
    assert_eq!(c["paid_requests"], paid);
    let gas_of = |txs: Vec<B256>| async move {
        let mut gas = 0;
        for tx in txs {
            let r = devnet.receipt(tx).await.unwrap().expect("mined");
            assert!(r.status(), "{tx}");
            assert_eq!(r.to, Some(BATCH_SETTLEMENT), "{tx}");
            gas += r.gas_used;
        }
        gas
    };
    let tx = |v: &Value| v.as_str().unwrap().parse::<B256>().unwrap();
    let deposits: Vec<B256> = c["deposit_transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(tx)
        .collect();
    assert_eq!(deposits.len(), highest.len());
    let deposit_gas = gas_of(deposits).await;
    let claim_gas = gas_of(vec![tx(&c["claim_transaction"])]).await;
    let sweep_gas = gas_of(vec![tx(&c["sweep_transaction"])]).await;
    assert_eq!(c["deposit_gas"], deposit_gas);
    assert_eq!(c["claim_gas"], claim_gas);
    assert_eq!(c["sweep_gas"], sweep_gas);
    let per = (deposit_gas + claim_gas + sweep_gas) as f64 / paid as f64;
    assert!((c["gas_per_paid_request"].as_f64().unwrap() - per).abs() < 1e-6);
    assert_eq!(onchain["transactions"], highest.len() as u64 + 2);
}

#[actix_web::test]
async fn vouchers_of_ours_and_the_reference_are_claimed_and_swept_exactly() {
    let out = tempfile::tempdir().unwrap();
    let args = BenchArgs::try_parse_from([
        "bench",
        "--scheme",
        "batch-settlement",
        "--count",
        "20",
        "--payers",
        "2",
        "--amount",
        &AMOUNT.to_string(),
        "--compare-reference",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .unwrap();
    let outcome = x402_bench::run(args, Path::new(CONFIG))
        .await
        .expect("bench");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let local = outcome.local.as_ref().expect("self-contained");
    let names: Vec<&str> = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ours-voucher",
            "ours-exact",
            "reference-voucher",
            "reference-exact"
        ]
    );
    assert_eq!(report["workload"]["scheme"], "batch-settlement");
    for run in report["runs"].as_array().unwrap() {
        if run["name"].as_str().unwrap().ends_with("-voucher") {
            assert_voucher_run_matches_chain(&local.devnet, run, 20).await;
        } else {
            // `exact` verify of as many payments: every one valid, nothing moved.
            assert_eq!(run["mode"], "verify");
            assert_eq!(run["ok"], 20, "{}", run["error_reasons"]);
            assert_eq!(run["onchain"]["consistent"], true);
            let payee: Address = run["onchain"]["payee"].as_str().unwrap().parse().unwrap();
            assert_eq!(local.devnet.usdc_balance(payee).await.unwrap(), U256::ZERO);
        }
    }
    assert!(outcome.passed());
    outcome.shutdown().await;
}

/// What the workload cannot honour is refused up front, saying why (nothing is started).
#[actix_web::test]
async fn flags_it_cannot_honour_are_refused_with_a_reason() {
    for (extra, message) in [
        (
            vec!["--facilitator", "http://127.0.0.1:1"],
            "self-contained only",
        ),
        (vec!["--x402-version", "1"], "x402 v2 only"),
        (vec!["--rate", "10"], "does not take --rate"),
        (vec!["--mirror", "both"], "does not take --mirror"),
        (
            vec!["--count", "3", "--payers", "4"],
            "fewer vouchers than channels",
        ),
        (vec!["--family", "svm"], "--family svm does not take it"),
    ] {
        let argv = ["bench", "--scheme", "batch-settlement"]
            .into_iter()
            .chain(extra.iter().copied());
        let args = BenchArgs::try_parse_from(argv).unwrap();
        let err = match x402_bench::run(args, Path::new(CONFIG)).await {
            Ok(_) => panic!("{extra:?} was accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(message), "{extra:?}: {err}");
    }
}
