//! Solana settlements in the metrics, as EVM ones: a settle on the real local cluster
//! (`devnet::solana`) is one `transfer` of `solana-devnet` and the mint, with the amount moved
//! and the fee (lamports) the cluster charged; a copy and an idempotent replay move no money
//! again, and the replay is counted under the mint; a settle answered `settlement_pending` is
//! counted once when the background watch or a status read resolves it. Read through
//! `/metrics` (a real Prometheus parser), the per-key report `/api/v1/x402-metrics/summary` and
//! the rollup rows. The cluster set-up is `svm::scene`'s.

use std::time::{Duration, Instant};

use devnet::solana::DEVNET_NETWORK;
use facilitator_actors::metrics;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::helpers::*;
use crate::svm::{scene, start_app};

const PRICE: u64 = 1_000;

/// The value of `/metrics`' sample `name` with `labels` (0 when absent: nothing counted yet).
async fn scrape(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> f64 {
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    match sample.map(|s| &s.value) {
        None => 0.0,
        Some(
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v),
        ) => *v,
        Some(other) => panic!("{name}: unexpected {other:?}"),
    }
}

/// A status read of the settlement `signature` (which may resolve its row), answered 200.
async fn read_status(app: &TestApp, signature: &str, id: &str, token: &str) {
    let res = app
        .get_as_client(&format!("/api/v1/settlements/{signature}"), id, token)
        .await;
    assert_eq!(res.status(), 200);
}

async fn settle(app: &TestApp, id: &str, token: &str, body: &Value, key: Option<&str>) -> Value {
    let mut req = app
        .http
        .post(app.url("/api/v1/settle"))
        .header("X-Client-ID", id)
        .header("X-Client-Token", token)
        .json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let res = req.send().await.expect("request");
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn svm_settlement_is_one_transfer_with_its_amount_and_lamport_fee(db: Db) {
    let s = scene().await;
    let cluster = &s.cluster;
    let app = start_app(
        TestDb::create(db).await,
        cluster,
        &cluster.rpc_url,
        json!({}),
    )
    .await;
    let (access, _, _) = app.user("merchant@example.com").await;
    let (client_id, token) = app.client_key(&access, "verify,settle").await;
    let usdc = cluster.usdc;
    let mint = usdc.address.to_string();
    let network = [("network", "solana-devnet")];
    let confirmed = [("network", "solana-devnet"), ("outcome", "confirmed")];
    let fee_today = [("client_id", client_id.as_str())];
    let transfers_before = scrape(&app, "x402_transfers_total", &confirmed).await;

    let buyer = &cluster.payers[1];
    let tx = s.payment(&usdc, buyer).await.build(&[buyer]).unwrap();
    let payment = s.body(&tx, &usdc);
    let settled = settle(&app, &client_id, &token, &payment, Some("svm-metrics-1")).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["network"], DEVNET_NETWORK, "{settled}");
    let signature = settled["transaction"].as_str().unwrap().to_owned();
    // The fee the cluster charged for that transaction.
    let landed: Value = cluster
        .rpc
        .call(
            "getTransaction",
            json!([signature, { "encoding": "json", "commitment": "confirmed",
                                "maxSupportedTransactionVersion": 0 }]),
        )
        .await
        .unwrap();
    let fee = landed["meta"]["fee"].as_u64().expect("meta.fee");
    assert!(fee > 0, "{landed}");
    // The ledger row holds the same fee.
    let conn = Database::connect(&app.db.url).await.unwrap();
    let row = entities::settlement::Entity::find()
        .filter(entities::settlement::Column::TxHash.eq(signature.as_str()))
        .one(&conn)
        .await
        .unwrap()
        .expect("ledger row");
    assert_eq!(row.fee_wei, Some(fee.to_string()), "ledger fee");

    // An idempotent replay answers the same; a copy without the key is a duplicate. Neither
    // moves money, nor counts it again.
    let replay = settle(&app, &client_id, &token, &payment, Some("svm-metrics-1")).await;
    assert_eq!(replay["success"], true, "{replay}");
    assert_eq!(replay["transaction"], signature.as_str());
    let copy = settle(&app, &client_id, &token, &payment, None).await;
    assert_eq!(copy["success"], false, "{copy}");
    assert_eq!(copy["errorReason"], "duplicate_settlement", "{copy}");
    // A status read of the resolved row does not count it again either.
    read_status(&app, &signature, &client_id, &token).await;

    // Prometheus: one more confirmed transfer, no gas, the fee on the key's spend today.
    assert_eq!(
        scrape(&app, "x402_transfers_total", &confirmed).await,
        transfers_before + 1.0
    );
    assert_eq!(scrape(&app, "x402_gas_used_total", &network).await, 0.0);
    assert_eq!(
        scrape(&app, "x402_client_fee_wei_today", &fee_today).await,
        fee as f64
    );
    let settle_outcome =
        |outcome: &'static str| [("network", "solana-devnet"), ("outcome", outcome)];
    for (outcome, n) in [
        ("success", 1.0),
        ("success_repeat", 1.0),
        ("duplicate_settlement", 1.0),
    ] {
        assert_eq!(
            scrape(&app, "x402_settle_total", &settle_outcome(outcome)).await,
            n,
            "{outcome}"
        );
    }

    // The per-key report the console reads: the amount under the network and the mint, once;
    // the fee in lamports.
    let res = app.get("/api/v1/x402-metrics/summary", Some(&access)).await;
    assert_eq!(res.status(), 200);
    let summary: Value = res.json().await.unwrap();
    let t = &summary["data"]["totals"];
    assert_eq!(
        t["amounts"],
        json!([{ "network": "solana-devnet", "asset": mint, "amount": PRICE.to_string(), "settlements": 1 }]),
        "{t}"
    );
    assert_eq!(
        t["fees"],
        json!([{ "network": "solana-devnet", "gasUsed": 0, "feeWei": fee.to_string() }]),
        "{t}"
    );
    assert_eq!(t["settle"]["count"], 3, "{t}");
    assert_eq!(t["settle"]["repeats"], 1, "{t}");

    // The rollup rows (flushed by the read above): every one of this key's, the replay's
    // included, under the mint.
    let clients = [client_id.clone()];
    let rows = metrics::x402_rows(&conn, None, None, Some(&clients))
        .await
        .unwrap();
    let replayed = rows
        .iter()
        .find(|r| r.operation == "settle" && r.outcome == "success_repeat")
        .expect("the replay's row");
    assert_eq!(replayed.network, "solana-devnet");
    for r in &rows {
        assert_eq!(r.asset, mint, "{} {}", r.operation, r.outcome);
    }
    let transfers: Vec<_> = rows.iter().filter(|r| r.operation == "transfer").collect();
    assert_eq!(transfers.len(), 1, "one transfer row");
    assert_eq!(transfers[0].count, 1);
    assert_eq!(transfers[0].amount_sum, PRICE.to_string());
    assert_eq!(transfers[0].fee_wei_sum, fee.to_string());
}

