//! Key controls (seeds 000/001): a key's own status (`GET /clients/status`), and its owner's
//! changes (`PATCH /clients/{id}`): title, scope, networks, pause/resume, token rotation.

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::helpers::*;

async fn patch(app: &TestApp, access: &str, id: &str, body: Value) -> Response {
    app.request(
        Method::PATCH,
        &format!("/api/v1/clients/{id}"),
        Some(access),
        Some(body),
    )
    .await
}

async fn status(app: &TestApp, id: &str, token: &str) -> Value {
    let res = app.get_as_client("/api/v1/clients/status", id, token).await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["data"].clone()
}

both_dbs!(a_key_reports_its_own_status, |app| {
    let (access, _, _) = app.user("status@example.com").await;
    let (id, token) = app
        .client_key_with(
            &access,
            json!({ "title": "shop", "scope": "verify", "ttl_hours": 24, "networks": ["eip155:84532"] }),
        )
        .await;
    let s = status(&app, &id, &token).await;
    assert_eq!(s["clientId"], id.as_str());
    assert_eq!(s["title"], "shop");
    assert_eq!(s["status"], "active");
    assert_eq!(s["scope"], "verify");
    assert_eq!(s["networks"], json!(["base-sepolia"]));
    assert_eq!(s["settleCredits"], Value::Null);
    assert_eq!(s["rateLimitPerSecond"], Value::Null);
    assert!(s["createdAt"].is_string() && s["expiresAt"].is_string());
    assert!(s.get("token").is_none());
    // The operator's settings show.
    let res = app
        .request(
            Method::PATCH,
            &format!("/admin/clients/{id}"),
            Some(ADMIN_TOKEN),
            Some(json!({ "settleCredits": 7, "rateLimitPerSecond": 9 })),
        )
        .await;
    assert_eq!(res.status(), 200);
    let s = status(&app, &id, &token).await;
    assert_eq!(
        (s["settleCredits"].clone(), s["rateLimitPerSecond"].clone()),
        (json!(7), json!(9))
    );

    // Wrong or missing credentials.
    let res = app
        .get_as_client("/api/v1/clients/status", &id, "x402sk_wrong")
        .await;
    assert_error(res, 401, "UNAUTHORIZED", Some("invalid client credentials")).await;
    let res = app.get("/api/v1/clients/status", None).await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;

    // Expired: it still says what it is.
    expire_client_key(&app.db.url, &id).await;
    assert_eq!(status(&app, &id, &token).await["status"], "expired");

    // Revoked: too.
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/clients/{id}"),
            Some(&access),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(status(&app, &id, &token).await["status"], "revoked");
});

both_dbs!(a_paused_key_is_refused_until_resumed, |app| {
    let (access, _, _) = app.user("pause@example.com").await;
    let (id, token) = app.client_key(&access, "verify,settle").await;
    assert_eq!(
        app.get_as_client("/api/v1/supported", &id, &token)
            .await
            .status(),
        200
    );

    let res = patch(&app, &access, &id, json!({ "status": "paused" })).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["client"]["status"], "paused");
    assert!(body["data"]["client"].get("token").is_none());
    for path in [
        "/api/v1/supported",
        "/api/v1/settlements/0x0000000000000000000000000000000000000000000000000000000000000001",
    ] {
        let res = app.get_as_client(path, &id, &token).await;
        assert_error(res, 401, "UNAUTHORIZED", Some("client key paused")).await;
    }
    let res = app
        .post_as_client("/api/v1/verify", &id, &token, &json!({}))
        .await;
    assert_error(res, 401, "UNAUTHORIZED", Some("client key paused")).await;
    assert_eq!(status(&app, &id, &token).await["status"], "paused");
    // Listed with its status.
    let list: Value = app
        .get("/api/v1/clients", Some(&access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["status"], "paused");

    let res = patch(&app, &access, &id, json!({ "status": "active" })).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.get_as_client("/api/v1/supported", &id, &token)
            .await
            .status(),
        200
    );
    assert_eq!(status(&app, &id, &token).await["status"], "active");

    // Revoked and expired are not statuses one sets.
    for bad in ["revoked", "expired", "sleeping"] {
        let res = patch(&app, &access, &id, json!({ "status": bad })).await;
        assert_error(res, 400, "INVALID_REQUEST", None).await;
    }
});

