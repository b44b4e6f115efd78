//! `/openapi.json` documents every route the server registers; `/docs` (Swagger UI) is served
//! from this process, without another host, and renders the operations in a real browser
//! (headless Chromium).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::chromium::{artifacts_dir, chromium, run_chromium_async};
use crate::helpers::{Db, TestApp};

pub(crate) async fn openapi(app: &TestApp) -> Value {
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    res.json().await.expect("the document is JSON")
}

#[actix_web::test]
async fn openapi_json_lists_every_registered_route() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let doc = openapi(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert!(doc["info"]["title"].is_string());

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let served: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let registered: BTreeSet<(String, String)> = x402_facilitator::routes::registered()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p))
        .collect();
    let undocumented: Vec<_> = registered.difference(&served).collect();
    let phantom: Vec<_> = served.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "not in /openapi.json: {undocumented:?}"
    );
    assert!(phantom.is_empty(), "documented but not routed: {phantom:?}");

    // Every operation: summary, tag, a success response, errors in the envelope.
    for (method, path) in &registered {
        let op = &doc["paths"][path][method.to_lowercase()];
        let at = format!("{method} {path}");
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{at}"
        );
        assert!(op["tags"][0].is_string(), "{at}");
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.keys().any(|s| s.starts_with('2')), "{at}");
        for (status, r) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
            assert_eq!(
                r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ApiError",
                "{at} {status}"
            );
        }
        if method == "POST" || method == "PUT" {
            assert!(
                op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                "{at}"
            );
        }
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(|c| c == '{' || c == '}');
            assert!(
                op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                "{at}: path parameter {name}"
            );
        }
    }

    // The error envelope.
    let api_error = &doc["components"]["schemas"]["ApiError"];
    for field in ["code", "message", "details"] {
        assert!(
            api_error["properties"][field].is_object(),
            "ApiError.{field}"
        );
    }

    // The change bodies: any of their fields, at least one (utoipa alone writes maxProperties).
    for name in ["ClientChange", "OperatorChange"] {
        let change = &doc["components"]["schemas"][name];
        assert_eq!(change["minProperties"], 1, "{name}: {change}");
        assert!(change.get("maxProperties").is_none(), "{name}: {change}");
        assert!(change.get("required").is_none(), "{name}: {change}");
    }
    assert_eq!(
        doc["components"]["schemas"]["StatusChange"]["enum"],
        serde_json::json!(["active", "paused"])
    );

    // The credentials.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["type"], "http");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["bearerAuth"]["bearerFormat"], "JWT");
    assert_eq!(schemes["adminToken"]["type"], "http");
    assert_eq!(schemes["adminToken"]["scheme"], "bearer");
    assert_eq!(schemes["clientId"]["type"], "apiKey");
    assert_eq!(schemes["clientId"]["in"], "header");
    assert_eq!(schemes["clientId"]["name"], "X-Client-ID");
    assert_eq!(schemes["clientToken"]["type"], "apiKey");
    assert_eq!(schemes["clientToken"]["in"], "header");
    assert_eq!(schemes["clientToken"]["name"], "X-Client-Token");

    let security = |method: &str, path: &str| doc["paths"][path][method]["security"].clone();
    let client_pair = serde_json::json!([{ "clientId": [], "clientToken": [] }]);
    for (m, p) in [
        ("post", "/api/v1/settle"),
        ("post", "/api/v1/verify"),
        ("get", "/api/v1/supported"),
        ("get", "/api/v1/settlements/{tx}"),
    ] {
        assert_eq!(security(m, p), client_pair, "{m} {p}");
    }
    let settle = &doc["paths"]["/api/v1/settle"]["post"];
    assert_eq!(settle["requestBody"]["required"], true);
    assert_eq!(
        settle["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/PaymentRequest"
    );
    assert_eq!(
        settle["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SettleResponse"
    );
    assert_eq!(
        security("get", "/api/v1/clients"),
        serde_json::json!([{ "bearerAuth": [] }])
    );
    assert_eq!(
        security("get", "/api/v1/x402-metrics/daily"),
        serde_json::json!([{ "bearerAuth": [] }])
    );
    assert_eq!(
        security("post", "/admin/users"),
        serde_json::json!([{ "adminToken": [] }])
    );
    for (m, p) in [
        ("get", "/health"),
        ("get", "/api/v1/status"),
        ("get", "/api/v1/networks"),
        ("get", "/api/v1/assets"),
        ("post", "/api/v1/signup"),
        ("post", "/api/v1/login"),
        ("post", "/api/v1/token/refresh"),
        ("get", "/api/v1/resources"),
        ("get", "/api/v1/discovery/resources"),
        ("get", "/openapi.json"),
    ] {
        let s = security(m, p);
        assert!(
            s.is_null() || s == serde_json::json!([]),
            "{m} {p} is public: {s}"
        );
    }
    // Bodies are documented as the wire has them: envelope or bare.
    let ok = |m: &str, p: &str| {
        doc["paths"][p][m]["responses"]["200"]["content"]["application/json"]["schema"].clone()
    };
    assert_eq!(ok("get", "/health")["$ref"], "#/components/schemas/Health");
    assert_eq!(
        ok("get", "/api/v1/networks")["$ref"],
        "#/components/schemas/Supported"
    );
    assert_eq!(
        ok("get", "/api/v1/status")["properties"]["data"]["$ref"],
        "#/components/schemas/SystemStatus"
    );
    assert_eq!(
        ok("get", "/api/v1/assets")["properties"]["data"]["items"]["$ref"],
        "#/components/schemas/Asset"
    );
    let daily = &doc["paths"]["/api/v1/metrics/daily"]["get"]["parameters"];
    for name in ["from", "to"] {
        assert!(
            daily
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == name && p["in"] == "query"),
            "metrics/daily ?{name}"
        );
    }
    let metrics = &doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
    assert!(
        metrics
            .as_object()
            .unwrap()
            .keys()
            .all(|k| k.starts_with("text/plain") || k.starts_with("application/openmetrics-text")),
        "{metrics}"
    );
    // The document the server serves is the one the code builds.
    assert_eq!(
        doc,
        serde_json::to_value(x402_facilitator::routes::docs::openapi()).unwrap()
    );
}

