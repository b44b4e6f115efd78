use reqwest::Method;
use serde_json::{json, Value};

use crate::both_dbs;

/// A resource of `path` asking `amount` (atomic units) on base-sepolia.
pub fn resource_body(path: &str, amount: &str) -> Value {
    json!({
        "resource": path,
        "type": "endpoint",
        "x402Version": 1,
        "accepts": [{
            "scheme": "exact",
            "network": "base-sepolia",
            "maxAmountRequired": amount,
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
        }],
        "metadata": {"category": "data"}
    })
}

both_dbs!(resources_create_list_own_list_all_update, |app| {
    let (alice, _, _) = app.user("nina@example.com").await;
    let (bob, _, _) = app.user("owen@example.com").await;

    let res = app
        .post(
            "/api/v1/resources",
            Some(&alice),
            resource_body("/api/premium-data", "1000000"),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["status"], "created");
    let id = body["data"]["id"].as_i64().unwrap();
    let res = app
        .post(
            "/api/v1/resources",
            Some(&bob),
            resource_body("/api/bob", "5"),
        )
        .await;
    assert_eq!(res.status(), 201);

    let own: Value = app
        .get("/api/v1/users/resources", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["data"]["offset"], 0);
    assert_eq!(own["data"]["limit"], 100);
    let items = own["data"]["resources"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id);
    assert_eq!(items[0]["resource"], "/api/premium-data");
    assert_eq!(items[0]["type"], "endpoint");
    assert_eq!(items[0]["x402Version"], 1);
    assert_eq!(items[0]["accepts"][0]["maxAmountRequired"], "1000000");
    assert_eq!(items[0]["metadata"]["category"], "data");

    // Public list: no auth, everyone's.
    let all: Value = app
        .get("/api/v1/resources", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["data"]["resources"].as_array().unwrap().len(), 2);
    let page: Value = app
        .get("/api/v1/resources?limit=1&offset=1", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"]["resources"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"]["limit"], 1);
    assert_eq!(page["data"]["offset"], 1);

    // Update own.
    let res = app
        .request(
            Method::PUT,
            &format!("/api/v1/resources/{id}"),
            Some(&alice),
            Some(resource_body("/api/premium-data", "2000000")),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["updated"], id);
    let own: Value = app
        .get("/api/v1/users/resources", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        own["data"]["resources"][0]["accepts"][0]["maxAmountRequired"],
        "2000000"
    );

    // Someone else's resource, or none: 404.
    let res = app
        .request(
            Method::PUT,
            &format!("/api/v1/resources/{id}"),
            Some(&bob),
            Some(resource_body("/x", "1")),
        )
        .await;
    assert_error(res, 404, "NOT_FOUND", Some("resource not found")).await;
    let res = app
        .request(
            Method::PUT,
            "/api/v1/resources/999999",
            Some(&alice),
            Some(resource_body("/x", "1")),
        )
        .await;
    assert_error(res, 404, "NOT_FOUND", Some("resource not found")).await;
    let own: Value = app
        .get("/api/v1/users/resources", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        own["data"]["resources"][0]["resource"], "/api/premium-data",
        "bob's update did not land"
    );

    // Discovery shape.
    let disc: Value = app
        .get("/api/v1/discovery/resources?type=endpoint&limit=10", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(disc["pagination"]["total"], 2);
    assert_eq!(disc["pagination"]["limit"], 10);
    assert_eq!(disc["items"].as_array().unwrap().len(), 2);
    assert!(disc["items"][0]["lastUpdated"].is_string());
});

both_dbs!(resources_validate_input_and_credentials, |app| {
    let (alice, _, _) = app.user("pia@example.com").await;
    let mut no_accepts = resource_body("/a", "1");
    no_accepts["accepts"] = json!([]);
    let mut bad_network = resource_body("/a", "1");
    bad_network["accepts"][0]["network"] = json!("moon");
    let mut bad_version = resource_body("/a", "1");
    bad_version["x402Version"] = json!(7);
    let mut bad_pay_to = resource_body("/a", "1");
    bad_pay_to["accepts"][0]["payTo"] = json!("0x123");
    // What the discovery list serves must read as payment requirements (found by
    // schemathesis: `resource: {}` was stored and served).
    let mut no_asset = resource_body("/a", "1");
    no_asset["accepts"][0]
        .as_object_mut()
        .unwrap()
        .remove("asset");
    let mut bad_resource = resource_body("/a", "1");
    bad_resource["accepts"][0]["resource"] = json!({});
    let mut bad_timeout = resource_body("/a", "1");
    bad_timeout["accepts"][0]["maxTimeoutSeconds"] = json!(-1);
    let mut bad_extra = resource_body("/a", "1");
    bad_extra["accepts"][0]["extra"] = json!({"name": 7});
    let cases = [
        (
            resource_body("", "1"),
            "resource must be 1 to 2048 characters",
        ),
        (no_accepts, "accepts must hold 1 to 32 payment requirements"),
        (bad_network, "accepts: unsupported network `moon`"),
        (bad_version, "x402Version must be 1 or 2"),
        (bad_pay_to, "accepts: payTo must be an address"),
        (no_asset, "accepts: each entry needs asset, a string"),
        (bad_resource, "accepts: resource must be a string"),
        (
            bad_timeout,
            "accepts: maxTimeoutSeconds must be a whole number of seconds",
        ),
        (bad_extra, "accepts: extra.name must be a string"),
    ];
    for (body, details) in cases {
        let res = app.post("/api/v1/resources", Some(&alice), body).await;
        let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
        assert_eq!(err["details"], details);
    }
    let res = app
        .post("/api/v1/resources", Some(&alice), json!({"resource": "/a"}))
        .await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;
    // Duplicate resource of one user.
    let res = app
        .post(
            "/api/v1/resources",
            Some(&alice),
            resource_body("/dup", "1"),
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = app
        .post(
            "/api/v1/resources",
            Some(&alice),
            resource_body("/dup", "1"),
        )
        .await;
    assert_error(res, 409, "CONFLICT", None).await;
    // Credentials.
    let res = app
        .post("/api/v1/resources", None, resource_body("/a", "1"))
        .await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;
    let res = app.get("/api/v1/users/resources", Some("bad")).await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;
    let res = app
        .request(
            Method::PUT,
            "/api/v1/resources/1",
            None,
            Some(resource_body("/a", "1")),
        )
        .await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;
    // Path and query parameters.
    let res = app
        .request(
            Method::PUT,
            "/api/v1/resources/abc",
            Some(&alice),
            Some(resource_body("/a", "1")),
        )
        .await;
    assert_error(res, 400, "INVALID_REQUEST", Some("Invalid path parameter")).await;
    let res = app.get("/api/v1/resources?offset=-1", None).await;
    assert_error(
        res,
        400,
        "INVALID_REQUEST",
        Some("Invalid query parameters"),
    )
    .await;
    let res = app.get("/api/v1/resources?limit=5000", None).await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;
    // Past a signed 64-bit offset (found by schemathesis: it was a 500).
    for path in [
        "/api/v1/resources?offset=9223372036854775808",
        "/api/v1/discovery/resources?offset=18446744073709551615",
    ] {
        let err = assert_error(app.get(path, None).await, 400, "INVALID_REQUEST", None).await;
        assert_eq!(err["details"], "offset must be at most 9223372036854775807");
    }
});
