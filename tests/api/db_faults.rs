//! A frozen database, for real: PostgreSQL behind a TCP proxy that stops passing bytes (as a
//! stopped server: connections stay open, nothing answers). No request waits on it past the
//! stated bound (`server.answer_timeout_secs`); the health endpoints say so; a settle caught
//! by the freeze goes on once the database is back, and a retry with its idempotency key gets
//! its one success.

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use devnet::{Devnet, DevnetOptions};
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::helpers::*;
use crate::tcp_proxy::TcpProxy;

const BOUND: Duration = Duration::from_secs(3);
/// What an answer at the bound may take beyond it (scheduling on a loaded machine).
const SLACK: Duration = Duration::from_millis(2500);

async fn timed(
    res: impl std::future::Future<Output = reqwest::Response>,
) -> (u16, Value, Duration) {
    let t = Instant::now();
    let res = res.await;
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").is_some();
    let request_id = res.headers().get("x-request-id").is_some();
    let mut v: Value = res.json().await.unwrap_or(Value::Null);
    v["__retry_after"] = json!(retry_after);
    v["__request_id"] = json!(request_id);
    (status, v, t.elapsed())
}

#[actix_web::test]
async fn a_frozen_database_is_answered_within_the_bound_and_a_settle_caught_by_it_succeeds_once() {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let mut db = TestDb::create(Db::Postgres).await;
    let proxy = TcpProxy::start("127.0.0.1:5432").await;
    db.url = db
        .url
        .replace("127.0.0.1:5432", proxy.url().trim_start_matches("http://"));
    let app = ChainApp::start_app_full(
        db,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        json!({}),
        json!({ "server": { "answer_timeout_secs": BOUND.as_secs() } }),
    )
    .await;
    let app = ChainApp::with_merchant(app, devnet).await;
    let payer = app.payer(0).clone();
    let pay = Payment::new(&app, 0, 1234);
    let body = pay.v1(&pay.sign(&payer), 1234);
    assert_eq!(app.verify(&body).await["isValid"], true);
    let before = app.balance(PAY_TO).await;

    proxy.freeze();
    // Liveness needs no database; status and readiness say it does not answer, in time.
    let (status, _, took) = timed(app.app.get("/health", None)).await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "/health took {took:?}");
    let (status, v, took) = timed(app.app.get("/api/v1/status", None)).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["database"]["status"], "unhealthy", "{v}");
    assert_eq!(v["data"]["status"], "degraded", "{v}");
    assert!(took < BOUND + SLACK, "/api/v1/status took {took:?}");
    let (status, v, _) = timed(app.app.get("/ready", None)).await;
    assert_eq!(status, 503, "{v}");

    // Verify and settle answer at the bound: 503, Retry-After, in the envelope.
    for path in ["/api/v1/verify", "/api/v1/settle"] {
        let (status, v, took) = if path.ends_with("settle") {
            timed(app.settle_with_key(&body, "frozen-db-1")).await
        } else {
            timed(app.post_x402(path, &body)).await
        };
        assert_eq!(status, 503, "{path}: {v}");
        assert_eq!(v["code"], "SERVICE_UNAVAILABLE", "{path}: {v}");
        assert_eq!(v["__retry_after"], true, "{path}: Retry-After");
        assert_eq!(v["__request_id"], true, "{path}: X-Request-Id");
        assert!(
            took >= BOUND && took < BOUND + SLACK,
            "{path} answered after {took:?}, bound {BOUND:?}"
        );
    }
    // Nothing was paid while the ledger could not be written.
    assert_eq!(app.balance(PAY_TO).await, before);

    // The database is back: the settle caught by the freeze goes on; a retry with its key
    // gets its success, once; a copy without the key is refused.
    proxy.pass();
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let res = app.settle_with_key(&body, "frozen-db-1").await;
        let status = res.status().as_u16();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        if status == 200 && v["success"] == true {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no success after the database came back: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(1234));
    let again: Value = app
        .settle_with_key(&body, "frozen-db-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, answer, "a further retry replays the success");
    let copy = app.settle(&body).await;
    assert_eq!(copy["success"], false, "{copy}");
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(1234));
}
