//! verify / settle / supported / settlements against anvil + Circle's FiatTokenV2_2.

use std::collections::HashSet;

use alloy::primitives::{B256, U256};
use devnet::DevnetOptions;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::chain_helpers::*;
use crate::helpers::*;

pub(crate) fn automine() -> DevnetOptions {
    DevnetOptions::default()
}

pub(crate) fn interval_mining() -> DevnetOptions {
    DevnetOptions {
        block_time: Some(1),
        gas_limit: Some(300_000_000),
        ..DevnetOptions::default()
    }
}

fn assert_invalid(body: &Value, reason: &str) {
    assert_eq!(body["isValid"], false, "{body}");
    assert_eq!(body["invalidReason"], reason, "{body}");
}

both_dbs!(
    v1_verify_and_settle_move_exactly_the_value,
    automine(),
    |app: ChainApp| {
        let payer = app.payer(0).clone();
        let pay = Payment::new(&app, 0, 1_250_000);
        let sig = pay.sign(&payer);
        let body = pay.v1(&sig, 1_000_000);
        let before_payee = app.balance(PAY_TO).await;
        let before_payer = app.balance(payer.address()).await;

        let verified = app.verify(&body).await;
        assert_eq!(verified["isValid"], true, "{verified}");
        assert_eq!(verified["invalidReason"], "");
        assert_eq!(verified["payer"], payer.address().to_checksum(None));
        assert_eq!(verified["cachedResult"], false);
        assert!(verified["timestamp"].as_i64().unwrap() > 0);
        // Identical verify again: valid, from the cache or (the state mirror is on by default)
        // from the mirror once it has seeded the payer, which answers before the cache. The
        // cache alone: `verify_fast::a_repeated_verify_is_answered_from_the_cache`.
        let again = app.verify(&body).await;
        assert_eq!(again["isValid"], true, "{again}");
        assert!(again["cachedResult"].is_boolean(), "{again}");

        let settled = app.settle(&body).await;
        assert_eq!(settled["success"], true, "{settled}");
        assert_eq!(settled["errorReason"], "");
        assert_eq!(settled["network"], "base-sepolia");
        assert_eq!(settled["payer"], payer.address().to_checksum(None));
        let tx: B256 = settled["transaction"].as_str().unwrap().parse().unwrap();
        assert!(settled["blockNumber"].as_u64().unwrap() > 0);
        assert!(settled["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            app.balance(PAY_TO).await,
            before_payee + U256::from(1_250_000)
        );
        assert_eq!(
            app.balance(payer.address()).await,
            before_payer - U256::from(1_250_000)
        );
        assert!(app
            .devnet
            .authorization_state(payer.address(), pay.nonce)
            .await
            .unwrap());

        // A settled payment is never valid again (the cache does not say otherwise).
        let after = app.verify(&body).await;
        assert_invalid(&after, "invalid_exact_evm_nonce_already_used");
        // Settling it again is a copy of a used payment: refused, nothing moves.
        let again = app.settle(&body).await;
        assert_eq!(again["success"], false, "{again}");
        assert_eq!(again["errorReason"], "invalid_exact_evm_nonce_already_used");
        assert_eq!(again["transaction"], "");
        assert_eq!(
            app.balance(PAY_TO).await,
            before_payee + U256::from(1_250_000)
        );

        // The client can read its settlement back.
        let row = app.settlement(&tx.to_string()).await;
        assert_eq!(row["status"], "confirmed");
        assert_eq!(row["amount"], "1250000");
        assert_eq!(row["transaction"], tx.to_string());
    }
);

both_dbs!(
    v1_base64_payload_and_v2_settle,
    automine(),
    |app: ChainApp| {
        let payer = app.payer(1).clone();
        let before = app.balance(PAY_TO).await;
        let pay = Payment::new(&app, 1, 700);
        let body = pay.v1_base64(&pay.sign(&payer), 700);
        let settled = app.settle(&body).await;
        assert_eq!(settled["success"], true, "{settled}");

        let pay2 = Payment::new(&app, 1, 12_345);
        let body2 = pay2.v2(&pay2.sign(&payer), 12_345);
        let verified = app.verify(&body2).await;
        assert_eq!(verified["isValid"], true, "{verified}");
        let settled = app.settle(&body2).await;
        assert_eq!(settled["success"], true, "{settled}");
        assert_eq!(settled["network"], "eip155:84532");
        assert_eq!(settled["amount"], "12345");
        assert_eq!(app.balance(PAY_TO).await, before + U256::from(700 + 12_345));
    }
);

both_dbs!(
    every_reason_by_a_real_bad_payment,
    automine(),
    |app: ChainApp| {
        let payer = app.payer(2).clone();
        let stranger = app.devnet.payers[3].clone();
        let ok = Payment::new(&app, 2, 1_000);

        // Wrong signature: signed by someone else.
        let body = ok.v1(&ok.sign(&stranger), 1_000);
        assert_invalid(
            &app.verify(&body).await,
            "invalid_exact_evm_payload_signature",
        );

        // Wrong recipient.
        let mut p = ok.clone();
        p.to = alloy::primitives::Address::repeat_byte(0x42);
        assert_invalid(
            &app.verify(&p.v1(&p.sign(&payer), 1_000)).await,
            "invalid_exact_evm_payload_recipient_mismatch",
        );

        // Expired, and not yet valid.
        let mut p = ok.clone();
        p.valid_before = now() - 1;
        assert_invalid(
            &app.verify(&p.v1(&p.sign(&payer), 1_000)).await,
            "invalid_exact_evm_payload_authorization_valid_before",
        );
        let mut p = ok.clone();
        p.valid_after = now() + 600;
        assert_invalid(
            &app.verify(&p.v1(&p.sign(&payer), 1_000)).await,
            "invalid_exact_evm_payload_authorization_valid_after",
        );

        // Amount: v1 below maxAmountRequired; v2 not exactly the amount.
        assert_invalid(
            &app.verify(&ok.v1(&ok.sign(&payer), 1_001)).await,
            "invalid_exact_evm_payload_authorization_value",
        );
        assert_invalid(
            &app.verify(&ok.v2(&ok.sign(&payer), 999)).await,
            "invalid_exact_evm_payload_authorization_value",
        );

        // Unknown network, wrong scheme.
        let mut body = ok.v1(&ok.sign(&payer), 1_000);
        body["paymentPayload"]["network"] = json!("moon-mainnet");
        body["paymentRequirements"]["network"] = json!("moon-mainnet");
        assert_invalid(&app.verify(&body).await, "invalid_network");
        let mut body = ok.v1(&ok.sign(&payer), 1_000);
        body["paymentPayload"]["scheme"] = json!("upto");
        body["paymentRequirements"]["scheme"] = json!("upto");
        assert_invalid(&app.verify(&body).await, "invalid_scheme");

        // Insufficient funds: more than the payer holds.
        let balance = app.balance(payer.address()).await;
        let mut p = ok.clone();
        p.value = balance + U256::from(1);
        let body = p.v1(&p.sign(&payer), 1_000);
        assert_invalid(&app.verify(&body).await, "insufficient_funds");
        let settled = app.settle(&body).await;
        assert_eq!(settled["success"], false);
        assert_eq!(settled["errorReason"], "insufficient_funds");
        assert_eq!(settled["transaction"], "", "nothing was broadcast");

        // Nonce already used: settle, then present another payment with the same nonce.
        let body = ok.v1(&ok.sign(&payer), 1_000);
        assert_eq!(app.settle(&body).await["success"], true);
        let mut p = ok.clone();
        p.value = U256::from(2_000);
        assert_invalid(
            &app.verify(&p.v1(&p.sign(&payer), 1_000)).await,
            "invalid_exact_evm_nonce_already_used",
        );

        // Wrong token name: signed for a "USD Coin" domain (base mainnet's name) on a "USDC" token.
        let mut p = Payment::new(&app, 2, 1_000);
        p.domain_name = "USD Coin".into();
        assert_invalid(
            &app.verify(&p.v1(&p.sign(&payer), 1_000)).await,
            "invalid_exact_evm_token_name_mismatch",
        );
    }
);

both_dbs!(
    malformed_bodies_scopes_and_credentials,
    automine(),
    |app: ChainApp| {
        let res = app
            .post_x402("/api/v1/verify", &json!({"paymentRequirements": {}}))
            .await;
        assert_error(res, 400, "INVALID_REQUEST", Some("Invalid request format")).await;
        let pay = Payment::new(&app, 0, 10);
        let mut body = pay.v1("0x00", 10);
        body["paymentPayload"]["payload"] = json!("%%% not base64 %%%");
        let res = app.post_x402("/api/v1/settle", &body).await;
        assert_error(res, 400, "INVALID_PAYLOAD", Some("Invalid payment payload")).await;
        let res = app
            .app
            .post("/api/v1/verify", None, pay.v1("0x00", 10))
            .await;
        assert_error(res, 401, "UNAUTHORIZED", None).await;

        // A verify-only key cannot settle.
        let (access, _, _) = app.app.user("verifier@example.com").await;
        let (id, token) = app.app.client_key(&access, "verify").await;
        let res = app
            .app
            .post_as_client(
                "/api/v1/settle",
                &id,
                &token,
                &pay.v1(&pay.sign(app.payer(0)), 10),
            )
            .await;
        assert_error(
            res,
            403,
            "FORBIDDEN",
            Some("this client key is not allowed to settle"),
        )
        .await;

        // Someone else's settlement is not found.
        let res = app
            .app
            .get_as_client(
                &format!("/api/v1/settlements/{}", B256::repeat_byte(1)),
                &id,
                &token,
            )
            .await;
        assert_error(res, 404, "NOT_FOUND", Some("settlement not found")).await;
        let res = app
            .app
            .get_as_client("/api/v1/settlements/0x12", &id, &token)
            .await;
        assert_error(res, 400, "INVALID_REQUEST", None).await;

        // /supported names our signer.
        let res = app
            .app
            .get_as_client("/api/v1/supported", &id, &token)
            .await;
        let body: Value = res.json().await.unwrap();
        let signer = app.devnet.facilitator_keys[0].address().to_checksum(None);
        assert_eq!(body["signers"]["eip155:*"], json!([signer]));
        assert_eq!(body["kinds"][0]["feePayer"], json!(signer));
    }
);

both_dbs!(
    a_key_limited_to_other_networks_is_refused,
    automine(),
    |app: ChainApp| {
        let (access, _, _) = app.app.user("limited@example.com").await;
        let key = |networks: Value| {
            app.app
                .client_key_with(&access, json!({ "title": "limited", "networks": networks }))
        };
        let payer = app.payer(0).clone();
        let pay = Payment::new(&app, 0, 1_000);
        let v1 = pay.v1(&pay.sign(&payer), 1_000);
        let v2 = pay.v2(&pay.sign(&payer), 1_000);
        let before = app.balance(PAY_TO).await;

        // Limited to base (mainnet): a base-sepolia payment is refused, v1 and v2, before any work.
        let (id, token) = key(json!(["base"])).await;
        for (path, body) in [
            ("/api/v1/verify", &v1),
            ("/api/v1/settle", &v1),
            ("/api/v1/verify", &v2),
            ("/api/v1/settle", &v2),
        ] {
            let res = app.app.post_as_client(path, &id, &token, body).await;
            let err = assert_error(res, 403, "FORBIDDEN", None).await;
            assert_eq!(err["details"], "networks: base", "{path}");
        }
        assert_eq!(app.balance(PAY_TO).await, before, "nothing settled");
        // Its /supported lists no kinds: base is not served here.
        let res = app
            .app
            .get_as_client("/api/v1/supported", &id, &token)
            .await;
        let supported: Value = res.json().await.unwrap();
        assert_eq!(supported["kinds"], json!([]), "{supported}");

        // Limited to base-sepolia by its CAIP-2 id: allowed, and listed (v1 and v2 kinds: exact,
        // upto, batch-settlement).
        let (id, token) = key(json!(["eip155:84532"])).await;
        let res = app
            .app
            .get_as_client("/api/v1/supported", &id, &token)
            .await;
        let supported: Value = res.json().await.unwrap();
        let networks: Vec<&str> = supported["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["network"].as_str().unwrap())
            .collect();
        assert_eq!(
            networks,
            [
                "base-sepolia",
                "eip155:84532",
                "eip155:84532",
                "eip155:84532"
            ],
            "{supported}"
        );
        let res = app
            .app
            .post_as_client("/api/v1/settle", &id, &token, &v2)
            .await;
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer["success"], true, "{answer}");
        assert_eq!(app.balance(PAY_TO).await - before, U256::from(1_000));
    }
);

both_dbs!(
    thirty_concurrent_settles_of_one_authorization_succeed_once,
    interval_mining(),
    |app: ChainApp| {
        let payer = app.payer(0).clone();
        let pay = Payment::new(&app, 0, 4_200);
        let body = pay.v1(&pay.sign(&payer), 4_200);
        let before = app.balance(PAY_TO).await;
        let signer = app.devnet.facilitator_keys[0].address();
        let nonce_before = app.devnet.nonce_of(signer).await.unwrap();

        let answers = futures::future::join_all((0..30).map(|_| app.settle(&body))).await;
        let wins: Vec<&Value> = answers.iter().filter(|a| a["success"] == true).collect();
        assert_eq!(wins.len(), 1, "exactly one success: {answers:?}");
        let tx = wins[0]["transaction"].as_str().unwrap().to_owned();
        assert!(tx.parse::<B256>().is_ok());
        for a in answers.iter().filter(|a| a["success"] != true) {
            assert_eq!(
                a["errorReason"], "invalid_exact_evm_nonce_already_used",
                "{a}"
            );
            assert_eq!(a["transaction"], "", "{a}");
        }
        assert_eq!(
            app.balance(PAY_TO).await,
            before + U256::from(4_200),
            "moved once"
        );
        assert_eq!(
            app.devnet.nonce_of(signer).await.unwrap(),
            nonce_before + 1,
            "one transaction on chain"
        );

        // Later, from the same key or another: still used.
        let later = app.settle(&body).await;
        assert_eq!(later["errorReason"], "invalid_exact_evm_nonce_already_used");
        let (access, _, _) = app.app.user("second-merchant@example.com").await;
        let (id, token) = app.app.client_key(&access, "verify,settle").await;
        for path in ["/api/v1/settle", "/api/v1/verify"] {
            let res = app.app.post_as_client(path, &id, &token, &body).await;
            let answer: Value = res.json().await.unwrap();
            let reason = if path.ends_with("settle") {
                &answer["errorReason"]
            } else {
                &answer["invalidReason"]
            };
            assert_eq!(
                reason, "invalid_exact_evm_nonce_already_used",
                "{path}: {answer}"
            );
        }
        assert_eq!(app.balance(PAY_TO).await, before + U256::from(4_200));
    }
);

both_dbs!(
    two_hundred_concurrent_settles_on_one_signer_all_confirm,
    interval_mining(),
    |app: ChainApp| {
        let n = 200usize;
        let before = app.balance(PAY_TO).await;
        let payments: Vec<Value> = (0..n)
            .map(|i| {
                let who = i % app.devnet.payers.len();
                let p = Payment::new(&app, who, 1_000 + i as u64);
                p.v1(&p.sign(app.payer(who)), 1_000 + i as u64)
            })
            .collect();
        let answers = futures::future::join_all(payments.iter().map(|b| app.settle(b))).await;
        let failures: Vec<&Value> = answers.iter().filter(|a| a["success"] != true).collect();
        assert!(
            failures.is_empty(),
            "{} failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(3)]
        );
        let hashes: HashSet<&str> = answers
            .iter()
            .map(|a| a["transaction"].as_str().unwrap())
            .collect();
        assert_eq!(hashes.len(), n);
        let total: u64 = (0..n as u64).map(|i| 1_000 + i).sum();
        assert_eq!(app.balance(PAY_TO).await, before + U256::from(total));

        // The ledger matches the chain: every row confirmed, with the receipt's block.
        let db = sea_orm::Database::connect(&app.app.db.url).await.unwrap();
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let rows = entities::settlement::Entity::find()
            .filter(entities::settlement::Column::Status.eq("confirmed"))
            .all(&db)
            .await
            .unwrap();
        assert_eq!(rows.len(), n);
        for row in rows.iter().take(20) {
            let hash: B256 = row.tx_hash.as_deref().unwrap().parse().unwrap();
            let receipt = app.devnet.receipt(hash).await.unwrap().expect("mined");
            assert!(receipt.status());
            assert_eq!(
                receipt.block_number.unwrap() as i64,
                row.block_number.unwrap()
            );
        }
        db.close().await.ok();
    }
);
