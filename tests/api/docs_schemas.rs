//! Real answers against the document: every documented operation called on a live server
//! (SQLite and PostgreSQL), each answer checked against the schema `/openapi.json` gives it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::docs::openapi;
use crate::helpers::{Db, TestApp};

/// The properties and required keys of an object schema, through `$ref` and `allOf`.
fn object_parts(
    doc: &Value,
    schema: &Value,
    props: &mut serde_json::Map<String, Value>,
    required: &mut BTreeSet<String>,
    open: &mut bool,
) {
    let schema = resolve(doc, schema);
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            object_parts(doc, part, props, required, open);
        }
    }
    if let Some(p) = schema["properties"].as_object() {
        props.extend(p.clone());
    }
    if let Some(r) = schema["required"].as_array() {
        required.extend(r.iter().map(|k| k.as_str().unwrap().to_owned()));
    }
    if schema.get("additionalProperties").is_some() {
        *open = true;
    }
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local $ref");
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "{r} does not resolve");
            resolve(doc, target)
        }
        None => schema,
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => false,
    }
}

/// Does `v` fit `schema`? Strict about keys: an object key the schema does not name (and no
/// `additionalProperties`) is a mismatch, so undocumented fields are caught.
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(options) = schema["oneOf"].as_array() {
        let errors: Vec<String> = options
            .iter()
            .filter_map(|o| conforms(doc, o, v, at).err())
            .collect();
        return if errors.len() < options.len() {
            Ok(())
        } else {
            Err(format!("{at}: no oneOf option fits: {errors:?}"))
        };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| type_matches(t, v)) {
        return Err(format!("{at}: {v} is not {types:?}"));
    }
    if let Some(values) = schema["enum"].as_array() {
        if !values.contains(v) {
            return Err(format!("{at}: {v} is not one of {values:?}"));
        }
    }
    if let Some(items) = v.as_array() {
        if schema["items"].is_object() {
            for (i, item) in items.iter().enumerate() {
                conforms(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let (mut props, mut required, mut open) = (Default::default(), BTreeSet::new(), false);
        object_parts(doc, schema, &mut props, &mut required, &mut open);
        if props.is_empty() {
            return Ok(()); // no property named: a free-form object
        }
        for key in &required {
            if !obj.contains_key(key) {
                return Err(format!("{at}: required `{key}` missing in {v}"));
            }
        }
        for (key, value) in obj {
            match props.get(key) {
                Some(s) => conforms(doc, s, value, &format!("{at}.{key}"))?,
                None if open => {}
                None => return Err(format!("{at}: `{key}` is not documented ({v})")),
            }
        }
    }
    Ok(())
}

/// Check a real answer against the documented response of `method path` for its status.
async fn check_answer(doc: &Value, method: &str, path: &str, res: reqwest::Response) -> Value {
    let status = res.status().as_u16().to_string();
    let body: Value = res.json().await.expect("JSON answer");
    let responses = &doc["paths"][path][method]["responses"];
    assert!(
        responses[&status].is_object(),
        "{method} {path} answered {status}, which is not documented: {body}"
    );
    let schema = &responses[&status]["content"]["application/json"]["schema"];
    if let Err(e) = conforms(doc, schema, &body, &format!("{method} {path} {status}")) {
        panic!("the answer does not match the document: {e}");
    }
    body
}

#[actix_web::test]
async fn real_answers_match_the_documented_schemas() {
    use crate::helpers::{ADMIN_TOKEN, PASSWORD};
    use reqwest::Method;
    use serde_json::json;

    let app = TestApp::spawn(Db::Sqlite).await;
    let doc = openapi(&app).await;
    let doc = &doc;

    for path in [
        "/health",
        "/ready",
        "/api/v1/status",
        "/api/v1/networks",
        "/api/v1/assets",
        "/api/v1/resources",
        "/api/v1/discovery/resources",
    ] {
        check_answer(doc, "get", path, app.get(path, None).await).await;
    }
    let path = "/api/v1/networks/{id}";
    for id in ["base-sepolia", "eip155:84532", "moon"] {
        let url = format!("/api/v1/networks/{id}");
        check_answer(doc, "get", path, app.get(&url, None).await).await;
    }

    // Accounts.
    let creds = json!({ "email": "docs@example.com", "password": PASSWORD });
    let res = app.post("/api/v1/signup", None, creds.clone()).await;
    check_answer(doc, "post", "/api/v1/signup", res).await;
    let res = app.post("/api/v1/signup", None, creds.clone()).await;
    check_answer(doc, "post", "/api/v1/signup", res).await; // 409
    let res = app.post("/api/v1/login", None, creds.clone()).await;
    let login = check_answer(doc, "post", "/api/v1/login", res).await;
    let access = login["data"]["access_token"].as_str().unwrap().to_owned();
    let refresh = login["data"]["refresh_token"].as_str().unwrap();
    let res = app
        .post(
            "/api/v1/token/refresh",
            None,
            json!({ "refresh_token": refresh }),
        )
        .await;
    check_answer(doc, "post", "/api/v1/token/refresh", res).await;
    let res = app
        .post(
            "/api/v1/login",
            None,
            json!({ "email": "docs@example.com", "password": "no" }),
        )
        .await;
    check_answer(doc, "post", "/api/v1/login", res).await; // 401

    // Client keys.
    let res = app
        .post(
            "/api/v1/clients",
            Some(&access),
            json!({ "title": "docs", "scope": "verify,settle", "ttl_hours": 24 }),
        )
        .await;
    let created = check_answer(doc, "post", "/api/v1/clients", res).await;
    let client_id = created["data"]["client"]["clientId"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = created["data"]["client"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app.get("/api/v1/clients", Some(&access)).await;
    check_answer(doc, "get", "/api/v1/clients", res).await;
    check_answer(
        doc,
        "get",
        "/api/v1/clients",
        app.get("/api/v1/clients", None).await,
    )
    .await;

    // The x402 endpoints, without a chain: protocol refusals are answers too.
    let as_client = |method: Method, url: &str, body: Option<Value>| {
        let mut req = app
            .http
            .request(method, app.url(url))
            .header("X-Client-ID", &client_id)
            .header("X-Client-Token", &token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send()
    };
    let res = as_client(Method::GET, "/api/v1/supported", None)
        .await
        .unwrap();
    check_answer(doc, "get", "/api/v1/supported", res).await;
    let unsupported_version = json!({
        "x402Version": 9,
        "paymentPayload": { "x402Version": 9, "scheme": "exact", "network": "base-sepolia",
                            "payload": {} },
        "paymentRequirements": { "scheme": "exact", "network": "base-sepolia",
                                 "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                                 "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e" },
    });
    for path in ["/api/v1/verify", "/api/v1/settle"] {
        let res = as_client(Method::POST, path, Some(unsupported_version.clone()))
            .await
            .unwrap();
        let body = check_answer(doc, "post", path, res).await;
        assert_eq!(
            body["isValid"].as_bool().or(body["success"].as_bool()),
            Some(false)
        );
        let res = as_client(Method::POST, path, Some(json!({ "nope": 1 })))
            .await
            .unwrap();
        check_answer(doc, "post", path, res).await; // 400
        check_answer(doc, "post", path, app.post(path, None, json!({})).await).await;
        // 401
    }
    let tx = format!("0x{}", "ab".repeat(32));
    let res = as_client(Method::GET, &format!("/api/v1/settlements/{tx}"), None)
        .await
        .unwrap();
    check_answer(doc, "get", "/api/v1/settlements/{tx}", res).await; // 404

    // Resources.
    let resource = json!({
        "resource": "/api/docs-data",
        "type": "http",
        "x402Version": 1,
        "accepts": [{
            "scheme": "exact",
            "network": "base-sepolia",
            "maxAmountRequired": "1000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "extra": { "name": "USDC", "version": "2" }
        }],
        "metadata": { "category": "docs" }
    });
    let res = app
        .post("/api/v1/resources", Some(&access), resource.clone())
        .await;
    let created = check_answer(doc, "post", "/api/v1/resources", res).await;
    let id = created["data"]["id"].as_i64().unwrap();
    let res = app
        .request(
            Method::PUT,
            &format!("/api/v1/resources/{id}"),
            Some(&access),
            Some(resource),
        )
        .await;
    check_answer(doc, "put", "/api/v1/resources/{id}", res).await;
    for path in ["/api/v1/resources", "/api/v1/discovery/resources"] {
        check_answer(doc, "get", path, app.get(path, None).await).await;
    }
    let res = app.get("/api/v1/users/resources", Some(&access)).await;
    check_answer(doc, "get", "/api/v1/users/resources", res).await;

    // Admin.
    let res = app
        .post(
            "/admin/users",
            Some(ADMIN_TOKEN),
            json!({ "email": "op@example.com", "password": PASSWORD, "is_admin": true }),
        )
        .await;
    check_answer(doc, "post", "/admin/users", res).await;
    check_answer(
        doc,
        "get",
        "/admin/users",
        app.get("/admin/users", Some(ADMIN_TOKEN)).await,
    )
    .await;
    check_answer(
        doc,
        "get",
        "/admin/users",
        app.get("/admin/users", Some(&access)).await,
    )
    .await;
    // Account limits and what is left of them.
    let user_id = login["data"]["id"].as_i64().unwrap();
    let path = "/admin/users/{id}";
    for body in [
        json!({ "settleCredits": 5, "rateLimitPerSecond": 50, "gasBudgetWeiPerDay": "1000" }),
        json!({ "gasBudgetWeiPerDay": 1000 }),
    ] {
        let res = app
            .request(
                Method::PATCH,
                &format!("/admin/users/{user_id}"),
                Some(ADMIN_TOKEN),
                Some(body),
            )
            .await;
        check_answer(doc, "patch", path, res).await; // 200, 400
    }
    for id in [user_id, 999_999] {
        let url = format!("/admin/users/{id}");
        check_answer(doc, "get", path, app.get(&url, Some(ADMIN_TOKEN)).await).await;
        // 200, 404
    }
    let res = app.get("/api/v1/users/me", Some(&access)).await;
    check_answer(doc, "get", "/api/v1/users/me", res).await;
    let res = as_client(Method::GET, "/api/v1/clients/status", None)
        .await
        .unwrap();
    check_answer(doc, "get", "/api/v1/clients/status", res).await;

    let res = app
        .post(
            "/admin/assets",
            Some(ADMIN_TOKEN),
            json!({ "network": "base-sepolia", "asset": "0x1111111111111111111111111111111111111111",
                    "symbol": "TST", "decimals": 18, "eip712Name": "Test", "eip712Version": "1" }),
        )
        .await;
    check_answer(doc, "post", "/admin/assets", res).await;
    check_answer(
        doc,
        "get",
        "/api/v1/assets",
        app.get("/api/v1/assets", None).await,
    )
    .await;

    // Metrics (after the traffic above).
    for path in [
        "/api/v1/metrics/daily",
        "/api/v1/metrics/monthly",
        "/api/v1/metrics/summary",
        "/api/v1/x402-metrics/daily",
        "/api/v1/x402-metrics/monthly",
        "/api/v1/x402-metrics/summary",
    ] {
        check_answer(doc, "get", path, app.get(path, Some(&access)).await).await;
        let url = format!("{path}?from=2020-01-01&to=2100-12-31");
        let body = check_answer(doc, "get", path, app.get(&url, Some(&access)).await).await;
        assert_eq!(body["data"]["from"], "2020-01-01", "{path}: {body}");
        let url = format!("{path}?from=yesterday");
        check_answer(doc, "get", path, app.get(&url, Some(&access)).await).await;
        // 400
    }

    // Revoking last: the key is gone after.
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/clients/{client_id}"),
            Some(&access),
            None,
        )
        .await;
    check_answer(doc, "delete", "/api/v1/clients/{id}", res).await;
}
