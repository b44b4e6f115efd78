use serde_json::Value;

use crate::both_dbs;
use crate::helpers::*;

both_dbs!(health_reports_healthy_with_version, |app| {
    let res = app.get("/health", None).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert!(body["timestamp"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
});

both_dbs!(status_reports_database_health_and_networks, |app| {
    let res = app.get("/api/v1/status", None).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let data = &body["data"];
    // The test configuration's RPC URL is a closed port: the network is down, so the
    // service is degraded although its database is healthy.
    assert_eq!(data["status"], "degraded");
    assert_eq!(data["database"]["status"], "healthy");
    assert!(data["uptime"].as_u64().is_some());
    assert_eq!(data["version"], env!("CARGO_PKG_VERSION"));
    let networks = data["networks"].as_array().unwrap();
    assert_eq!(networks.len(), 1);
    assert_eq!(networks[0]["network"], "base-sepolia");
    assert_eq!(networks[0]["x402Version"], 1);
    assert_eq!(networks[0]["scheme"], "exact");
    assert!(networks[0]["block"].is_u64());
    assert!(networks[0]["feePayer"].is_string());
    assert_eq!(networks[0]["status"], "down");
    let rpc = &networks[0]["rpc"][0];
    assert_eq!(rpc["url"], "http://127.0.0.1:9");
    assert_eq!(rpc["status"], "unhealthy");
    assert_eq!(rpc["lastError"], "connection failed");
    assert!(rpc["errors"].as_u64().unwrap() >= 1);
});

both_dbs!(ready_needs_the_served_networks_up, |app| {
    // The only network's RPC URL is a closed port.
    let res = app.get("/ready", None).await;
    let body = assert_error(res, 503, "SERVICE_UNAVAILABLE", Some("Not ready")).await;
    assert_eq!(
        body["details"],
        "network base-sepolia is down (no RPC endpoint answers)"
    );
    // Liveness does not depend on it.
    assert_eq!(app.get("/health", None).await.status(), 200);
});

#[actix_web::test]
async fn ready_requires_only_the_configured_networks() {
    let db = TestDb::create(Db::Sqlite).await;
    let app = TestApp::spawn_on(db, serde_json::json!({ "ready": { "networks": "none" } })).await;
    let res = app.get("/ready", None).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["status"], "ready");
    assert_eq!(body["data"]["database"], "healthy");
    assert_eq!(body["data"]["networks"]["base-sepolia"], "down");
    let db = app.stop().await;

    // A network that is not served cannot be required: start-up says so.
    let settings = test_settings(
        &db.url,
        serde_json::json!({ "ready": { "networks": ["base"] } }),
    );
    let err = x402_facilitator::startup::Application::build(settings)
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("ready.networks: base is not a served network"),
        "{err}"
    );
}

both_dbs!(networks_list_and_get_by_name_and_caip2, |app| {
    let body: Value = app
        .get("/api/v1/networks", None)
        .await
        .json()
        .await
        .unwrap();
    let kinds = body["kinds"].as_array().unwrap();
    let names: Vec<&str> = kinds
        .iter()
        .map(|k| k["network"].as_str().unwrap())
        .collect();
    // v1 exact, v2 exact (EIP-3009 or Permit2), v2 upto, v2 batch-settlement.
    assert_eq!(
        names,
        [
            "base-sepolia",
            "eip155:84532",
            "eip155:84532",
            "eip155:84532"
        ]
    );
    assert_eq!(kinds[1]["x402Version"], 2);
    assert_eq!(kinds[2]["scheme"], "upto");
    assert_eq!(kinds[3]["scheme"], "batch-settlement");
    assert_eq!(
        body["extensions"],
        serde_json::json!(["eip2612GasSponsoring"])
    );
    assert!(body["signers"]["eip155:*"].is_array());

    let res = app.get("/api/v1/networks/base-sepolia", None).await;
    assert_eq!(res.status(), 200);
    let one: Value = res.json().await.unwrap();
    assert_eq!(one["network"], "base-sepolia");
    assert_eq!(one["x402Version"], 1);
    assert_eq!(one["extra"]["feePayer"], one["feePayer"]);

    let one: Value = app
        .get("/api/v1/networks/eip155:84532", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["network"], "eip155:84532");
    assert_eq!(one["x402Version"], 2);
});

both_dbs!(unknown_or_unconfigured_network_is_400_unsupported, |app| {
    for id in ["moon-mainnet", "base", "eip155:1"] {
        let res = app.get(&format!("/api/v1/networks/{id}"), None).await;
        let body = assert_error(res, 400, "INVALID_REQUEST", Some("unsupported network")).await;
        assert_eq!(body["details"], "");
    }
});

both_dbs!(assets_list_configured_usdc, |app| {
    let res = app.get("/api/v1/assets", None).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let assets = body["data"].as_array().unwrap();
    assert_eq!(assets.len(), 1);
    let a = &assets[0];
    assert!(a["id"].as_i64().unwrap() >= 1);
    assert_eq!(a["network"], "base-sepolia");
    assert_eq!(a["asset"], "0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    assert_eq!(a["symbol"], "USDC");
    assert_eq!(a["decimals"], 6);
    assert_eq!(a["active"], true);
});

/// The payment-channel preview is off unless configured: `/supported` then offers no
/// `batch-settlement` kind, and a voucher is not a scheme the facilitator serves.
#[actix_web::test]
async fn channels_are_off_by_default() {
    assert!(!x402_facilitator::config::SettlementSettings::default().channels);
    let db = TestDb::create(Db::Sqlite).await;
    let app = TestApp::spawn_on(
        db,
        serde_json::json!({ "settlement": { "channels": false } }),
    )
    .await;
    let body: Value = app
        .get("/api/v1/networks", None)
        .await
        .json()
        .await
        .unwrap();
    let schemes: Vec<&str> = body["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["scheme"].as_str().unwrap())
        .collect();
    assert!(!schemes.is_empty());
    assert!(!schemes.contains(&"batch-settlement"), "{schemes:?}");
    app.stop().await;
}
