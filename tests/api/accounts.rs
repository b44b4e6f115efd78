//! Account limits, which bind every key of an account together: settle credits, a daily gas
//! budget and a rate limit set by the operator (`PATCH /admin/users/{id}`), and caps on the
//! live keys and the resources of an account. Keys created after a limit are bound by it too.

use std::time::Instant;

use alloy::primitives::{B256, U256};
use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::chain_helpers::*;
use crate::helpers::*;

/// Payments well above any value floor an operator would configure.
const VALUE: u64 = 25_000;

async fn patch_account(app: &TestApp, user_id: i64, body: Value) -> Response {
    app.request(
        Method::PATCH,
        &format!("/admin/users/{user_id}"),
        Some(ADMIN_TOKEN),
        Some(body),
    )
    .await
}

/// `PATCH /admin/users/{id}` that must succeed: the account it answers.
async fn set_account(app: &TestApp, user_id: i64, body: Value) -> Value {
    let res = patch_account(app, user_id, body.clone()).await;
    assert_eq!(res.status(), 200, "{body}");
    res.json::<Value>().await.unwrap()["data"]["account"].clone()
}

/// `GET /users/me`.
async fn me(app: &TestApp, access: &str) -> Value {
    let res = app.get("/api/v1/users/me", Some(access)).await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["data"].clone()
}

/// `GET /clients/status` of a key.
async fn key_status(app: &TestApp, id: &str, token: &str) -> Value {
    let res = app.get_as_client("/api/v1/clients/status", id, token).await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["data"].clone()
}

/// `POST /settle` with a key.
async fn settle_with(app: &ChainApp, id: &str, token: &str, body: &Value) -> Response {
    app.app
        .post_as_client("/api/v1/settle", id, token, body)
        .await
}

/// A signed v1 payment of `value` by payer `payer`, and its authorization.
fn payment(app: &ChainApp, payer: usize, value: u64) -> (Value, Payment) {
    let p = Payment::new(app, payer, value);
    (p.v1(&p.sign(app.payer(payer)), value), p)
}

