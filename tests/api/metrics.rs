//! Metrics: a known sequence of requests and settlements (on anvil + real USDC) against the
//! exact counts, sums and fees of every metrics endpoint, for a user and for an admin; the
//! from/to filters; `/metrics` through a real Prometheus parser; nothing lost on graceful
//! shutdown.

use alloy::primitives::{B256, U256};
use reqwest::Method;
use sea_orm::{ActiveModelTrait, Database, Set};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::chain_helpers::*;
use crate::helpers::*;

async fn get_json(app: &TestApp, path: &str, bearer: &str) -> Value {
    let res = app.get(path, Some(bearer)).await;
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// An admin user (created with the admin token), logged in: its access token.
async fn admin_user(app: &TestApp, email: &str) -> String {
    let res = app
        .post(
            "/admin/users",
            Some(ADMIN_TOKEN),
            json!({ "email": email, "password": PASSWORD, "is_admin": true }),
        )
        .await;
    assert_eq!(res.status(), 201);
    app.login(email).await
}

/// The per-route entry of an HTTP metrics report.
fn route<'a>(report: &'a Value, method: &str, route: &str) -> &'a Value {
    report["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["method"] == method && r["route"] == route)
        .unwrap_or_else(|| panic!("no {method} {route} in {report}"))
}

async fn fee_of(app: &ChainApp, tx: &Value) -> (u64, u128) {
    let hash: B256 = tx.as_str().unwrap().parse().unwrap();
    let r = app.devnet.receipt(hash).await.unwrap().unwrap();
    (r.gas_used, r.effective_gas_price * r.gas_used as u128)
}

