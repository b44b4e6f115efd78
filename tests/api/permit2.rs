//! Permit2 payments on a real anvil: `exact` via Permit2 on a plain ERC-20, `upto` (the server
//! settles less than the maximum), `eip2612GasSponsoring`, every bad-payment reason shown by a
//! real bad payment, and one success out of 30 concurrent settles of one authorization.
//!
//! The fixtures (Permit2, the proxies, a permit token, signed payments) are `permit2_helpers`.

use alloy::primitives::{address, Address, Bytes, U256};
use alloy::providers::Provider;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::chain_helpers::*;
use crate::helpers::*;
use crate::permit2_helpers::*;

fn reason(answer: &Value) -> &str {
    answer["invalidReason"]
        .as_str()
        .or(answer["errorReason"].as_str())
        .unwrap_or_default()
}

both_dbs!(
    exact_permit2_on_a_plain_erc20_verifies_and_settles_once,
    |app: Permit2App| {
        app.approve_permit2(0).await;
        let payer = app.chain.payer(0).clone();
        let before = (
            app.balance(payer.address()).await,
            app.balance(PAY_TO).await,
        );
        let body = Permit2Payment::exact(&app, 0, 25_000).signed(&payer);

        let v = app.chain.verify(&body).await;
        assert_eq!(v["isValid"], true, "{v}");
        assert_eq!(v["payer"], json!(payer.address().to_checksum(None)));

        let s = app.chain.settle(&body).await;
        assert_eq!(s["success"], true, "{s}");
        assert_eq!(s["amount"], "25000", "{s}");
        let tx: alloy::primitives::B256 = s["transaction"].as_str().unwrap().parse().unwrap();
        let receipt = app.chain.devnet.receipt(tx).await.unwrap().unwrap();
        assert!(receipt.status());
        assert_eq!(receipt.to, Some(EXACT_PROXY), "sent to the exact proxy");
        assert_eq!(
            app.balance(payer.address()).await,
            before.0 - U256::from(25_000)
        );
        assert_eq!(app.balance(PAY_TO).await, before.1 + U256::from(25_000));

        // The same authorization again: the ledger refuses it, and verify no longer calls it valid.
        let again = app.chain.settle(&body).await;
        assert_eq!(again["success"], false);
        assert_eq!(reason(&again), "invalid_exact_evm_nonce_already_used");
        let v = app.chain.verify(&body).await;
        assert_eq!(v["isValid"], false);
        assert_eq!(app.balance(PAY_TO).await, before.1 + U256::from(25_000));

        // The row is keyed by (network, token, owner, Permit2 nonce) and readable by its hash.
        let row = app.chain.settlement(&tx.to_string()).await;
        assert_eq!(row["asset"], json!(app.token.to_checksum(None)), "{row}");
    }
);

