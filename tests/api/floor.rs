//! The economic floor and what a refused payment leaves behind. A payment worth nothing (0,
//! below the asset's `min_amount`, or paid to its own payer) is refused at `/verify` and
//! `/settle` without one RPC call about it (an RPC proxy reads every request the facilitator
//! makes), so no signer pays gas; and refused settles, even with oversized signatures, leave
//! nothing in the database.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use devnet::{Devnet, DevnetOptions};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, Database, EntityTrait, PaginatorTrait, Statement};
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::helpers::*;
use crate::permit2_helpers::{deploy_fixtures, Permit2App, Permit2Payment};
use crate::tcp_proxy::TcpProxy;

/// The floor configured for the network's USDC in these tests (atomic units).
const USDC_MIN: u64 = 1000;

/// A facilitator whose every RPC call goes through a recording proxy: USDC (EIP-3009, with
/// `min_amount: 1000` for the network's default token) and a Permit2 token (its asset entry
/// says `min_amount: 0`, which still refuses 0).
struct FloorApp {
    p2: Permit2App,
    proxy: TcpProxy,
}

impl FloorApp {
    async fn spawn(kind: Db) -> Self {
        let devnet = Devnet::start(DevnetOptions::default())
            .await
            .expect("devnet");
        let token = deploy_fixtures(&devnet, U256::from(1_000_000_000u64)).await;
        let proxy = TcpProxy::start(&devnet.rpc_url).await;
        let app = ChainApp::start_app_with(
            TestDb::create(kind).await,
            &devnet,
            devnet.facilitator_keys[..1].to_vec(),
            json!({
                "rpc_url": proxy.url(),
                "min_amount": USDC_MIN.to_string(),
                "assets": [{
                    "address": token.to_checksum(None), "symbol": "TT", "decimals": 6,
                    "eip712_name": "Test Token", "eip712_version": "1", "min_amount": 0,
                }],
            }),
        )
        .await;
        let chain = ChainApp::with_merchant(app, devnet).await;
        Self {
            p2: Permit2App { chain, token },
            proxy,
        }
    }

    fn chain(&self) -> &ChainApp {
        &self.p2.chain
    }

    async fn signer_eth(&self) -> U256 {
        let signer = self.chain().devnet.facilitator_keys[0].address();
        self.chain()
            .devnet
            .provider()
            .get_balance(signer)
            .await
            .unwrap()
    }

    async fn ledger_rows(&self) -> u64 {
        let db = Database::connect(&self.chain().app.db.url).await.unwrap();
        let n = entities::settlement::Entity::find()
            .count(&db)
            .await
            .unwrap();
        db.close().await.ok();
        n
    }

    /// Verify then settle `body`, which must be refused with `reason` by both, with nothing
    /// asked of the node about `payer`, no gas spent, no token moved and no ledger row.
    async fn assert_refused_off_chain(
        &self,
        what: &str,
        body: &Value,
        payer: Address,
        reason: &str,
    ) {
        let eth = self.signer_eth().await;
        let usdc = self.chain().balance(payer).await;
        let token = self.p2.balance(payer).await;
        let mark = self.proxy.sent().len();

        let verify = self.chain().verify(body).await;
        assert_eq!(verify["isValid"], false, "{what}: {verify}");
        assert_eq!(verify["invalidReason"], reason, "{what}: {verify}");
        let settle = self.chain().settle(body).await;
        assert_eq!(settle["success"], false, "{what}: {settle}");
        assert_eq!(settle["errorReason"], reason, "{what}: {settle}");
        assert_eq!(settle["transaction"], "", "{what}: {settle}");

        let sent = self.proxy.sent()[mark..].to_vec();
        let sent = String::from_utf8_lossy(&sent).to_lowercase();
        let payer_hex = alloy::hex::encode(payer.as_slice());
        assert!(
            !sent.contains(&payer_hex),
            "{what}: the node was asked about the payer"
        );
        for method in [
            "eth_call",
            "eth_estimategas",
            "eth_sendrawtransaction",
            "eth_getcode",
        ] {
            assert!(
                !sent.contains(&format!("\"{method}\"")),
                "{what}: {method} was called"
            );
        }
        assert_eq!(self.signer_eth().await, eth, "{what}: the signer paid gas");
        assert_eq!(self.chain().balance(payer).await, usdc, "{what}");
        assert_eq!(self.p2.balance(payer).await, token, "{what}");
        assert_eq!(self.ledger_rows().await, 0, "{what}: a ledger row was kept");
    }
}

