//! The request parser's tests.

use super::*;
use serde_json::json;

fn payload_obj() -> Value {
    json!({
        "signature": format!("0x{}", "11".repeat(65)),
        "authorization": {
            "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
            "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "value": "10000",
            "validAfter": "1740672089",
            "validBefore": "1740672154",
            "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
        }
    })
}

fn v1_body(payload: Value) -> Value {
    json!({
        "x402Version": 1,
        "paymentPayload": { "x402Version": 1, "scheme": "exact", "network": "base-sepolia", "payload": payload },
        "paymentRequirements": {
            "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": "10000",
            "resource": "https://example.com/weather", "description": "", "mimeType": "",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60,
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "extra": { "name": "USDC", "version": "2" }
        }
    })
}

fn v2_body() -> Value {
    let reqs = json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "10000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60,
        "extra": { "name": "USDC", "version": "2" }
    });
    json!({
        "x402Version": 2,
        "paymentPayload": { "x402Version": 2, "resource": {"url": "https://x"}, "accepted": reqs, "payload": payload_obj(),
                            "extensions": { "payment-identifier": { "info": { "id": "order_0123456789abcdef" } } } },
        "paymentRequirements": reqs,
    })
}

#[test]
fn v1_object_and_base64_payloads_parse_to_the_same_request() {
    let a = parse_facilitator_request(&v1_body(payload_obj())).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(payload_obj().to_string());
    let b = parse_facilitator_request(&v1_body(json!(b64))).unwrap();
    assert_eq!(a.request_hash, b.request_hash);
    assert_eq!(a.x402_version, 1);
    assert_eq!(a.amount_rule, AmountRule::AtLeast);
    assert_eq!(a.amount_required, U256::from(10000));
    assert_eq!(a.payload.authorization.value, U256::from(10000));
    assert_eq!(a.payload.signature.len(), 65);
    assert_eq!(a.extra_name.as_deref(), Some("USDC"));
}

#[test]
fn v2_parses_with_exact_rule_accepted_match_and_payment_id() {
    let r = parse_facilitator_request(&v2_body()).unwrap();
    assert_eq!(r.amount_rule, AmountRule::Exactly);
    assert!(r.accepted_matches);
    assert_eq!(r.network, "eip155:84532");
    assert_eq!(r.payment_id.as_deref(), Some("order_0123456789abcdef"));
    assert!(r.payment_id_valid);

    let mut body = v2_body();
    body["paymentPayload"]["accepted"]["amount"] = json!("9999");
    assert!(!parse_facilitator_request(&body).unwrap().accepted_matches);
    let mut body = v2_body();
    body["paymentPayload"]["extensions"]["payment-identifier"]["info"]["id"] = json!("short");
    assert!(!parse_facilitator_request(&body).unwrap().payment_id_valid);
}

#[test]
fn malformed_bodies_and_bad_payloads_are_told_apart() {
    assert!(matches!(
        parse_facilitator_request(&json!([])),
        Err(RequestError::Malformed(_))
    ));
    assert!(matches!(
        parse_facilitator_request(&json!({"paymentPayload": {}})),
        Err(RequestError::Malformed(_))
    ));
    let mut body = v1_body(payload_obj());
    body["paymentRequirements"]["maxAmountRequired"] = json!("1e6");
    assert!(matches!(
        parse_facilitator_request(&body),
        Err(RequestError::Malformed(_))
    ));
    let mut body = v1_body(payload_obj());
    body["paymentRequirements"]["payTo"] = json!("0x12");
    assert!(matches!(
        parse_facilitator_request(&body),
        Err(RequestError::Malformed(_))
    ));

    assert!(matches!(
        parse_facilitator_request(&v1_body(json!("%%%"))),
        Err(RequestError::BadPayload(_))
    ));
    let mut p = payload_obj();
    p["authorization"]["nonce"] = json!("0x1234");
    assert!(matches!(
        parse_facilitator_request(&v1_body(p)),
        Err(RequestError::BadPayload(_))
    ));
    let mut p = payload_obj();
    p["signature"] = json!("not hex");
    assert!(matches!(
        parse_facilitator_request(&v1_body(p)),
        Err(RequestError::BadPayload(_))
    ));
    let mut p = payload_obj();
    p["authorization"]["value"] = json!("-5");
    assert!(matches!(
        parse_facilitator_request(&v1_body(p)),
        Err(RequestError::BadPayload(_))
    ));
}

#[test]
fn an_unknown_version_is_a_protocol_answer_not_a_400() {
    let mut body = v1_body(payload_obj());
    body["x402Version"] = json!(3);
    assert_eq!(
        parse_facilitator_request(&body).unwrap_err(),
        RequestError::Unsupported(Reason::InvalidX402Version)
    );
}