both_dbs!(
    every_bad_permit2_payment_gets_its_reason,
    |app: Permit2App| {
        app.approve_permit2(0).await;
        let payer = app.chain.payer(0).clone();
        let start_nonce = app.signer_nonce().await;
        let good = Permit2Payment::exact(&app, 0, 1_000);

        let mut cases: Vec<(&str, Value)> = Vec::new();
        let mut p = good.clone();
        p.spender = Address::repeat_byte(0x42);
        cases.push(("invalid_permit2_spender", p.signed(&payer)));
        // Signed for the upto proxy but presented as exact: the wrong proxy.
        let mut p = good.clone();
        p.spender = UPTO_PROXY;
        cases.push(("invalid_permit2_spender", p.signed(&payer)));
        let mut p = good.clone();
        p.deadline = now() - 1;
        cases.push(("permit2_deadline_expired", p.signed(&payer)));
        let mut p = good.clone();
        p.valid_after = now() + 3600;
        cases.push(("permit2_not_yet_valid", p.signed(&payer)));
        let mut p = good.clone();
        p.to = Address::repeat_byte(0x07);
        cases.push(("invalid_permit2_recipient_mismatch", p.signed(&payer)));
        cases.push((
            "permit2_amount_mismatch",
            good.body(&good.sign(&payer), 999),
        ));
        // Signed by someone else: Permit2 refuses the signature.
        cases.push((
            "invalid_permit2_signature",
            good.body(&good.sign(app.chain.payer(1)), 1_000),
        ));
        // More than the payer has.
        let mut p = good.clone();
        p.amount = U256::from(10u64).pow(U256::from(15));
        cases.push(("permit2_insufficient_balance", p.signed(&payer)));
        // A nonce the payer burned on chain itself.
        let mut p = good.clone();
        p.nonce = U256::from(77);
        app.invalidate_nonce(0, p.nonce).await;
        cases.push(("permit2_invalid_nonce", p.signed(&payer)));
        // No Permit2 allowance (payer 1 never approved) and no sponsoring.
        let p = Permit2Payment::exact(&app, 1, 1_000);
        cases.push(("permit2_allowance_required", p.signed(app.chain.payer(1))));
        // A permit of another token (USDC) presented for this one.
        let mut p = good.clone();
        p.token = app.chain.devnet.usdc;
        let mut body = p.signed(&payer);
        body["paymentPayload"]["accepted"]["asset"] = json!(app.token.to_checksum(None));
        body["paymentRequirements"]["asset"] = json!(app.token.to_checksum(None));
        cases.push(("permit2_token_mismatch", body));
        // upto: a witness naming another facilitator; a settle above the maximum.
        let mut p = Permit2Payment::upto(&app, 0, 5_000);
        p.facilitator = Address::repeat_byte(0x66);
        cases.push(("upto_facilitator_mismatch", p.signed(&payer)));

        for (expected, body) in &cases {
            let v = app.chain.verify(body).await;
            assert_eq!(v["isValid"], false, "{expected}: {v}");
            assert_eq!(reason(&v), *expected, "verify: {v}");
            let s = app.chain.settle(body).await;
            assert_eq!(s["success"], false, "{expected}: {s}");
            assert_eq!(reason(&s), *expected, "settle: {s}");
        }
        let up = Permit2Payment::upto(&app, 0, 5_000);
        let over = up.body(&up.sign(&payer), 5_001);
        let s = app.chain.settle(&over).await;
        assert_eq!(
            reason(&s),
            "invalid_upto_evm_payload_settlement_exceeds_amount",
            "{s}"
        );

        // The proxy missing from the chain.
        app.chain
            .devnet
            .provider()
            .raw_request::<_, ()>("anvil_setCode".into(), (EXACT_PROXY, Bytes::new()))
            .await
            .unwrap();
        let v = app.chain.verify(&good.signed(&payer)).await;
        assert_eq!(reason(&v), "permit2_proxy_not_deployed", "{v}");

        // No refusal spent gas, and nothing moved.
        assert_eq!(app.signer_nonce().await, start_nonce);
        assert_eq!(app.balance(PAY_TO).await, U256::ZERO);
    }
);

both_dbs!(
    upto_settles_what_the_server_used_not_the_maximum,
    |app: Permit2App| {
        app.approve_permit2(0).await;
        let payer = app.chain.payer(0).clone();
        let before = app.balance(payer.address()).await;
        let p = Permit2Payment::upto(&app, 0, 20_000);
        let sig = p.sign(&payer);

        // Verify judges the signed maximum.
        let v = app.chain.verify(&p.body(&sig, 20_000)).await;
        assert_eq!(v["isValid"], true, "{v}");
        // Settle carries the amount used.
        let s = app.chain.settle(&p.body(&sig, 1_858)).await;
        assert_eq!(s["success"], true, "{s}");
        assert_eq!(s["amount"], "1858", "{s}");
        let tx: alloy::primitives::B256 = s["transaction"].as_str().unwrap().parse().unwrap();
        let receipt = app.chain.devnet.receipt(tx).await.unwrap().unwrap();
        assert_eq!(receipt.to, Some(UPTO_PROXY));
        assert_eq!(
            app.balance(payer.address()).await,
            before - U256::from(1_858)
        );
        assert_eq!(app.balance(PAY_TO).await, U256::from(1_858));

        // The rest of the maximum cannot be taken with the same authorization.
        let again = app.chain.settle(&p.body(&sig, 10_000)).await;
        assert_eq!(again["success"], false);
        assert_eq!(app.balance(PAY_TO).await, U256::from(1_858));
    }
);

