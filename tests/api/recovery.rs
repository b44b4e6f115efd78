//! Crash recovery: the facilitator process is SIGKILLed after broadcasting a settlement and
//! before its receipt; restarted on the same database, it resolves the row from the chain and
//! answers a retry of the same idempotent request with the original transaction (a copy
//! without the key is "nonce already used"; the lookup by authorization tells the outcome).

use std::time::{Duration, Instant};

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use devnet::{Devnet, DevnetOptions};
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::Value;

use crate::chain_helpers::*;
use crate::helpers::*;
use crate::process::{get_json, post_json, Facilitator};

async fn ledger_row(db_url: &str) -> Option<entities::settlement::Model> {
    let db = Database::connect(db_url).await.unwrap();
    let row = entities::settlement::Entity::find()
        .filter(entities::settlement::Column::Id.gt(0))
        .one(&db)
        .await
        .unwrap();
    db.close().await.ok();
    row
}

async fn killed_after_broadcast_then_restarted(kind: Db) {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    // Transactions now wait in the pool until the test mines.
    devnet.set_automine(false).await.unwrap();
    let db = TestDb::create(kind).await;
    let first = Facilitator::start(&db.url, &devnet);
    let http = reqwest::Client::new();

    // A merchant with a client key, through the API.
    let signup = serde_json::json!({"email": "m@example.com", "password": PASSWORD});
    http.post(format!("{}/api/v1/signup", first.url))
        .json(&signup)
        .send()
        .await
        .unwrap();
    let login = post_json(&http, &format!("{}/api/v1/login", first.url), None, &signup).await;
    let access = login["data"]["access_token"].as_str().unwrap();
    let created = post_json(
        &http,
        &format!("{}/api/v1/clients", first.url),
        Some(access),
        &serde_json::json!({"title": "shop"}),
    )
    .await;
    let id = created["data"]["client"]["clientId"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = created["data"]["client"]["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let payer = devnet.payers[0].clone();
    let pay = Payment::usdc(payer.address(), devnet.chain_id, devnet.usdc, 777_000);
    let body = pay.v1(&pay.sign(&payer), 777_000);
    let settle = |base: String| {
        let (http, body, id, token) = (http.clone(), body.clone(), id.clone(), token.clone());
        async move {
            http.post(format!("{base}/api/v1/settle"))
                .header("X-Client-ID", id)
                .header("X-Client-Token", token)
                .header("Idempotency-Key", "order-777")
                .json(&body)
                .send()
                .await
        }
    };
    // The settle blocks waiting for a receipt that cannot come yet.
    let in_flight = tokio::spawn(settle(first.url.clone()));

    // Wait until the transaction is in the node's pool: broadcast, not mined.
    let deadline = Instant::now() + Duration::from_secs(30);
    let tx_hash: B256 = loop {
        assert!(Instant::now() < deadline, "no broadcast seen");
        if let Some(row) = ledger_row(&db.url).await {
            if let Some(h) = row.tx_hash.as_deref() {
                let h: B256 = h.parse().unwrap();
                if devnet
                    .provider()
                    .get_transaction_by_hash(h)
                    .await
                    .unwrap()
                    .is_some()
                {
                    assert_eq!(row.status, "submitted");
                    break h;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    first.kill();
    assert!(
        in_flight.await.unwrap().is_err(),
        "the client saw the connection die"
    );
    let before = devnet.usdc_balance(PAY_TO).await.unwrap();

    // Restart on the same database while the transaction is still pending, then mine it.
    let second = Facilitator::start(&db.url, &devnet);
    assert_eq!(ledger_row(&db.url).await.unwrap().status, "submitted");
    devnet.mine().await.unwrap();

    // A copy without the idempotency key: the authorization is used.
    let copy = http
        .post(format!("{}/api/v1/settle", second.url))
        .header("X-Client-ID", &id)
        .header("X-Client-Token", &token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let copy: Value = copy.json().await.unwrap();
    assert_eq!(copy["success"], false, "{copy}");
    assert_eq!(copy["errorReason"], "invalid_exact_evm_nonce_already_used");
    assert_eq!(copy["transaction"], "");
    // A retry of the same idempotent request: the original transaction, nothing sent again.
    let res = settle(second.url.clone()).await.unwrap();
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["transaction"], tx_hash.to_string());
    // And the lookup by authorization tells the same.
    let found = http
        .get(format!(
            "{}/api/v1/settlements?network=base-sepolia&payer={}&nonce={}",
            second.url,
            payer.address(),
            pay.nonce
        ))
        .header("X-Client-ID", &id)
        .header("X-Client-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), 200);
    let found: Value = found.json().await.unwrap();
    assert_eq!(found["data"]["status"], "confirmed", "{found}");
    assert_eq!(found["data"]["transaction"], tx_hash.to_string());
    let row = ledger_row(&db.url).await.unwrap();
    assert_eq!(row.status, "confirmed");
    assert_eq!(row.tx_hash.as_deref(), Some(tx_hash.to_string().as_str()));
    let receipt = devnet.receipt(tx_hash).await.unwrap().expect("mined");
    assert_eq!(row.block_number, Some(receipt.block_number.unwrap() as i64));
    assert_eq!(
        devnet.usdc_balance(PAY_TO).await.unwrap(),
        before + U256::from(777_000)
    );
    let signer = devnet.facilitator_keys[0].address();
    assert_eq!(
        devnet.nonce_of(signer).await.unwrap(),
        1,
        "one transaction ever sent"
    );

    // The restarted process accounts for the transfer once (whichever of start-up
    // reconciliation and the retry resolved the row), with its gas and fee.
    let login = post_json(
        &http,
        &format!("{}/api/v1/login", second.url),
        None,
        &signup,
    )
    .await;
    let access = login["data"]["access_token"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let totals = loop {
        let url = format!("{}/api/v1/x402-metrics/summary", second.url);
        let body = get_json(&http, &url, Some(access)).await;
        let totals = body["data"]["totals"].clone();
        if totals["amounts"].as_array().is_some_and(|a| !a.is_empty()) {
            break totals;
        }
        assert!(
            Instant::now() < deadline,
            "transfer never accounted: {totals}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(totals["amounts"][0]["amount"], "777000", "{totals}");
    assert_eq!(totals["amounts"][0]["settlements"], 1);
    assert_eq!(totals["fees"][0]["gasUsed"], receipt.gas_used);
    assert_eq!(
        totals["fees"][0]["feeWei"],
        (receipt.effective_gas_price * receipt.gas_used as u128).to_string()
    );
    drop(second);
}

#[actix_web::test]
async fn killed_after_broadcast_restart_confirms_and_retry_returns_original_tx_sqlite() {
    killed_after_broadcast_then_restarted(Db::Sqlite).await;
}

#[actix_web::test]
async fn killed_after_broadcast_restart_confirms_and_retry_returns_original_tx_postgres() {
    killed_after_broadcast_then_restarted(Db::Postgres).await;
}
