//! `x402-bench`: its figures agree with the chain (read here, not through the
//! bench), it measures a facilitator that is not ours (the official TypeScript one), its open
//! loop does not hide a server's queue, and bad input ends with a message, not a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use devnet::{Devnet, DevnetOptions};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use x402_bench::dev::{local_facilitator, LocalFacilitator};
use x402_bench::reference::ReferenceFacilitator;
use x402_bench::BenchArgs;

#[path = "../../tests/api/chromium.rs"]
mod chromium;
#[path = "bench/process.rs"]
mod process;
#[path = "../../tests/api/workspace_bin.rs"]
mod workspace_bin;

use chromium::{artifacts_dir, chromium, run_chromium_async};
use process::{keys_file, passing_bench, refused};

/// The repository's root: the binary runs there, as an operator runs it from a checkout.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.yaml");

fn read_report(dir: &Path) -> Value {
    let path = dir.join("report.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .expect("report.json is JSON")
}

/// Check one run of a report against the chain itself: the payee's balance, every nonce's
/// `authorizationState`, and the receipts of the transactions it names.
async fn assert_run_matches_chain(devnet: &Devnet, run: &Value, amount: u64) {
    let settles = run["mode"] != "verify";
    let ok = run["ok"].as_u64().unwrap();
    let onchain = &run["onchain"];
    assert_eq!(onchain["consistent"], true, "{onchain}");
    let payee: Address = onchain["payee"].as_str().unwrap().parse().unwrap();
    let balance = devnet.usdc_balance(payee).await.unwrap();
    let expected = if settles { ok * amount } else { 0 };
    assert_eq!(balance, U256::from(expected), "the payee's balance");
    assert_eq!(onchain["payee_delta"], balance.to_string());
    assert_eq!(onchain["expected_delta"], balance.to_string());

    let payments = run["payments"].as_array().unwrap();
    assert_eq!(payments.len() as u64, run["count"].as_u64().unwrap());
    let mut transactions = BTreeSet::new();
    // Settled payments by transaction: a batched transaction carries several.
    let mut settled_in = BTreeMap::<B256, usize>::new();
    for p in payments {
        let payer: Address = p["payer"].as_str().unwrap().parse().unwrap();
        let nonce: B256 = p["nonce"].as_str().unwrap().parse().unwrap();
        let used = devnet.authorization_state(payer, nonce).await.unwrap();
        assert_eq!(
            used,
            settles && p["ok"] == true,
            "authorizationState of {p}"
        );
        if let Some(tx) = p["transaction"].as_str() {
            let tx = tx.parse::<B256>().unwrap();
            transactions.insert(tx);
            if p["ok"] == true {
                *settled_in.entry(tx).or_default() += 1;
            }
        }
    }
    assert_eq!(
        onchain["transactions"].as_u64().unwrap(),
        transactions.len() as u64
    );
    let (mut gas, mut blocks) = (0u64, BTreeMap::<u64, usize>::new());
    for tx in &transactions {
        let receipt = devnet.receipt(*tx).await.unwrap().expect("mined");
        assert!(receipt.status(), "{tx} succeeded");
        gas += receipt.gas_used;
        *blocks.entry(receipt.block_number.unwrap()).or_default() +=
            settled_in.get(tx).copied().unwrap_or(0);
    }
    let per_settlement = onchain["gas_per_settlement"].as_f64().unwrap();
    let settled = if settles { ok.max(1) } else { 1 };
    assert!(
        (per_settlement - gas as f64 / settled as f64).abs() < 1.0,
        "gas per settlement {per_settlement} vs {gas} / {ok}"
    );
    assert_eq!(onchain["blocks"].as_u64().unwrap(), blocks.len() as u64);
    assert_eq!(
        onchain["settlements_per_block_max"].as_u64().unwrap(),
        blocks.values().max().copied().unwrap_or(0) as u64
    );
}

#[actix_web::test]
async fn self_contained_settle_run_matches_the_chain_and_its_report_renders() {
    let browser = chromium();
    let out = tempfile::tempdir().unwrap();
    let args = BenchArgs::try_parse_from([
        "bench",
        "--mode",
        "settle",
        "--count",
        "300",
        "--concurrency",
        "100",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .unwrap();
    // The binary's `bench` is this call; its exit status is `passed()`.
    let outcome = x402_bench::run(args, Path::new(CONFIG))
        .await
        .expect("bench");
    let report = read_report(out.path());
    let local = outcome.local.as_ref().expect("self-contained");
    let run = &report["runs"][0];
    assert!(outcome.passed(), "{run}");
    assert_eq!(report["passed"], true);
    assert_eq!(report["runs"].as_array().unwrap().len(), 1);
    assert_eq!(run["mode"], "settle");
    assert_eq!(run["count"], 300);
    assert_eq!(run["ok"], 300);
    assert_eq!(run["errors"], 0);
    assert!(run["throughput_rps"].as_f64().unwrap() > 0.0);
    let l = &run["latency_ms"];
    for (a, b) in [("p50", "p90"), ("p90", "p99"), ("p99", "max")] {
        assert!(l[a].as_f64().unwrap() <= l[b].as_f64().unwrap(), "{l}");
    }
    assert!(l["p50"].as_f64().unwrap() > 0.0);
    assert_run_matches_chain(&local.devnet, run, 1000).await;
    // Header values (our client key's token) never reach the report.
    let token = local.ours.headers["X-Client-Token"]
        .to_str()
        .unwrap()
        .to_owned();
    let json_text = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    assert!(!json_text.contains(&token));
    outcome.shutdown().await;

    // The page opens in a browser with no network, charts drawn.
    let url = format!("file://{}", out.path().join("report.html").display());
    let (ok, dom, stderr) = run_chromium_async(
        vec![
            "--virtual-time-budget=5000".to_owned(),
            "--dump-dom".to_owned(),
        ],
        url.clone(),
    )
    .await;
    assert!(ok, "{} --dump-dom failed:\n{stderr}", browser.display());
    for id in [
        "throughput",
        "latency-percentiles",
        "latency-histogram",
        "in-flight",
    ] {
        let at = dom
            .find(&format!("<figure id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no {id} chart in\n{dom}"));
        let figure = &dom[at..at + dom[at..].find("</figure>").unwrap()];
        assert!(figure.contains("<svg"), "{id} has no SVG");
        assert!(
            figure.matches("<polyline").count() + figure.matches("<path").count() >= 1,
            "{id} draws no line"
        );
    }
    for text in [
        "Throughput over time",
        "Latency histogram",
        "PASS",
        "300 / 300",
    ] {
        assert!(dom.contains(text), "{text:?} not rendered");
    }
    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("create target/ci-artifacts");
    let png = dir.join("bench-report.png");
    let _ = std::fs::remove_file(&png);
    let (ok, _, stderr) = run_chromium_async(
        vec![
            "--window-size=1200,2600".to_owned(),
            format!("--screenshot={}", png.display()),
        ],
        url,
    )
    .await;
    assert!(ok, "{} --screenshot failed:\n{stderr}", browser.display());
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot: {e}\n{stderr}"));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 20 * 1024,
        "a blank page? {} bytes",
        bytes.len()
    );

    // The binary itself, self-contained, exits 0 on a passing run (small: the run above is
    // the one checked against the chain).
    let (stdout, _) =
        passing_bench(&["--mode", "settle", "--count", "20", "--concurrency", "10"]).await;
    assert!(stdout.contains("20 sent, 20 ok, 0 errors"), "{stdout}");
    assert!(
        stdout.lines().last().unwrap().starts_with("bench: PASS"),
        "{stdout}"
    );
}

/// `--binary`: another build (here this one, as an operator would start it) runs as a child
/// process on the bench's chain with a client key made through its REST API; its run is
/// checked against the chain like ours, its memory is in the report, and it is stopped.
#[actix_web::test]
async fn another_build_runs_as_a_child_on_the_same_chain_and_its_memory_is_reported() {
    let out = tempfile::tempdir().unwrap();
    let facilitator = workspace_bin::workspace_bin("x402-facilitator", "x402-facilitator");
    let binary = format!("other={}", facilitator.display());
    let args = BenchArgs::try_parse_from([
        "bench",
        "--mode",
        "settle",
        "--count",
        "60",
        "--concurrency",
        "20",
        "--binary",
        &binary,
        "--out",
        out.path().to_str().unwrap(),
    ])
    .unwrap();
    let outcome = x402_bench::run(args, Path::new(CONFIG))
        .await
        .expect("bench");
    let report = read_report(out.path());
    let local = outcome.local.as_ref().expect("self-contained");
    let runs = report["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ours", "other"]);
    assert!(outcome.passed(), "{report}");
    let (ours, other) = (&runs[0], &runs[1]);
    assert_ne!(ours["facilitator"], other["facilitator"]);
    for run in runs {
        assert_eq!(run["ok"], 60, "{run}");
        assert_run_matches_chain(&local.devnet, run, 1000).await;
    }
    // Different payees and transactions: each facilitator settled its own payments.
    assert_ne!(ours["onchain"]["payee"], other["onchain"]["payee"]);
    // Its signer keys are its own: no transaction of one appears in the other's run.
    let txs = |run: &Value| -> BTreeSet<String> {
        run["payments"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["transaction"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(txs(ours).is_disjoint(&txs(other)));
    // Memory of the child's own process (ours runs in this one: none).
    assert!(ours["memory"].is_null(), "{}", ours["memory"]);
    let m = &other["memory"];
    let (rss, peak) = (
        m["rss_mb"].as_f64().unwrap(),
        m["peak_mb"].as_f64().unwrap(),
    );
    assert!(rss > 1.0 && peak >= rss, "{m}");
    let settled = m["rss_mb_settled"].as_f64().unwrap();
    assert!(settled > 1.0 && settled <= peak, "{m}");
    assert!(m["rss_mb_at_bench_end"].as_f64().unwrap() > 1.0, "{m}");
    let pid = local.children[0].pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    outcome.shutdown().await;
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the child outlived the bench"
    );
}

#[actix_web::test]
async fn the_typescript_reference_facilitator_is_measured_and_compared_with_ours() {
    let devnet = &Devnet::start(DevnetOptions {
        payers: 8,
        block_time: Some(1),
        gas_limit: Some(300_000_000),
        multicall3: true,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    // Ours as `x402-dev` serves it (a fresh SQLite file, a client key of its own).
    let ours_dir = tempfile::tempdir().unwrap();
    let LocalFacilitator {
        app,
        client_id,
        client_token,
    } = local_facilitator(
        Path::new(CONFIG),
        json!({ "server": { "host": "127.0.0.1", "port": 0 } }),
        ours_dir.path(),
        &devnet.rpc_url,
        devnet.usdc,
        devnet.facilitator_keys[..1].to_vec(),
    )
    .await
    .expect("our facilitator starts");
    let ours = format!("http://127.0.0.1:{}/api/v1", app.port());
    let server = app.server_handle();
    let serving = actix_web::rt::spawn(app.run_until_stopped());
    let code = devnet
        .provider()
        .get_code_at(devnet::MULTICALL3)
        .await
        .unwrap();
    assert!(!code.is_empty(), "Multicall3 at its canonical address");
    let (rpc, chain_id, key) = (
        devnet.rpc_url.clone(),
        devnet.chain_id,
        devnet.facilitator_keys[1].clone(),
    );
    let reference = actix_web::rt::task::spawn_blocking(move || {
        ReferenceFacilitator::start(&rpc, chain_id, &key)
    })
    .await
    .unwrap()
    .expect("the reference facilitator starts");
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_file(dir.path(), &devnet.payers);
    let asset = devnet.usdc.to_checksum(None);
    let chain_args = [
        "--rpc-url",
        devnet.rpc_url.as_str(),
        "--network",
        "base-sepolia",
        "--asset",
        asset.as_str(),
        "--payer-keys-file",
        keys.as_str(),
    ];

    // The reference alone, x402 v2.
    let out_v2 = dir.path().join("v2");
    let mut args = vec![
        "--facilitator",
        reference.url.as_str(),
        "--x402-version",
        "2",
        "--mode",
        "settle",
        "--count",
        "40",
        "--concurrency",
        "20",
        "--out",
        out_v2.to_str().unwrap(),
    ];
    args.extend(chain_args);
    passing_bench(&args).await;
    let report = read_report(&out_v2);
    let run = &report["runs"][0];
    assert_eq!(run["facilitator"], reference.url.as_str());
    assert_eq!(run["ok"], 40, "{run}");
    assert_run_matches_chain(devnet, run, 1000).await;

    // Ours against the reference, x402 v1, as a resource server pays (verify, then settle).
    let id = format!("X-Client-ID: {client_id}");
    let token = format!("X-Client-Token: {}", client_token.expose_secret());
    let out_cmp = dir.path().join("compare");
    let mut args = vec![
        "--facilitator",
        ours.as_str(),
        "--header",
        id.as_str(),
        "--header",
        token.as_str(),
        "--compare",
        reference.url.as_str(),
        "--x402-version",
        "1",
        "--mode",
        "pay",
        "--count",
        "30",
        "--concurrency",
        "15",
        "--out",
        out_cmp.to_str().unwrap(),
    ];
    args.extend(chain_args);
    let (stdout, stderr) = passing_bench(&args).await;
    let report = read_report(&out_cmp);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["facilitator"], ours.as_str());
    assert_eq!(runs[1]["facilitator"], reference.url.as_str());
    assert_ne!(runs[0]["onchain"]["payee"], runs[1]["onchain"]["payee"]);
    for run in runs {
        assert_eq!(run["ok"], 30, "{run}");
        assert_run_matches_chain(devnet, run, 1000).await;
    }
    // Both side by side, with the ratio of their throughputs.
    let (a, b) = (
        runs[0]["throughput_rps"].as_f64().unwrap(),
        runs[1]["throughput_rps"].as_f64().unwrap(),
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("throughput (ok/s)"))
        .unwrap_or_else(|| panic!("no comparison table:\n{stdout}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[cells.len() - 3], format!("{a:.1}"), "{row}");
    assert_eq!(cells[cells.len() - 2], format!("{b:.1}"), "{row}");
    assert_eq!(cells[cells.len() - 1], format!("{:.2}x", b / a), "{row}");
    assert!(stdout.contains(&ours) && stdout.contains(&reference.url));
    // The client token was on the command line; it is printed and written nowhere.
    let json_text = std::fs::read_to_string(out_cmp.join("report.json")).unwrap();
    for place in [&stdout, &stderr, &json_text] {
        assert!(!place.contains(client_token.expose_secret()));
    }
    drop(reference);
    server.stop(true).await;
    serving.await.unwrap().unwrap();
}

/// A facilitator that answers every verify `isValid: true`, one request at a time, each
/// taking `service` (a server that falls behind under load).
async fn slow_facilitator(service: Duration) -> (String, actix_web::dev::ServerHandle) {
    let one_at_a_time = web::Data::new(tokio::sync::Mutex::new(()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(one_at_a_time.clone())
            .route(
                "/supported",
                web::get().to(|| async {
                    HttpResponse::Ok().json(json!({
                        "kinds": [{ "x402Version": 2, "scheme": "exact", "network": "eip155:84532" }],
                        "extensions": [],
                        "signers": {},
                    }))
                }),
            )
            .route(
                "/verify",
                web::post().to(
                    move |lock: web::Data<tokio::sync::Mutex<()>>, body: web::Json<Value>| async move {
                        let _turn = lock.lock().await;
                        tokio::time::sleep(service).await;
                        HttpResponse::Ok().json(json!({
                            "isValid": true,
                            "payer": body["paymentPayload"]["payload"]["authorization"]["from"],
                        }))
                    },
                ),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (url, handle)
}

#[actix_web::test]
async fn the_open_loop_measures_from_the_schedule_so_a_queue_shows() {
    let devnet = Devnet::start(DevnetOptions {
        payers: 2,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    // 40 ms each, one at a time: 25/s at most. Offered: 50/s.
    let service = Duration::from_millis(40);
    let (url, server) = slow_facilitator(service).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_file(dir.path(), &devnet.payers);
    let asset = devnet.usdc.to_checksum(None);
    let args = BenchArgs::try_parse_from([
        "bench",
        "--facilitator",
        &url,
        "--mode",
        "verify",
        "--rate",
        "50",
        "--count",
        "40",
        "--rpc-url",
        &devnet.rpc_url,
        "--network",
        "eip155:84532",
        "--asset",
        &asset,
        "--payer-keys-file",
        &keys,
        "--out",
        dir.path().to_str().unwrap(),
    ])
    .unwrap();
    let outcome = x402_bench::run(args, Path::new(CONFIG))
        .await
        .expect("bench");
    assert!(outcome.passed());
    let report = read_report(dir.path());
    let run = &report["runs"][0];
    assert_eq!(run["ok"], 40);
    // Nothing settled, and the chain says so.
    assert_eq!(run["onchain"]["expected_delta"], "0");
    assert_run_matches_chain(&devnet, run, 1000).await;

    // Sent on time (the schedule is 20 ms apart), answered ever later.
    let payments = run["payments"].as_array().unwrap();
    let scheduled: Vec<f64> = payments
        .iter()
        .map(|p| p["scheduled_ms"].as_f64().unwrap())
        .collect();
    for (i, s) in scheduled.iter().enumerate() {
        assert!((s - 20.0 * i as f64).abs() < 1.0, "scheduled at {s} ms");
    }
    let latency: Vec<f64> = payments
        .iter()
        .map(|p| p["latency_ms"].as_f64().unwrap())
        .collect();
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (first, last) = (mean(&latency[..5]), mean(&latency[35..]));
    // Request i waits for i earlier ones at 40 ms each but was due i x 20 ms in: ~40 + 20 i.
    assert!(first < 250.0, "first five: {first} ms");
    assert!(last > 600.0, "last five: {last} ms (the queue is hidden)");
    assert!(last > 4.0 * first, "{first} -> {last}");
    let l = &run["latency_ms"];
    assert!(l["max"].as_f64().unwrap() >= 700.0, "{l}");
    // The latency-over-time series grows too.
    let timeline: Vec<f64> = run["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["p50_ms"].as_f64())
        .collect();
    assert!(
        timeline.last().unwrap() > &(3.0 * timeline[0]),
        "{timeline:?}"
    );
    outcome.shutdown().await;
    server.stop(true).await;
    devnet.stop().await;
}

#[actix_web::test]
async fn bad_input_gets_a_clear_message_and_a_failure_exit_without_a_panic() {
    let devnet = Devnet::start(DevnetOptions {
        payers: 1,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let (url, server) = slow_facilitator(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let funded = keys_file(dir.path(), &devnet.payers);
    let unfunded_dir = tempfile::tempdir().unwrap();
    let unfunded = keys_file(unfunded_dir.path(), &[PrivateKeySigner::random()]);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let usdc = devnet.usdc.to_checksum(None);
    let no_code = "0x00000000000000000000000000000000000000fF".to_owned();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "unreachable facilitator",
            vec![
                "--facilitator".into(),
                closed.clone(),
                "--asset".into(),
                usdc.clone(),
                "--payer-keys-file".into(),
                funded.clone(),
            ],
            "cannot reach the facilitator",
        ),
        (
            "wrong asset",
            vec![
                "--facilitator".into(),
                url.clone(),
                "--asset".into(),
                no_code,
                "--payer-keys-file".into(),
                funded.clone(),
            ],
            "wrong asset",
        ),
        (
            "unfunded payers",
            vec![
                "--facilitator".into(),
                url.clone(),
                "--asset".into(),
                usdc.clone(),
                "--payer-keys-file".into(),
                unfunded,
            ],
            "unfunded payers",
        ),
        (
            "--count 0",
            vec![
                "--facilitator".into(),
                url.clone(),
                "--asset".into(),
                usdc.clone(),
                "--payer-keys-file".into(),
                funded.clone(),
                "--count".into(),
                "0".into(),
            ],
            "--count",
        ),
    ];
    for (what, args, message) in [
        (
            "--binary without =",
            vec!["--binary", "nameonly"],
            "NAME=PATH",
        ),
        (
            "--binary missing file",
            vec!["--binary", "x=/nonexistent/x402"],
            "is not a file",
        ),
        (
            "--binary with --facilitator",
            vec!["--binary", "x=/bin/true", "--facilitator", &url],
            "self-contained",
        ),
    ] {
        refused(what, &args, message).await;
    }
    for (what, mut args, message) in cases {
        args.extend(
            [
                "--rpc-url",
                &devnet.rpc_url,
                "--network",
                "eip155:84532",
                "--mode",
                "verify",
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(what, &args, message).await;
    }
    server.stop(true).await;
    devnet.stop().await;
}