both_dbs!(
    a_payer_without_allowance_pays_with_eip2612_sponsoring,
    |app: Permit2App| {
        // Payer 1 never approved Permit2.
        let payer = app.chain.payer(1).clone();
        assert_eq!(app.allowance(payer.address()).await, U256::ZERO);
        let start_nonce = app.signer_nonce().await;
        let p = Permit2Payment::exact(&app, 1, 4_000);
        let plain = p.signed(&payer);

        // Without the extension: the allowance reason, and no gas spent.
        let s = app.chain.settle(&plain).await;
        assert_eq!(reason(&s), "permit2_allowance_required", "{s}");
        assert_eq!(app.signer_nonce().await, start_nonce);

        // A sponsored permit for the wrong amount is refused before the chain.
        let mut wrong = plain.clone();
        sponsor(&app, &mut wrong, 1, U256::from(3_999)).await;
        let v = app.chain.verify(&wrong).await;
        assert_eq!(reason(&v), "permit2_2612_amount_mismatch", "{v}");

        let mut body = plain.clone();
        sponsor(&app, &mut body, 1, U256::from(4_000)).await;
        // A sponsored permit that is not this payment's, or malformed, gets its reason.
        let foreign = [
            (
                "eip2612_from_mismatch",
                "from",
                json!(app.chain.payer(0).address()),
            ),
            (
                "eip2612_asset_mismatch",
                "asset",
                json!(app.chain.devnet.usdc),
            ),
            ("eip2612_spender_not_permit2", "spender", json!(EXACT_PROXY)),
            (
                "eip2612_deadline_expired",
                "deadline",
                json!((now() - 1).to_string()),
            ),
            (
                "invalid_eip2612_extension_format",
                "signature",
                json!("0x1234"),
            ),
            ("invalid_eip2612_extension_format", "amount", json!("-1")),
        ];
        for (expected, field, value) in foreign {
            let mut bad = body.clone();
            bad["paymentPayload"]["extensions"]["eip2612GasSponsoring"]["info"][field] = value;
            let v = app.chain.verify(&bad).await;
            assert_eq!(reason(&v), expected, "{field}: {v}");
        }
        assert_eq!(app.signer_nonce().await, start_nonce);

        let v = app.chain.verify(&body).await;
        assert_eq!(v["isValid"], true, "{v}");
        let s = app.chain.settle(&body).await;
        assert_eq!(s["success"], true, "{s}");
        // One transaction (settleWithPermit): the permit and the transfer together.
        assert_eq!(app.signer_nonce().await, start_nonce + 1);
        assert_eq!(app.balance(PAY_TO).await, U256::from(4_000));
        assert_eq!(app.allowance(payer.address()).await, U256::ZERO);

        // The upto proxy takes a sponsored permit too.
        let up = Permit2Payment::upto(&app, 1, 3_000);
        let sig = up.sign(&payer);
        let mut body = up.body(&sig, 2_000);
        sponsor(&app, &mut body, 1, U256::from(3_000)).await;
        let s = app.chain.settle(&body).await;
        assert_eq!(s["success"], true, "{s}");
        assert_eq!(app.balance(PAY_TO).await, U256::from(6_000));
    }
);

both_dbs!(
    thirty_concurrent_settles_of_one_permit2_authorization_succeed_once,
    |app: Permit2App| {
        app.approve_permit2(0).await;
        let payer = app.chain.payer(0).clone();
        let body = Permit2Payment::exact(&app, 0, 7_000).signed(&payer);
        let answers = futures::future::join_all(
            (0..30).map(|_| app.chain.post_x402("/api/v1/settle", &body)),
        )
        .await;
        let mut successes = 0;
        for res in answers {
            assert_eq!(res.status(), 200);
            let a: Value = res.json().await.unwrap();
            if a["success"] == true {
                successes += 1;
            } else {
                assert_eq!(reason(&a), "invalid_exact_evm_nonce_already_used", "{a}");
            }
        }
        assert_eq!(successes, 1);
        assert_eq!(app.balance(PAY_TO).await, U256::from(7_000));
    }
);

