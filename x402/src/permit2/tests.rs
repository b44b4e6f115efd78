use super::*;
use alloy_primitives::keccak256;

#[test]
fn the_typehashes_are_permit2s() {
    use alloy_sol_types::SolStruct;
    assert_eq!(
        exact_typed::PermitWitnessTransferFrom::eip712_encode_type(),
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"
    );
    assert_eq!(
        upto_typed::PermitWitnessTransferFrom::eip712_encode_type(),
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)"
    );
    // Permit2's own domain typehash: no version.
    let sep = domain(1).separator();
    let expected = keccak256(
        [
            keccak256("EIP712Domain(string name,uint256 chainId,address verifyingContract)")
                .as_slice(),
            keccak256("Permit2").as_slice(),
            &U256::from(1).to_be_bytes::<32>(),
            B256::left_padding_from(PERMIT2.as_slice()).as_slice(),
        ]
        .concat(),
    );
    assert_eq!(sep, expected);
}

const NOW: u64 = 1_750_000_000;
const TOKEN: Address = address!("0x1111111111111111111111111111111111111111");
const PAY_TO: Address = address!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
const OWNER: Address = address!("0x857b06519E91e3A54538791bDbb0E22373e36b66");
const SIGNER: Address = address!("0x2222222222222222222222222222222222222222");

/// A v2 Permit2 request of `scheme` (`exact` or `upto`): `permitted` signed, `required`
/// asked, paid by `owner` to `pay_to`, with a `sig_len`-byte signature.
fn request(
    scheme: &str,
    owner: Address,
    pay_to: Address,
    permitted: u64,
    required: u64,
    sig_len: usize,
) -> (PaymentRequest, Permit2Request) {
    let kind = if scheme == "upto" {
        Kind::Upto
    } else {
        Kind::Exact
    };
    let reqs = serde_json::json!({ "scheme": scheme, "network": "eip155:84532",
        "amount": required.to_string(), "asset": TOKEN, "payTo": pay_to,
        "extra": {"assetTransferMethod": "permit2"} });
    let mut accepted = reqs.clone();
    accepted["amount"] = permitted.to_string().into();
    let body = serde_json::json!({ "x402Version": 2, "paymentRequirements": reqs,
        "paymentPayload": { "x402Version": 2, "accepted": accepted, "payload": {
            "signature": format!("0x{}", "1b".repeat(sig_len)),
            "permit2Authorization": { "from": owner, "spender": kind.proxy(),
                "permitted": {"token": TOKEN, "amount": permitted.to_string()},
                "nonce": "7", "deadline": (NOW + 600).to_string(),
                "witness": { "to": pay_to, "facilitator": SIGNER,
                    "validAfter": (NOW - 60).to_string() } } } } });
    let r = crate::proto::parse_facilitator_request(&body).unwrap();
    let p = r.permit2.clone().unwrap();
    (r, p)
}

fn ctx(min_amount: u64) -> Context {
    Context {
        network: crate::network::parse_network("eip155:84532"),
        assets: vec![TOKEN],
        signers: vec![SIGNER],
        min_amount: U256::from(min_amount),
        ..Context::default()
    }
}

#[test]
fn amounts_of_zero_or_below_the_minimum_are_refused_for_exact_and_upto() {
    let invalid = Reason::Permit2InvalidAmount;
    assert_eq!(check_amount_floor(U256::ZERO, &ctx(0)), Err(invalid));
    assert_eq!(check_amount_floor(U256::from(1), &ctx(0)), Ok(()));
    assert_eq!(check_amount_floor(U256::from(99), &ctx(100)), Err(invalid));
    assert_eq!(check_amount_floor(U256::from(100), &ctx(100)), Ok(()));
    let judge = |scheme, permitted, required, phase, min| {
        let (r, p) = request(scheme, OWNER, PAY_TO, permitted, required, 65);
        verify_offchain(&r, &p, &ctx(min), NOW, phase).map(|v| v.amount)
    };
    // exact: the permitted amount is the one moved.
    assert_eq!(judge("exact", 0, 0, Phase::Verify, 0).unwrap_err(), invalid);
    assert_eq!(judge("exact", 0, 0, Phase::Settle, 0).unwrap_err(), invalid);
    assert_eq!(
        judge("exact", 50, 50, Phase::Settle, 100).unwrap_err(),
        invalid
    );
    // upto: the maximum at verify, the amount used at settle; both must clear the floor.
    assert_eq!(judge("upto", 0, 0, Phase::Verify, 0).unwrap_err(), invalid);
    assert_eq!(
        judge("upto", 50, 50, Phase::Verify, 100).unwrap_err(),
        invalid
    );
    assert_eq!(
        judge("upto", 1000, 0, Phase::Settle, 0).unwrap_err(),
        invalid
    );
    assert_eq!(
        judge("upto", 1000, 99, Phase::Settle, 100).unwrap_err(),
        invalid
    );
    // At the floor it passes the off-chain checks (this signature is left to the chain), and
    // the amount to move is the one settled.
    assert_eq!(
        judge("upto", 1000, 100, Phase::Settle, 100),
        Ok(U256::from(100))
    );
}

#[test]
fn an_owner_paying_itself_is_refused() {
    let (r, p) = request("exact", OWNER, PAY_TO, 10, 10, 65);
    assert_eq!(
        check_not_self_payment(&r, &p.payload.permit2_authorization),
        Ok(())
    );
    for scheme in ["exact", "upto"] {
        let (r, p) = request(scheme, OWNER, OWNER, 10, 10, 65);
        assert_eq!(
            check_not_self_payment(&r, &p.payload.permit2_authorization),
            Err(Reason::Permit2InvalidAmount)
        );
        assert_eq!(
            verify_offchain(&r, &p, &ctx(0), NOW, Phase::Verify).unwrap_err(),
            Reason::Permit2InvalidAmount
        );
    }
}

#[test]
fn signatures_longer_than_the_cap_are_refused_first() {
    let (_, p) = request("exact", OWNER, PAY_TO, 10, 10, 65);
    assert_eq!(check_signature_size(&p.payload, &ctx(0)), Ok(()));
    let cap = ctx(0).max_signature_bytes;
    let (_, p) = request("exact", OWNER, PAY_TO, 10, 10, cap);
    assert_eq!(check_signature_size(&p.payload, &ctx(0)), Ok(()));
    // One byte over the cap, and a zero amount: the size is judged first.
    let (r, p) = request("upto", OWNER, PAY_TO, 0, 0, cap + 1);
    assert_eq!(
        check_signature_size(&p.payload, &ctx(0)),
        Err(Reason::InvalidPermit2Signature)
    );
    assert_eq!(
        verify_offchain(&r, &p, &ctx(0), NOW, Phase::Verify).unwrap_err(),
        Reason::InvalidPermit2Signature
    );
}

#[test]
fn nonces_parse_as_decimal_or_hex_and_map_to_their_bit() {
    let a: TokenPermissions =
        serde_json::from_value(serde_json::json!({"token": PERMIT2, "amount": "0x10"})).unwrap();
    assert_eq!(a.amount, U256::from(16));
    let (word, bit) = nonce_word_and_bit(U256::from(0x1ff));
    assert_eq!(word, U256::from(1));
    assert_eq!(bit, U256::from(1) << 255);
}