both_dbs!(
    known_sequence_gives_exact_counts_sums_and_fees,
    |app: ChainApp| {
        let usdc = app.devnet.usdc.to_checksum(None);
        // ChainApp made: merchant signup + login + client key. Log in again for a token.
        let merchant_access = app.app.login("merchant@example.com").await;
        // Another merchant with its own key.
        let (other_access, _, _) = app.app.user("other@example.com").await;
        let (other_id, other_token) = app.app.client_key(&other_access, "settle").await;
        let admin = admin_user(&app.app, "ops@example.com").await;

        // Merchant: 2 verifies (1 valid, 1 expired), 5 settles (3 succeed, 2 fail off-chain).
        let p0 = app.payer(0).clone();
        let ok = Payment::new(&app, 0, 1_000);
        assert_eq!(
            app.verify(&ok.v1(&ok.sign(&p0), 1_000)).await["isValid"],
            true
        );
        let mut expired = ok.clone();
        expired.valid_before = now() - 1;
        let v = app.verify(&expired.v1(&expired.sign(&p0), 1_000)).await;
        assert_eq!(v["isValid"], false);

        let mut fees = (0u64, 0u128);
        let mut first = None;
        for value in [1_000u64, 2_000, 3_000] {
            let p = Payment::new(&app, 0, value);
            let body = p.v1(&p.sign(&p0), value);
            let s: Value = app
                .settle_with_key(&body, &format!("metrics-{value}"))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(s["success"], true, "{s}");
            let (g, f) = fee_of(&app, &s["transaction"]).await;
            fees = (fees.0 + g, fees.1 + f);
            first.get_or_insert((body, s["transaction"].clone()));
        }
        // The first one retried with its idempotency key: the same success and tx, but no second
        // transfer and no fee.
        let (body, tx) = first.unwrap();
        let again: Value = app
            .settle_with_key(&body, "metrics-1000")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(again["success"], true);
        assert_eq!(again["transaction"], tx);
        let stranger = app.payer(3).clone();
        let p = Payment::new(&app, 0, 500);
        let s = app.settle(&p.v1(&p.sign(&stranger), 500)).await;
        assert_eq!(s["errorReason"], "invalid_exact_evm_payload_signature");
        let mut p = Payment::new(&app, 0, 1);
        p.value = app.balance(p0.address()).await + U256::from(1);
        let s = app.settle(&p.v1(&p.sign(&p0), 1)).await;
        assert_eq!(s["errorReason"], "insufficient_funds");

        // The other merchant: one settle of 4_000.
        let p1 = app.payer(1).clone();
        let p = Payment::new(&app, 1, 4_000);
        let res = app
            .app
            .post_as_client(
                "/api/v1/settle",
                &other_id,
                &other_token,
                &p.v1(&p.sign(&p1), 4_000),
            )
            .await;
        let s: Value = res.json().await.unwrap();
        assert_eq!(s["success"], true, "{s}");
        let other_fee = fee_of(&app, &s["transaction"]).await;

        // An unknown route and a request without credentials.
        assert_eq!(app.app.get("/nope", None).await.status(), 404);
        assert_eq!(
            app.app.get("/api/v1/metrics/summary", None).await.status(),
            401
        );

        // HTTP metrics: every request above, by route pattern and status (this read is the first
        // metrics read, so it is not in its own answer).
        let summary = get_json(&app.app, "/api/v1/metrics/summary", &merchant_access).await;
        let totals = &summary["data"]["totals"];
        // signup x2, login x4 (merchant twice, other, admin), clients x2, admin/users x1,
        // verify x2, settle x7, /nope, unauthenticated metrics read.
        assert_eq!(totals["requests"], 20, "{totals}");
        assert_eq!(totals["errors"], 2);
        assert_eq!(totals["byStatus"]["404"], 1);
        assert_eq!(totals["byStatus"]["401"], 1);
        assert_eq!(totals["byStatus"]["201"], 1);
        assert_eq!(totals["byStatus"]["200"], 17);
        assert_eq!(route(totals, "POST", "/api/v1/settle")["requests"], 7);
        assert_eq!(route(totals, "POST", "/api/v1/verify")["requests"], 2);
        assert_eq!(route(totals, "POST", "/api/v1/login")["requests"], 4);
        assert_eq!(route(totals, "POST", "/api/v1/signup")["requests"], 2);
        assert_eq!(route(totals, "POST", "/api/v1/clients")["requests"], 2);
        assert_eq!(route(totals, "POST", "/admin/users")["byStatus"]["201"], 1);
        assert_eq!(route(totals, "GET", "(unmatched)")["byStatus"]["404"], 1);
        assert_eq!(
            route(totals, "GET", "/api/v1/metrics/summary")["byStatus"]["401"],
            1
        );
        assert!(
            route(totals, "POST", "/api/v1/settle")["avgLatencyMs"]
                .as_f64()
                .unwrap()
                > 0.0
        );

        let today = chrono::Utc::now().date_naive();
        let daily = get_json(&app.app, "/api/v1/metrics/daily", &merchant_access).await;
        let days = daily["data"]["days"].as_array().unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!(days[0]["date"], today.to_string());
        // Now the first metrics read (200) is in too.
        assert_eq!(days[0]["requests"], 21);
        let monthly = get_json(&app.app, "/api/v1/metrics/monthly", &admin).await;
        let months = monthly["data"]["months"].as_array().unwrap();
        assert_eq!(months.len(), 1);
        assert_eq!(months[0]["month"], today.format("%Y-%m").to_string());
        assert_eq!(months[0]["requests"], 22);

        // x402 metrics, as the merchant: only its own key's outcomes.
        let mine = get_json(&app.app, "/api/v1/x402-metrics/summary", &merchant_access).await;
        let t = &mine["data"]["totals"];
        assert_eq!(t["verify"]["count"], 2, "{t}");
        assert_eq!(t["verify"]["valid"], 1);
        assert_eq!(t["verify"]["invalid"], 1);
        assert_eq!(
            t["verify"]["invalidReasons"],
            json!({ "invalid_exact_evm_payload_authorization_valid_before": 1 })
        );
        assert_eq!(t["settle"]["count"], 6);
        assert_eq!(t["settle"]["successes"], 4);
        assert_eq!(t["settle"]["repeats"], 1);
        assert_eq!(t["settle"]["failures"], 2);
        assert_eq!(
            t["settle"]["failureReasons"],
            json!({ "insufficient_funds": 1, "invalid_exact_evm_payload_signature": 1 })
        );
        assert_eq!(
            t["amounts"],
            json!([{ "network": "base-sepolia", "asset": usdc, "amount": "6000", "settlements": 3 }])
        );
        assert_eq!(
            t["fees"],
            json!([{ "network": "base-sepolia", "gasUsed": fees.0, "feeWei": fees.1.to_string() }])
        );

        // As the admin: everyone's.
        let all = get_json(&app.app, "/api/v1/x402-metrics/summary", &admin).await;
        let t = &all["data"]["totals"];
        assert_eq!(t["settle"]["count"], 7, "{t}");
        assert_eq!(t["settle"]["successes"], 5);
        assert_eq!(t["amounts"][0]["amount"], "10000");
        assert_eq!(t["amounts"][0]["settlements"], 4);
        assert_eq!(t["fees"][0]["gasUsed"], fees.0 + other_fee.0);
        assert_eq!(t["fees"][0]["feeWei"], (fees.1 + other_fee.1).to_string());

        // Daily and monthly carry the same numbers under today's date / this month.
        let daily = get_json(&app.app, "/api/v1/x402-metrics/daily", &merchant_access).await;
        let days = daily["data"]["days"].as_array().unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!(days[0]["date"], today.to_string());
        assert_eq!(days[0]["settle"]["successes"], 4);
        assert_eq!(days[0]["amounts"][0]["settlements"], 3);
        assert_eq!(days[0]["amounts"][0]["amount"], "6000");
        let monthly = get_json(&app.app, "/api/v1/x402-metrics/monthly", &admin).await;
        let months = monthly["data"]["months"].as_array().unwrap();
        assert_eq!(months[0]["month"], today.format("%Y-%m").to_string());
        assert_eq!(months[0]["settle"]["count"], 7);
        assert_eq!(
            months[0]["fees"][0]["feeWei"],
            (fees.1 + other_fee.1).to_string()
        );
        // The other merchant sees its one settle only.
        let theirs = get_json(&app.app, "/api/v1/x402-metrics/summary", &other_access).await;
        assert_eq!(theirs["data"]["totals"]["settle"]["count"], 1);
        assert_eq!(theirs["data"]["totals"]["verify"]["count"], 0);

        // Prometheus: parsed by a real parser, values asserted.
        let res = app.app.get("/metrics", None).await;
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
            let sample = scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                })
                .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"));
            match &sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                other => panic!("{name}: unexpected {other:?}"),
            }
        };
        assert_eq!(
            value(
                "http_requests_total",
                &[
                    ("method", "POST"),
                    ("route", "/api/v1/settle"),
                    ("status", "200")
                ]
            ),
            7.0
        );
        assert_eq!(
            value(
                "x402_settle_total",
                &[("network", "base-sepolia"), ("outcome", "success")]
            ),
            4.0
        );
        assert_eq!(
            value(
                "x402_settle_total",
                &[
                    ("network", "base-sepolia"),
                    ("outcome", "insufficient_funds")
                ]
            ),
            1.0
        );
        assert_eq!(
            value(
                "x402_settle_total",
                &[("network", "base-sepolia"), ("outcome", "success_repeat")]
            ),
            1.0
        );
        // Mined transfers: four, whatever the number of requests; their gas exactly.
        assert_eq!(
            value(
                "x402_transfers_total",
                &[("network", "base-sepolia"), ("outcome", "confirmed")]
            ),
            4.0
        );
        assert_eq!(
            value("x402_gas_used_total", &[("network", "base-sepolia")]),
            (fees.0 + other_fee.0) as f64
        );
        assert_eq!(
            value(
                "x402_verify_total",
                &[("network", "base-sepolia"), ("outcome", "success")]
            ),
            1.0
        );
        let signer = app.devnet.facilitator_keys[0].address().to_checksum(None);
        let labels = [("network", "base-sepolia"), ("signer", signer.as_str())];
        assert_eq!(value("x402_signer_in_flight_transactions", &labels), 0.0);
        // Four transactions: nonces 0..=3.
        assert_eq!(value("x402_signer_last_nonce", &labels), 3.0);
        assert!(value("x402_signer_balance_native", &labels) > 0.0);
        let settle_latency = scrape
            .samples
            .iter()
            .find(|s| s.metric == "x402_settle_duration_seconds")
            .expect("settle latency histogram");
        match &settle_latency.value {
            prometheus_parse::Value::Histogram(buckets) => {
                assert_eq!(buckets.last().unwrap().count, 7.0, "all settles observed")
            }
            other => panic!("histogram expected, got {other:?}"),
        }
    }
);

