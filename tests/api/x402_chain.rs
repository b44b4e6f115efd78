//! Settling against the chain's own pace: two networks at once, each on its own chain; an
//! unmined settlement replaced with higher fees; a payment newer than an idle chain's block.

use std::collections::HashSet;

use alloy::primitives::{B256, U256};
use devnet::DevnetOptions;
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::helpers::*;
use crate::x402::{automine, interval_mining};

/// Two networks at once, each with its own chain, signer and settlement actor.
#[actix_web::test]
async fn two_networks_settle_concurrently_each_on_its_own_chain() {
    let sepolia = devnet::Devnet::start(interval_mining()).await.unwrap();
    let fuji = devnet::Devnet::start(DevnetOptions {
        chain_id: 43113,
        token_name: "USD Coin".into(),
        ..interval_mining()
    })
    .await
    .unwrap();
    let db = TestDb::create(Db::Sqlite).await;
    let settings = test_settings(
        &db.url,
        json!({ "networks": {
            "base_sepolia": { "rpc_url": sepolia.rpc_url, "usdc_address": sepolia.usdc.to_checksum(None) },
            "avalanche_fuji": { "rpc_url": fuji.rpc_url, "usdc_address": fuji.usdc.to_checksum(None) },
        }}),
    );
    let mut options = x402_facilitator::startup::BuildOptions::default();
    options.signer_keys.insert(
        "base-sepolia".into(),
        sepolia.facilitator_keys[..1].to_vec(),
    );
    options
        .signer_keys
        .insert("avalanche-fuji".into(), fuji.facilitator_keys[..1].to_vec());
    let app = TestApp::from_application(
        x402_facilitator::startup::Application::build_with(settings, options)
            .await
            .unwrap(),
        db,
    );
    let (access, _, _) = app.user("multi@example.com").await;
    let (id, token) = app.client_key(&access, "settle").await;
    let kinds: Value = app
        .get("/api/v1/networks", None)
        .await
        .json()
        .await
        .unwrap();
    let names: HashSet<&str> = kinds["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["network"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        HashSet::from([
            "base-sepolia",
            "avalanche-fuji",
            "eip155:84532",
            "eip155:43113"
        ])
    );

    let payment = |net: &devnet::Devnet, name: &str, i: u64| {
        let payer = &net.payers[(i % 4) as usize];
        let p = Payment {
            from: payer.address(),
            to: PAY_TO,
            value: U256::from(100 + i),
            valid_after: now() - 60,
            valid_before: now() + 600,
            nonce: B256::from(rand::random::<[u8; 32]>()),
            domain_name: name.into(),
            domain_version: "2".into(),
            chain_id: net.chain_id,
            asset: net.usdc,
        };
        let mut body = p.v1(&p.sign(payer), 100 + i);
        let v1 = if net.chain_id == 43113 {
            "avalanche-fuji"
        } else {
            "base-sepolia"
        };
        body["paymentPayload"]["network"] = json!(v1);
        body["paymentRequirements"]["network"] = json!(v1);
        body
    };
    let bodies: Vec<Value> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                payment(&sepolia, "USDC", i)
            } else {
                payment(&fuji, "USD Coin", i)
            }
        })
        .collect();
    let answers = futures::future::join_all(bodies.iter().map(|b| {
        app.http
            .post(app.url("/api/v1/settle"))
            .header("X-Client-ID", &id)
            .header("X-Client-Token", &token)
            .json(b)
            .send()
    }))
    .await;
    for a in answers {
        let a: Value = a.unwrap().json().await.unwrap();
        assert_eq!(a["success"], true, "{a}");
    }
    let on = |i: std::ops::Range<u64>, odd: bool| {
        i.filter(|i| (i % 2 == 1) == odd)
            .map(|i| 100 + i)
            .sum::<u64>()
    };
    assert_eq!(
        sepolia.usdc_balance(PAY_TO).await.unwrap(),
        U256::from(on(0..20, false))
    );
    assert_eq!(
        fuji.usdc_balance(PAY_TO).await.unwrap(),
        U256::from(on(0..20, true))
    );
    assert_eq!(
        sepolia
            .nonce_of(sepolia.facilitator_keys[0].address())
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        fuji.nonce_of(fuji.facilitator_keys[0].address())
            .await
            .unwrap(),
        10
    );
}