both_dbs!(
    account_credits_bind_every_key_old_and_new,
    |app: ChainApp| {
        let access = app.app.login("merchant@example.com").await;
        let user_id = me(&app.app, &access).await["id"].as_i64().unwrap();
        let (old_id, old_token) = (app.client_id.clone(), app.client_token.clone());

        // An account with no credits: its existing key and a key created afterwards are refused.
        let account = set_account(&app.app, user_id, json!({ "settleCredits": 0 })).await;
        assert_eq!(account["settleCredits"], 0);
        let (new_id, new_token) = app.app.client_key(&access, "verify,settle").await;
        let before = app.balance(PAY_TO).await;
        for (id, token) in [(&old_id, &old_token), (&new_id, &new_token)] {
            let (body, p) = payment(&app, 0, VALUE);
            let res = settle_with(&app, id, token, &body).await;
            assert_error(
                res,
                403,
                "FORBIDDEN",
                Some("this account has no settle credits left"),
            )
            .await;
            let res = app
                .app
                .post_as_client("/api/v1/verify", id, token, &body)
                .await;
            assert_eq!(res.json::<Value>().await.unwrap()["isValid"], true);
            assert!(!app
                .devnet
                .authorization_state(p.from, p.nonce)
                .await
                .unwrap());
            // The key sees its account's limit; its own stays unlimited.
            let status = key_status(&app.app, id, token).await;
            assert_eq!(status["settleCredits"], Value::Null);
            assert_eq!(status["account"]["settleCredits"], 0);
        }
        assert_eq!(app.balance(PAY_TO).await, before);

        // Credits back: 9 concurrent settles over 3 keys with 8 credits: exactly 8 settle.
        let (third_id, third_token) = app.app.client_key(&access, "verify,settle").await;
        let keys = [
            (old_id.clone(), old_token.clone()),
            (new_id.clone(), new_token.clone()),
            (third_id, third_token),
        ];
        let account = set_account(&app.app, user_id, json!({ "addSettleCredits": 8 })).await;
        assert_eq!(account["settleCredits"], 8);
        let payments: Vec<(Value, Payment)> = (0..9)
            .map(|i| payment(&app, i % 4, VALUE + i as u64))
            .collect();
        let answers =
            futures::future::join_all(payments.iter().enumerate().map(|(i, (body, _))| {
                let (id, token) = &keys[i % 3];
                settle_with(&app, id, token, body)
            }))
            .await;
        let (mut settled, mut refused, mut moved) = (Vec::new(), 0, U256::ZERO);
        for (res, (_, p)) in answers.into_iter().zip(&payments) {
            match res.status().as_u16() {
                200 => {
                    let answer: Value = res.json().await.unwrap();
                    assert_eq!(answer["success"], true, "{answer}");
                    moved += p.value;
                    settled.push(p.clone());
                }
                403 => {
                    let err = assert_error(res, 403, "FORBIDDEN", None).await;
                    assert_eq!(err["message"], "this account has no settle credits left");
                    refused += 1;
                }
                s => panic!("unexpected status {s}"),
            }
        }
        assert_eq!((settled.len(), refused), (8, 1));
        // On chain too: exactly the 8 answered ones moved, and only their nonces are used.
        assert_eq!(app.balance(PAY_TO).await - before, moved);
        for (_, p) in &payments {
            let used = app
                .devnet
                .authorization_state(p.from, p.nonce)
                .await
                .unwrap();
            assert_eq!(used, settled.iter().any(|s| s.nonce == p.nonce));
        }
        assert_eq!(me(&app.app, &access).await["settleCredits"], 0);

        // A key's own limit still binds inside its account's: refused by the key, and the
        // account's credit is left for another key.
        set_account(&app.app, user_id, json!({ "addSettleCredits": 1 })).await;
        let res = app
            .app
            .request(
                Method::PATCH,
                &format!("/admin/clients/{old_id}"),
                Some(ADMIN_TOKEN),
                Some(json!({ "settleCredits": 0 })),
            )
            .await;
        assert_eq!(res.status(), 200);
        let (body, _) = payment(&app, 1, VALUE);
        let res = settle_with(&app, &old_id, &old_token, &body).await;
        assert_error(
            res,
            403,
            "FORBIDDEN",
            Some("this client key has no settle credits left"),
        )
        .await;
        assert_eq!(me(&app.app, &access).await["settleCredits"], 1);
        let res = settle_with(&app, &new_id, &new_token, &body).await;
        assert_eq!(res.json::<Value>().await.unwrap()["success"], true);
        assert_eq!(me(&app.app, &access).await["settleCredits"], 0);

        // Unlimited again.
        let account = set_account(&app.app, user_id, json!({ "settleCredits": null })).await;
        assert_eq!(account["settleCredits"], Value::Null);
        let (body, _) = payment(&app, 2, VALUE);
        let res = settle_with(&app, &new_id, &new_token, &body).await;
        assert_eq!(res.json::<Value>().await.unwrap()["success"], true);
    }
);

/// The value of one sample of the Prometheus exposition.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name}: unexpected {other:?}"),
        })
}