both_dbs!(svm_settlement_is_one_transfer_with_its_amount_and_lamport_fee);

#[actix_web::test]
async fn svm_pending_settlement_is_counted_once_when_it_resolves_later() {
    let s = scene().await;
    let cluster = &s.cluster;
    let usdc = cluster.usdc;
    // A 1 s confirmation wait, so that a paused cluster outlasts it.
    let top = json!({ "svm_networks": { "solana_devnet": {
        "rpc_url": cluster.rpc_url, "check_genesis": false, "confirm_timeout_secs": 1,
        "assets": [{ "mint": usdc.address.to_string(), "decimals": 6 }],
    } } });
    let app = start_app(
        TestDb::create(Db::Sqlite).await,
        cluster,
        &cluster.rpc_url,
        top,
    )
    .await;
    let (access, _, _) = app.user("merchant@example.com").await;
    let (client_id, token) = app.client_key(&access, "settle").await;
    let confirmed = [("network", "solana-devnet"), ("outcome", "confirmed")];

    let buyer = &cluster.payers[2];
    let tx = s.payment(&usdc, buyer).await.build(&[buyer]).unwrap();
    let payment = s.body(&tx, &usdc);
    cluster.pause_clock().await.unwrap();
    let pending = settle(&app, &client_id, &token, &payment, None).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    let signature = pending["transaction"].as_str().unwrap().to_owned();
    assert_eq!(scrape(&app, "x402_transfers_total", &confirmed).await, 0.0);
    cluster.resume_clock().await.unwrap();
    // The background watch and status reads race to resolve the row: one of them counts it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        read_status(&app, &signature, &client_id, &token).await;
        if scrape(&app, "x402_transfers_total", &confirmed).await >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "never counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // More reads and a copy later: still one.
    for _ in 0..3 {
        read_status(&app, &signature, &client_id, &token).await;
    }
    let copy = settle(&app, &client_id, &token, &payment, None).await;
    assert_eq!(copy["errorReason"], "duplicate_settlement", "{copy}");
    assert_eq!(scrape(&app, "x402_transfers_total", &confirmed).await, 1.0);
    let res = app.get("/api/v1/x402-metrics/summary", Some(&access)).await;
    let summary: Value = res.json().await.unwrap();
    let t = &summary["data"]["totals"];
    assert_eq!(
        t["amounts"],
        json!([{ "network": "solana-devnet", "asset": usdc.address.to_string(),
                 "amount": PRICE.to_string(), "settlements": 1 }]),
        "{t}"
    );
    assert_ne!(t["fees"][0]["feeWei"], "0", "{t}");
}