both_dbs!(from_and_to_filter_days_and_months, |app| {
    let (access, _, _) = app.user("filter@example.com").await;
    let (mine, _) = app.client_key(&access, "settle").await;
    let admin = admin_user(&app, "filter-admin@example.com").await;
    // Rollup rows of past days, written as the MetricsActor writes them.
    let conn = Database::connect(&app.db.url).await.unwrap();
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    for (d, n) in [("2026-01-15", 3), ("2026-01-20", 4), ("2026-02-10", 5)] {
        entities::http_metrics_daily::ActiveModel {
            day: Set(day(d)),
            method: Set("GET".into()),
            route: Set("/api/v1/assets".into()),
            status: Set(200),
            count: Set(n),
            total_latency_us: Set(n * 1000),
            max_latency_us: Set(2000),
            ..Default::default()
        }
        .insert(&conn)
        .await
        .unwrap();
        // Per key: n settle answers (successes) and the n transfers they mined.
        for client in [mine.as_str(), "someone-else"] {
            for (operation, outcome, amount, gas, fee, latency) in [
                ("settle", "success", 0, 0, "0", n * 5_000),
                (
                    "transfer",
                    "confirmed",
                    n * 1_000_000,
                    n * 60_000,
                    "18446744073709551616000",
                    0,
                ),
            ] {
                entities::x402_metrics_daily::ActiveModel {
                    day: Set(day(d)),
                    client_id: Set(client.into()),
                    network: Set("base".into()),
                    asset: Set("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into()),
                    operation: Set(operation.into()),
                    outcome: Set(outcome.into()),
                    count: Set(n),
                    amount_sum: Set(amount.to_string()),
                    gas_used_sum: Set(gas),
                    fee_wei_sum: Set(fee.into()),
                    total_latency_us: Set(latency),
                    ..Default::default()
                }
                .insert(&conn)
                .await
                .unwrap();
            }
        }
    }
    conn.close().await.unwrap();

    let q = "from=2026-01-01&to=2026-01-31";
    let daily = get_json(&app, &format!("/api/v1/metrics/daily?{q}"), &access).await;
    assert_eq!(daily["data"]["from"], "2026-01-01");
    assert_eq!(daily["data"]["to"], "2026-01-31");
    let days = daily["data"]["days"].as_array().unwrap();
    let dates: Vec<&str> = days.iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert_eq!(dates, ["2026-01-15", "2026-01-20"]);
    assert_eq!(days[1]["requests"], 4);
    assert_eq!(days[1]["avgLatencyMs"], 1.0);
    assert_eq!(days[1]["maxLatencyMs"], 2.0);

    // Date-times are accepted (their UTC day); the range is inclusive.
    let monthly = get_json(
        &app,
        "/api/v1/metrics/monthly?from=2026-01-20T00:00:00Z&to=2026-02-10",
        &access,
    )
    .await;
    let months = monthly["data"]["months"].as_array().unwrap();
    assert_eq!(months.len(), 2);
    assert_eq!(months[0]["month"], "2026-01");
    assert_eq!(months[0]["requests"], 4);
    assert_eq!(months[1]["month"], "2026-02");
    assert_eq!(months[1]["requests"], 5);

    // x402, same filters: the user sees its key's rows, the admin both keys'.
    let d = get_json(&app, &format!("/api/v1/x402-metrics/daily?{q}"), &access).await;
    let days = d["data"]["days"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0]["settle"]["count"], 3);
    assert_eq!(days[0]["amounts"][0]["amount"], "3000000");
    let m = get_json(
        &app,
        "/api/v1/x402-metrics/monthly?from=2026-02-01&to=2026-02-28",
        &admin,
    )
    .await;
    let months = m["data"]["months"].as_array().unwrap();
    assert_eq!(months.len(), 1);
    assert_eq!(months[0]["settle"]["count"], 10);
    assert_eq!(months[0]["fees"][0]["gasUsed"], 600_000);
    // Two rows of 2^64 * 1000 wei: summed exactly, past u64.
    assert_eq!(months[0]["fees"][0]["feeWei"], "36893488147419103232000");
    let s = get_json(&app, "/api/v1/x402-metrics/summary?to=2026-01-31", &access).await;
    assert_eq!(s["data"]["totals"]["settle"]["count"], 7);
    assert_eq!(s["data"]["totals"]["amounts"][0]["amount"], "7000000");

    // Bad dates and ranges: 400 INVALID_REQUEST, in the envelope.
    for (path, details) in [
        (
            "/api/v1/metrics/daily?from=2026-13-01",
            "from: expected an ISO 8601 date (YYYY-MM-DD) or date-time, got \"2026-13-01\"",
        ),
        (
            "/api/v1/x402-metrics/daily?to=yesterday",
            "to: expected an ISO 8601 date (YYYY-MM-DD) or date-time, got \"yesterday\"",
        ),
        (
            "/api/v1/x402-metrics/monthly?from=2026-02-01&to=2026-01-01",
            "from (2026-02-01) is after to (2026-01-01)",
        ),
    ] {
        let body = assert_error(
            app.get(path, Some(&access)).await,
            400,
            "INVALID_REQUEST",
            Some("Invalid query parameters"),
        )
        .await;
        assert_eq!(body["details"], details, "{path}");
    }
    assert_error(
        app.get("/api/v1/metrics/summary?since=2026-01-01", Some(&access))
            .await,
        400,
        "INVALID_REQUEST",
        Some("Invalid query parameters"),
    )
    .await;
    // Credentials: missing, wrong, or the admin token (not a user's JWT).
    for path in [
        "/api/v1/metrics/daily",
        "/api/v1/metrics/monthly",
        "/api/v1/metrics/summary",
        "/api/v1/x402-metrics/daily",
        "/api/v1/x402-metrics/monthly",
        "/api/v1/x402-metrics/summary",
    ] {
        assert_error(app.get(path, None).await, 401, "UNAUTHORIZED", None).await;
        assert_error(
            app.get(path, Some("not-a-token")).await,
            401,
            "UNAUTHORIZED",
            None,
        )
        .await;
        assert_error(
            app.get(path, Some(ADMIN_TOKEN)).await,
            401,
            "UNAUTHORIZED",
            None,
        )
        .await;
        let res = app.request(Method::POST, path, Some(&access), None).await;
        assert_eq!(res.status(), 405);
    }
});