/// `src="..."` and `href="..."` values of an HTML page.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=", "href="] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let value = &rest[1..];
            let end = value.find(quote).expect("closed attribute");
            out.push(value[..end].to_owned());
            rest = &value[end..];
        }
    }
    out
}

/// A page's reference resolved against `/docs/`; `None` for one to another host.
fn same_origin(app: &TestApp, reference: &str) -> Option<String> {
    if let Some(path) = reference.strip_prefix(&app.address) {
        return Some(path.to_owned());
    }
    let lower = reference.to_ascii_lowercase();
    if lower.starts_with("http:") || lower.starts_with("https:") || lower.starts_with("//") {
        return None;
    }
    if reference.starts_with('/') {
        return Some(reference.to_owned());
    }
    Some(format!("/docs/{}", reference.trim_start_matches("./")))
}

#[actix_web::test]
async fn docs_are_served_from_this_process() {
    let app = TestApp::spawn(Db::Sqlite).await;

    // `/docs` leads to `/docs/`.
    let res = app.get("/docs", None).await;
    assert!(res.status().is_redirection(), "{}", res.status());
    let location = res.headers()["location"].to_str().unwrap();
    let target = reqwest::Url::parse(&app.url("/docs"))
        .unwrap()
        .join(location)
        .unwrap();
    assert_eq!(target.path(), "/docs/");

    let res = app.get("/docs/", None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");

    let refs = references(&html);
    assert!(
        refs.iter().any(|r| r.ends_with(".js")) && refs.iter().any(|r| r.ends_with(".css")),
        "scripts and styles: {refs:?}"
    );
    let mut fetched = Vec::new();
    for r in &refs {
        let path =
            same_origin(&app, r).unwrap_or_else(|| panic!("/docs/ references another host: {r}"));
        let res = app.get(&path, None).await;
        assert_eq!(res.status(), 200, "{r} -> {path}");
        let body = res.bytes().await.unwrap();
        assert!(!body.is_empty(), "{path} is empty");
        fetched.push(path);
    }
    assert!(
        fetched
            .iter()
            .any(|p| p.ends_with("swagger-initializer.js")),
        "{fetched:?}"
    );

    // The initializer points at our document, and at nothing on another host.
    let init = app
        .get("/docs/swagger-initializer.js", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("\"/openapi.json\""), "{init}");
    assert!(!init.contains("petstore"), "{init}");
    for scheme in ["http://", "https://"] {
        assert!(
            !init.contains(scheme),
            "the initializer names a host: {init}"
        );
        assert!(!html.contains(scheme), "the page names a host: {html}");
    }

    // A file that is not part of Swagger UI is a 404 in the envelope.
    let res = app.get("/docs/nope.js", None).await;
    assert_eq!(res.status(), 404);
}

#[actix_web::test]
async fn headless_chromium_renders_the_docs() {
    // Fail (not skip) early and clearly when the browser is missing.
    let browser = chromium();
    let app = TestApp::spawn(Db::Sqlite).await;
    let url = app.url("/docs/");

    let (ok, dom, stderr) = run_chromium_async(
        vec![
            "--virtual-time-budget=15000".to_owned(),
            "--dump-dom".to_owned(),
        ],
        url.clone(),
    )
    .await;
    assert!(ok, "{} --dump-dom failed:\n{stderr}", browser.display());
    // Swagger UI breaks long paths with <wbr>.
    let dom = dom.replace("<wbr>", "");
    assert!(
        dom.contains("class=\"swagger-ui\"") || dom.contains("swagger-ui"),
        "Swagger UI did not load:\n{dom}\n{stderr}"
    );
    // One rendered operation block per route, and every routed path shown.
    let operations = dom.matches("class=\"opblock opblock-").count();
    let registered = x402_facilitator::routes::registered();
    assert_eq!(
        operations,
        registered.len(),
        "rendered operations vs routes\n{dom}"
    );
    let shown: BTreeSet<&str> = dom
        .split("data-path=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let routed: BTreeSet<&str> = registered.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(shown, routed, "paths rendered by Swagger UI");
    for path in ["/api/v1/settle", "/api/v1/verify", "/admin/users"] {
        assert!(
            dom.contains(&format!("data-path=\"{path}\"")),
            "{path} not rendered"
        );
    }
    assert!(dom.contains("x402 Facilitator API"), "title not rendered");
    assert!(
        dom.contains("Authorize"),
        "no Authorize button (security schemes)"
    );
    assert!(
        !dom.contains("Failed to load API definition"),
        "Swagger UI could not load /openapi.json:\n{dom}"
    );

    // A screenshot, kept for CI.
    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("create target/ci-artifacts");
    let png = dir.join("docs.png");
    let _ = std::fs::remove_file(&png);
    let (ok, _, stderr) = run_chromium_async(
        vec![
            "--virtual-time-budget=15000".to_owned(),
            "--window-size=1280,2000".to_owned(),
            format!("--screenshot={}", png.display()),
        ],
        url,
    )
    .await;
    assert!(ok, "{} --screenshot failed:\n{stderr}", browser.display());
    let bytes = std::fs::read(&png)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{stderr}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 10 * 1024,
        "screenshot is only {} bytes: a blank page?",
        bytes.len()
    );
}
