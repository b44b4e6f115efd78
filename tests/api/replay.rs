//! One payment, one success: however the copies of one authorization arrive (concurrently or
//! later, from one client key or another, to one instance or two on one database), exactly one
//! settle answers `success: true` and the official resource servers serve their content once.
//! Safe retries go through idempotency keys (`Idempotency-Key`, v2 `payment-identifier`),
//! which survive a restart; a lost answer is found by the authorization.

use std::collections::HashSet;
use std::process::Command;

use alloy::primitives::{Address, B256, U256};
use devnet::{Devnet, DevnetOptions};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::chain_helpers::*;
use crate::helpers::*;

/// The payee and price of `tools/e2e/common.mjs`.
pub(crate) const E2E_PAY_TO: Address =
    alloy::primitives::address!("0x0000000000000000000000000000000000000e2e");
pub(crate) const E2E_PRICE: u64 = 10_000;

/// The state file the e2e scripts read (the shape `dev --state-file` writes).
fn state_file(app: &ChainApp) -> tempfile::NamedTempFile {
    write_state(&e2e_state(app))
}

/// What the e2e scripts read of `app`.
pub(crate) fn e2e_state(app: &ChainApp) -> Value {
    json!({
        "facilitatorUrl": app.app.url("/api/v1"),
        "clientId": app.client_id,
        "clientToken": app.client_token,
        "network": "base-sepolia",
        "chainId": app.devnet.chain_id,
        "rpcUrl": app.devnet.rpc_url,
        "asset": app.devnet.usdc.to_checksum(None),
        "payerPrivateKeys": app
            .devnet
            .payers
            .iter()
            .map(|k| format!("0x{}", alloy::hex::encode(k.to_bytes())))
            .collect::<Vec<_>>(),
    })
}

pub(crate) fn write_state(state: &Value) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), state.to_string()).unwrap();
    file
}

