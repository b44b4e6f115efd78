use serde_json::{json, Value};

use crate::helpers::*;

/// Write through the API, restart the application on the same SQLite file, read it back.
#[actix_web::test]
async fn data_survives_a_restart_on_the_same_sqlite_file() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let (access, _, _) = app.user("rita@example.com").await;
    let (client_id, token) = app.client_key(&access, "verify,settle").await;
    let res = app
        .post(
            "/api/v1/resources",
            Some(&access),
            json!({"resource": "/kept", "type": "endpoint", "x402Version": 2,
                   "accepts": [{"scheme": "exact", "network": "eip155:84532", "amount": "10",
                                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = app
        .post("/admin/assets", Some(ADMIN_TOKEN), json!({"network": "base-sepolia", "asset": "0x4200000000000000000000000000000000000006", "symbol": "WETH", "decimals": 18}))
        .await;
    assert_eq!(res.status(), 201);
    let old_port = app.port;

    let db = app.stop().await;
    let app = TestApp::spawn_on(db, json!({})).await;
    assert_ne!(app.port, 0);
    let _ = old_port;

    let res = app
        .post(
            "/api/v1/login",
            None,
            json!({"email": "rita@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let access = body["data"]["access_token"].as_str().unwrap().to_owned();
    let own: Value = app
        .get("/api/v1/users/resources", Some(&access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["data"]["resources"][0]["resource"], "/kept");
    let res = app
        .get_as_client("/api/v1/supported", &client_id, &token)
        .await;
    assert_eq!(
        res.status(),
        200,
        "the client key still authenticates after a restart"
    );
    let assets: Value = app.get("/api/v1/assets", None).await.json().await.unwrap();
    assert_eq!(assets["data"].as_array().unwrap().len(), 2);
}
