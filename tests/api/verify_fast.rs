//! The verify fast path: one RPC request for a good payment, none for a payment already
//! settled here, and "already used" still right for authorizations only the ledger knows
//! (a previous run's, another instance's).

use alloy::primitives::B256;
use devnet::{Devnet, DevnetOptions};
use facilitator_actors::ledger;
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::helpers::*;

/// RPC requests the app made so far, by method label (`eth_call`, `batch`, ...).
async fn rpc_requests(app: &ChainApp, method: &str) -> u64 {
    let metrics = app.app.get("/metrics", None).await.text().await.unwrap();
    let label = format!("method=\"{method}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("x402_rpc_request_duration_seconds_count{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn chain_calls(app: &ChainApp) -> (u64, u64) {
    (
        rpc_requests(app, "eth_call").await,
        rpc_requests(app, "batch").await,
    )
}

fn body(app: &ChainApp, payer: usize, value: u64) -> Value {
    let p = Payment::new(app, payer, value);
    p.v2(&p.sign(app.payer(payer)), value)
}

/// The path without the state mirror (`verify.mirror: false`; on by default, where a mirrored
/// payer's verify makes no RPC call at all: `mirror::a_mirrored_eoa_verify_makes_no_rpc_call…`).
async fn unmirrored_app() -> ChainApp {
    let devnet = Devnet::start(DevnetOptions::default())
        .await
        .expect("devnet");
    let db = TestDb::create(Db::Sqlite).await;
    let app = ChainApp::start_app_full(
        db,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        json!({}),
        json!({ "verify": { "mirror": false } }),
    )
    .await;
    ChainApp::with_merchant(app, devnet).await
}

/// Mode: the state mirror off (on, the mirror answers before the cache). An identical verify
/// within the cache's lifetime is answered from it, with no RPC call.
#[actix_web::test]
async fn a_repeated_verify_is_answered_from_the_cache() {
    let app = unmirrored_app().await;
    let good = body(&app, 0, 1000);
    let first = app.verify(&good).await;
    assert_eq!(first["isValid"], true, "{first}");
    assert_eq!(first["cachedResult"], false, "{first}");
    let before = chain_calls(&app).await;
    let again = app.verify(&good).await;
    assert_eq!(again["isValid"], true, "{again}");
    assert_eq!(again["cachedResult"], true, "{again}");
    assert_eq!(
        chain_calls(&app).await,
        before,
        "no RPC call for a cached answer"
    );
}

/// Mode: the state mirror off (one simulation per verify).
#[actix_web::test]
async fn a_good_verify_is_one_rpc_request_and_a_settled_payment_none() {
    let app = unmirrored_app().await;
    // The first verify of an asset also asks whether it is a contract (in the same batch).
    let first = app.verify(&body(&app, 0, 1000)).await;
    assert_eq!(first["isValid"], true, "{first}");

    let good = body(&app, 1, 2000);
    let before = chain_calls(&app).await;
    let answer = app.verify(&good).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    let after = chain_calls(&app).await;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (1, 0),
        "one eth_call, no batch, for a good payment"
    );

    let settled = app.settle(&good).await;
    assert_eq!(settled["success"], true, "{settled}");
    let before = chain_calls(&app).await;
    let again = app.verify(&good).await;
    assert_eq!(again["isValid"], false, "{again}");
    assert_eq!(
        again["invalidReason"],
        "invalid_exact_evm_nonce_already_used"
    );
    assert_eq!(
        chain_calls(&app).await,
        before,
        "a payment settled here is refused from memory"
    );

    // A bad payment pays for its diagnosis: the simulation, then one batch.
    let bad = body(&app, 2, 1_000_000_000_000_000);
    let before = chain_calls(&app).await;
    let refused = app.verify(&bad).await;
    assert_eq!(refused["invalidReason"], "insufficient_funds", "{refused}");
    let after = chain_calls(&app).await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));
}

/// Claim a ledger row for `p` and mark it sent, the way a settle does, outside the app (as a previous run or
/// another instance would have).
async fn claim_elsewhere(db_url: &str, p: &Payment) {
    let db = sea_orm::Database::connect(db_url).await.unwrap();
    let claim = ledger::claim(
        &db,
        &ledger::NewSettlement {
            key: ledger::Key::new("base-sepolia", p.asset, p.from, p.nonce),
            pay_to: p.to.to_checksum(None),
            amount: p.value.to_string(),
            valid_after: p.valid_after as i64,
            valid_before: p.valid_before as i64,
            x402_version: 2,
            request_hash: B256::repeat_byte(7),
            payment_id: None,
            payload: json!({}),
            client_id: None,
            idempotency_key: None,
            instance_id: "elsewhere".into(),
        },
    )
    .await
    .unwrap();
    let ledger::Claim::New(row) = claim else {
        panic!("claimed already")
    };
    // Sent (a transaction the node has not mined): a claim with nothing sent would be
    // released by the start-up reconciliation.
    use entities::settlement::{Column, Entity};
    use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
    Entity::update_many()
        .col_expr(Column::Status, Expr::value(ledger::SUBMITTED))
        .col_expr(
            Column::TxHash,
            Expr::value(B256::repeat_byte(9).to_string()),
        )
        .filter(Column::Id.eq(row.id))
        .exec(&db)
        .await
        .unwrap();
    db.close().await.ok();
}

async fn restart(app: ChainApp) -> ChainApp {
    let ChainApp {
        app,
        devnet,
        client_id,
        client_token,
    } = app;
    let db = app.stop().await;
    let app = ChainApp::start_app(db, &devnet, devnet.facilitator_keys[..1].to_vec()).await;
    ChainApp {
        app,
        devnet,
        client_id,
        client_token,
    }
}

#[actix_web::test]
async fn an_authorization_a_previous_run_claimed_is_used_after_a_restart() {
    let app = ChainApp::spawn(Db::Sqlite, DevnetOptions::default()).await;
    let p = Payment::new(&app, 0, 1000);
    let good = p.v2(&p.sign(app.payer(0)), 1000);
    claim_elsewhere(&app.app.db.url, &p).await;
    let app = restart(app).await;
    let answer = app.verify(&good).await;
    assert_eq!(answer["isValid"], false, "{answer}");
    assert_eq!(
        answer["invalidReason"],
        "invalid_exact_evm_nonce_already_used"
    );
    // Another payment is still good.
    assert_eq!(app.verify(&body(&app, 1, 10)).await["isValid"], true);
}

#[actix_web::test]
async fn on_a_shared_database_an_authorization_another_instance_claimed_is_used() {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let db = TestDb::create(Db::Postgres).await;
    let inner = ChainApp::start_app(db, &devnet, devnet.facilitator_keys[..1].to_vec()).await;
    let app = ChainApp::with_merchant(inner, devnet).await;
    let p = Payment::new(&app, 0, 1000);
    let good = p.v2(&p.sign(app.payer(0)), 1000);
    assert_eq!(app.verify(&good).await["isValid"], true);
    claim_elsewhere(&app.app.db.url, &p).await;
    // The cached "valid" does not outlive the other instance's claim either.
    let answer = app.verify(&good).await;
    assert_eq!(answer["isValid"], false, "{answer}");
    assert_eq!(
        answer["invalidReason"],
        "invalid_exact_evm_nonce_already_used"
    );
}
