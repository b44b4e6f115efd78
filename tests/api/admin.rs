use serde_json::{json, Value};

use crate::both_dbs;

both_dbs!(admin_creates_and_lists_users, |app| {
    let res = app
        .post(
            "/admin/users",
            Some(ADMIN_TOKEN),
            json!({"email": "Seed@Example.com", "password": PASSWORD, "is_admin": false}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["user"]["email"], "seed@example.com");
    assert_eq!(body["data"]["user"]["isAdmin"], false);
    app.signup("other@example.com").await;

    let res = app.get("/admin/users", Some(ADMIN_TOKEN)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let emails: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["seed@example.com", "other@example.com"]);
    assert!(!body.to_string().contains("argon2"), "no password hashes");

    // The seeded user can log in.
    let res = app
        .post(
            "/api/v1/login",
            None,
            json!({"email": "seed@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 200);
});

both_dbs!(admin_endpoints_require_the_admin_token, |app| {
    let (user_access, _, _) = app.user("quinn@example.com").await;
    let asset = json!({"network": "base-sepolia", "asset": "0x1111111111111111111111111111111111111111", "symbol": "TKN", "decimals": 18});
    let user = json!({"email": "x@example.com", "password": PASSWORD});
    for token in [None, Some("wrong-admin-token"), Some(user_access.as_str())] {
        let res = app.get("/admin/users", token).await;
        assert_error(res, 401, "UNAUTHORIZED", None).await;
        let res = app.post("/admin/users", token, user.clone()).await;
        assert_error(res, 401, "UNAUTHORIZED", None).await;
        let res = app.post("/admin/assets", token, asset.clone()).await;
        assert_error(res, 401, "UNAUTHORIZED", None).await;
    }
    let res = app
        .post("/admin/assets", Some("wrong-admin-token"), asset)
        .await;
    assert_error(res, 401, "UNAUTHORIZED", Some("invalid admin token")).await;
});

both_dbs!(admin_registers_assets, |app| {
    let res = app
        .post(
            "/admin/assets",
            Some(ADMIN_TOKEN),
            json!({"network": "base-sepolia", "asset": "0x4200000000000000000000000000000000000006", "symbol": "WETH", "decimals": 18, "active": true}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    let a = &body["data"];
    assert!(a["id"].as_i64().unwrap() > 1);
    assert_eq!(a["network"], "base-sepolia");
    assert_eq!(a["asset"], "0x4200000000000000000000000000000000000006");
    assert_eq!(a["symbol"], "WETH");
    assert_eq!(a["decimals"], 18);
    assert_eq!(a["active"], true);

    let list: Value = app.get("/api/v1/assets", None).await.json().await.unwrap();
    let symbols: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["USDC", "WETH"]);

    // Same asset again (any address case): conflict.
    let res = app
        .post("/admin/assets", Some(ADMIN_TOKEN), json!({"network": "base-sepolia", "asset": "0x4200000000000000000000000000000000000006", "symbol": "WETH", "decimals": 18}))
        .await;
    assert_error(res, 409, "CONFLICT", None).await;

    // An inactive asset is registered but not listed.
    let res = app
        .post("/admin/assets", Some(ADMIN_TOKEN), json!({"network": "eip155:84532", "asset": "0x2222222222222222222222222222222222222222", "symbol": "OLD", "decimals": 6, "active": false}))
        .await;
    assert_eq!(res.status(), 201);
    let list: Value = app.get("/api/v1/assets", None).await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
});

both_dbs!(admin_asset_registration_validates_input, |app| {
    let cases = [
        (
            json!({"network": "moon", "asset": "0x4200000000000000000000000000000000000006", "symbol": "X", "decimals": 6}),
            "unsupported network",
            "",
        ),
        (
            json!({"network": "base-sepolia", "asset": "0x42", "symbol": "X", "decimals": 6}),
            "Invalid request format",
            "asset must be a 0x-prefixed 20-byte address",
        ),
        (
            json!({"network": "base-sepolia", "asset": "0x4200000000000000000000000000000000000006", "symbol": "", "decimals": 6}),
            "Invalid request format",
            "symbol must be 1 to 32 characters",
        ),
        (
            json!({"network": "base-sepolia", "asset": "0x4200000000000000000000000000000000000006", "symbol": "X", "decimals": 99}),
            "Invalid request format",
            "decimals must be 0 to 36",
        ),
    ];
    for (body, message, details) in cases {
        let res = app.post("/admin/assets", Some(ADMIN_TOKEN), body).await;
        let err = assert_error(res, 400, "INVALID_REQUEST", Some(message)).await;
        assert_eq!(err["details"], details);
    }
    let res = app
        .post(
            "/admin/assets",
            Some(ADMIN_TOKEN),
            json!({"network": "base-sepolia"}),
        )
        .await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;
    let res = app.post("/admin/assets", Some(ADMIN_TOKEN), json!({"network": "base-sepolia", "asset": "0x4200000000000000000000000000000000000006", "symbol": "X", "decimals": -1})).await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;
    let res = app
        .post(
            "/admin/users",
            Some(ADMIN_TOKEN),
            json!({"email": "bad", "password": PASSWORD}),
        )
        .await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;
});