fn svm_requirements() -> Value {
    json!({
        "scheme": "exact", "network": "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1", "amount": "1000",
        "asset": "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
        "payTo": "7UX2i7SucgLMQcfZ75s3VXmZZY4YRUyJN9X1RgfMoDUi", "maxTimeoutSeconds": 60,
        "extra": { "feePayer": "3pAm5jKzM5Pi6XP3QfgdHnMWmTriz8pDMby8V2EW8jPP", "memo": "order-1" }
    })
}

fn svm_body(tx: &str) -> Value {
    let reqs = svm_requirements();
    json!({
        "x402Version": 2,
        "paymentPayload": { "x402Version": 2, "accepted": reqs, "payload": { "transaction": tx } },
        "paymentRequirements": reqs,
    })
}

#[test]
fn an_svm_payment_keeps_its_solana_addresses_and_transaction_bytes() {
    let r = parse_facilitator_request(&svm_body("AQID")).unwrap();
    let svm = r.svm.as_ref().unwrap();
    assert_eq!(svm.transaction, vec![1, 2, 3]);
    assert_eq!(svm.pay_to, "7UX2i7SucgLMQcfZ75s3VXmZZY4YRUyJN9X1RgfMoDUi");
    assert_eq!(svm.asset, "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU");
    assert_eq!(
        svm.fee_payer.as_deref(),
        Some("3pAm5jKzM5Pi6XP3QfgdHnMWmTriz8pDMby8V2EW8jPP")
    );
    assert_eq!(svm.memo.as_deref(), Some("order-1"));
    assert_eq!(svm.amount, Some(1000));
    assert!(r.accepted_matches);
    assert_eq!(r.pay_to, Address::ZERO);
    // The same payment as v1 under its v1 name.
    let mut reqs = svm_requirements();
    reqs["network"] = json!("solana-devnet");
    reqs["maxAmountRequired"] = json!("1000");
    let v1 = json!({
        "x402Version": 1,
        "paymentPayload": { "x402Version": 1, "scheme": "exact", "network": "solana-devnet", "payload": { "transaction": "AQID" } },
        "paymentRequirements": reqs,
    });
    assert_eq!(
        parse_facilitator_request(&v1)
            .unwrap()
            .svm
            .unwrap()
            .transaction,
        vec![1, 2, 3]
    );
    // Another transaction, another request hash; a payTo differing in case is another.
    let other = parse_facilitator_request(&svm_body("AQIE")).unwrap();
    assert_ne!(other.request_hash, r.request_hash);
    let mut body = svm_body("AQID");
    body["paymentPayload"]["accepted"]["payTo"] =
        json!("7ux2i7SucgLMQcfZ75s3VXmZZY4YRUyJN9X1RgfMoDUi");
    assert!(!parse_facilitator_request(&body).unwrap().accepted_matches);
}

#[test]
fn svm_bodies_with_evm_addresses_or_a_bad_transaction_are_refused() {
    let mut body = svm_body("AQID");
    body["paymentRequirements"]["payTo"] = json!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
    assert!(matches!(
        parse_facilitator_request(&body),
        Err(RequestError::Malformed(_))
    ));
    assert!(matches!(
        parse_facilitator_request(&svm_body("%%%")),
        Err(RequestError::BadPayload(_))
    ));
    let mut body = svm_body("AQID");
    body["paymentPayload"]["payload"] = json!({ "transaction": 7 });
    assert!(matches!(
        parse_facilitator_request(&body),
        Err(RequestError::BadPayload(_))
    ));
    // An EVM payload naming a Solana network is read as EVM (its checks refuse the
    // network), not as a malformed Solana one.
    let mut body = svm_body("AQID");
    body["paymentRequirements"]["payTo"] = json!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
    body["paymentPayload"]["payload"] = json!({
        "signature": format!("0x{}", "11".repeat(65)),
        "authorization": {
            "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
            "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "value": "1000", "validAfter": "0", "validBefore": "99999999999",
            "nonce": format!("0x{}", "ab".repeat(32)),
        }
    });
    body["paymentRequirements"]["asset"] = json!("0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    body["paymentPayload"]["accepted"] = body["paymentRequirements"].clone();
    assert!(parse_facilitator_request(&body).unwrap().svm.is_none());
}

#[test]
fn different_payments_hash_differently() {
    let a = parse_facilitator_request(&v1_body(payload_obj())).unwrap();
    let mut p = payload_obj();
    p["authorization"]["value"] = json!("10001");
    let b = parse_facilitator_request(&v1_body(p)).unwrap();
    assert_ne!(a.request_hash, b.request_hash);
}