/// With several signers, an `upto` settlement is sent by the one its witness names (the
/// proxy takes it from nobody else), whichever the router would pick next.
#[actix_web::test]
async fn upto_is_sent_by_the_signer_its_witness_names() {
    let app = Permit2App::spawn_with(Db::Sqlite, 2).await;
    app.approve_permit2(0).await;
    let payer = app.chain.payer(0).clone();
    for named in [1, 0, 1] {
        let mut p = Permit2Payment::upto(&app, 0, 3_000);
        p.facilitator = app.chain.devnet.facilitator_keys[named].address();
        let sig = p.sign(&payer);
        let s = app.chain.settle(&p.body(&sig, 1_000)).await;
        assert_eq!(s["success"], true, "{s}");
        let tx: alloy::primitives::B256 = s["transaction"].as_str().unwrap().parse().unwrap();
        let receipt = app.chain.devnet.receipt(tx).await.unwrap().unwrap();
        assert_eq!(receipt.from, p.facilitator);
    }
    assert_eq!(app.balance(PAY_TO).await, U256::from(3_000));
}

both_dbs!(supported_lists_permit2_upto_and_sponsoring, |app| {
    let body: Value = app
        .get("/api/v1/networks", None)
        .await
        .json()
        .await
        .unwrap();
    let kinds = body["kinds"].as_array().unwrap();
    let exact_v2 = kinds
        .iter()
        .find(|k| k["x402Version"] == 2 && k["scheme"] == "exact")
        .unwrap();
    assert_eq!(
        exact_v2["extra"]["assetTransferMethods"],
        json!(["eip3009", "permit2"])
    );
    assert_eq!(
        exact_v2["extra"]["extensions"],
        json!(["eip2612GasSponsoring"])
    );
    let upto = kinds.iter().find(|k| k["scheme"] == "upto").unwrap();
    assert_eq!(upto["network"], "eip155:84532");
    assert_eq!(upto["extra"]["facilitatorAddress"], upto["feePayer"]);
    assert_eq!(body["extensions"], json!(["eip2612GasSponsoring"]));
});

both_dbs!(
    the_official_v2_client_pays_with_permit2_exact_and_upto,
    |app: Permit2App| {
        app.approve_permit2(0).await;
        let payer = app.chain.payer(0).address();
        let e2e_pay_to = address!("0x0000000000000000000000000000000000000e2e");
        let before = app.balance(payer).await;
        let state = json!({
            "facilitatorUrl": app.chain.app.url("/api/v1"),
            "clientId": app.chain.client_id,
            "clientToken": app.chain.client_token,
            "network": "base-sepolia",
            "chainId": app.chain.devnet.chain_id,
            "rpcUrl": app.chain.devnet.rpc_url,
            "token": app.token.to_checksum(None),
            "tokenName": TOKEN_NAME,
            "payerPrivateKeys": app.chain.devnet.payers.iter()
                .map(|k| format!("0x{}", alloy::hex::encode(k.to_bytes())))
                .collect::<Vec<_>>(),
        });
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), state.to_string()).unwrap();
        let path = file.path().to_str().unwrap();
        let result = crate::replay::node("tools/e2e/permit2.mjs", &[path]).await;
        assert_eq!(result["ok"], true, "{result}");
        assert_eq!(result["exact"]["settlement"]["amount"], "25000", "{result}");
        assert_eq!(result["upto"]["settlement"]["amount"], "1858", "{result}");
        assert_eq!(app.balance(e2e_pay_to).await, U256::from(25_000 + 1_858));
        assert_eq!(
            app.balance(payer).await,
            before - U256::from(25_000 + 1_858)
        );
    }
);
