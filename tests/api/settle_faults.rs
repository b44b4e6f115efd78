//! Settlement under real faults, produced on the chain rather than mocked: a receipt that does
//! not come in time (mining paused), a transaction that passes simulation and then reverts
//! (two authorizations racing for one balance), a signer nonce used behind our back, and a base
//! fee that jumps past the fee estimate a signer reuses.

use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use devnet::{Devnet, DevnetOptions};
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::helpers::*;

async fn app_with(kind: Db, network: Value) -> ChainApp {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let db = TestDb::create(kind).await;
    let app =
        ChainApp::start_app_with(db, &devnet, devnet.facilitator_keys[..1].to_vec(), network).await;
    ChainApp::with_merchant(app, devnet).await
}

/// Wait until `n` ledger rows name their transaction (both settles have broadcast).
async fn wait_for_broadcasts(db_url: &str, n: usize) {
    let conn = Database::connect(db_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = entities::settlement::Entity::find()
            .filter(entities::settlement::Column::TxHash.is_not_null())
            .all(&conn)
            .await
            .unwrap();
        if rows.len() >= n {
            break;
        }
        assert!(Instant::now() < deadline, "broadcasts did not happen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.close().await.unwrap();
}

/// The ledger row of `tx` once it has left `submitted` (waiting up to 20 s, without asking
/// the facilitator anything).
async fn resolved_row(db_url: &str, tx: &str) -> entities::settlement::Model {
    let conn = Database::connect(db_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
        let row = entities::settlement::Entity::find()
            .filter(entities::settlement::Column::TxHash.eq(tx))
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        if row.status != "submitted" {
            break row;
        }
        assert!(Instant::now() < deadline, "the row stayed submitted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    conn.close().await.unwrap();
    row
}

/// The merchant's x402 metrics totals.
async fn x402_totals(app: &ChainApp) -> Value {
    let access = app.app.login("merchant@example.com").await;
    let res = app
        .app
        .get("/api/v1/x402-metrics/summary", Some(&access))
        .await;
    res.json::<Value>().await.unwrap()["data"]["totals"].clone()
}

/// An app that answers `settlement_pending` after 2 s (no replacement), mining paused, and a
/// signed settle body of `value`.
async fn paused_chain(kind: Db, value: u64) -> (ChainApp, Value) {
    let app = app_with(
        kind,
        json!({ "receipt_timeout_secs": 2, "replace_after_secs": 600 }),
    )
    .await;
    let payer = app.payer(0).clone();
    let pay = Payment::new(&app, 0, value);
    let body = pay.v1(&pay.sign(&payer), value);
    app.devnet.set_automine(false).await.unwrap();
    (app, body)
}

async fn pending_then_resolved(kind: Db) {
    let (app, body) = paused_chain(kind, 4_321).await;
    let before = app.balance(PAY_TO).await;
    let (a, b) = (&app, &body);
    let settle = |key| async move {
        let res = a.settle_with_key(b, key).await;
        let replayed = res.headers().get("idempotent-replayed").is_some();
        (res.json::<Value>().await.unwrap(), replayed)
    };

    // No block comes: the answer says "pending" and names the transaction.
    let (answer, replayed) = settle("order-4321").await;
    assert!(!replayed);
    assert_eq!(answer["success"], false, "{answer}");
    assert_eq!(answer["errorReason"], "settlement_pending");
    let tx = answer["transaction"].as_str().unwrap().to_owned();
    assert!(tx.parse::<B256>().is_ok(), "a tx hash: {answer}");
    let row = app.settlement(&tx).await;
    assert_eq!(row["status"], "submitted");
    assert_eq!(row["success"], false);
    // A copy without the key is no retry: the authorization is in use.
    let copy = app.settle(&body).await;
    assert_eq!(copy["errorReason"], "invalid_exact_evm_nonce_already_used");

    // The block comes: a retry with the key answers success with the same transaction; one
    // transfer.
    app.devnet.mine().await.unwrap();
    let (again, replayed) = settle("order-4321").await;
    assert!(replayed, "a retry is marked Idempotent-Replayed");
    assert_eq!(again["success"], true, "{again}");
    assert_eq!(again["transaction"], tx.as_str());
    let row = app.settlement(&tx).await;
    assert_eq!(row["status"], "confirmed");
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(4_321));
    // Final now: a further retry replays that success byte for byte.
    let (third, replayed) = settle("order-4321").await;
    assert!(replayed);
    assert_eq!(third, again);

    // The metrics account for the transfer once, found by the retry: four settle answers
    // (pending, the copy, then two retries answered with the original), one transfer with
    // its amount and fee.
    let hash: B256 = tx.parse().unwrap();
    let receipt = app.devnet.receipt(hash).await.unwrap().unwrap();
    let t = &x402_totals(&app).await;
    assert_eq!(t["settle"]["count"], 4, "{t}");
    assert_eq!(t["settle"]["failureReasons"]["settlement_pending"], 1);
    assert_eq!(
        t["settle"]["failureReasons"]["invalid_exact_evm_nonce_already_used"],
        1
    );
    assert_eq!(t["settle"]["repeats"], 2);
    assert_eq!(t["amounts"][0]["amount"], "4321");
    assert_eq!(t["amounts"][0]["settlements"], 1);
    assert_eq!(t["fees"][0]["gasUsed"], receipt.gas_used);
    assert_eq!(
        t["fees"][0]["feeWei"],
        (receipt.effective_gas_price * receipt.gas_used as u128).to_string()
    );
}

async fn pending_resolves_by_itself(kind: Db) {
    let (app, body) = paused_chain(kind, 5_555).await;
    let answer = app.settle(&body).await;
    assert_eq!(answer["errorReason"], "settlement_pending", "{answer}");
    let hash: B256 = answer["transaction"].as_str().unwrap().parse().unwrap();

    // Nobody asks again: the block alone resolves the ledger row and the metrics.
    app.devnet.mine().await.unwrap();
    let row = resolved_row(&app.app.db.url, &hash.to_string()).await;
    let receipt = app.devnet.receipt(hash).await.unwrap().unwrap();
    assert_eq!(row.status, "confirmed");
    assert_eq!(row.block_number, receipt.block_number.map(|b| b as i64));
    let t = &x402_totals(&app).await;
    assert_eq!(t["amounts"][0]["amount"], "5555", "{t}");
    assert_eq!(t["fees"][0]["gasUsed"], receipt.gas_used);
}

/// Make the (only) ledger row look like a claim that never sent anything, last touched `age`
/// ago.
async fn pending_without_tx(db_url: &str, age: chrono::Duration) {
    use sea_orm::{ActiveModelTrait, Set};
    let conn = Database::connect(db_url).await.unwrap();
    let row = entities::settlement::Entity::find()
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert!(row.tx_hash.is_none());
    let mut row: entities::settlement::ActiveModel = row.into();
    row.status = Set("pending".into());
    row.error_reason = Set(None);
    row.updated_at = Set(chrono::Utc::now() - age);
    row.update(&conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn claims_without_a_transaction(kind: Db) {
    let app = app_with(kind, json!({ "receipt_timeout_secs": 2 })).await;
    let buyer = PrivateKeySigner::random();
    let pay = Payment::usdc(buyer.address(), app.devnet.chain_id, app.devnet.usdc, 700);
    let body = pay.v1(&pay.sign(&buyer), 700);
    // First attempt: no funds, nothing sent; the row exists without a transaction (kept for
    // the retries of its idempotency key: a refusal without one leaves no row).
    let first: Value = app
        .settle_with_key(&body, "first-attempt-0001")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["errorReason"], "insufficient_funds");
    app.devnet
        .mint(buyer.address(), U256::from(700))
        .await
        .unwrap();
    let before = app.balance(PAY_TO).await;

    // A claim touched just now may be another instance sending it: never send twice; the
    // copy is refused at once.
    pending_without_tx(&app.app.db.url, chrono::Duration::zero()).await;
    let answer = app.settle(&body).await;
    assert_eq!(answer["success"], false, "{answer}");
    assert_eq!(
        answer["errorReason"],
        "invalid_exact_evm_nonce_already_used"
    );
    assert_eq!(answer["transaction"], "");
    assert_eq!(app.balance(PAY_TO).await, before);

    // Untouched for minutes: its process died before sending; settle it now.
    pending_without_tx(&app.app.db.url, chrono::Duration::minutes(5)).await;
    let answer = app.settle(&body).await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(700));
}

/// With no background watch, the periodic reconciliation (every 1 s here) alone resolves a
/// settlement that answered pending, with no request.
async fn reconciled_without_a_watch(kind: Db) {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let db = TestDb::create(kind).await;
    let app = ChainApp::start_app_full(
        db,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        json!({ "receipt_timeout_secs": 1, "replace_after_secs": 600 }),
        json!({ "settlement": { "background_watch_secs": 0, "reconcile_interval_secs": 1 } }),
    )
    .await;
    let app = ChainApp::with_merchant(app, devnet).await;
    let payer = app.payer(0).clone();
    let pay = Payment::new(&app, 0, 999);
    app.devnet.set_automine(false).await.unwrap();
    let answer = app.settle(&pay.v1(&pay.sign(&payer), 999)).await;
    assert_eq!(answer["errorReason"], "settlement_pending", "{answer}");
    let tx = answer["transaction"].as_str().unwrap().to_owned();
    app.devnet.mine().await.unwrap();
    assert_eq!(resolved_row(&app.app.db.url, &tx).await.status, "confirmed");
}

async fn simulated_ok_then_reverted(kind: Db) {
    let app = app_with(kind, json!({})).await;
    // A buyer holding 1000 signs two payments of 600: each passes simulation alone.
    let buyer = PrivateKeySigner::random();
    app.devnet
        .mint(buyer.address(), U256::from(1_000))
        .await
        .unwrap();
    let bodies: Vec<Value> = (0..2)
        .map(|_| {
            let p = Payment::usdc(buyer.address(), app.devnet.chain_id, app.devnet.usdc, 600);
            p.v1(&p.sign(&buyer), 600)
        })
        .collect();
    let before = app.balance(PAY_TO).await;
    app.devnet.set_automine(false).await.unwrap();
    let (a, b, _) = tokio::join!(app.settle(&bodies[0]), app.settle(&bodies[1]), async {
        wait_for_broadcasts(&app.app.db.url, 2).await;
        app.devnet.mine().await.unwrap();
    });
    let (ok, reverted) = if a["success"] == true { (a, b) } else { (b, a) };
    assert_eq!(ok["success"], true, "{ok}");
    assert_eq!(reverted["success"], false, "{reverted}");
    assert_eq!(reverted["errorReason"], "invalid_transaction_state");
    // The failure names its transaction, which is on chain and reverted.
    let hash: B256 = reverted["transaction"].as_str().unwrap().parse().unwrap();
    let receipt = app.devnet.receipt(hash).await.unwrap().unwrap();
    assert!(!receipt.status());
    let row = app.settlement(&hash.to_string()).await;
    assert_eq!(row["status"], "failed");
    assert_eq!(row["errorReason"], "invalid_transaction_state");
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(600));
    assert_eq!(app.balance(buyer.address()).await, U256::from(400));
}

/// An app on a fresh chain whose one signer has settled one payment of payer 0 (nonce 1 used,
/// a fee estimate cached); with that payer.
async fn settled_once(kind: Db) -> (ChainApp, PrivateKeySigner) {
    let app = app_with(kind, json!({})).await;
    let payer = app.payer(0).clone();
    let first = Payment::new(&app, 0, 1_000);
    assert_eq!(
        app.settle(&first.v1(&first.sign(&payer), 1_000)).await["success"],
        true
    );
    (app, payer)
}

async fn nonce_used_elsewhere(kind: Db) {
    let (app, payer) = settled_once(kind).await;
    // The operator uses the signer key elsewhere: nonce 1 is gone behind our back.
    let key = app.devnet.facilitator_keys[0].clone();
    let signer = key.address();
    let external = ProviderBuilder::new()
        .wallet(EthereumWallet::from(key))
        .connect_http(app.devnet.rpc_url.parse().unwrap());
    external
        .send_transaction(
            TransactionRequest::default()
                .with_to(signer)
                .with_value(U256::ZERO),
        )
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(app.devnet.nonce_of(signer).await.unwrap(), 2);

    // The next settle is refused once ("nonce too low"), re-reads, and goes through.
    let second = Payment::new(&app, 0, 2_000);
    let answer = app.settle(&second.v1(&second.sign(&payer), 2_000)).await;
    assert_eq!(answer["success"], true, "{answer}");
    let hash: B256 = answer["transaction"].as_str().unwrap().parse().unwrap();
    let tx = app
        .devnet
        .provider()
        .get_transaction_by_hash(hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alloy::consensus::Transaction::nonce(&tx), 2);
    let conn = Database::connect(&app.app.db.url).await.unwrap();
    let row = entities::settlement::Entity::find()
        .filter(entities::settlement::Column::TxHash.eq(hash.to_string()))
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.signer_nonce, Some(2));
    assert_eq!(row.status, "confirmed");
    conn.close().await.unwrap();
    // And the one after continues from there without another refusal.
    let third = Payment::new(&app, 0, 3_000);
    assert_eq!(
        app.settle(&third.v1(&third.sign(&payer), 3_000)).await["success"],
        true
    );
    assert_eq!(app.devnet.nonce_of(signer).await.unwrap(), 4);
}

/// The base fee jumps between two settles (blocks filling up), past the fee estimate the
/// signer reuses for a few seconds: the node refuses the second send ("max fee per gas less
/// than block base fee"); the facilitator estimates again and sends once more.
async fn base_fee_jump(kind: Db) {
    let (app, payer) = settled_once(kind).await;
    let provider = app.devnet.provider();
    let base_fee = |b: Option<alloy::rpc::types::Block>| {
        u128::from(b.unwrap().header.base_fee_per_gas.unwrap())
    };
    let before = base_fee(
        provider
            .get_block_by_number(Default::default())
            .await
            .unwrap(),
    );
    let jumped: u128 = 50_000_000_000; // 50 gwei
    assert!(jumped > 4 * before, "{before}");
    provider
        .raw_request::<_, ()>(
            "anvil_setNextBlockBaseFeePerGas".into(),
            (U256::from(jumped),),
        )
        .await
        .unwrap();
    app.devnet.mine().await.unwrap();
    let now = base_fee(
        provider
            .get_block_by_number(Default::default())
            .await
            .unwrap(),
    );
    assert_eq!(now, jumped);

    let second = Payment::new(&app, 0, 2_000);
    let started = Instant::now();
    let answer = app.settle(&second.v1(&second.sign(&payer), 2_000)).await;
    assert_eq!(answer["success"], true, "{answer}");
    let hash: B256 = answer["transaction"].as_str().unwrap().parse().unwrap();
    let tx = provider
        .get_transaction_by_hash(hash)
        .await
        .unwrap()
        .unwrap();
    let max_fee = alloy::consensus::Transaction::max_fee_per_gas(&tx);
    assert!(
        max_fee >= jumped,
        "signed with {max_fee}, base fee {jumped}"
    );
    // Within the reused estimate's lifetime (3 s): the refusal, not its expiry, renewed it.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        app.devnet
            .nonce_of(app.devnet.facilitator_keys[0].address())
            .await
            .unwrap(),
        2
    );
}

