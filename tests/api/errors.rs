use reqwest::Method;
use serde_json::json;

use crate::both_dbs;

both_dbs!(
    unknown_routes_and_wrong_methods_answer_in_the_envelope,
    |app| {
        let res = app.get("/api/v1/nope", None).await;
        assert_error(res, 404, "NOT_FOUND", Some("No such route")).await;
        let res = app.get("/", None).await;
        assert_error(res, 404, "NOT_FOUND", None).await;
        // A 405 names the methods the path has (RFC 9110, section 15.5.6).
        let allow = |res: &reqwest::Response| {
            res.headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let res = app
            .request(Method::DELETE, "/api/v1/signup", None, None)
            .await;
        assert_eq!(allow(&res).as_deref(), Some("POST"));
        assert_error(res, 405, "METHOD_NOT_ALLOWED", Some("Method not allowed")).await;
        let res = app
            .request(Method::POST, "/health", None, Some(json!({})))
            .await;
        assert_eq!(allow(&res).as_deref(), Some("GET"));
        assert_error(res, 405, "METHOD_NOT_ALLOWED", None).await;
        let res = app
            .request(Method::PATCH, "/admin/users", Some(ADMIN_TOKEN), None)
            .await;
        assert_eq!(allow(&res).as_deref(), Some("POST, GET"));
        assert_error(res, 405, "METHOD_NOT_ALLOWED", None).await;
        let res = app.request(Method::TRACE, "/docs", None, None).await;
        assert_eq!(allow(&res).as_deref(), Some("GET"));
        assert_error(res, 405, "METHOD_NOT_ALLOWED", None).await;
    }
);

both_dbs!(oversized_bodies_are_refused_in_the_envelope, |app| {
    let big = "x".repeat(200 * 1024);
    let res = app
        .post(
            "/api/v1/signup",
            None,
            json!({"email": big, "password": PASSWORD}),
        )
        .await;
    assert_error(
        res,
        413,
        "PAYLOAD_TOO_LARGE",
        Some("Request body too large"),
    )
    .await;
});

both_dbs!(json_bodies_must_be_objects, |app| {
    // serde reads a struct from an array too: `[null, null]` set a key's credits to unlimited
    // (found by schemathesis).
    let (access, _, _) = app.user("arrays@example.com").await;
    let (client_id, _) = app.client_key(&access, "verify,settle").await;
    let path = format!("/admin/clients/{client_id}");
    let res = app
        .request(
            Method::PATCH,
            &path,
            Some(ADMIN_TOKEN),
            Some(json!({"settleCredits": 3})),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .request(
            Method::PATCH,
            &path,
            Some(ADMIN_TOKEN),
            Some(json!([null, null])),
        )
        .await;
    let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
    assert_eq!(err["details"], "the body must be a JSON object");
    let keys: serde_json::Value = app
        .get("/api/v1/clients", Some(&access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys["data"][0]["settleCredits"], 3, "{keys}");
    for body in [
        json!(["arrays2@example.com", PASSWORD]),
        json!("x"),
        json!(7),
    ] {
        let res = app.post("/api/v1/signup", None, body).await;
        assert_error(res, 400, "INVALID_REQUEST", None).await;
    }
    // An object is read as before, leading blanks and all.
    let res = app
        .http
        .post(app.url("/api/v1/login"))
        .header("content-type", "application/json")
        .body(format!(
            " \n {}",
            json!({"email": "arrays@example.com", "password": PASSWORD})
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
});
