//! Webhooks end to end: a real chain (anvil, Circle's USDC), the real server, and a real
//! receiver on loopback (`webhook_helpers.rs`) that checks every signature as documented.
//! Deliveries are polled for with deadlines; the worker runs with short backoffs.

use std::time::{Duration, Instant};

use alloy::primitives::B256;
use alloy::providers::Provider;
use devnet::{Devnet, DevnetOptions};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::chain_helpers::*;
use crate::helpers::*;
use crate::webhook_helpers::*;

const MERCHANT: &str = "merchant@example.com";

async fn chain_app(kind: Db, network: Value, allow: &[&str]) -> ChainApp {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let db = TestDb::create(kind).await;
    let app = ChainApp::start_app_full(
        db,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        network,
        json!({ "webhooks": fast_webhooks(allow) }),
    )
    .await;
    ChainApp::with_merchant(app, devnet).await
}

/// A chain app (loopback allow-listed), a receiver on 127.0.0.1 answering `script` first, and
/// the merchant's endpoint for `events`: (app, receiver, access token, endpoint id).
async fn hooked(
    kind: Db,
    network: Value,
    script: Vec<u16>,
    events: &[&str],
) -> (ChainApp, Receiver, String, i64) {
    let app = chain_app(kind, network, &["127.0.0.1"]).await;
    let receiver = Receiver::start("127.0.0.1", script);
    let access = app.app.login(MERCHANT).await;
    let url = format!("http://127.0.0.1:{}/x402/events", receiver.port);
    let hook = subscribe(&app.app, &access, &receiver, &url, events).await;
    (app, receiver, access, hook)
}

/// Settle one payment of `value` from payer 0; the answer.
async fn settle(app: &ChainApp, value: u64) -> Value {
    let payer = app.payer(0).clone();
    let pay = Payment::new(app, 0, value);
    app.settle(&pay.v1(&pay.sign(&payer), value)).await
}

fn of_type<'a>(hits: &'a [Hit], t: &str) -> Vec<&'a Hit> {
    hits.iter().filter(|h| h.event_type == t).collect()
}

fn types(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.event_type.as_str()).collect()
}

/// Every hit is signed, names its event in the header and the body alike.
fn assert_well_formed(hits: &[Hit]) {
    for h in hits {
        assert!(h.signed, "signature checks: {h:?}");
        assert_eq!(h.body["id"], h.event_id.as_str());
        assert_eq!(h.body["type"], h.event_type.as_str());
        assert!(h.event_id.starts_with("evt_"));
    }
}