both_dbs!(a_rotated_token_replaces_the_old_one_at_once, |app| {
    let (access, _, _) = app.user("rotate@example.com").await;
    let (id, old) = app.client_key(&access, "verify").await;
    // Warm the cache with the old token first.
    assert_eq!(
        app.get_as_client("/api/v1/supported", &id, &old)
            .await
            .status(),
        200
    );

    let res = patch(&app, &access, &id, json!({ "rotate": true })).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let new = body["data"]["client"]["token"].as_str().unwrap().to_owned();
    assert!(new.starts_with("x402sk_") && new != old);
    assert_eq!(body["data"]["client"]["clientId"], id.as_str());

    let res = app.get_as_client("/api/v1/supported", &id, &old).await;
    assert_error(res, 401, "UNAUTHORIZED", Some("invalid client credentials")).await;
    assert_eq!(
        app.get_as_client("/api/v1/supported", &id, &new)
            .await
            .status(),
        200
    );
    // Shown once: the list does not have it.
    let list = app
        .get("/api/v1/clients", Some(&access))
        .await
        .text()
        .await
        .unwrap();
    assert!(!list.contains(&new) && !list.contains(&old));
});

both_dbs!(an_owner_changes_title_scope_and_networks, |app| {
    let (access, _, _) = app.user("owner@example.com").await;
    let (id, token) = app.client_key(&access, "verify,settle").await;
    let res = patch(
        &app,
        &access,
        &id,
        json!({ "title": "  renamed  ", "scope": "verify", "networks": ["base-sepolia"] }),
    )
    .await;
    assert_eq!(res.status(), 200);
    let c = &res.json::<Value>().await.unwrap()["data"]["client"];
    assert_eq!(c["title"], "renamed");
    assert_eq!(c["scope"], "verify");
    assert_eq!(c["networks"], json!(["base-sepolia"]));
    // The new scope applies at once.
    let res = app
        .post_as_client("/api/v1/settle", &id, &token, &json!({}))
        .await;
    assert_error(
        res,
        403,
        "FORBIDDEN",
        Some("this client key is not allowed to settle"),
    )
    .await;
    // `null` lifts the network limit; omitted fields stay.
    let res = patch(&app, &access, &id, json!({ "networks": null })).await;
    let c = &res.json::<Value>().await.unwrap()["data"]["client"];
    assert_eq!(c["networks"], Value::Null);
    assert_eq!(c["title"], "renamed");

    // Bad changes.
    for (body, details) in [
        (
            json!({}),
            "nothing to change: give title, scope, networks, status or rotate",
        ),
        (json!({ "title": "" }), "title must be 1 to 200 characters"),
        (
            json!({ "scope": "mint" }),
            "unknown scope `mint` (allowed: verify, settle)",
        ),
        (json!({ "networks": ["moon"] }), "unsupported network: moon"),
        (
            json!({ "networks": "base" }),
            "networks must be a list of network names, or null",
        ),
    ] {
        let res = patch(&app, &access, &id, body.clone()).await;
        let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
        assert_eq!(err["details"], details, "{body}");
    }
    let res = patch(&app, &access, &id, json!({ "colour": "red" })).await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;

    // Someone else's key is not found; an admin may change any key; no token, no change.
    let (other, _, _) = app.user("stranger@example.com").await;
    let res = patch(&app, &other, &id, json!({ "title": "mine now" })).await;
    assert_error(res, 404, "NOT_FOUND", Some("client not found")).await;
    let res = app
        .post(
            "/admin/users",
            Some(ADMIN_TOKEN),
            json!({ "email": "root@example.com", "password": PASSWORD, "is_admin": true }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let admin = app.login("root@example.com").await;
    let res = patch(&app, &admin, &id, json!({ "status": "paused" })).await;
    assert_eq!(res.status(), 200);
    assert_eq!(status(&app, &id, &token).await["status"], "paused");
    let res = app
        .request(
            Method::PATCH,
            &format!("/api/v1/clients/{id}"),
            None,
            Some(json!({ "title": "x" })),
        )
        .await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;
});