/// A transaction left unmined is replaced (same nonce, higher fees); the replacement is what
/// gets mined, and the buyer pays once.
#[actix_web::test]
async fn an_unmined_settlement_is_replaced_with_higher_fees_and_pays_once() {
    let net = devnet::Devnet::start(automine()).await.unwrap();
    net.set_automine(false).await.unwrap();
    let db = TestDb::create(Db::Sqlite).await;
    let db_url = db.url.clone();
    let settings = test_settings(
        &db.url,
        json!({ "networks": { "base_sepolia": {
            "rpc_url": net.rpc_url, "usdc_address": net.usdc.to_checksum(None),
            "receipt_timeout_secs": 30, "replace_after_secs": 1,
        }}}),
    );
    let mut options = x402_facilitator::startup::BuildOptions::default();
    options
        .signer_keys
        .insert("base-sepolia".into(), net.facilitator_keys[..1].to_vec());
    let app = TestApp::from_application(
        x402_facilitator::startup::Application::build_with(settings, options)
            .await
            .unwrap(),
        db,
    );
    let (access, _, _) = app.user("replace@example.com").await;
    let (id, token) = app.client_key(&access, "settle").await;
    let payer = net.payers[0].clone();
    let p = Payment {
        from: payer.address(),
        to: PAY_TO,
        value: U256::from(31_337),
        valid_after: now() - 60,
        valid_before: now() + 600,
        nonce: B256::from(rand::random::<[u8; 32]>()),
        domain_name: "USDC".into(),
        domain_version: "2".into(),
        chain_id: net.chain_id,
        asset: net.usdc,
    };
    let body = p.v1(&p.sign(&payer), 31_337);
    let request = app
        .http
        .post(app.url("/api/v1/settle"))
        .header("X-Client-ID", &id)
        .header("X-Client-Token", &token)
        .json(&body)
        .send();
    let watch = async {
        // Follow the ledger: the first hash, then a different one with the same nonce.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let conn = sea_orm::Database::connect(&db_url).await.unwrap();
        use sea_orm::EntityTrait;
        let mut first: Option<String> = None;
        loop {
            assert!(std::time::Instant::now() < deadline, "no replacement seen");
            if let Some(row) = entities::settlement::Entity::find()
                .one(&conn)
                .await
                .unwrap()
            {
                match (&first, row.tx_hash) {
                    (None, Some(h)) => first = Some(h),
                    (Some(f), Some(h)) if *f != h => {
                        assert_eq!(row.signer_nonce, Some(0));
                        conn.close().await.ok();
                        net.mine().await.unwrap();
                        return (f.clone(), h);
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let (res, (first, replacement)) = futures::join!(request, watch);
    let answer: Value = res.unwrap().json().await.unwrap();
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["transaction"], replacement.as_str());
    let old: B256 = first.parse().unwrap();
    let new: B256 = replacement.parse().unwrap();
    assert!(
        net.receipt(old).await.unwrap().is_none(),
        "the original was replaced, not mined"
    );
    let receipt = net.receipt(new).await.unwrap().unwrap();
    assert!(receipt.status());
    assert_eq!(net.usdc_balance(PAY_TO).await.unwrap(), U256::from(31_337));
    assert_eq!(
        net.nonce_of(net.facilitator_keys[0].address())
            .await
            .unwrap(),
        1
    );
}

/// An idle chain's latest block is older than a payment's `validAfter` (a dev chain between
/// payments): the node's simulation in that block would refuse it, but the transaction goes
/// into a new block; the facilitator judges the time window by its clock and settles.
#[actix_web::test]
async fn a_payment_newer_than_the_idle_chains_latest_block_settles() {
    use alloy::providers::Provider;
    let app = ChainApp::spawn(Db::Sqlite, automine()).await;
    let latest = app
        .devnet
        .provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp;
    // The clock, not a synchronisation: wait until our time is past the block's by 2 s.
    while now() < latest + 2 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let payer = app.payer(0).clone();
    let mut pay = Payment::new(&app, 0, 1_234);
    pay.valid_after = latest + 1;
    let before = app.balance(PAY_TO).await;
    let body = pay.v1(&pay.sign(&payer), 1_234);
    assert_eq!(app.verify(&body).await["isValid"], true);
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(1_234));
}

/// A payment valid from this very second (`validAfter` = now): the token wants a block stamped
/// after it, so the settle waits out the chain's clock lag instead of sending a transfer that
/// would revert at the operator's cost. Fails without the wait: the block is stamped this second.
#[actix_web::test]
async fn a_payment_valid_from_this_second_settles_without_a_revert() {
    let app = ChainApp::spawn(Db::Sqlite, automine()).await;
    let payer = app.payer(0).clone();
    let sent = || async {
        let mut n = 0;
        for key in &app.devnet.facilitator_keys {
            n += app.devnet.nonce_of(key.address()).await.unwrap();
        }
        n
    };
    let sent_before = sent().await;
    let mut pay = Payment::new(&app, 0, 4_321);
    pay.valid_after = now();
    let before = app.balance(PAY_TO).await;
    let body = pay.v1(&pay.sign(&payer), 4_321);
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(app.balance(PAY_TO).await - before, U256::from(4_321));
    // One transaction from the signers: the transfer, not a reverted one before it.
    assert_eq!(sent().await, sent_before + 1);
}