async fn mined_then_confirmed(kind: Db) {
    let (app, receiver, access, hook) = hooked(
        kind,
        json!({ "confirmations": 3 }),
        vec![],
        &["settlement.mined", "settlement.confirmed"],
    )
    .await;

    let answer = settle(&app, 5_100).await;
    assert_eq!(answer["success"], true, "{answer}");
    let tx = answer["transaction"].as_str().unwrap().to_owned();
    let hits = receiver
        .until("told mined", 20, |h| {
            !of_type(h, "settlement.mined").is_empty()
        })
        .await;
    assert_eq!(types(&hits), ["settlement.mined"], "not final yet");
    for _ in 0..3 {
        app.devnet.mine().await.unwrap();
    }
    let hits = receiver
        .until("told confirmed", 20, |h| {
            !of_type(h, "settlement.confirmed").is_empty()
        })
        .await;
    assert_eq!(types(&hits), ["settlement.mined", "settlement.confirmed"]);
    assert_well_formed(&hits);
    assert_ne!(hits[0].event_id, hits[1].event_id);

    // Each carries the settlement as GET /settlements/{tx} shows it, at its moment.
    let now = app.settlement(&tx).await;
    assert_eq!(now["status"], "confirmed");
    assert_eq!(hits[1].body["data"]["settlement"], now);
    let mut then = now.clone();
    then["status"] = json!("mined");
    assert_eq!(hits[0].body["data"]["settlement"], then);

    // The receiver has answered both; the worker records its answer just after.
    let log = deliveries_until(&app.app, &access, hook, "both recorded delivered", |log| {
        log.len() == 2 && log.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    assert!(log.iter().all(|d| d["attempts"] == 1), "{log:?}");

    // Redeliver the first (the log is newest first): the same event again, signed afresh.
    let first = log[1]["id"].as_i64().unwrap();
    assert_eq!(log[1]["eventId"], hits[0].event_id.as_str());
    let res = app
        .app
        .post(
            &format!("/api/v1/webhooks/{hook}/deliveries/{first}/redeliver"),
            Some(&access),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let hits = receiver.until("redelivered", 20, |h| h.len() == 3).await;
    assert_eq!(hits[2].event_id, hits[0].event_id);
    assert_eq!(hits[2].body, hits[0].body);
    assert_well_formed(&hits);
    receiver.stop().await;
}
both_dbs!(mined_then_confirmed);

async fn retried_after_failures(kind: Db) {
    let (app, receiver, access, hook) = hooked(
        kind,
        json!({}),
        vec![500, 500, 500],
        &["settlement.confirmed"],
    )
    .await;
    let answer = settle(&app, 5_200).await;
    assert_eq!(answer["success"], true, "{answer}");

    let hits = receiver.until("a 200", 30, |h| h.len() >= 4).await;
    assert_eq!(
        hits.iter().map(|h| h.answered).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    assert_well_formed(&hits);
    assert!(
        hits.iter().all(|h| h.event_id == hits[0].event_id),
        "one event"
    );
    // Exponential backoff with jitter: retry n waits at least half of 200 ms * 2^(n-1).
    for (n, pair) in hits.windows(2).enumerate() {
        let least = Duration::from_millis(100 << n);
        let waited = pair[1].at - pair[0].at;
        assert!(waited >= least, "retry {}: {waited:?} < {least:?}", n + 1);
    }
    let log = deliveries_until(&app.app, &access, hook, "delivered", |log| {
        log[0]["status"] == "delivered"
    })
    .await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["attempts"], 4);
    assert_eq!(log[0]["lastStatusCode"], 200);
    // Delivered: nothing more comes. An absence can only be watched for a while: many worker
    // passes (50 ms each) and more than the longest backoff (2 s).
    let watch_until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < watch_until {
        assert_eq!(receiver.hits().len(), 4, "delivered exactly once more");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.stop().await;
}
both_dbs!(retried_after_failures);

async fn rpc(app: &ChainApp, method: &str, params: Value) -> Value {
    app.devnet
        .provider()
        .raw_request::<_, Value>(method.to_owned().into(), params)
        .await
        .unwrap()
}

async fn reorged(kind: Db) {
    let (app, receiver, _, _) = hooked(
        kind,
        json!({ "confirmations": 3 }),
        vec![],
        &[
            "settlement.mined",
            "settlement.reorged",
            "settlement.confirmed",
        ],
    )
    .await;
    let answer = settle(&app, 5_300).await;
    assert_eq!(answer["success"], true, "{answer}");
    let tx: B256 = answer["transaction"].as_str().unwrap().parse().unwrap();
    let hits = receiver.until("told mined", 20, |h| h.len() == 1).await;
    let mined_block = hits[0].body["data"]["settlement"]["blockNumber"].clone();

    // A reorg replaces the settlement's block with an empty one; the facilitator re-sends the
    // same transaction, which lands in another block.
    rpc(&app, "anvil_reorg", json!([1, []])).await;
    let hits = receiver
        .until("told reorged", 30, |h| {
            !of_type(h, "settlement.reorged").is_empty()
        })
        .await;
    let reorg = of_type(&hits, "settlement.reorged")[0];
    let moved = &reorg.body["data"]["settlement"];
    assert_eq!(moved["transaction"], tx.to_string().as_str());
    assert_eq!(moved["status"], "mined");
    assert_ne!(moved["blockNumber"], mined_block, "{moved}");
    let receipt = app.devnet.receipt(tx).await.unwrap().expect("re-included");
    assert_eq!(moved["blockNumber"], receipt.block_number.unwrap());

    for _ in 0..3 {
        app.devnet.mine().await.unwrap();
    }
    let hits = receiver
        .until("told confirmed", 20, |h| {
            !of_type(h, "settlement.confirmed").is_empty()
        })
        .await;
    assert_eq!(
        types(&hits),
        [
            "settlement.mined",
            "settlement.reorged",
            "settlement.confirmed"
        ]
    );
    assert_well_formed(&hits);
    receiver.stop().await;
}
both_dbs!(reorged);

async fn pending_then_confirmed(kind: Db) {
    let (app, receiver, _, _) = hooked(
        kind,
        json!({ "receipt_timeout_secs": 2, "replace_after_secs": 600 }),
        vec![],
        &[
            "settlement.pending",
            "settlement.confirmed",
            "settlement.failed",
        ],
    )
    .await;
    app.devnet.set_automine(false).await.unwrap();
    let answer = settle(&app, 5_400).await;
    assert_eq!(answer["errorReason"], "settlement_pending", "{answer}");
    let tx = answer["transaction"].as_str().unwrap().to_owned();
    let hits = receiver.until("told pending", 20, |h| h.len() == 1).await;
    assert_eq!(types(&hits), ["settlement.pending"]);
    assert_eq!(hits[0].body["data"]["settlement"]["status"], "submitted");
    assert_eq!(
        hits[0].body["data"]["settlement"]["transaction"],
        tx.as_str()
    );

    // The block comes: the background watch resolves the row, and the endpoint hears it.
    app.devnet.mine().await.unwrap();
    let hits = receiver.until("told confirmed", 20, |h| h.len() == 2).await;
    assert_eq!(types(&hits), ["settlement.pending", "settlement.confirmed"]);
    assert_eq!(
        hits[1].body["data"]["settlement"],
        app.settlement(&tx).await
    );
    assert_well_formed(&hits);
    receiver.stop().await;
}
both_dbs!(pending_then_confirmed);

/// A limited key's credits: `key.credits_low` when they fall to the low mark (10), and
/// `key.budget_spent` at 0, each in the transaction that used the credit.
async fn key_credit_events(kind: Db) {
    let (app, receiver, _, _) = hooked(
        kind,
        json!({}),
        vec![],
        &["key.credits_low", "key.budget_spent"],
    )
    .await;
    let set = |n: i64| {
        crate::credits::patch_credits(
            &app.app,
            &app.client_id,
            Some(ADMIN_TOKEN),
            json!({ "settleCredits": n }),
        )
    };
    assert_eq!(set(11).await.status(), 200);
    assert_eq!(settle(&app, 5_600).await["success"], true);
    let hits = receiver
        .until("told credits low", 20, |h| h.len() == 1)
        .await;
    assert_eq!(types(&hits), ["key.credits_low"]);
    let key = &hits[0].body["data"]["key"];
    assert_eq!(key["clientId"], app.client_id.as_str());
    assert_eq!(key["settleCredits"], 10);

    assert_eq!(set(1).await.status(), 200);
    assert_eq!(settle(&app, 5_700).await["success"], true);
    let hits = receiver.until("told spent", 20, |h| h.len() == 2).await;
    assert_eq!(types(&hits), ["key.credits_low", "key.budget_spent"]);
    assert_eq!(hits[1].body["data"]["key"]["settleCredits"], 0);
    assert_well_formed(&hits);
    receiver.stop().await;
}
both_dbs!(key_credit_events);

/// Loopback is refused unless allow-listed: `127.0.0.1` at registration, `localhost` (a name
/// resolving to loopback) at delivery, after DNS; the allow-listed `[::1]` is delivered to.
async fn loopback_refused_unless_allowed(kind: Db) {
    let app = chain_app(kind, json!({}), &["[::1]"]).await;
    let v4 = Receiver::start("127.0.0.1", vec![]);
    let v6 = Receiver::start("::1", vec![]);
    let access = app.app.login(MERCHANT).await;
    for url in [
        format!("http://127.0.0.1:{}/hook", v4.port),
        format!("http://[::ffff:127.0.0.1]:{}/hook", v4.port),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[fd00:ec2::254]/".to_owned(),
    ] {
        let res = app
            .app
            .post(
                "/api/v1/webhooks",
                Some(&access),
                json!({ "url": url, "events": ["settlement.confirmed"] }),
            )
            .await;
        let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
        assert!(
            err.to_string().contains("forbidden address"),
            "{url}: {err}"
        );
    }
    let by_name = subscribe(
        &app.app,
        &access,
        &v4,
        &format!("http://localhost:{}/hook", v4.port),
        &["settlement.confirmed"],
    )
    .await;
    let allowed = subscribe(
        &app.app,
        &access,
        &v6,
        &format!("http://[::1]:{}/hook", v6.port),
        &["settlement.confirmed"],
    )
    .await;

    let answer = settle(&app, 5_500).await;
    assert_eq!(answer["success"], true, "{answer}");
    let hits = v6.until("delivered to [::1]", 20, |h| h.len() == 1).await;
    assert_well_formed(&hits);
    let log = deliveries_until(
        &app.app,
        &access,
        by_name,
        "localhost attempted twice",
        |log| {
            log.first()
                .is_some_and(|d| d["attempts"].as_i64() >= Some(2))
        },
    )
    .await;
    let refused = log[0].clone();
    assert_eq!(refused["status"], "pending", "retried: {refused}");
    let why = refused["lastError"].as_str().unwrap();
    assert!(why.contains("forbidden address"), "{why}");
    assert!(refused["lastStatusCode"].is_null());
    assert!(v4.hits().is_empty(), "nothing reached 127.0.0.1");
    deliveries_until(&app.app, &access, allowed, "recorded delivered", |log| {
        log.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    v4.stop().await;
    v6.stop().await;
}
both_dbs!(loopback_refused_unless_allowed);

/// The endpoints' API: validation in the envelope, the secret shown once, ownership.
async fn endpoints_api(kind: Db) {
    let db = TestDb::create(kind).await;
    let app = TestApp::spawn_on(db, json!({})).await;
    let (alice, _, _) = app.user("alice@example.com").await;
    let (bob, _, _) = app.user("bob@example.com").await;
    let (alice_key, _) = app.client_key(&alice, "verify,settle").await;
    let (bob_key, _) = app.client_key(&bob, "verify,settle").await;

    let bad = [
        json!({ "url": "https://m.example/h", "events": [] }),
        json!({ "url": "https://m.example/h", "events": ["settlement.nope"] }),
        json!({ "url": "ftp://m.example/h", "events": ["settlement.mined"] }),
        json!({ "url": "not a url", "events": ["settlement.mined"] }),
        json!({ "url": "https://u:p@m.example/h", "events": ["settlement.mined"] }),
        json!({ "url": "http://10.0.0.1/h", "events": ["settlement.mined"] }),
        json!({ "url": "https://m.example/h", "events": ["settlement.mined"], "clientIds": [bob_key] }),
        json!({ "url": "https://m.example/h", "events": ["settlement.mined"], "clientIds": [] }),
        json!({ "url": "https://m.example/h", "events": ["settlement.mined"], "resourceIds": [1] }),
        json!({ "url": "https://m.example/h", "events": ["settlement.mined"], "extra": 1 }),
        json!({ "events": ["settlement.mined"] }),
    ];
    for body in bad {
        let res = app
            .post("/api/v1/webhooks", Some(&alice), body.clone())
            .await;
        assert_error(res, 400, "INVALID_REQUEST", None).await;
    }
    let res = app
        .post(
            "/api/v1/webhooks",
            None,
            json!({ "url": "https://m.example/h", "events": ["settlement.mined"] }),
        )
        .await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;

    let res = app
        .post(
            "/api/v1/webhooks",
            Some(&alice),
            json!({
                "url": "https://m.example/h",
                "events": ["settlement.mined", "key.credits_low"],
                "clientIds": [alice_key],
            }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let made: Value = res.json().await.unwrap();
    let id = made["data"]["webhook"]["id"].as_i64().unwrap();
    let secret = made["data"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        made["data"]["webhook"]["events"],
        json!(["settlement.mined", "key.credits_low"])
    );
    assert_eq!(made["data"]["webhook"]["clientIds"], json!([alice_key]));

    // Read back: no secret.
    let got: Value = app
        .get(&format!("/api/v1/webhooks/{id}"), Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert!(!got.to_string().contains(&secret));
    assert_eq!(got["data"]["url"], "https://m.example/h");
    let list: Value = app
        .get("/api/v1/webhooks", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"]["webhooks"].as_array().unwrap().len(), 1);

    // Bob sees and touches nothing of Alice's.
    let list: Value = app
        .get("/api/v1/webhooks", Some(&bob))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"]["webhooks"], json!([]));
    let put = json!({ "url": "https://bob.example/h", "events": ["settlement.failed"] });
    for (method, path, body) in [
        (reqwest::Method::GET, format!("/api/v1/webhooks/{id}"), None),
        (
            reqwest::Method::PUT,
            format!("/api/v1/webhooks/{id}"),
            Some(put.clone()),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/webhooks/{id}"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/webhooks/{id}/rotate-secret"),
            Some(json!({})),
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/webhooks/{id}/deliveries"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/webhooks/{id}/deliveries/1/redeliver"),
            Some(json!({})),
        ),
    ] {
        let res = app.request(method, &path, Some(&bob), body).await;
        assert_error(res, 404, "NOT_FOUND", None).await;
    }
    let got: Value = app
        .get(&format!("/api/v1/webhooks/{id}"), Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        got["data"]["url"], "https://m.example/h",
        "unchanged by Bob"
    );

    // Replace, rotate, page the (empty) log, delete.
    let res = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/webhooks/{id}"),
            Some(&alice),
            Some(json!({ "url": "https://m.example/v2", "events": ["settlement.failed"], "enabled": false })),
        )
        .await;
    assert_eq!(res.status(), 200);
    let put: Value = res.json().await.unwrap();
    assert_eq!(put["data"]["url"], "https://m.example/v2");
    assert_eq!(put["data"]["enabled"], false);
    assert_eq!(put["data"]["clientIds"], Value::Null);
    let rotated: Value = app
        .post(
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            Some(&alice),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new_secret = rotated["data"]["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    let res = app
        .get(
            &format!("/api/v1/webhooks/{id}/deliveries?limit=0"),
            Some(&alice),
        )
        .await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;
    assert!(deliveries(&app, &alice, id).await.is_empty());
    let res = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/999/redeliver"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_error(res, 404, "NOT_FOUND", None).await;
    let res = app.get("/api/v1/webhooks/abc", Some(&alice)).await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;
    let res = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/webhooks/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .get(&format!("/api/v1/webhooks/{id}"), Some(&alice))
        .await;
    assert_error(res, 404, "NOT_FOUND", None).await;
    let _ = bob_key;
}
both_dbs!(endpoints_api);
