//! Reorgs: a settlement answered as mined stays `mined` until `confirmations` blocks deep. A
//! reorg that takes its transaction out of the chain makes the facilitator re-send the very
//! same signed transaction; if the authorization was carried by another transaction instead,
//! the row points at that one. Either way the ledger ends confirmed and matches the chain.
//! The reorgs are anvil's own (`anvil_reorg`), on a real chain with real USDC.

use std::time::{Duration, Instant};

use alloy::primitives::{Bytes, B256, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use devnet::{Devnet, DevnetOptions};
use sea_orm::{Database, EntityTrait};
use serde_json::{json, Value};
use x402::exact::evm::IEIP3009;

use crate::chain_helpers::*;
use crate::helpers::*;

const CONFIRMATIONS: u64 = 3;

async fn app(kind: Db) -> ChainApp {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let db = TestDb::create(kind).await;
    let app = ChainApp::start_app_with(
        db,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        json!({ "confirmations": CONFIRMATIONS }),
    )
    .await;
    ChainApp::with_merchant(app, devnet).await
}

async fn row(app: &ChainApp) -> entities::settlement::Model {
    let conn = Database::connect(&app.app.db.url).await.unwrap();
    let row = entities::settlement::Entity::find()
        .one(&conn)
        .await
        .unwrap()
        .expect("a ledger row");
    conn.close().await.ok();
    row
}

/// Wait (polling, with a deadline) until the row satisfies `done`.
async fn row_until(
    app: &ChainApp,
    what: &str,
    done: impl Fn(&entities::settlement::Model) -> bool,
) -> entities::settlement::Model {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = row(app).await;
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "never {what}: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rpc(app: &ChainApp, method: &str, params: Value) -> Value {
    app.devnet
        .provider()
        .raw_request::<_, Value>(method.to_owned().into(), params)
        .await
        .unwrap()
}

/// A raw transaction from the token's deployer (someone other than the facilitator) calling
/// the token with `input`.
async fn signed_by_deployer(app: &ChainApp, input: Vec<u8>) -> Bytes {
    use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy::eips::eip2718::Encodable2718;
    use alloy::network::TxSignerSync;
    let deployer = &app.devnet.deployer;
    let nonce = app.devnet.nonce_of(deployer.address()).await.unwrap();
    let mut tx = TxEip1559 {
        chain_id: app.devnet.chain_id,
        nonce,
        gas_limit: 300_000,
        max_fee_per_gas: 100_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: alloy::primitives::TxKind::Call(app.devnet.usdc),
        value: U256::ZERO,
        access_list: Default::default(),
        input: input.into(),
    };
    let signature = deployer.sign_transaction_sync(&mut tx).unwrap();
    TxEnvelope::Eip1559(tx.into_signed(signature))
        .encoded_2718()
        .into()
}

async fn mine(app: &ChainApp, blocks: u64) {
    for _ in 0..blocks {
        app.devnet.mine().await.unwrap();
    }
}

fn reorgs_counted(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("x402_settlement_reorgs_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Settle a payment; the answer is a success and the row is `mined`, not yet confirmed.
async fn settle_mined(app: &ChainApp, value: u64) -> (Payment, String, B256) {
    let payer = app.payer(0).clone();
    let pay = Payment::new(app, 0, value);
    let sig = pay.sign(&payer);
    let answer = app.settle(&pay.v1(&sig, value)).await;
    assert_eq!(answer["success"], true, "{answer}");
    let tx: B256 = answer["transaction"].as_str().unwrap().parse().unwrap();
    let r = row(app).await;
    assert_eq!(r.status, "mined", "not {CONFIRMATIONS} deep yet");
    (pay, sig, tx)
}

async fn reorged_out_then_re_sent(kind: Db) {
    let app = app(kind).await;
    let before = app.balance(PAY_TO).await;
    let (pay, _, tx) = settle_mined(&app, 7_700).await;
    let mined_at = row(&app).await.block_number.unwrap();

    // A reorg replaces the settlement's block with an empty one: the transaction is gone.
    rpc(&app, "anvil_reorg", json!([1, []])).await;
    assert!(app.devnet.receipt(tx).await.unwrap().is_none());
    assert_eq!(app.balance(PAY_TO).await, before, "the payment is undone");

    // The facilitator re-sends the same bytes (same hash), which auto-mining includes again.
    let receipt = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(r) = app.devnet.receipt(tx).await.unwrap() {
                break r;
            }
            assert!(Instant::now() < deadline, "never re-sent");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(receipt.status());
    let remined = row_until(&app, "re-included", |r| {
        r.block_number != Some(mined_at) && r.status == "mined"
    })
    .await;
    assert_eq!(remined.tx_hash.as_deref(), Some(tx.to_string().as_str()));
    assert_eq!(remined.block_number, receipt.block_number.map(|b| b as i64));

    // Deep enough: confirmed, and the ledger matches the chain.
    mine(&app, CONFIRMATIONS).await;
    let done = row_until(&app, "confirmed", |r| r.status == "confirmed").await;
    assert_eq!(done.tx_hash.as_deref(), Some(tx.to_string().as_str()));
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(7_700));
    assert!(app
        .devnet
        .authorization_state(pay.from, pay.nonce)
        .await
        .unwrap());
    let metrics = app.app.get("/metrics", None).await.text().await.unwrap();
    assert!(reorgs_counted(&metrics) >= 1, "the reorg is counted");
}

#[actix_web::test]
async fn a_reorged_out_settlement_is_re_sent_and_confirmed_sqlite() {
    reorged_out_then_re_sent(Db::Sqlite).await
}

#[actix_web::test]
async fn a_reorged_out_settlement_is_re_sent_and_confirmed_postgres() {
    reorged_out_then_re_sent(Db::Postgres).await
}

async fn carried_by_another_transaction(kind: Db) {
    let app = app(kind).await;
    let before = app.balance(PAY_TO).await;
    let (pay, sig, ours) = settle_mined(&app, 8_800).await;

    // The reorg's new block carries the same authorization in someone else's transaction.
    let sig: Bytes = sig.parse().unwrap();
    let call = IEIP3009::transferWithAuthorization_0Call {
        from: pay.from,
        to: pay.to,
        value: pay.value,
        validAfter: U256::from(pay.valid_after),
        validBefore: U256::from(pay.valid_before),
        nonce: pay.nonce,
        v: sig[64],
        r: B256::from_slice(&sig[..32]),
        s: B256::from_slice(&sig[32..64]),
    };
    let other = signed_by_deployer(&app, call.abi_encode()).await;
    rpc(&app, "anvil_reorg", json!([1, [[other, 0]]])).await;
    let head = app.devnet.provider().get_block_number().await.unwrap();
    let block = app
        .devnet
        .provider()
        .get_block_by_number(head.into())
        .await
        .unwrap()
        .unwrap();
    let carrier = *block
        .transactions
        .hashes()
        .collect::<Vec<_>>()
        .first()
        .expect("the reorg's transaction");
    assert_ne!(carrier, ours);
    assert!(app.devnet.receipt(carrier).await.unwrap().unwrap().status());

    // The row ends pointing at the transaction that moved the money; paid once.
    mine(&app, CONFIRMATIONS + 1).await;
    let done = row_until(&app, "resolved from the chain", |r| {
        r.status == "confirmed" && r.tx_hash.as_deref() == Some(carrier.to_string().as_str())
    })
    .await;
    assert!(done.block_number.is_some());
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(8_800));
    let metrics = app.app.get("/metrics", None).await.text().await.unwrap();
    assert!(reorgs_counted(&metrics) >= 1);
}

#[actix_web::test]
async fn a_reorg_that_carries_the_authorization_elsewhere_resolves_from_the_chain_sqlite() {
    carried_by_another_transaction(Db::Sqlite).await
}

#[actix_web::test]
async fn a_reorg_that_carries_the_authorization_elsewhere_resolves_from_the_chain_postgres() {
    carried_by_another_transaction(Db::Postgres).await
}
