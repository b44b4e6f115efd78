use super::*;
use crate::proto::parse_facilitator_request;
use alloy_primitives::address;
use secp256k1::SecretKey;
use serde_json::json;

const USDC_BASE_SEPOLIA: Address = address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e");
const USDC_BASE: Address = address!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
const NOW: u64 = 1_750_000_000;

#[test]
fn domain_separators_match_the_known_vectors() {
    assert_eq!(
        domain("USDC", "2", 84532, USDC_BASE_SEPOLIA)
            .separator()
            .to_string(),
        "0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818"
    );
    assert_eq!(
        domain("USD Coin", "2", 8453, USDC_BASE)
            .separator()
            .to_string(),
        "0x02fa7265e7c5d81118673727957699e4d68f74cd74b7db77da710fe8a2c7834f"
    );
}

fn key() -> (SecretKey, Address) {
    let sk = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let pk = sk.public_key(SECP256K1).serialize_uncompressed();
    (sk, Address::from_slice(&keccak256(&pk[1..])[12..]))
}

/// 65-byte r ‖ s ‖ v (v = 27/28).
fn sign(sk: &SecretKey, hash: B256) -> Vec<u8> {
    let sig = SECP256K1.sign_ecdsa_recoverable(&Message::from_digest(hash.0), sk);
    let (id, rs) = sig.serialize_compact();
    let mut out = rs.to_vec();
    out.push(27 + i32::from(id) as u8);
    out
}

fn to_compact(sig65: &[u8]) -> Vec<u8> {
    let mut out = sig65[..64].to_vec();
    if sig65[64] == 28 {
        out[32] |= 0x80;
    }
    out
}

fn request(sig: &[u8], from: Address, value: u64, required: u64, version: u8) -> PaymentRequest {
    let pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
    let payload = json!({
        "signature": format!("0x{}", alloy_primitives::hex::encode(sig)),
        "authorization": {
            "from": from.to_string(), "to": pay_to, "value": value.to_string(),
            "validAfter": (NOW - 60).to_string(), "validBefore": (NOW + 600).to_string(),
            "nonce": B256::repeat_byte(7).to_string(),
        }
    });
    let body = if version == 1 {
        json!({
            "x402Version": 1,
            "paymentPayload": { "x402Version": 1, "scheme": "exact", "network": "base-sepolia", "payload": payload },
            "paymentRequirements": { "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": required.to_string(),
                "payTo": pay_to, "asset": USDC_BASE_SEPOLIA.to_string(), "extra": {"name": "USDC", "version": "2"} }
        })
    } else {
        let reqs = json!({ "scheme": "exact", "network": "eip155:84532", "amount": required.to_string(),
            "payTo": pay_to, "asset": USDC_BASE_SEPOLIA.to_string(), "extra": {"name": "USDC", "version": "2"} });
        json!({ "x402Version": 2, "paymentPayload": { "x402Version": 2, "accepted": reqs, "payload": payload }, "paymentRequirements": reqs })
    };
    parse_facilitator_request(&body).unwrap()
}

fn ctx() -> VerifyContext {
    VerifyContext {
        network_enabled: true,
        assets: vec![AllowedAsset {
            address: USDC_BASE_SEPOLIA,
            eip712_name: "USDC".into(),
            eip712_version: "2".into(),
            min_amount: U256::ZERO,
        }],
        ..VerifyContext::default()
    }
}

/// A correctly signed request.
fn signed(value: u64, required: u64, version: u8) -> PaymentRequest {
    let (sk, from) = key();
    let unsigned = request(&[0u8; 65], from, value, required, version);
    let hash = signing_hash(
        &unsigned.payload.authorization,
        &domain("USDC", "2", 84532, USDC_BASE_SEPOLIA),
    );
    request(&sign(&sk, hash), from, value, required, version)
}

