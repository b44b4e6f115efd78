//! `x402-bench --family svm`: Solana settles and verifies of ours and of the TypeScript
//! reference facilitator (`@x402/svm`'s `ExactSvmScheme`) on one local cluster, the report
//! checked against the cluster itself (read here, not through the bench): the payee's token
//! account, every named signature's status, and which fee payer paid each transaction.

use std::collections::BTreeSet;
use std::path::Path;

use devnet::solana::{Pubkey, Signature, Signer as _, SolanaCluster};
use serde_json::Value;
use x402_bench::BenchArgs;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.yaml");
const AMOUNT: u64 = 1000;

async fn bench(out: &Path, mode: &str, count: &str) -> (x402_bench::Outcome, Value) {
    let args = BenchArgs::try_parse_from([
        "bench",
        "--family",
        "svm",
        "--mode",
        mode,
        "--count",
        count,
        "--concurrency",
        "8",
        "--payers",
        "4",
        "--compare-reference",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let outcome = x402_bench::run(args, Path::new(CONFIG))
        .await
        .expect("bench");
    let path = out.join("report.json");
    let report = serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("report.json");
    (outcome, report)
}

/// The fee payer (first account) of a landed transaction.
async fn fee_payer_of(cluster: &SolanaCluster, sig: &Signature) -> Pubkey {
    let tx = cluster.rpc.transaction(sig).await.unwrap();
    tx["transaction"]["message"]["accountKeys"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no account keys in {tx}"))
        .parse()
        .unwrap()
}

/// One run of a report against the cluster; `fee_payer`: the facilitator's own.
async fn assert_run_matches_cluster(
    cluster: &SolanaCluster,
    run: &Value,
    settles: bool,
    fee_payer: &Pubkey,
) {
    let count = run["count"].as_u64().unwrap();
    assert_eq!(run["ok"], count, "{}", run["error_reasons"]);
    assert_eq!(run["passed"], true, "{}", run["onchain"]);
    let onchain = &run["onchain"];
    assert_eq!(onchain["family"], "svm");
    assert_eq!(onchain["consistent"], true, "{onchain}");
    let payee: Pubkey = onchain["payee"].as_str().unwrap().parse().unwrap();
    let balance = cluster.token_balance(&payee, &cluster.usdc).await.unwrap();
    let expected = if settles { count * AMOUNT } else { 0 };
    assert_eq!(balance, expected, "the payee's token account");
    assert_eq!(onchain["payee_delta"], expected.to_string());

    let payments = run["payments"].as_array().unwrap();
    assert_eq!(payments.len() as u64, count);
    let named: Vec<Signature> = payments
        .iter()
        .filter_map(|p| p["transaction"].as_str())
        .map(|t| t.parse().unwrap())
        .collect();
    let buyers: BTreeSet<&str> = payments
        .iter()
        .map(|p| p["payer"].as_str().unwrap())
        .collect();
    assert_eq!(buyers.len(), 4, "spread over the buyers");
    if !settles {
        assert!(named.is_empty(), "a verify named a transaction");
        return;
    }
    assert_eq!(
        named.len() as u64,
        count,
        "every settle names its transaction"
    );
    assert_eq!(
        named.iter().collect::<BTreeSet<_>>().len(),
        named.len(),
        "one transaction per payment"
    );
    assert_eq!(onchain["transactions"], count);
    let statuses = cluster.rpc.signature_statuses(&named).await.unwrap();
    for (sig, status) in named.iter().zip(statuses) {
        let status = status.unwrap_or_else(|| panic!("{sig} never landed"));
        assert!(
            status.err.is_none() && status.is_confirmed(),
            "{sig}: {status:?}"
        );
        assert_eq!(
            &fee_payer_of(cluster, sig).await,
            fee_payer,
            "{sig}'s fee payer"
        );
    }
}

#[actix_web::test]
async fn svm_settles_and_verifies_of_ours_and_the_reference_match_the_cluster() {
    let out = tempfile::tempdir().unwrap();
    let (outcome, report) = bench(out.path(), "settle", "24").await;
    assert!(outcome.passed(), "{report}");
    assert_eq!(report["workload"]["family"], "svm");
    assert_eq!(
        report["workload"]["network"],
        devnet::solana::DEVNET_NETWORK
    );
    let runs = report["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ours", "reference"]);
    let local = outcome.svm.as_ref().expect("the svm bench's cluster");
    let cluster = &local.cluster;
    // Ours pays with the first fee payer, the reference with the second.
    for (run, fee_payer) in runs.iter().zip(&cluster.fee_payers) {
        assert_run_matches_cluster(cluster, run, true, &fee_payer.pubkey()).await;
    }
    outcome.shutdown().await;

    let (outcome, report) = bench(out.path(), "verify", "12").await;
    assert!(outcome.passed(), "{report}");
    let local = outcome.svm.as_ref().expect("the svm bench's cluster");
    for (run, fee_payer) in report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&local.cluster.fee_payers)
    {
        assert_run_matches_cluster(&local.cluster, run, false, &fee_payer.pubkey()).await;
    }
    outcome.shutdown().await;
}

#[actix_web::test]
async fn svm_flags_for_evm_only_are_refused() {
    for (extra, message) in [
        (
            &["--facilitator", "http://127.0.0.1:1"][..],
            "self-contained only",
        ),
        (&["--x402-version", "1"][..], "x402 v2"),
        (&["--batch-max", "10"][..], "--batch-max is for EVM runs"),
    ] {
        let mut argv = vec!["bench", "--family", "svm"];
        argv.extend_from_slice(extra);
        let args = BenchArgs::try_parse_from(argv).unwrap();
        let err = match x402_bench::run(args, Path::new(CONFIG)).await {
            Ok(_) => panic!("{extra:?} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(message), "{extra:?}: {err}");
    }
}
