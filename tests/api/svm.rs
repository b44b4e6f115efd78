//! Solana (`exact` on SVM) against a real local cluster (`devnet::solana`: surfnet running the
//! real SPL Token, Token-2022, associated-token-account and Memo programs): verify, rule by
//! rule, with transactions built as the official `@x402/svm` client builds them; settle once;
//! copies refused across two instances on one PostgreSQL database; a frozen RPC.

use std::time::{Duration, Instant};

use devnet::solana::{
    Instruction, Keypair, Mint, PaymentBuilder, Pubkey, Signer, SolanaCluster,
    VersionedTransaction, DEVNET_NETWORK,
};
use facilitator_actors::svm::FeePayer;
use serde_json::{json, Value};
use x402_facilitator::startup::{Application, BuildOptions};

use crate::helpers::*;
use crate::tcp_proxy::TcpProxy;

const PRICE: u64 = 1_000;

/// An app serving the cluster as `solana-devnet` (its two mints accepted), with a merchant key.
struct SvmApp {
    app: TestApp,
    client_id: String,
    client_token: String,
}

fn fee_payers(cluster: &SolanaCluster) -> Vec<FeePayer> {
    cluster
        .fee_payers
        .iter()
        .map(|k| FeePayer::new(Keypair::try_from(&k.to_bytes()[..]).unwrap()))
        .collect()
}

pub(crate) async fn start_app(
    db: TestDb,
    cluster: &SolanaCluster,
    rpc_url: &str,
    top: Value,
) -> TestApp {
    let mint = |m: &Mint, program: &str| json!({ "mint": m.address.to_string(), "decimals": m.decimals, "token_program": program, "symbol": "USDC" });
    let mut extra = json!({
        "svm_networks": { "solana_devnet": {
            "rpc_url": rpc_url,
            "check_genesis": false,
            "confirm_timeout_secs": 20,
            "assets": [mint(&cluster.usdc, "token"), mint(&cluster.usdc_2022, "token-2022")],
        } },
    });
    for (k, v) in top.as_object().into_iter().flatten() {
        extra[k] = v.clone();
    }
    let settings = test_settings(&db.url, extra);
    let mut options = BuildOptions::default();
    options
        .svm_fee_payers
        .insert("solana-devnet".into(), fee_payers(cluster));
    let app = Application::build_with(settings, options)
        .await
        .expect("build app");
    TestApp::from_application(app, db)
}

impl SvmApp {
    async fn with_merchant(app: TestApp) -> Self {
        let (access, _, _) = app.user("merchant@example.com").await;
        let (client_id, client_token) = app.client_key(&access, "verify,settle").await;
        Self {
            app,
            client_id,
            client_token,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.app
            .post_as_client(path, &self.client_id, &self.client_token, body)
            .await
    }

    async fn verify(&self, body: &Value) -> Value {
        let res = self.post("/api/v1/verify", body).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    async fn get_settlement(&self, tx: &str) -> reqwest::Response {
        self.app
            .get_as_client(
                &format!("/api/v1/settlements/{tx}"),
                &self.client_id,
                &self.client_token,
            )
            .await
    }

    /// `GET /settlements/{tx}`: 200, its `data`.
    async fn settlement(&self, tx: &str) -> Value {
        let res = self.get_settlement(tx).await;
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{v}");
        v["data"].clone()
    }

    async fn settle(&self, body: &Value) -> Value {
        let res = self.post("/api/v1/settle", body).await;
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{v}");
        v
    }
}

/// A v2 `/verify` or `/settle` body paying `pay_to` `amount` of `mint` with `tx`.
fn body(
    tx: &VersionedTransaction,
    mint: &Mint,
    pay_to: &Pubkey,
    amount: u64,
    fee_payer: &Pubkey,
    memo: Option<&str>,
) -> Value {
    let mut extra = json!({ "feePayer": fee_payer.to_string() });
    if let Some(m) = memo {
        extra["memo"] = json!(m);
    }
    let reqs = json!({
        "scheme": "exact", "network": DEVNET_NETWORK, "amount": amount.to_string(),
        "asset": mint.address.to_string(), "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": 60, "extra": extra,
    });
    json!({
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2, "accepted": reqs,
            "payload": { "transaction": devnet::solana::encode_transaction(tx) },
        },
        "paymentRequirements": reqs,
    })
}

pub(crate) struct Scene {
    pub(crate) cluster: SolanaCluster,
    pub(crate) pay_to: Keypair,
    pub(crate) fee_payer: Pubkey,
}

/// A fresh cluster, a payee with token accounts, and the fee payer payments name.
pub(crate) async fn scene() -> Scene {
    let cluster = SolanaCluster::start().await.expect("solana cluster");
    let pay_to = Keypair::new();
    cluster
        .create_token_accounts(&pay_to.pubkey())
        .await
        .unwrap();
    let fee_payer = cluster.fee_payers[0].pubkey();
    Scene {
        cluster,
        pay_to,
        fee_payer,
    }
}

impl Scene {
    /// An app on a fresh SQLite database reaching the cluster at `rpc_url`, with a merchant.
    async fn app(&self, rpc_url: &str, top: Value) -> SvmApp {
        let db = TestDb::create(Db::Sqlite).await;
        SvmApp::with_merchant(start_app(db, &self.cluster, rpc_url, top).await).await
    }