/// Run a `tools/e2e` script; its last stdout line is its JSON result.
pub(crate) async fn node(script: &str, args: &[&str]) -> Value {
    let mut command = Command::new("node");
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg(script)
        .args(args);
    let out = tokio::task::spawn_blocking(move || command.output().expect("node"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|_| {
        panic!(
            "{script}: no JSON result\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

both_dbs!(
    official_resource_servers_serve_one_payment_once,
    |app: ChainApp| {
        let state = state_file(&app);
        let path = state.path().to_str().unwrap();
        for (version, paid) in [("2", 1u64), ("1", 2)] {
            // Ten concurrent requests carrying one payment header.
            let result = node("tools/e2e/replay.mjs", &[path, version, "10"]).await;
            assert_eq!(result["served"], 1, "v{version}: {result}");
            let statuses = result["statuses"].as_array().unwrap();
            assert_eq!(statuses.len(), 10);
            assert_eq!(
                statuses.iter().filter(|s| **s == 200).count(),
                1,
                "{result}"
            );
            assert!(
                statuses.iter().all(|s| *s == 200 || *s == 402),
                "the others are asked to pay: {result}"
            );
            assert_eq!(
                app.balance(E2E_PAY_TO).await,
                U256::from(E2E_PRICE * paid),
                "v{version}: the payee is paid the price once"
            );
        }
    }
);

/// The answers of `n` concurrent settles of `body` with the key `key`: (replayed?, body text).
async fn concurrent_with_key(
    app: &ChainApp,
    body: &Value,
    key: &str,
    n: usize,
) -> Vec<(bool, String)> {
    let answers = futures::future::join_all((0..n).map(|_| app.settle_with_key(body, key))).await;
    let mut out = Vec::new();
    for res in answers {
        assert_eq!(res.status(), 200);
        let replayed = res
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(replayed.is_none() || replayed.as_deref() == Some("true"));
        out.push((replayed.is_some(), res.text().await.unwrap()));
    }
    out
}

/// `n` settles with one key: identical successful answers, all but the original marked
/// replayed, one transaction.
async fn assert_one_settlement_for_the_key(app: &ChainApp, answers: &[(bool, String)]) -> Value {
    let bodies: HashSet<&str> = answers.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies.len(), 1, "identical answers: {answers:?}");
    assert_eq!(
        answers.iter().filter(|(replayed, _)| !replayed).count(),
        1,
        "one original, the rest replayed: {answers:?}"
    );
    let answer: Value = serde_json::from_str(&answers[0].1).unwrap();
    assert_eq!(answer["success"], true, "{answer}");
    let tx: B256 = answer["transaction"].as_str().unwrap().parse().unwrap();
    assert!(app.devnet.receipt(tx).await.unwrap().unwrap().status());
    answer
}

/// Restart the application of `app` on its database (same chain, same signer).
async fn restarted(app: ChainApp) -> ChainApp {
    let ChainApp {
        app: test_app,
        devnet,
        client_id,
        client_token,
    } = app;
    let db = test_app.stop().await;
    let test_app = ChainApp::start_app(db, &devnet, devnet.facilitator_keys[..1].to_vec()).await;
    ChainApp {
        app: test_app,
        devnet,
        client_id,
        client_token,
    }
}

async fn idempotency_key(kind: Db) {
    let app = ChainApp::spawn(kind, DevnetOptions::default()).await;
    let payer = app.payer(0).clone();
    let signer = app.devnet.facilitator_keys[0].address();
    let nonce_before = app.devnet.nonce_of(signer).await.unwrap();
    let before = app.balance(PAY_TO).await;
    let pay = Payment::new(&app, 0, 2_500);
    let body = pay.v1(&pay.sign(&payer), 2_500);

    // Five at once with one key: five identical successes, one transaction.
    let answers = concurrent_with_key(&app, &body, "order-2500", 5).await;
    let original = assert_one_settlement_for_the_key(&app, &answers).await;
    assert_eq!(app.devnet.nonce_of(signer).await.unwrap(), nonce_before + 1);
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(2_500));

    // The same key with another payment: a conflict, nothing settled.
    let other = Payment::new(&app, 0, 2_600);
    let res = app
        .settle_with_key(&other.v1(&other.sign(&payer), 2_600), "order-2500")
        .await;
    assert_error(res, 409, "CONFLICT", None).await;
    // Keys belong to one client key: another merchant's "order-2500" is its own, and its copy
    // of the payment is just a copy.
    let (access, _, _) = app.app.user("other-shop@example.com").await;
    let (id, token) = app.app.client_key(&access, "settle").await;
    let res = app
        .app
        .http
        .post(app.app.url("/api/v1/settle"))
        .header("X-Client-ID", &id)
        .header("X-Client-Token", &token)
        .header("Idempotency-Key", "order-2500")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("idempotent-replayed").is_none());
    let copy: Value = res.json().await.unwrap();
    assert_eq!(copy["errorReason"], "invalid_exact_evm_nonce_already_used");
    // A malformed key is a bad request.
    for bad in ["", "has space", &"k".repeat(256)] {
        let res = app.settle_with_key(&body, bad).await;
        assert_error(res, 400, "INVALID_REQUEST", None).await;
    }

    // After a restart the key still answers the original, byte for byte.
    let app = restarted(app).await;
    let res = app.settle_with_key(&body, "order-2500").await;
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(res.text().await.unwrap(), answers[0].1);
    let res = app
        .settle_with_key(&other.v1(&other.sign(&payer), 2_600), "order-2500")
        .await;
    assert_error(res, 409, "CONFLICT", None).await;
    assert_eq!(app.devnet.nonce_of(signer).await.unwrap(), nonce_before + 1);
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(2_500));
    assert_eq!(original["amount"], "2500");
}

#[actix_web::test]
async fn idempotency_key_replays_the_original_answer_sqlite() {
    idempotency_key(Db::Sqlite).await
}

#[actix_web::test]
async fn idempotency_key_replays_the_original_answer_postgres() {
    idempotency_key(Db::Postgres).await
}

/// A v2 payment carrying the `payment-identifier` extension.
fn with_payment_id(mut body: Value, id: &str) -> Value {
    body["paymentPayload"]["extensions"] = json!({
        "payment-identifier": { "info": { "id": id } }
    });
    body
}

async fn payment_identifier(kind: Db) {
    let app = ChainApp::spawn(kind, DevnetOptions::default()).await;
    let payer = app.payer(1).clone();
    let before = app.balance(PAY_TO).await;
    let pay = Payment::new(&app, 1, 3_100);
    let id = "pay_7d5d747be160e280504c099d984bcfe0";
    let body = with_payment_id(pay.v2(&pay.sign(&payer), 3_100), id);

    let answers =
        futures::future::join_all((0..5).map(|_| app.post_x402("/api/v1/settle", &body))).await;
    let mut seen = Vec::new();
    for res in answers {
        assert_eq!(res.status(), 200);
        let replayed = res.headers().get("idempotent-replayed").is_some();
        seen.push((replayed, res.text().await.unwrap()));
    }
    assert_one_settlement_for_the_key(&app, &seen).await;
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(3_100));

    // The same id with another payment: 409.
    let other = Payment::new(&app, 1, 3_200);
    let res = app
        .post_x402(
            "/api/v1/settle",
            &with_payment_id(other.v2(&other.sign(&payer), 3_200), id),
        )
        .await;
    assert_error(res, 409, "CONFLICT", None).await;
    // An id outside the extension's format is an invalid payload, not a key.
    let res = app
        .post_x402(
            "/api/v1/settle",
            &with_payment_id(other.v2(&other.sign(&payer), 3_200), "short"),
        )
        .await;
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["errorReason"], "invalid_payload", "{answer}");

    // After a restart: the original answer again.
    let app = restarted(app).await;
    let res = app.post_x402("/api/v1/settle", &body).await;
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(res.text().await.unwrap(), seen[0].1);
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(3_100));
}

