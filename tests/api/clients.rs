use reqwest::Method;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{json, Value};

use crate::both_dbs;

both_dbs!(client_key_lifecycle_create_list_revoke, |app| {
    let (access, _, _) = app.user("hank@example.com").await;
    let res = app
        .post(
            "/api/v1/clients",
            Some(&access),
            json!({"title": "my-resource-server", "scope": "settle, verify", "ttl_hours": 8760}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let client = &body["data"]["client"];
    let id = client["clientId"].as_str().unwrap().to_owned();
    let token = client["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 40, "token has enough entropy: {token}");
    assert_eq!(client["title"], "my-resource-server");
    assert_eq!(client["scope"], "verify,settle", "scope is normalised");
    let created: chrono::DateTime<chrono::Utc> =
        client["createdAt"].as_str().unwrap().parse().unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        client["expiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!((expires - created).num_hours(), 8760);

    // The key works on a client-key endpoint.
    let res = app.get_as_client("/api/v1/supported", &id, &token).await;
    assert_eq!(res.status(), 200);
    let supported: Value = res.json().await.unwrap();
    assert!(supported["kinds"].as_array().unwrap().len() >= 2);

    // Listed without its token.
    let list: Value = app
        .get("/api/v1/clients", Some(&access))
        .await
        .json()
        .await
        .unwrap();
    let items = list["data"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["clientId"], id.as_str());
    assert!(items[0].get("token").is_none(), "the token is shown once");
    assert!(!list.to_string().contains(&token));

    // The token is not stored in plaintext.
    let db = Database::connect(&app.db.url).await.unwrap();
    let rows = db
        .query_all(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT token_hash FROM clients".to_owned(),
        ))
        .await
        .unwrap();
    let stored: String = rows[0].try_get("", "token_hash").unwrap();
    assert!(!stored.contains(&token) && stored.len() == 64);
    db.close().await.ok();

    // Revoke: the key stops working at once, and leaves the list.
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/clients/{id}"),
            Some(&access),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["deleted"], id.as_str());
    let res = app.get_as_client("/api/v1/supported", &id, &token).await;
    assert_error(res, 401, "UNAUTHORIZED", Some("invalid client credentials")).await;
    let list: Value = app
        .get("/api/v1/clients", Some(&access))
        .await
        .json()
        .await
        .unwrap();
    assert!(list["data"].as_array().unwrap().is_empty());
    // Revoking twice: gone.
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/clients/{id}"),
            Some(&access),
            None,
        )
        .await;
    assert_error(res, 404, "NOT_FOUND", Some("client not found")).await;
});

both_dbs!(client_key_extractor_rejects_bad_credentials, |app| {
    let (access, _, _) = app.user("ivy@example.com").await;
    let (id, token) = app.client_key(&access, "verify").await;
    let res = app.get("/api/v1/supported", None).await;
    assert_error(
        res,
        401,
        "UNAUTHORIZED",
        Some("missing X-Client-ID or X-Client-Token header"),
    )
    .await;
    let res = app
        .get_as_client("/api/v1/supported", &id, "x402sk_wrong")
        .await;
    assert_error(res, 401, "UNAUTHORIZED", Some("invalid client credentials")).await;
    let res = app
        .get_as_client("/api/v1/supported", "cl_unknown", &token)
        .await;
    assert_error(res, 401, "UNAUTHORIZED", Some("invalid client credentials")).await;
    // A token is bound to its client id.
    let (id2, _) = app.client_key(&access, "verify").await;
    let res = app.get_as_client("/api/v1/supported", &id2, &token).await;
    assert_error(res, 401, "UNAUTHORIZED", Some("invalid client credentials")).await;
});

both_dbs!(expired_client_key_is_rejected, |app| {
    let (access, _, _) = app.user("jack@example.com").await;
    let res = app
        .post(
            "/api/v1/clients",
            Some(&access),
            json!({"title": "short-lived", "ttl_hours": 1}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    let id = body["data"]["client"]["clientId"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = body["data"]["client"]["token"].as_str().unwrap().to_owned();
    // Move its expiry into the past before its first use.
    expire_client_key(&app.db.url, &id).await;
    let res = app.get_as_client("/api/v1/supported", &id, &token).await;
    assert_error(res, 401, "UNAUTHORIZED", Some("client key expired")).await;
});

both_dbs!(
    users_see_and_revoke_only_their_own_keys_admins_see_all,
    |app| {
        let (alice, _, _) = app.user("kate@example.com").await;
        let (bob, _, _) = app.user("liam@example.com").await;
        let (alice_id, alice_token) = app.client_key(&alice, "verify,settle").await;
        let (bob_id, _) = app.client_key(&bob, "settle").await;

        let list: Value = app
            .get("/api/v1/clients", Some(&bob))
            .await
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["clientId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [bob_id.as_str()]);

        // Bob cannot revoke Alice's key: it is "not found" to him, and keeps working.
        let res = app
            .request(
                Method::DELETE,
                &format!("/api/v1/clients/{alice_id}"),
                Some(&bob),
                None,
            )
            .await;
        assert_error(res, 404, "NOT_FOUND", Some("client not found")).await;
        let res = app
            .get_as_client("/api/v1/supported", &alice_id, &alice_token)
            .await;
        assert_eq!(res.status(), 200);

        // An admin user sees every key.
        let res = app
            .post(
                "/admin/users",
                Some(ADMIN_TOKEN),
                json!({"email": "root@example.com", "password": PASSWORD, "is_admin": true}),
            )
            .await;
        assert_eq!(res.status(), 201);
        let login: Value = app
            .post(
                "/api/v1/login",
                None,
                json!({"email": "root@example.com", "password": PASSWORD}),
            )
            .await
            .json()
            .await
            .unwrap();
        let admin_access = login["data"]["access_token"].as_str().unwrap();
        let list: Value = app
            .get("/api/v1/clients", Some(admin_access))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(list["data"].as_array().unwrap().len(), 2);
        // Pagination.
        let list: Value = app
            .get("/api/v1/clients?limit=1&offset=1", Some(admin_access))
            .await
            .json()
            .await
            .unwrap();
        let items = list["data"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["clientId"], bob_id.as_str());
    }
);

both_dbs!(client_creation_validates_input, |app| {
    let (access, _, _) = app.user("mona@example.com").await;
    let cases = [
        (json!({"title": ""}), "title must be 1 to 200 characters"),
        (
            json!({"title": "x", "scope": "verify,mint"}),
            "unknown scope `mint` (allowed: verify, settle)",
        ),
        (
            json!({"title": "x", "scope": " , "}),
            "scope must name at least one operation",
        ),
        (
            json!({"title": "x", "ttl_hours": 0}),
            "ttl_hours must be between 1 and 87600",
        ),
        (
            json!({"title": "x", "networks": ["base", "moon-mainnet"]}),
            "unsupported network: moon-mainnet",
        ),
        (
            json!({"title": "x", "networks": []}),
            "networks must name at least one network (omit it to allow all)",
        ),
    ];
    for (body, details) in cases {
        let res = app.post("/api/v1/clients", Some(&access), body).await;
        let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
        assert_eq!(err["details"], details);
    }
    // Bodies that do not deserialize: missing title, negative ttl, networks not a list.
    for body in [
        json!({"scope": "verify"}),
        json!({"title": "x", "ttl_hours": -5}),
        json!({"title": "x", "networks": "base"}),
    ] {
        let res = app.post("/api/v1/clients", Some(&access), body).await;
        assert_error(res, 400, "INVALID_REQUEST", None).await;
    }
    // A network limit: names or CAIP-2, normalised to v1 names, without repeats; listed.
    let res = app
        .post(
            "/api/v1/clients",
            Some(&access),
            json!({"title": "limited", "networks": ["base-sepolia", "eip155:84532", "eip155:8453"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["data"]["client"]["networks"],
        json!(["base-sepolia", "base"])
    );
    let list: Value = app
        .get("/api/v1/clients", Some(&access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["networks"], json!(["base-sepolia", "base"]));
    // No limit: null.
    let (_, _) = app.client_key(&access, "verify").await;
    let list: Value = app
        .get("/api/v1/clients", Some(&access))
        .await
        .json()
        .await
        .unwrap();
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["networks"].is_null()));
    let res = app.get("/api/v1/clients?limit=0", Some(&access)).await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;
    let res = app.get("/api/v1/clients?limit=abc", Some(&access)).await;
    assert_error(
        res,
        400,
        "INVALID_REQUEST",
        Some("Invalid query parameters"),
    )
    .await;
    let res = app
        .post("/api/v1/clients", None, json!({"title": "x"}))
        .await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;
    let res = app
        .request(Method::DELETE, "/api/v1/clients/cl_x", None, None)
        .await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;
});