/// The payment's requirements (and v2 `accepted`) name `pay_to` as the payee.
fn pay_to(mut body: Value, pay_to: Address) -> Value {
    let to = json!(pay_to.to_checksum(None));
    body["paymentRequirements"]["payTo"] = to.clone();
    if body["paymentPayload"].get("accepted").is_some() {
        body["paymentPayload"]["accepted"]["payTo"] = to;
    }
    body
}

async fn payments_worth_nothing(kind: Db) {
    let app = FloorApp::spawn(kind).await;
    let chain = app.chain();
    let value = "invalid_exact_evm_payload_authorization_value";
    let permit2 = "permit2_invalid_amount";

    // EIP-3009, v1 and v2: a fresh account holding nothing signs a zero value, asking zero.
    let nobody = PrivateKeySigner::random();
    let zero = Payment::usdc(
        nobody.address(),
        chain.devnet.chain_id,
        chain.devnet.usdc,
        0,
    );
    let sig = zero.sign(&nobody);
    app.assert_refused_off_chain("v1 zero", &zero.v1(&sig, 0), nobody.address(), value)
        .await;
    app.assert_refused_off_chain("v2 zero", &zero.v2(&sig, 0), nobody.address(), value)
        .await;
    // A zero value to a requirement of something, and a value against a requirement of 0.
    app.assert_refused_off_chain(
        "v1 zero for 1000",
        &zero.v1(&sig, 1000),
        nobody.address(),
        value,
    )
    .await;
    let payer = chain.payer(0).clone();
    let asks_nothing = Payment::new(chain, 0, 5000);
    app.assert_refused_off_chain(
        "v1 asking 0",
        &asks_nothing.v1(&asks_nothing.sign(&payer), 0),
        payer.address(),
        value,
    )
    .await;

    // Below the configured minimum (1000), v1 and v2, from a funded payer.
    let below = Payment::new(chain, 0, USDC_MIN - 1);
    let sig = below.sign(&payer);
    app.assert_refused_off_chain(
        "v1 below min",
        &below.v1(&sig, USDC_MIN - 1),
        payer.address(),
        value,
    )
    .await;
    app.assert_refused_off_chain(
        "v2 below min",
        &below.v2(&sig, USDC_MIN - 1),
        payer.address(),
        value,
    )
    .await;

    // Self-payments: a funded payer pays itself, v1 and v2.
    let mut own = Payment::new(chain, 0, 5000);
    own.to = payer.address();
    let sig = own.sign(&payer);
    app.assert_refused_off_chain(
        "v1 self",
        &pay_to(own.v1(&sig, 5000), payer.address()),
        payer.address(),
        value,
    )
    .await;
    app.assert_refused_off_chain(
        "v2 self",
        &pay_to(own.v2(&sig, 5000), payer.address()),
        payer.address(),
        value,
    )
    .await;

    // Permit2 exact and upto: zero amounts, and self-payments. The token's own `min_amount: 0`
    // does not let 0 through.
    let p2 = &app.p2;
    let signer = chain.payer(1).clone();
    let zero = Permit2Payment::exact(p2, 1, 0);
    app.assert_refused_off_chain(
        "permit2 zero",
        &zero.signed(&signer),
        signer.address(),
        permit2,
    )
    .await;
    let zero_max = Permit2Payment::upto(p2, 1, 0);
    app.assert_refused_off_chain(
        "upto zero max",
        &zero_max.signed(&signer),
        signer.address(),
        permit2,
    )
    .await;
    // upto: a maximum of 1000, settled for 0.
    let upto = Permit2Payment::upto(p2, 1, 1000);
    let used_nothing = upto.body(&upto.sign(&signer), 0);
    let eth = app.signer_eth().await;
    let settle = chain.settle(&used_nothing).await;
    assert_eq!(settle["success"], false, "{settle}");
    assert_eq!(settle["errorReason"], permit2, "{settle}");
    assert_eq!(settle["transaction"], "", "{settle}");
    assert_eq!(app.signer_eth().await, eth);
    for (what, mut payment) in [
        ("permit2 self", Permit2Payment::exact(p2, 1, 700)),
        ("upto self", Permit2Payment::upto(p2, 1, 700)),
    ] {
        payment.to = signer.address();
        let body = pay_to(payment.signed(&signer), signer.address());
        app.assert_refused_off_chain(what, &body, signer.address(), permit2)
            .await;
    }

    // The proxy does see what a payment worth something asks: at the minimum, it is judged
    // on chain (a simulation naming the payer) and settled.
    let at_min = Payment::new(chain, 0, USDC_MIN);
    let body = at_min.v2(&at_min.sign(&payer), USDC_MIN);
    let mark = app.proxy.sent().len();
    let verify = chain.verify(&body).await;
    assert_eq!(verify["isValid"], true, "{verify}");
    let sent = String::from_utf8_lossy(&app.proxy.sent()[mark..]).to_lowercase();
    assert!(sent.contains(&alloy::hex::encode(payer.address().as_slice())));
    let settle = chain.settle(&body).await;
    assert_eq!(settle["success"], true, "{settle}");
    assert_eq!(app.ledger_rows().await, 1);
}

