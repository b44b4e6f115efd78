//! Usage credits of client keys: the operator gives a key a number of settlements; each new
//! authorization uses one (a copy or an idempotent retry does not, a settle that sends nothing
//! gives it back); out of credits, `/settle` is refused with 403 until the operator tops it up.

use alloy::primitives::U256;
use devnet::DevnetOptions;
use reqwest::Method;
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::helpers::*;

pub async fn patch_credits(
    app: &TestApp,
    id: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    app.request(
        Method::PATCH,
        &format!("/admin/clients/{id}"),
        token,
        Some(body),
    )
    .await
}

async fn credits_of(app: &ChainApp, access: &str) -> Value {
    let list: Value = app
        .app
        .get("/api/v1/clients", Some(access))
        .await
        .json()
        .await
        .unwrap();
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == app.client_id.as_str())
        .unwrap()["settleCredits"]
        .clone()
}

async fn credits_flow(kind: Db) {
    let app = ChainApp::spawn(kind, DevnetOptions::default()).await;
    let access = app.app.login("merchant@example.com").await;
    assert_eq!(
        credits_of(&app, &access).await,
        Value::Null,
        "unlimited by default"
    );

    let res = patch_credits(
        &app.app,
        &app.client_id,
        Some(ADMIN_TOKEN),
        json!({"settleCredits": 2}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["client"]["settleCredits"], 2);
    assert_eq!(body["data"]["client"]["clientId"], app.client_id.as_str());

    let payer = app.payer(0).clone();
    let body_of = |value: u64| {
        let p = Payment::new(&app, 0, value);
        p.v1(&p.sign(&payer), value)
    };
    let before = app.balance(PAY_TO).await;

    // A settle that sends nothing gives its credit back.
    let mut broke = Payment::new(&app, 0, 1);
    broke.value = app.balance(payer.address()).await + U256::from(1);
    let failed = app.settle(&broke.v1(&broke.sign(&payer), 1)).await;
    assert_eq!(failed["errorReason"], "insufficient_funds");
    assert_eq!(credits_of(&app, &access).await, 2);

    // Two new authorizations use both credits; an idempotent retry and a copy use none.
    let a = body_of(100);
    for _ in 0..2 {
        let res = app.settle_with_key(&a, "credits-a").await;
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer["success"], true, "{answer}");
    }
    let copy = app.settle(&a).await;
    assert_eq!(copy["errorReason"], "invalid_exact_evm_nonce_already_used");
    assert_eq!(credits_of(&app, &access).await, 1);
    assert_eq!(app.settle(&body_of(200)).await["success"], true);
    assert_eq!(credits_of(&app, &access).await, 0);

    // Out of credits: refused, nothing moves; verify is not limited.
    let c = body_of(300);
    let res = app.post_x402("/api/v1/settle", &c).await;
    assert_error(
        res,
        403,
        "FORBIDDEN",
        Some("this client key has no settle credits left"),
    )
    .await;
    assert_eq!(app.verify(&c).await["isValid"], true);
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(300));

    // Topped up: the same authorization now settles.
    let res = patch_credits(
        &app.app,
        &app.client_id,
        Some(ADMIN_TOKEN),
        json!({"addSettleCredits": 1}),
    )
    .await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["data"]["client"]["settleCredits"],
        1
    );
    assert_eq!(app.settle(&c).await["success"], true);
    assert_eq!(credits_of(&app, &access).await, 0);
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(600));

    // Bad changes.
    for (body, details) in [
        (
            json!({}),
            "nothing to change: give settleCredits, addSettleCredits or rateLimitPerSecond",
        ),
        (
            json!({"settleCredits": 1, "addSettleCredits": 1}),
            "give settleCredits or addSettleCredits, not both",
        ),
        (
            json!({"settleCredits": -1}),
            "settleCredits must be 0 or more (null for unlimited)",
        ),
        (
            json!({"settleCredits": "ten"}),
            "settleCredits must be an integer or null",
        ),
        (
            json!({"addSettleCredits": 0}),
            "addSettleCredits must not be 0",
        ),
        (
            json!({"addSettleCredits": -1}),
            "cannot remove more credits than the key has",
        ),
    ] {
        let res = patch_credits(&app.app, &app.client_id, Some(ADMIN_TOKEN), body.clone()).await;
        let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
        assert_eq!(err["details"], details, "{body}");
    }
    let res = patch_credits(
        &app.app,
        &app.client_id,
        Some(ADMIN_TOKEN),
        json!({"credits": 1}),
    )
    .await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;
    // Back to unlimited; adding to an unlimited key makes no sense.
    let res = patch_credits(
        &app.app,
        &app.client_id,
        Some(ADMIN_TOKEN),
        json!({"settleCredits": null}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(credits_of(&app, &access).await, Value::Null);
    let res = patch_credits(
        &app.app,
        &app.client_id,
        Some(ADMIN_TOKEN),
        json!({"addSettleCredits": 3}),
    )
    .await;
    let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
    assert_eq!(
        err["details"],
        "this key has no credit limit; set settleCredits first"
    );
    assert_eq!(
        app.settle(&body_of(400)).await["success"],
        true,
        "unlimited again"
    );

    // Unknown key, and credentials.
    let res = patch_credits(
        &app.app,
        "cl_nope",
        Some(ADMIN_TOKEN),
        json!({"settleCredits": 1}),
    )
    .await;
    assert_error(res, 404, "NOT_FOUND", Some("client not found")).await;
    for token in [None, Some("wrong-admin-token"), Some(access.as_str())] {
        let res = patch_credits(&app.app, &app.client_id, token, json!({"settleCredits": 1})).await;
        assert_error(res, 401, "UNAUTHORIZED", None).await;
    }
}

/// Concurrent settles never spend more credits than the key has.
async fn concurrent_credits(kind: Db) {
    let app = ChainApp::spawn(kind, DevnetOptions::default()).await;
    let res = patch_credits(
        &app.app,
        &app.client_id,
        Some(ADMIN_TOKEN),
        json!({"settleCredits": 5}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let before = app.balance(PAY_TO).await;
    let bodies: Vec<Value> = (0..12u64)
        .map(|i| {
            let p = Payment::new(&app, (i % 4) as usize, 1_000 + i);
            p.v1(&p.sign(app.payer((i % 4) as usize)), 1_000 + i)
        })
        .collect();
    let answers =
        futures::future::join_all(bodies.iter().map(|b| app.post_x402("/api/v1/settle", b))).await;
    let mut settled = U256::ZERO;
    let (mut ok, mut refused) = (0, 0);
    for (res, body) in answers.into_iter().zip(&bodies) {
        match res.status().as_u16() {
            200 => {
                let a: Value = res.json().await.unwrap();
                assert_eq!(a["success"], true, "{a}");
                settled += body["paymentPayload"]["payload"]["authorization"]["value"]
                    .as_str()
                    .unwrap()
                    .parse::<U256>()
                    .unwrap();
                ok += 1;
            }
            403 => refused += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!((ok, refused), (5, 7));
    assert_eq!(app.balance(PAY_TO).await - before, settled);
}

#[actix_web::test]
async fn concurrent_settles_spend_exactly_the_credits_sqlite() {
    concurrent_credits(Db::Sqlite).await
}

#[actix_web::test]
async fn concurrent_settles_spend_exactly_the_credits_postgres() {
    concurrent_credits(Db::Postgres).await
}

#[actix_web::test]
async fn settle_credits_limit_a_key_sqlite() {
    credits_flow(Db::Sqlite).await
}

#[actix_web::test]
async fn settle_credits_limit_a_key_postgres() {
    credits_flow(Db::Postgres).await
}

// Found by schemathesis: adding past i64::MAX stored a REAL on SQLite, and every read of the
// key failed with 500 from then on (PostgreSQL refused the sum with a 500); removing i64::MIN
// overflowed its negation.
crate::both_dbs!(credits_stay_within_a_64_bit_balance, |app| {
    let (access, _, _) = app.user("bounds@example.com").await;
    let (client_id, _) = app.client_key(&access, "verify,settle").await;
    let patch = |body: Value| patch_credits(&app, &client_id, Some(ADMIN_TOKEN), body);
    let res = patch(json!({"settleCredits": i64::MAX - 1})).await;
    assert_eq!(res.status(), 200);
    let res = patch(json!({"addSettleCredits": 2})).await;
    let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
    assert_eq!(
        err["details"],
        format!("a key holds at most {} credits", i64::MAX)
    );
    let res = patch(json!({"addSettleCredits": i64::MIN})).await;
    let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
    assert_eq!(
        err["details"],
        "cannot remove more credits than the key has"
    );
    let res = patch(json!({"addSettleCredits": 1})).await;
    assert_eq!(res.status(), 200);
    let keys: Value = app
        .get("/api/v1/clients", Some(&access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys["data"][0]["settleCredits"], i64::MAX, "{keys}");
});