both_dbs!(graceful_shutdown_writes_what_is_in_memory, |app| {
    // Rollups are written on a long timer here: only the shutdown flush can save them.
    let db = app.stop().await;
    let app = TestApp::spawn_on(db, json!({ "metrics": { "flush_interval_secs": 3600 } })).await;
    for _ in 0..7 {
        assert_eq!(app.get("/api/v1/assets", None).await.status(), 200);
    }
    let db = app.stop().await;
    // Read the rows straight from the database: nothing read them (and flushed) before.
    let conn = Database::connect(&db.url).await.unwrap();
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let rows = entities::http_metrics_daily::Entity::find()
        .filter(entities::http_metrics_daily::Column::Route.eq("/api/v1/assets"))
        .all(&conn)
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.count).sum::<i64>(), 7);
    conn.close().await.unwrap();
    let app = TestApp::spawn_on(db, json!({})).await;
    let (access, _, _) = app.user("after-restart@example.com").await;
    let s = get_json(&app, "/api/v1/metrics/summary", &access).await;
    assert_eq!(
        route(&s["data"]["totals"], "GET", "/api/v1/assets")["requests"],
        7
    );
});

both_dbs!(prometheus_access_is_loopback_or_bearer_token, |app| {
    // Loopback, no token configured: open.
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), 200);
    assert!(res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let db = app.stop().await;
    let token = "prometheus-scrape-token-0123456789abcdef";
    let app = TestApp::spawn_on(db, json!({ "metrics": { "prometheus_token": token } })).await;
    assert_error(app.get("/metrics", None).await, 401, "UNAUTHORIZED", None).await;
    assert_error(
        app.get("/metrics", Some("wrong")).await,
        401,
        "UNAUTHORIZED",
        None,
    )
    .await;
    let res = app.get("/metrics", Some(token)).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("# TYPE http_requests counter"), "{text}");
});