#[test]
fn recovers_65_and_64_byte_signatures_and_refuses_high_s() {
    let (sk, from) = key();
    let hash = B256::repeat_byte(0xab);
    let sig = sign(&sk, hash);
    assert_eq!(recover_signer(hash, &sig).unwrap(), from);
    assert_eq!(recover_signer(hash, &to_compact(&sig)).unwrap(), from);
    let mut v01 = sig.clone();
    v01[64] -= 27;
    assert_eq!(recover_signer(hash, &v01).unwrap(), from);
    // The malleable twin: s' = n - s.
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let s = U256::from_be_slice(&sig[32..64]);
    let mut high = sig.clone();
    high[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    high[64] = if high[64] == 27 { 28 } else { 27 };
    assert_eq!(recover_signer(hash, &high), Err(SignatureError::HighS));
    assert_eq!(
        recover_signer(hash, &sig[..10]),
        Err(SignatureError::NotEoa)
    );
}

#[test]
fn classifies_erc6492_and_contract_signatures() {
    let wrapped = [
        (
            Address::repeat_byte(1),
            Bytes::from(vec![1, 2]),
            Bytes::from(vec![3; 65]),
        )
            .abi_encode_params(),
        ERC6492_MAGIC.to_vec(),
    ]
    .concat();
    assert!(
        matches!(classify_signature(&wrapped), SignatureKind::Erc6492 { factory, .. } if factory == Address::repeat_byte(1))
    );
    assert_eq!(classify_signature(&[0u8; 65]), SignatureKind::Eoa65);
    assert_eq!(classify_signature(&[0u8; 64]), SignatureKind::Eoa64);
    assert_eq!(classify_signature(&[0u8; 200]), SignatureKind::Other);
}

#[test]
fn a_good_payment_passes_every_check_v1_and_v2() {
    let (_, from) = key();
    let v = verify_offchain(&signed(1000, 900, 1), &ctx(), NOW).unwrap();
    assert_eq!(v.payer, from);
    assert!(!v.needs_onchain_signature_check);
    assert_eq!(v.network.chain_id, 84532);
    verify_offchain(&signed(1000, 1000, 2), &ctx(), NOW).unwrap();
}

#[test]
fn each_check_fails_with_its_reason() {
    let r = signed(1000, 1000, 1);
    let mut bad = r.clone();
    bad.scheme = "upto".into();
    assert_eq!(
        verify_offchain(&bad, &ctx(), NOW).unwrap_err(),
        Reason::InvalidScheme
    );
    let mut bad = r.clone();
    bad.network = "base".into();
    assert_eq!(
        verify_offchain(&bad, &ctx(), NOW).unwrap_err(),
        Reason::InvalidNetwork
    );
    let mut bad = r.clone();
    bad.network = "moon".into();
    assert_eq!(
        verify_offchain(&bad, &ctx(), NOW).unwrap_err(),
        Reason::InvalidNetwork
    );
    assert_eq!(
        verify_offchain(&r, &VerifyContext::default(), NOW).unwrap_err(),
        Reason::InvalidNetwork
    );
    let mut bad = r.clone();
    bad.asset = Address::repeat_byte(9);
    assert_eq!(
        verify_offchain(&bad, &ctx(), NOW).unwrap_err(),
        Reason::InvalidPaymentRequirements
    );
    let mut bad = r.clone();
    bad.extra_name = Some("USD Coin".into());
    assert_eq!(
        verify_offchain(&bad, &ctx(), NOW).unwrap_err(),
        Reason::InvalidExactEvmTokenNameMismatch
    );
    let mut bad = r.clone();
    bad.payload.signature = Bytes::from(vec![0u8; 65]);
    assert_eq!(
        verify_offchain(&bad, &ctx(), NOW).unwrap_err(),
        Reason::InvalidExactEvmPayloadSignature
    );
    let mut bad = r.clone();
    bad.payload.authorization.value = U256::from(5000);
    // A different value changes the digest: the signature no longer recovers to `from`.
    assert!(
        verify_offchain(&bad, &ctx(), NOW)
            .unwrap()
            .needs_onchain_signature_check
    );
    let mut bad = r.clone();
    bad.pay_to = Address::repeat_byte(3);
    assert_eq!(
        verify_offchain(&bad, &ctx(), NOW).unwrap_err(),
        Reason::InvalidExactEvmPayloadRecipientMismatch
    );
    assert_eq!(
        verify_offchain(&r, &ctx(), NOW + 600).unwrap_err(),
        Reason::InvalidExactEvmPayloadAuthorizationValidBefore
    );
    assert_eq!(
        verify_offchain(&r, &ctx(), NOW + 595).unwrap_err(),
        Reason::InvalidExactEvmPayloadAuthorizationValidBefore,
        "6 s buffer"
    );
    verify_offchain(&r, &ctx(), NOW + 594).unwrap();
    assert_eq!(
        verify_offchain(&r, &ctx(), NOW - 61).unwrap_err(),
        Reason::InvalidExactEvmPayloadAuthorizationValidAfter
    );
    assert_eq!(
        verify_offchain(&signed(999, 1000, 1), &ctx(), NOW).unwrap_err(),
        Reason::InvalidExactEvmPayloadAuthorizationValue
    );
    assert_eq!(
        verify_offchain(&signed(1001, 1000, 2), &ctx(), NOW).unwrap_err(),
        Reason::InvalidExactEvmPayloadAuthorizationValue
    );
    verify_offchain(&signed(1001, 1000, 1), &ctx(), NOW).unwrap();
    let mut bad = r.clone();
    bad.payment_id_valid = false;
    assert_eq!(
        verify_offchain(&bad, &ctx(), NOW).unwrap_err(),
        Reason::InvalidPayload
    );
}

#[test]
fn signatures_longer_than_their_kind_allows_are_refused_before_the_rest() {
    let r = signed(1000, 1000, 2);
    assert_eq!(
        check_signature_size(&r, 0),
        Ok(()),
        "65 bytes, whatever the cap"
    );
    let mut long = r.clone();
    long.payload.signature = Bytes::from(vec![7u8; 66]);
    assert_eq!(
        check_signature_size(&long, 65),
        Err(Reason::InvalidExactEvmPayloadSignature)
    );
    long.payload.signature = Bytes::from(vec![7u8; 4096]);
    assert_eq!(check_signature_size(&long, 4096), Ok(()));
    long.payload.signature = Bytes::from(vec![7u8; 30_000]);
    // Refused ahead of the domain and signature checks (nothing is hashed or recovered).
    long.extra_name = Some("USD Coin".into());
    assert_eq!(
        verify_offchain(&long, &ctx(), NOW).unwrap_err(),
        Reason::InvalidExactEvmPayloadSignature
    );
    let roomy = VerifyContext {
        max_signature_bytes: 30_000,
        ..ctx()
    };
    assert_eq!(
        verify_offchain(&long, &roomy, NOW).unwrap_err(),
        Reason::InvalidExactEvmTokenNameMismatch
    );
}

#[test]
fn zero_and_below_minimum_values_are_refused_whatever_the_configuration() {
    let asset = |min: u64| AllowedAsset {
        min_amount: U256::from(min),
        ..ctx().assets[0].clone()
    };
    let value = Reason::InvalidExactEvmPayloadAuthorizationValue;
    for version in [1, 2] {
        // A zero value, signed correctly, asking zero.
        assert_eq!(
            check_value_floor(&signed(0, 0, version), &asset(0)),
            Err(value)
        );
        assert_eq!(
            verify_offchain(&signed(0, 0, version), &ctx(), NOW).unwrap_err(),
            value
        );
        assert_eq!(check_value_floor(&signed(1, 1, version), &asset(0)), Ok(()));
        assert_eq!(
            check_value_floor(&signed(99, 99, version), &asset(100)),
            Err(value)
        );
        assert_eq!(
            check_value_floor(&signed(100, 100, version), &asset(100)),
            Ok(())
        );
    }
    // v1 may authorize more than asked, but requirements asking nothing are refused.
    assert_eq!(
        check_value_floor(&signed(1000, 0, 1), &asset(0)),
        Err(value)
    );
    assert_eq!(
        check_value_floor(&signed(1000, 99, 1), &asset(100)),
        Err(value)
    );
    assert!(below_floor(U256::ZERO, U256::ZERO));
    assert!(!below_floor(U256::from(1), U256::ZERO));
}

#[test]
fn a_payer_paying_itself_is_refused() {
    let (_, from) = key();
    let r = signed(1000, 1000, 2);
    assert_eq!(check_not_self_payment(&r), Ok(()));
    let mut own = r.clone();
    own.pay_to = from;
    own.payload.authorization.to = from;
    assert_eq!(
        check_not_self_payment(&own),
        Err(Reason::InvalidExactEvmPayloadAuthorizationValue)
    );
    assert_eq!(
        verify_offchain(&own, &ctx(), NOW).unwrap_err(),
        Reason::InvalidExactEvmPayloadAuthorizationValue
    );
}

#[test]
fn split_gives_27_or_28_and_the_call_encodes_with_selector_e3ee160e() {
    let (sk, _) = key();
    let sig = sign(&sk, B256::repeat_byte(1));
    let (v, r, s) = split_signature(&sig).unwrap();
    assert!(v == 27 || v == 28);
    assert_eq!(r.as_slice(), &sig[..32]);
    assert_eq!(s.as_slice(), &sig[32..64]);
    use alloy_sol_types::SolCall;
    assert_eq!(
        IEIP3009::transferWithAuthorization_0Call::SELECTOR,
        [0xe3, 0xee, 0x16, 0x0e]
    );
    assert_eq!(
        IEIP3009::transferWithAuthorization_1Call::SELECTOR,
        [0xcf, 0x09, 0x29, 0x95]
    );
}