both_dbs!(
    an_account_gas_budget_once_spent_refuses_settles,
    |app: ChainApp| {
        let access = app.app.login("merchant@example.com").await;
        let user_id = me(&app.app, &access).await["id"].as_i64().unwrap();
        let (a_id, a_token) = (app.client_id.clone(), app.client_token.clone());
        let (b_id, b_token) = app.app.client_key(&access, "verify,settle").await;

        // A budget of 0: nothing may be spent.
        let account = set_account(&app.app, user_id, json!({ "gasBudgetWeiPerDay": "0" })).await;
        assert_eq!(account["gasBudgetWeiPerDay"], "0");
        assert_eq!(account["gasBudgetLeftWei"], "0");
        let budget_spent =
            "this account's gas budget for today (UTC) is spent; it renews at 00:00 UTC";
        let (body, _) = payment(&app, 0, VALUE);
        assert_error(
            settle_with(&app, &a_id, &a_token, &body).await,
            403,
            "FORBIDDEN",
            Some(budget_spent),
        )
        .await;

        // A budget of 1 wei: the first settle is admitted (nothing spent yet) and spends it.
        set_account(&app.app, user_id, json!({ "gasBudgetWeiPerDay": "1" })).await;
        let answer: Value = settle_with(&app, &a_id, &a_token, &body)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(answer["success"], true, "{answer}");
        let tx: B256 = answer["transaction"].as_str().unwrap().parse().unwrap();
        let receipt = app.devnet.receipt(tx).await.unwrap().expect("mined");
        let gas = receipt.gas_used;
        let fee = U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price);
        assert!(fee > U256::ZERO);

        // Spent: every key of the account is refused, a new one too; verify is not limited.
        let (c_id, c_token) = app.app.client_key(&access, "verify,settle").await;
        for (id, token) in [(&a_id, &a_token), (&b_id, &b_token), (&c_id, &c_token)] {
            let (body, p) = payment(&app, 1, VALUE);
            assert_error(
                settle_with(&app, id, token, &body).await,
                403,
                "FORBIDDEN",
                Some(budget_spent),
            )
            .await;
            assert!(!app
                .devnet
                .authorization_state(p.from, p.nonce)
                .await
                .unwrap());
        }

        // The spend, per account and per key: the owner's views.
        let day = chrono::Utc::now().date_naive().to_string();
        let mine = me(&app.app, &access).await;
        assert_eq!(mine["gasBudgetWeiPerDay"], "1");
        assert_eq!(mine["gasBudgetLeftWei"], "0");
        assert_eq!(mine["gasToday"]["day"], day.as_str());
        assert_eq!(mine["gasToday"]["gasUsed"], gas);
        assert_eq!(mine["gasToday"]["feeWei"], fee.to_string());
        assert_eq!(
            mine["gasTodayByKey"],
            json!([{ "clientId": a_id, "gasUsed": gas, "feeWei": fee.to_string() }])
        );
        let status = key_status(&app.app, &a_id, &a_token).await;
        assert_eq!(status["gasToday"]["feeWei"], fee.to_string());
        assert_eq!(status["account"]["gasToday"]["feeWei"], fee.to_string());
        assert_eq!(status["account"]["gasBudgetLeftWei"], "0");
        let status = key_status(&app.app, &b_id, &b_token).await;
        assert_eq!(status["gasToday"]["feeWei"], "0");
        assert_eq!(status["account"]["gasToday"]["feeWei"], fee.to_string());
        let keys: Value = app
            .app
            .get("/api/v1/clients", Some(&access))
            .await
            .json()
            .await
            .unwrap();
        for key in keys["data"].as_array().unwrap() {
            let expected = if key["clientId"] == a_id.as_str() {
                fee.to_string()
            } else {
                "0".to_owned()
            };
            assert_eq!(key["gasToday"]["feeWei"], expected, "{key}");
        }
        // The operator's: the admin API and Prometheus.
        let res = app
            .app
            .get(&format!("/admin/users/{user_id}"), Some(ADMIN_TOKEN))
            .await;
        let admin_view = res.json::<Value>().await.unwrap()["data"].clone();
        assert_eq!(admin_view["gasToday"], mine["gasToday"]);
        assert_eq!(admin_view["gasTodayByKey"], mine["gasTodayByKey"]);
        let text = app.app.get("/metrics", None).await.text().await.unwrap();
        let account = user_id.to_string();
        let fee_f = f64::from(fee);
        assert_eq!(
            sample(
                &text,
                "x402_account_fee_wei_today",
                &[("account", &account)]
            ),
            Some(fee_f)
        );
        assert_eq!(
            sample(
                &text,
                "x402_account_gas_used_today",
                &[("account", &account)]
            ),
            Some(gas as f64)
        );
        let key_labels = [("account", account.as_str()), ("client_id", a_id.as_str())];
        assert_eq!(
            sample(&text, "x402_client_fee_wei_today", &key_labels),
            Some(fee_f)
        );
        assert_eq!(
            sample(&text, "x402_client_gas_used_today", &key_labels),
            Some(gas as f64)
        );
        let idle = [("account", account.as_str()), ("client_id", b_id.as_str())];
        assert_eq!(sample(&text, "x402_client_fee_wei_today", &idle), None);

        // A larger budget admits settles again; none lifts it.
        let budget = fee * U256::from(100);
        let account = set_account(
            &app.app,
            user_id,
            json!({ "gasBudgetWeiPerDay": budget.to_string() }),
        )
        .await;
        assert_eq!(account["gasBudgetLeftWei"], (budget - fee).to_string());
        let (body, _) = payment(&app, 2, VALUE);
        let answer: Value = settle_with(&app, &b_id, &b_token, &body)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(answer["success"], true, "{answer}");
        let account = set_account(&app.app, user_id, json!({ "gasBudgetWeiPerDay": null })).await;
        assert_eq!(account["gasBudgetWeiPerDay"], Value::Null);
        assert_eq!(account["gasBudgetLeftWei"], Value::Null);
        assert!(
            account["gasToday"]["feeWei"]
                .as_str()
                .unwrap()
                .parse::<U256>()
                .unwrap()
                > fee
        );
    }
);