both_dbs!(every_response_carries_a_request_id, |app| {
    let res = app.get("/health", None).await;
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    // A caller's sane id is echoed, on errors too; an unsafe one is replaced.
    let res = app
        .http
        .get(app.url("/nope"))
        .header("X-Request-Id", "trace-42.abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["x-request-id"], "trace-42.abc");
    let res = app
        .http
        .get(app.url("/health"))
        .header("X-Request-Id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "bad id\twith spaces");
    // Unknown paths and odd methods do not mint metric series: one pattern, one method label.
    for path in ["/a", "/b/c", "/d?e=f"] {
        app.http
            .request(Method::from_bytes(b"BREW").unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
    }
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let unmatched: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("(unmatched)")
                && !l.contains("method=\"GET\"")
        })
        .collect();
    assert_eq!(unmatched.len(), 1, "{unmatched:?}");
    assert!(
        unmatched[0].contains("method=\"OTHER\""),
        "{}",
        unmatched[0]
    );
    assert!(unmatched[0].ends_with(" 3"), "{}", unmatched[0]);
});

// Metrics reads flush the in-memory batch to the database first. On SQLite that flush once
// read the rollup rows and then wrote them, and failed at once ("database is locked", a 503)
// whenever another request committed a write in between. Reads beside a stream of writing
// requests (signups: users and throttle rows) all answer.
both_dbs!(metrics_reads_beside_concurrent_writes_all_answer, |app| {
    let (access, _, _) = app.user("reader@example.com").await;
    let answers = futures::future::join_all((0..80).map(|i| {
        let (app, access) = (&app, &access);
        async move {
            let res = if i % 2 == 0 {
                app.get("/api/v1/metrics/summary", Some(access)).await
            } else {
                app.post(
                    "/api/v1/signup",
                    None,
                    json!({ "email": format!("writer{i}@example.com"), "password": PASSWORD }),
                )
                .await
            };
            let status = res.status().as_u16();
            (i, status, res.text().await.unwrap())
        }
    }))
    .await;
    let mut reads = 0;
    for (i, status, body) in answers {
        assert!(status < 500, "request {i}: {status} {body}");
        if i % 2 == 0 {
            assert_eq!(status, 200, "read {i}: {body}");
            reads += 1;
        }
    }
    assert_eq!(reads, 40);
});