#[actix_web::test]
async fn payments_worth_nothing_are_refused_without_an_rpc_call_sqlite() {
    payments_worth_nothing(Db::Sqlite).await
}

#[actix_web::test]
async fn payments_worth_nothing_are_refused_without_an_rpc_call_postgres() {
    payments_worth_nothing(Db::Postgres).await
}

/// Bytes the database takes: the SQLite file with its write-ahead log, or PostgreSQL's
/// `pg_database_size`.
async fn database_bytes(url: &str) -> u64 {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap();
        return [path.to_owned(), format!("{path}-wal")]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
    }
    let db = Database::connect(url).await.unwrap();
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT pg_database_size(current_database())::bigint AS n",
        ))
        .await
        .unwrap()
        .unwrap();
    db.close().await.ok();
    row.try_get::<i64>("", "n").unwrap() as u64
}

/// `n` settles of distinct payments by a funded EOA whose signatures are `sig_len` bytes (not
/// an EOA's: the chain would ask the payer's ERC-1271, and it has no code), 8 at a time;
/// every answer must be a refusal with nothing sent.
async fn oversized_settles(app: &ChainApp, n: usize, sig_len: usize) -> Vec<Value> {
    let payer = app.payer(0).address();
    let bodies: Vec<Value> = (0..n)
        .map(|_| {
            let p = Payment::new(app, 0, 2000);
            p.v2(&format!("0x{}", "ab".repeat(sig_len)), 2000)
        })
        .collect();
    // Idle connections are dropped before the server's keep-alive (5 s) would close them: a
    // loaded machine must not make the client reuse a connection the server is closing.
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let url = app.app.url("/api/v1/settle");
    let answers: Vec<Value> = futures::stream::iter(bodies)
        .map(|body| {
            let req = http
                .post(&url)
                .header("X-Client-ID", &app.client_id)
                .header("X-Client-Token", &app.client_token)
                .json(&body);
            async move {
                let res = req.send().await.expect("settle");
                assert_eq!(res.status(), 200);
                res.json::<Value>().await.unwrap()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for a in &answers {
        assert_eq!(a["success"], false, "{a}");
        assert_eq!(a["transaction"], "", "{a}");
        assert_eq!(a["payer"], payer.to_checksum(None), "{a}");
    }
    answers
}

async fn oversized_signatures(kind: Db) {
    let app = ChainApp::spawn(kind, DevnetOptions::default()).await;
    let eth_before = app
        .devnet
        .provider()
        .get_balance(app.devnet.facilitator_keys[0].address())
        .await
        .unwrap();
    let before = database_bytes(&app.app.db.url).await;
    // 30 kB signatures, refused before any work: longer than the default cap (4096 bytes).
    let answers = oversized_settles(&app, 1000, 30_000).await;
    for a in &answers {
        assert_eq!(
            a["errorReason"], "invalid_exact_evm_payload_signature",
            "{a}"
        );
    }
    let after = database_bytes(&app.app.db.url).await;
    assert!(
        after < before + 1_000_000,
        "the database grew by {} bytes",
        after.saturating_sub(before)
    );
    let db = Database::connect(&app.app.db.url).await.unwrap();
    assert_eq!(
        entities::settlement::Entity::find()
            .count(&db)
            .await
            .unwrap(),
        0
    );
    db.close().await.ok();
    assert_eq!(
        app.devnet
            .provider()
            .get_balance(app.devnet.facilitator_keys[0].address())
            .await
            .unwrap(),
        eth_before
    );
}

#[actix_web::test]
async fn a_thousand_refused_settles_with_30kb_signatures_leave_the_database_flat_sqlite() {
    oversized_signatures(Db::Sqlite).await
}

#[actix_web::test]
async fn a_thousand_refused_settles_with_30kb_signatures_leave_the_database_flat_postgres() {
    oversized_signatures(Db::Postgres).await
}

/// With the cap raised, the same signatures reach the ledger and the chain, which refuses them:
/// the claimed rows are deleted. One that carries an idempotency key stays for its retries,
/// without its payload, and is purged by the housekeeping once its `validBefore` has passed.
async fn refused_after_a_claim(kind: Db) {
    let devnet = Devnet::start(DevnetOptions::default())
        .await
        .expect("devnet");
    let app = ChainApp::start_app_full(
        TestDb::create(kind).await,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        json!({}),
        json!({
            "verify": { "max_signature_bytes": 32_768 },
            "settlement": { "reconcile_interval_secs": 1 },
        }),
    )
    .await;
    let app = ChainApp::with_merchant(app, devnet).await;
    let db = Database::connect(&app.app.db.url).await.unwrap();

    // The payer is an EOA: asked for its code (after the claim), it has none to check a
    // wallet signature with.
    let undeployed = "invalid_exact_evm_payload_undeployed_smart_wallet";
    for a in oversized_settles(&app, 100, 30_000).await {
        assert_eq!(a["errorReason"], undeployed, "{a}");
    }
    assert_eq!(
        entities::settlement::Entity::find()
            .count(&db)
            .await
            .unwrap(),
        0
    );

    // Idempotent: the row is kept (a retry of the same request reads its refusal there), its
    // payload dropped; valid for 8 more seconds, it is purged once that has passed.
    let payer = app.payer(0).clone();
    let mut p = Payment::new(&app, 0, 2000);
    p.valid_before = now() + 8;
    let body = p.v2(&format!("0x{}", "ab".repeat(30_000)), 2000);
    let res = app.settle_with_key(&body, "refused-once-0001").await;
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["success"], false, "{answer}");
    assert_eq!(answer["errorReason"], undeployed, "{answer}");
    let rows = entities::settlement::Entity::find().all(&db).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "failed");
    assert_eq!(rows[0].tx_hash, None);
    assert_eq!(rows[0].payload, json!({}));
    assert_eq!(
        rows[0].error_reason.as_deref(),
        answer["errorReason"].as_str()
    );
    assert_eq!(rows[0].payer, payer.address().to_checksum(None));
    let deadline = Instant::now() + Duration::from_secs(30);
    while entities::settlement::Entity::find()
        .count(&db)
        .await
        .unwrap()
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "the refused row was never purged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(now() > p.valid_before, "purged before its validBefore");
    db.close().await.ok();
}

#[actix_web::test]
async fn payments_refused_after_a_claim_leave_no_row_sqlite() {
    refused_after_a_claim(Db::Sqlite).await
}

#[actix_web::test]
async fn payments_refused_after_a_claim_leave_no_row_postgres() {
    refused_after_a_claim(Db::Postgres).await
}