    pub(crate) async fn payment(&self, mint: &Mint, buyer: &Keypair) -> PaymentBuilder {
        self.cluster
            .payment(
                mint,
                &buyer.pubkey(),
                &self.pay_to.pubkey(),
                PRICE,
                &self.fee_payer,
            )
            .await
            .unwrap()
    }

    pub(crate) fn body(&self, tx: &VersionedTransaction, mint: &Mint) -> Value {
        body(
            tx,
            mint,
            &self.pay_to.pubkey(),
            PRICE,
            &self.fee_payer,
            None,
        )
    }

    async fn payee_balance(&self, mint: &Mint) -> u64 {
        self.cluster
            .token_balance(&self.pay_to.pubkey(), mint)
            .await
            .unwrap()
    }
}

fn reason(v: &Value) -> &str {
    v["invalidReason"]
        .as_str()
        .or_else(|| v["errorReason"].as_str())
        .unwrap_or_default()
}

#[actix_web::test]
async fn svm_verify_refuses_each_rule_with_its_reason_and_passes_the_official_payment() {
    let s = scene().await;
    let app = s.app(&s.cluster.rpc_url, json!({})).await;
    let buyer = &s.cluster.payers[0];
    let usdc = s.cluster.usdc;
    let before = s.payee_balance(&usdc).await;

    // The official transaction, under Token and Token-2022, v0 and legacy: valid.
    for mint in [s.cluster.usdc, s.cluster.usdc_2022] {
        for legacy in [false, true] {
            let mut p = s.payment(&mint, buyer).await;
            p.legacy = legacy;
            let v = app
                .verify(&s.body(&p.build(&[buyer]).unwrap(), &mint))
                .await;
            assert_eq!(v["isValid"], true, "{mint:?} legacy={legacy}: {v}");
            assert_eq!(v["payer"], buyer.pubkey().to_string());
        }
    }
    // Its destination read from a lookup table: resolved, valid.
    let mut p = s.payment(&usdc, buyer).await;
    let table = s
        .cluster
        .create_lookup_table(&[usdc.ata(&s.pay_to.pubkey()), usdc.address])
        .await
        .unwrap();
    p.lookup_tables = vec![table.clone()];
    let tx = p.build(&[buyer]).unwrap();
    assert!(tx
        .message
        .address_table_lookups()
        .is_some_and(|l| !l.is_empty()));
    let v = app.verify(&s.body(&tx, &usdc)).await;
    assert_eq!(v["isValid"], true, "{v}");

    // One variant per rule, each refused with its reason.
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut p = s.payment(&usdc, buyer).await;
    p.amount = PRICE - 1;
    cases.push((
        "invalid_exact_svm_payload_amount_mismatch",
        s.body(&p.build(&[buyer]).unwrap(), &usdc),
    ));
    let mut p = s.payment(&usdc, buyer).await;
    p.destination = usdc.ata(&buyer.pubkey());
    cases.push((
        "invalid_exact_svm_payload_recipient_mismatch",
        s.body(&p.build(&[buyer]).unwrap(), &usdc),
    ));
    let p = s.payment(&s.cluster.usdc_2022, buyer).await;
    cases.push((
        "invalid_exact_svm_payload_mint_mismatch",
        s.body(&p.build(&[buyer]).unwrap(), &usdc),
    ));
    let mut p = s.payment(&usdc, buyer).await;
    p.compute_unit_price = Some(5_000_001);
    cases.push((
        "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high",
        s.body(&p.build(&[buyer]).unwrap(), &usdc),
    ));
    let mut p = s.payment(&usdc, buyer).await;
    p.compute_unit_limit = None;
    cases.push((
        "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction",
        s.body(&p.build(&[buyer]).unwrap(), &usdc),
    ));
    // The fee payer paying out of its own token account.
    let p = s.payment(&usdc, buyer).await.from_owner(&s.fee_payer);
    cases.push((
        "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds",
        s.body(&p.build(&[]).unwrap(), &usdc),
    ));
    // An instruction of an unknown program after the transfer.
    let mut p = s.payment(&usdc, buyer).await;
    p.memo = None;
    p.extra = vec![Instruction::new_with_bytes(
        Pubkey::new_unique(),
        &[1],
        vec![],
    )];
    cases.push((
        "invalid_exact_svm_payload_unknown_fourth_instruction",
        s.body(&p.build(&[buyer]).unwrap(), &usdc),
    ));
    // A memo other than extra.memo.
    let p = s.payment(&usdc, buyer).await;
    cases.push((
        "invalid_exact_svm_payload_memo_mismatch",
        body(
            &p.build(&[buyer]).unwrap(),
            &usdc,
            &s.pay_to.pubkey(),
            PRICE,
            &s.fee_payer,
            Some("order-7"),
        ),
    ));
    // A fee payer that is not ours.
    let stranger = Keypair::new().pubkey();
    let p = s
        .cluster
        .payment(&usdc, &buyer.pubkey(), &s.pay_to.pubkey(), PRICE, &stranger)
        .await
        .unwrap();
    cases.push((
        "fee_payer_not_managed_by_facilitator",
        body(
            &p.build(&[buyer]).unwrap(),
            &usdc,
            &s.pay_to.pubkey(),
            PRICE,
            &stranger,
            None,
        ),
    ));
    // Not signed by the buyer.
    let p = s.payment(&usdc, buyer).await;
    cases.push((
        "invalid_exact_svm_payload_signature_invalid",
        s.body(&p.build(&[]).unwrap(), &usdc),
    ));
    // A lookup table that does not exist.
    let mut p = s.payment(&usdc, buyer).await;
    let mut missing = table.clone();
    missing.key = Pubkey::new_unique();
    p.lookup_tables = vec![missing];
    cases.push((
        "invalid_exact_svm_payload_transaction_could_not_be_decoded",
        s.body(&p.build(&[buyer]).unwrap(), &usdc),
    ));
    // A buyer with too little: well-formed, refused by the simulation.
    let poor = s.cluster.new_payer(PRICE - 1).await.unwrap();
    let p = s.payment(&usdc, &poor).await;
    cases.push((
        "transaction_simulation_failed",
        s.body(&p.build(&[&poor]).unwrap(), &usdc),
    ));

    for (expected, body) in &cases {
        let v = app.verify(body).await;
        assert_eq!(v["isValid"], false, "{expected}: {v}");
        assert_eq!(reason(&v), *expected, "{v}");
        // The same refusal at /settle, and nothing sent.
        let s2 = app.settle(body).await;
        assert_eq!(s2["success"], false, "{expected}: {s2}");
        assert_eq!(reason(&s2), *expected, "{s2}");
        assert_eq!(s2["transaction"], "");
    }
    assert_eq!(
        s.payee_balance(&usdc).await,
        before,
        "a refused payment moved money"
    );
}

#[actix_web::test]
async fn svm_settle_pays_once_and_a_copy_signed_again_is_a_duplicate() {
    let s = scene().await;
    let app = s.app(&s.cluster.rpc_url, json!({})).await;
    let buyer = &s.cluster.payers[1];
    let usdc = s.cluster.usdc_2022;
    let before = s.payee_balance(&usdc).await;
    let tx = s.payment(&usdc, buyer).await.build(&[buyer]).unwrap();
    let settled = app.settle(&s.body(&tx, &usdc)).await;
    assert_eq!(settled["success"], true, "{settled}");
    let signature = settled["transaction"].as_str().unwrap().to_owned();
    assert_eq!(settled["payer"], buyer.pubkey().to_string());
    let status = s
        .cluster
        .rpc
        .signature_status(&signature.parse().unwrap())
        .await
        .unwrap();
    assert!(status.is_some_and(|st| st.is_confirmed()), "landed");
    assert_eq!(s.payee_balance(&usdc).await, before + PRICE);
    // Read back by its signature, as an EVM settlement is by its hash.
    let row = app.settlement(&signature).await;
    assert_eq!(row["transaction"], signature.as_str(), "{row}");
    assert_eq!(row["success"], true, "{row}");
    assert!(
        ["mined", "confirmed"].contains(&row["status"].as_str().unwrap()),
        "{row}"
    );
    assert_eq!(row["payer"], buyer.pubkey().to_string());
    assert_eq!(row["payTo"], s.pay_to.pubkey().to_string());
    assert_eq!(row["amount"], PRICE.to_string());
    assert_eq!(row["network"], "solana-devnet");
    let res = app
        .get_settlement(&devnet::solana::Signature::from([7u8; 64]).to_string())
        .await;
    assert_eq!(res.status(), 404, "another signature");
    let res = app.get_settlement("not-a-signature").await;
    assert_eq!(res.status(), 400);

    // The same transaction again, and a copy with our fee payer's signature filled in.
    let mut cosigned = tx.clone();
    devnet::solana::add_signatures(&mut cosigned, &[&s.cluster.fee_payers[0]]);
    for copy in [&tx, &cosigned] {
        let again = app.settle(&s.body(copy, &usdc)).await;
        assert_eq!(again["success"], false, "{again}");
        assert_eq!(reason(&again), "duplicate_settlement");
        let v = app.verify(&s.body(copy, &usdc)).await;
        assert_eq!(reason(&v), "duplicate_settlement", "{v}");
    }
    assert_eq!(s.payee_balance(&usdc).await, before + PRICE, "paid once");
}

#[actix_web::test]
async fn svm_thirty_concurrent_settles_over_two_instances_land_once() {
    let s = scene().await;
    let db = TestDb::create(Db::Postgres).await;
    let url = db.url.clone();
    let a =
        SvmApp::with_merchant(start_app(db, &s.cluster, &s.cluster.rpc_url, json!({})).await).await;
    let b_app = start_app(
        TestDb::attach(&url),
        &s.cluster,
        &s.cluster.rpc_url,
        json!({}),
    )
    .await;
    let b = SvmApp {
        app: b_app,
        client_id: a.client_id.clone(),
        client_token: a.client_token.clone(),
    };
    let buyer = &s.cluster.payers[2];
    let usdc = s.cluster.usdc;
    let before = s.payee_balance(&usdc).await;
    let body = s.body(
        &s.payment(&usdc, buyer).await.build(&[buyer]).unwrap(),
        &usdc,
    );
    let answers = futures::future::join_all((0..30).map(|i| {
        let (app, body) = (if i % 2 == 0 { &a } else { &b }, &body);
        async move { app.settle(body).await }
    }))
    .await;
    let ok: Vec<&Value> = answers.iter().filter(|v| v["success"] == true).collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    for v in answers.iter().filter(|v| v["success"] != true) {
        assert_eq!(reason(v), "duplicate_settlement", "{v}");
    }
    let signature: devnet::solana::Signature =
        ok[0]["transaction"].as_str().unwrap().parse().unwrap();
    assert!(s
        .cluster
        .rpc
        .signature_status(&signature)
        .await
        .unwrap()
        .is_some_and(|st| st.is_confirmed()));
    assert_eq!(
        s.payee_balance(&usdc).await,
        before + PRICE,
        "one transfer landed"
    );
}

#[actix_web::test]
async fn svm_a_settle_past_its_wait_is_pending_then_confirmed() {
    let s = scene().await;
    // A 1 s confirmation wait, so that a paused cluster outlasts it.
    let short = SvmApp::with_merchant(
        start_app(
            TestDb::create(Db::Sqlite).await,
            &s.cluster,
            &s.cluster.rpc_url,
            json!({ "svm_networks": { "solana_devnet": {
                "rpc_url": s.cluster.rpc_url, "check_genesis": false, "confirm_timeout_secs": 1,
                "assets": [{ "mint": s.cluster.usdc.address.to_string(), "decimals": 6 }],
            } } }),
        )
        .await,
    )
    .await;
    let buyer = &s.cluster.payers[3];
    let usdc = s.cluster.usdc;
    let before = s.payee_balance(&usdc).await;
    let body = s.body(
        &s.payment(&usdc, buyer).await.build(&[buyer]).unwrap(),
        &usdc,
    );
    s.cluster.pause_clock().await.unwrap();
    let pending = short.settle(&body).await;
    assert_eq!(reason(&pending), "settlement_pending", "{pending}");
    let signature = pending["transaction"].as_str().unwrap().to_owned();
    assert!(!signature.is_empty());
    // Read back by its signature: sent, not landed while the clock stands.
    let row = short.settlement(&signature).await;
    assert_eq!(row["status"], "submitted", "{row}");
    assert_eq!(row["success"], false, "{row}");
    s.cluster.resume_clock().await.unwrap();
    // The background watch finishes it: the ledger row ends confirmed.
    wait_for_row(&short.app.db.url, &signature, "confirmed").await;
    let row = short.settlement(&signature).await;
    assert_eq!(
        (&row["status"], &row["success"]),
        (&json!("confirmed"), &json!(true)),
        "{row}"
    );
    assert_eq!(s.payee_balance(&usdc).await, before + PRICE);
    // A retry now says it is settled (a duplicate), never a second transfer.
    let again = short.settle(&body).await;
    assert_eq!(reason(&again), "duplicate_settlement", "{again}");
}

/// Poll the ledger row of `signature` until its status is `want` (30 s at most).
async fn wait_for_row(db_url: &str, signature: &str, want: &str) {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(db_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = db
            .query_one(Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT status FROM settlements WHERE tx_hash = $1",
                [signature.into()],
            ))
            .await
            .unwrap()
            .map(|r| r.try_get::<String>("", "status").unwrap());
        if row.as_deref() == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "row still {row:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A JSON-RPC proxy in front of the cluster that drops every `sendTransaction` (502) and
/// passes the rest: a send lost on the way, which a local cluster cannot produce by itself.
async fn send_dropping_proxy(upstream: String) -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{web, HttpResponse};
    let client = reqwest::Client::new();
    let server = actix_web::HttpServer::new(move || {
        let (client, upstream) = (client.clone(), upstream.clone());
        actix_web::App::new().default_service(web::to(move |body: web::Bytes| {
            let (client, upstream) = (client.clone(), upstream.clone());
            async move {
                let call: Value = serde_json::from_slice(&body).unwrap_or_default();
                if call["method"] == "sendTransaction" {
                    return HttpResponse::BadGateway().finish();
                }
                let answer = client
                    .post(&upstream)
                    .header("content-type", "application/json")
                    .body(body.to_vec())
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(answer.to_vec())
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("http://{addr}"), handle)
}

#[actix_web::test]
async fn svm_a_lost_send_is_pending_then_reconciled_failed_once_its_blockhash_expired_fault_proxy()
{
    let s = scene().await;
    let (proxy, proxy_handle) = send_dropping_proxy(s.cluster.rpc_url.clone()).await;
    // No background watch: reconciliation (every second here) alone resolves the row.
    let reconciled =
        json!({ "settlement": { "background_watch_secs": 0, "reconcile_interval_secs": 1 } });
    let app = s.app(&proxy, reconciled).await;
    let buyer = &s.cluster.payers[0];
    let usdc = s.cluster.usdc;
    let before = s.payee_balance(&usdc).await;
    let (blockhash, last_valid) = s.cluster.rpc.latest_blockhash().await.unwrap();
    let mut p = s.payment(&usdc, buyer).await;
    p.blockhash = blockhash;
    let body = s.body(&p.build(&[buyer]).unwrap(), &usdc);
    // Simulated, recorded, sent into the void: it may have gone out, so it is pending.
    let pending = app.settle(&body).await;
    assert_eq!(reason(&pending), "settlement_pending", "{pending}");
    let signature = pending["transaction"].as_str().unwrap().to_owned();
    // Never "failed" while it can land: still submitted while the blockhash lives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_for_row(&app.app.db.url, &signature, "submitted").await;
    s.cluster.rpc.expire_blockhash(last_valid).await.unwrap();
    wait_for_row(&app.app.db.url, &signature, "failed").await;
    assert_eq!(s.payee_balance(&usdc).await, before, "nothing moved");
    proxy_handle.stop(false).await;
}

#[actix_web::test]
async fn svm_a_frozen_rpc_answers_in_time_says_down_and_recovers() {
    let s = scene().await;
    let proxy = TcpProxy::start(&s.cluster.rpc_url).await;
    let app = s
        .app(
            &proxy.url(),
            json!({
                "rpc": { "timeout_ms": 2000, "probe_interval_ms": 500 },
                "ready": { "networks": ["solana-devnet"] },
            }),
        )
        .await;
    // `/ready` follows the cluster `ready.networks` names.
    let ready = app.app.ready_until(200).await;
    assert_eq!(
        ready["data"]["networks"]["solana-devnet"], "active",
        "{ready}"
    );
    let buyer = &s.cluster.payers[0];
    let usdc = s.cluster.usdc;
    let body = s.body(
        &s.payment(&usdc, buyer).await.build(&[buyer]).unwrap(),
        &usdc,
    );
    proxy.freeze();
    for path in ["/api/v1/verify", "/api/v1/settle"] {
        let t = Instant::now();
        let res = app.post(path, &body).await;
        let took = t.elapsed();
        assert!(took < Duration::from_millis(3500), "{path} took {took:?}");
        assert_eq!(res.status(), 500, "{path}");
        let v: Value = res.json().await.unwrap();
        let code = if path.ends_with("verify") {
            "VERIFICATION_FAILED"
        } else {
            "SETTLEMENT_FAILED"
        };
        assert_eq!(v["code"], code, "{v}");
        assert!(
            v["details"].as_str().unwrap().contains("unavailable"),
            "{v}"
        );
    }
    let status: Value = app
        .app
        .get("/api/v1/status", None)
        .await
        .json()
        .await
        .unwrap();
    let svm = status["data"]["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["network"] == "solana-devnet")
        .unwrap()
        .clone();
    assert_ne!(svm["status"], "active", "{svm}");
    assert_eq!(status["data"]["status"], "degraded");
    let ready = app.app.ready_until(503).await;
    assert_eq!(ready["code"], "SERVICE_UNAVAILABLE", "{ready}");
    assert!(
        ready["details"].as_str().unwrap().contains("solana-devnet"),
        "{ready}"
    );
    proxy.pass();
    app.app.ready_until(200).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = app.verify(&body).await;
        if v["isValid"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
}