/// An app whose accounts may have 5 live keys and 4 resources.
async fn capped_app(kind: Db) -> TestApp {
    let db = TestDb::create(kind).await;
    TestApp::spawn_on(
        db,
        json!({ "limits": { "max_keys_per_account": 5, "max_resources_per_account": 4 } }),
    )
    .await
}

fn resource_body(i: usize) -> Value {
    json!({
        "resource": format!("https://merchant.example/paid/{i}"),
        "type": "http",
        "x402Version": 1,
        "accepts": [{
            "scheme": "exact",
            "network": "base-sepolia",
            "maxAmountRequired": "10000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        }],
    })
}

/// Statuses of concurrent answers: (successes with `ok`, refusals as LIMIT_EXCEEDED).
async fn split(answers: Vec<Response>, ok: u16, message: &str) -> (usize, usize) {
    let (mut created, mut refused) = (0, 0);
    for res in answers {
        if res.status() == ok {
            created += 1;
        } else {
            assert_error(res, 409, "LIMIT_EXCEEDED", Some(message)).await;
            refused += 1;
        }
    }
    (created, refused)
}

async fn caps_hold_under_concurrent_creates(kind: Db) {
    let app = capped_app(kind).await;
    let (access, _, _) = app.user("capped@example.com").await;
    let key_cap = "an account may have at most 5 live client keys (revoke one to make room)";
    let answers = futures::future::join_all((0..12).map(|i| {
        app.post(
            "/api/v1/clients",
            Some(&access),
            json!({ "title": format!("key {i}") }),
        )
    }))
    .await;
    assert_eq!(split(answers, 200, key_cap).await, (5, 7));
    let keys: Value = app
        .get("/api/v1/clients", Some(&access))
        .await
        .json()
        .await
        .unwrap();
    let keys = keys["data"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 5);
    assert_eq!(
        me(&app, &access).await["keys"],
        json!({ "used": 5, "max": 5 })
    );

    // A revoked key and an expired one make room; another account has its own cap.
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/clients/{}", keys[0]["clientId"].as_str().unwrap()),
            Some(&access),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    expire_client_key(&app.db.url, keys[1]["clientId"].as_str().unwrap()).await;
    app.client_key(&access, "verify").await;
    app.client_key(&access, "verify").await;
    let res = app
        .post(
            "/api/v1/clients",
            Some(&access),
            json!({ "title": "one too many" }),
        )
        .await;
    assert_error(res, 409, "LIMIT_EXCEEDED", Some(key_cap)).await;
    let (other, _, _) = app.user("other@example.com").await;
    app.client_key(&other, "verify").await;

    // Resources.
    let resource_cap = "an account may have at most 4 resources";
    let answers = futures::future::join_all(
        (0..10).map(|i| app.post("/api/v1/resources", Some(&access), resource_body(i))),
    )
    .await;
    assert_eq!(split(answers, 201, resource_cap).await, (4, 6));
    let listed: Value = app
        .get("/api/v1/users/resources", Some(&access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"]["total"], 4);
    assert_eq!(
        me(&app, &access).await["resources"],
        json!({ "used": 4, "max": 4 })
    );
    let res = app
        .post("/api/v1/resources", Some(&other), resource_body(0))
        .await;
    assert_eq!(res.status(), 201);
}

#[actix_web::test]
async fn key_and_resource_caps_hold_under_concurrent_creates_sqlite() {
    caps_hold_under_concurrent_creates(Db::Sqlite).await
}

#[actix_web::test]
async fn key_and_resource_caps_hold_under_concurrent_creates_postgres() {
    caps_hold_under_concurrent_creates(Db::Postgres).await
}

crate::both_dbs!(an_account_rate_limit_binds_the_sum_of_its_keys, |app| {
    let (access, _, user_id) = app.user("fleet-of-keys@example.com").await;
    let mut keys = Vec::new();
    for _ in 0..2 {
        keys.push(app.client_key(&access, "verify,settle").await);
    }
    let (outsider, _, _) = app.user("neighbour@example.com").await;
    let (other_id, other_token) = app.client_key(&outsider, "verify").await;
    let account = set_account(&app, user_id, json!({ "rateLimitPerSecond": 6 })).await;
    assert_eq!(account["rateLimitPerSecond"], 6);
    // A key created afterwards draws from the same bucket.
    keys.push(app.client_key(&access, "verify").await);

    // 30 requests spread over the 3 keys (none limited on its own): the account's bucket lets
    // 6 through, and what refills meanwhile (one per 1/6 s).
    let started = Instant::now();
    let answers = futures::future::join_all((0..30).map(|i| {
        let (id, token) = &keys[i % 3];
        app.get_as_client("/api/v1/supported", id, token)
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let (ok, refused): (Vec<Response>, Vec<Response>) =
        answers.into_iter().partition(|r| r.status() == 200);
    let refill = (elapsed * 6.0).ceil() as usize;
    assert!(
        ok.len() >= 6 && ok.len() <= 6 + refill,
        "{} let through in {elapsed:.2} s",
        ok.len()
    );
    for res in &ok {
        assert_eq!(res.headers()["ratelimit-limit"], "6");
    }
    for res in refused {
        assert_eq!(res.headers()["ratelimit-limit"], "6");
        let err = assert_error(res, 429, "TOO_MANY_REQUESTS", None).await;
        assert_eq!(
            err["message"],
            "rate limit of this account exceeded (6 requests per second)"
        );
    }
    // Another account is not affected.
    let res = app
        .get_as_client("/api/v1/supported", &other_id, &other_token)
        .await;
    assert_eq!(res.status(), 200);

    // Back to the default (unlimited here): all pass.
    let account = set_account(&app, user_id, json!({ "rateLimitPerSecond": null })).await;
    assert_eq!(account["rateLimitPerSecond"], Value::Null);
    let answers = futures::future::join_all((0..30).map(|i| {
        let (id, token) = &keys[i % 3];
        app.get_as_client("/api/v1/supported", id, token)
    }))
    .await;
    assert!(answers.iter().all(|r| r.status() == 200));
});

crate::both_dbs!(account_limits_are_the_operators_to_set, |app| {
    let (access, _, user_id) = app.user("limits@example.com").await;
    let fresh = me(&app, &access).await;
    assert_eq!(fresh["id"], user_id);
    assert_eq!(fresh["settleCredits"], Value::Null);
    assert_eq!(fresh["rateLimitPerSecond"], Value::Null);
    assert_eq!(fresh["gasBudgetWeiPerDay"], Value::Null);
    assert_eq!(fresh["gasBudgetLeftWei"], Value::Null);
    assert_eq!(fresh["gasToday"]["feeWei"], "0");
    assert_eq!(fresh["gasTodayByKey"], json!([]));
    assert_eq!(fresh["keys"], json!({ "used": 0, "max": 20 }));
    assert_eq!(fresh["resources"], json!({ "used": 0, "max": 100 }));

    for (body, details) in [
        (
            json!({}),
            "nothing to change: give settleCredits, addSettleCredits, rateLimitPerSecond or gasBudgetWeiPerDay",
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
            json!({"addSettleCredits": 2}),
            "this account has no credit limit; set settleCredits first",
        ),
        (
            json!({"rateLimitPerSecond": 1_000_001}),
            "rateLimitPerSecond must be an integer from 0 (unlimited) to 1000000, or null",
        ),
        (
            json!({"gasBudgetWeiPerDay": 1000}),
            "gasBudgetWeiPerDay must be a decimal string of wei (at most 2^256 - 1), or null",
        ),
        (
            json!({"gasBudgetWeiPerDay": "-1"}),
            "gasBudgetWeiPerDay must be a decimal string of wei (at most 2^256 - 1), or null",
        ),
        (
            json!({"gasBudgetWeiPerDay": "9".repeat(78)}),
            "gasBudgetWeiPerDay must be a decimal string of wei (at most 2^256 - 1), or null",
        ),
    ] {
        let res = patch_account(&app, user_id, body.clone()).await;
        let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
        assert_eq!(err["details"], details, "{body}");
    }
    let res = patch_account(&app, user_id, json!({"credits": 1})).await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;

    // Credits: bounded like a key's, atomic adds.
    set_account(&app, user_id, json!({ "settleCredits": i64::MAX - 1 })).await;
    let res = patch_account(&app, user_id, json!({ "addSettleCredits": 2 })).await;
    let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
    assert_eq!(
        err["details"],
        format!("an account holds at most {} credits", i64::MAX)
    );
    let account = set_account(&app, user_id, json!({ "addSettleCredits": 1 })).await;
    assert_eq!(account["settleCredits"], i64::MAX);
    let max = U256::MAX.to_string();
    let account = set_account(&app, user_id, json!({ "gasBudgetWeiPerDay": max })).await;
    assert_eq!(account["gasBudgetWeiPerDay"], max.as_str());
    assert_eq!(account["gasBudgetLeftWei"], max.as_str());
    let view: Value = app
        .get(&format!("/admin/users/{user_id}"), Some(ADMIN_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["data"]["email"], "limits@example.com");
    assert_eq!(view["data"]["settleCredits"], i64::MAX);

    // Unknown user, and credentials.
    let res = patch_account(&app, 999_999, json!({ "settleCredits": 1 })).await;
    assert_error(res, 404, "NOT_FOUND", Some("user not found")).await;
    let res = app.get("/admin/users/999999", Some(ADMIN_TOKEN)).await;
    assert_error(res, 404, "NOT_FOUND", Some("user not found")).await;
    for token in [None, Some("wrong-admin-token"), Some(access.as_str())] {
        let res = app
            .request(
                Method::PATCH,
                &format!("/admin/users/{user_id}"),
                token,
                Some(json!({ "settleCredits": 1 })),
            )
            .await;
        assert_error(res, 401, "UNAUTHORIZED", None).await;
        let res = app.get(&format!("/admin/users/{user_id}"), token).await;
        assert_error(res, 401, "UNAUTHORIZED", None).await;
    }
    let res = app.get("/api/v1/users/me", None).await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;
});