#[actix_web::test]
async fn payment_identifier_replays_the_original_answer_sqlite() {
    payment_identifier(Db::Sqlite).await
}

#[actix_web::test]
async fn payment_identifier_replays_the_original_answer_postgres() {
    payment_identifier(Db::Postgres).await
}

both_dbs!(
    lookup_by_authorization_finds_only_the_callers_own,
    |app: ChainApp| {
        let payer = app.payer(2).clone();
        let pay = Payment::new(&app, 2, 4_400);
        let settled = app.settle(&pay.v1(&pay.sign(&payer), 4_400)).await;
        assert_eq!(settled["success"], true, "{settled}");
        let query = |network: &str| {
            format!(
                "/api/v1/settlements?network={network}&payer={}&nonce={}",
                payer.address(),
                pay.nonce
            )
        };
        for network in ["base-sepolia", "eip155:84532"] {
            let res = app
                .app
                .get_as_client(&query(network), &app.client_id, &app.client_token)
                .await;
            assert_eq!(res.status(), 200, "{network}");
            let row: Value = res.json().await.unwrap();
            let row = &row["data"];
            assert_eq!(row["status"], "confirmed", "{row}");
            assert_eq!(row["success"], true);
            assert_eq!(row["transaction"], settled["transaction"]);
            assert_eq!(row["amount"], "4400");
            assert_eq!(row["nonce"], pay.nonce.to_string());
            assert_eq!(row["payer"], payer.address().to_checksum(None));
        }
        // With its asset too.
        let res = app
            .app
            .get_as_client(
                &format!("{}&asset={}", query("base-sepolia"), app.devnet.usdc),
                &app.client_id,
                &app.client_token,
            )
            .await;
        assert_eq!(res.status(), 200);

        // Another key does not see it.
        let (access, _, _) = app.app.user("nosy@example.com").await;
        let (id, token) = app.app.client_key(&access, "verify,settle").await;
        let res = app
            .app
            .get_as_client(&query("base-sepolia"), &id, &token)
            .await;
        assert_error(res, 404, "NOT_FOUND", Some("settlement not found")).await;
        // A network not served here made no settlement.
        let res = app
        .app
        .get_as_client(
            "/api/v1/settlements?network=moon&payer=0x0000000000000000000000000000000000000001&nonce=0x0000000000000000000000000000000000000000000000000000000000000001",
            &app.client_id,
            &app.client_token,
        )
        .await;
        let body = assert_error(res, 404, "NOT_FOUND", Some("settlement not found")).await;
        assert_eq!(
            body["details"],
            "network: not a network served here (v1 name or CAIP-2 id)"
        );
        // Bad or missing parameters.
        for bad in [
            format!(
                "/api/v1/settlements?network=base-sepolia&payer=0x12&nonce={}",
                pay.nonce
            ),
            format!(
                "/api/v1/settlements?network=base-sepolia&payer={}&nonce=0x12",
                payer.address()
            ),
            format!(
                "/api/v1/settlements?network=base-sepolia&payer={}",
                payer.address()
            ),
            format!("{}&extra=1", query("base-sepolia")),
        ] {
            let res = app
                .app
                .get_as_client(&bad, &app.client_id, &app.client_token)
                .await;
            assert_error(res, 400, "INVALID_REQUEST", None).await;
        }
        // And without credentials.
        let res = app.app.get(&query("base-sepolia"), None).await;
        assert_error(res, 401, "UNAUTHORIZED", None).await;
    }
);

