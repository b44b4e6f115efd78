//! A chain no built-in table knows, served from configuration alone: a second anvil with
//! chain id 31337 (anvil's own default, in no x402 list) and its own Circle USDC.

use alloy::primitives::U256;
use devnet::{Devnet, DevnetOptions};
use serde_json::{json, Value};
use x402_facilitator::startup::{Application, BuildOptions};

use crate::chain_helpers::*;
use crate::helpers::*;

const CHAIN_ID: u64 = 31337;

/// An app serving `my_chain` (chain id 31337) from its configuration entry only.
async fn config_only_app(kind: Db) -> ChainApp {
    let devnet = Devnet::start(DevnetOptions {
        chain_id: CHAIN_ID,
        ..DevnetOptions::default()
    })
    .await
    .expect("devnet");
    let db = TestDb::create(kind).await;
    let settings = test_settings(
        &db.url,
        json!({ "networks": { "my_chain": {
            "chain_id": CHAIN_ID,
            "rpc_url": devnet.rpc_url,
            "signer_keys_env": "SIGNER_KEYS_MY_CHAIN",
            "assets": [{
                "address": devnet.usdc.to_checksum(None),
                "decimals": 6,
                "eip712_name": "USDC",
                "eip712_version": "2",
            }],
        }}}),
    );
    let mut options = BuildOptions::default();
    options
        .signer_keys
        .insert("my-chain".into(), devnet.facilitator_keys[..1].to_vec());
    let app = Application::build_with(settings, options)
        .await
        .expect("build app");
    ChainApp::with_merchant(TestApp::from_application(app, db), devnet).await
}

/// `body` (a facilitator request built for base-sepolia) moved to `network`.
fn on_network(mut body: Value, network: &str) -> Value {
    body["paymentRequirements"]["network"] = json!(network);
    if body["x402Version"] == 2 {
        body["paymentPayload"]["accepted"]["network"] = json!(network);
    } else {
        body["paymentPayload"]["network"] = json!(network);
    }
    body
}

fn networks_of(kinds: &Value) -> Vec<String> {
    kinds["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| k["network"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_chain_only_configuration_knows_verifies_and_settles(kind: Db) {
    let app = config_only_app(kind).await;
    let supported: Value = app
        .app
        .get_as_client("/api/v1/supported", &app.client_id, &app.client_token)
        .await
        .json()
        .await
        .unwrap();
    let networks = networks_of(&supported);
    assert!(networks.contains(&"eip155:31337".to_owned()), "{supported}");
    assert!(networks.contains(&"my-chain".to_owned()), "{supported}");
    let listed: Value = app
        .app
        .get("/api/v1/networks/eip155:31337", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["network"], "eip155:31337", "{listed}");
    let status: Value = app
        .app
        .get("/api/v1/status", None)
        .await
        .json()
        .await
        .unwrap();
    let mine = status["data"]["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["network"] == "my-chain")
        .unwrap_or_else(|| panic!("status lists the configured chain: {status}"));
    assert_eq!(mine["status"], "active", "{mine}");
    assert_eq!(mine["signers"][0]["funded"], true, "{mine}");
    let assets: Value = app
        .app
        .get("/api/v1/assets", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        assets
            .to_string()
            .to_lowercase()
            .contains(&app.devnet.usdc.to_string().to_lowercase()),
        "{assets}"
    );

    // A v2 payment on eip155:31337 verifies and settles; the money moves.
    let payer = app.payer(0).clone();
    let before = app.balance(payer.address()).await;
    let pay = Payment::usdc(payer.address(), CHAIN_ID, app.devnet.usdc, 4_200);
    let body = on_network(pay.v2(&pay.sign(&payer), 4_200), "eip155:31337");
    let verified = app.verify(&body).await;
    assert_eq!(verified["isValid"], true, "{verified}");
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["network"], "eip155:31337");
    assert_eq!(
        app.balance(payer.address()).await,
        before - U256::from(4_200)
    );
    assert_eq!(app.balance(PAY_TO).await, U256::from(4_200));

    // And v1 under the configured name.
    let pay = Payment::usdc(payer.address(), CHAIN_ID, app.devnet.usdc, 1_000);
    let body = on_network(pay.v1(&pay.sign(&payer), 1_000), "my-chain");
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(app.balance(PAY_TO).await, U256::from(5_200));

    // The metrics name the configured chain like any other.
    let metrics = app.app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("network=\"my-chain\""),
        "metrics for my-chain"
    );

    // A chain id nobody configured is still unknown.
    let pay = Payment::usdc(payer.address(), 31338, app.devnet.usdc, 1_000);
    let body = on_network(pay.v2(&pay.sign(&payer), 1_000), "eip155:31338");
    let refused = app.verify(&body).await;
    assert_eq!(refused["invalidReason"], "invalid_network", "{refused}");
}

#[actix_web::test]
async fn a_chain_only_configuration_knows_verifies_and_settles_sqlite() {
    a_chain_only_configuration_knows_verifies_and_settles(Db::Sqlite).await
}

#[actix_web::test]
async fn a_chain_only_configuration_knows_verifies_and_settles_postgres() {
    a_chain_only_configuration_knows_verifies_and_settles(Db::Postgres).await
}

#[actix_web::test]
async fn a_chain_without_chain_id_or_token_is_a_clear_startup_error() {
    let db = TestDb::create(Db::Sqlite).await;
    let build = |networks: Value| {
        let settings = test_settings(&db.url, json!({ "networks": networks }));
        async move {
            Application::build(settings)
                .await
                .err()
                .expect("refused")
                .to_string()
        }
    };
    let err = build(json!({ "moon_chain": { "rpc_url": "http://127.0.0.1:9" } })).await;
    assert!(
        err.contains("moon_chain") && err.contains("chain_id"),
        "{err}"
    );
    let err =
        build(json!({ "moon_chain": { "chain_id": 990_201, "rpc_url": "http://127.0.0.1:9" } }))
            .await;
    assert!(err.contains("no token"), "{err}");
    let err =
        build(json!({ "my_base": { "chain_id": 8453, "rpc_url": "http://127.0.0.1:9" } })).await;
    assert!(err.contains("built-in network `base`"), "{err}");
}