#[actix_web::test]
async fn receipt_timeout_answers_pending_with_the_hash_then_resolves_sqlite() {
    pending_then_resolved(Db::Sqlite).await
}

#[actix_web::test]
async fn receipt_timeout_answers_pending_with_the_hash_then_resolves_postgres() {
    pending_then_resolved(Db::Postgres).await
}

#[actix_web::test]
async fn a_pending_settlement_resolves_without_a_retry_sqlite() {
    pending_resolves_by_itself(Db::Sqlite).await
}

#[actix_web::test]
async fn a_pending_settlement_resolves_without_a_retry_postgres() {
    pending_resolves_by_itself(Db::Postgres).await
}

#[actix_web::test]
async fn a_claim_without_a_transaction_is_taken_over_only_once_abandoned_sqlite() {
    claims_without_a_transaction(Db::Sqlite).await
}

#[actix_web::test]
async fn a_claim_without_a_transaction_is_taken_over_only_once_abandoned_postgres() {
    claims_without_a_transaction(Db::Postgres).await
}

#[actix_web::test]
async fn periodic_reconciliation_resolves_a_pending_settlement_sqlite() {
    reconciled_without_a_watch(Db::Sqlite).await
}

#[actix_web::test]
async fn periodic_reconciliation_resolves_a_pending_settlement_postgres() {
    reconciled_without_a_watch(Db::Postgres).await
}

#[actix_web::test]
async fn a_reverted_settlement_answers_failure_with_its_hash_sqlite() {
    simulated_ok_then_reverted(Db::Sqlite).await
}

#[actix_web::test]
async fn a_reverted_settlement_answers_failure_with_its_hash_postgres() {
    simulated_ok_then_reverted(Db::Postgres).await
}

#[actix_web::test]
async fn a_nonce_used_behind_our_back_is_reread_and_the_settle_succeeds_sqlite() {
    nonce_used_elsewhere(Db::Sqlite).await
}

#[actix_web::test]
async fn a_nonce_used_behind_our_back_is_reread_and_the_settle_succeeds_postgres() {
    nonce_used_elsewhere(Db::Postgres).await
}

#[actix_web::test]
async fn a_base_fee_jump_past_the_reused_estimate_is_estimated_again_and_sent_sqlite() {
    base_fee_jump(Db::Sqlite).await
}

#[actix_web::test]
async fn a_base_fee_jump_past_the_reused_estimate_is_estimated_again_and_sent_postgres() {
    base_fee_jump(Db::Postgres).await
}