/// Two instances on one PostgreSQL database, each with its own signer, receive 15 copies of
/// one payment each at once: one success in all, one transaction.
#[actix_web::test]
async fn two_instances_on_one_database_give_one_success() {
    let devnet = Devnet::start(DevnetOptions {
        block_time: Some(1),
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let db = TestDb::create(Db::Postgres).await;
    let url = db.url.clone();
    let a = ChainApp::start_app(db, &devnet, devnet.facilitator_keys[..1].to_vec()).await;
    let b = ChainApp::start_app(
        TestDb::attach(&url),
        &devnet,
        devnet.facilitator_keys[1..2].to_vec(),
    )
    .await;
    let a = ChainApp::with_merchant(a, devnet).await;
    let payer = a.payer(0).clone();
    let pay = Payment::new(&a, 0, 6_600);
    let body = pay.v1(&pay.sign(&payer), 6_600);
    let before = a.balance(PAY_TO).await;
    let signers = [
        a.devnet.facilitator_keys[0].address(),
        a.devnet.facilitator_keys[1].address(),
    ];
    let nonces_before = (
        a.devnet.nonce_of(signers[0]).await.unwrap(),
        a.devnet.nonce_of(signers[1]).await.unwrap(),
    );

    let answers = futures::future::join_all((0..30).map(|i| {
        let app = if i % 2 == 0 { &a.app } else { &b };
        app.post_as_client("/api/v1/settle", &a.client_id, &a.client_token, &body)
    }))
    .await;
    let mut wins = 0;
    for res in answers {
        assert_eq!(res.status(), 200);
        let answer: Value = res.json().await.unwrap();
        if answer["success"] == true {
            wins += 1;
        } else {
            assert_eq!(
                answer["errorReason"], "invalid_exact_evm_nonce_already_used",
                "{answer}"
            );
            assert_eq!(answer["transaction"], "");
        }
    }
    assert_eq!(wins, 1, "one success across both instances");
    assert_eq!(a.balance(PAY_TO).await - before, U256::from(6_600));
    let sent = a.devnet.nonce_of(signers[0]).await.unwrap() - nonces_before.0
        + a.devnet.nonce_of(signers[1]).await.unwrap()
        - nonces_before.1;
    assert_eq!(sent, 1, "one transaction from the two instances");
    b.stop().await;
}
