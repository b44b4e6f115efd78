//! Hashes checked against vectors computed by the official package (npm `@x402/evm` 2.27.0's
//! `computeChannelId` and viem's `hashTypedData` with the package's EIP-712 types) for one
//! fixed config on eip155:84532.

use alloy_primitives::{address, b256, keccak256, U256};
use alloy_sol_types::SolStruct;

use super::*;

fn config() -> ChannelConfig {
    ChannelConfig {
        payer: address!("0x1111111111111111111111111111111111111111"),
        payerAuthorizer: address!("0x2222222222222222222222222222222222222222"),
        receiver: address!("0x3333333333333333333333333333333333333333"),
        receiverAuthorizer: address!("0x4444444444444444444444444444444444444444"),
        token: address!("0x5555555555555555555555555555555555555555"),
        withdrawDelay: alloy_primitives::aliases::U40::from(900u64),
        salt: b256!("0x00000000000000000000000000000000000000000000000000000000000000aa"),
    }
}

const ID: B256 = b256!("0xe79e6058a24331c866301569e6af8f6a192ddce5b5754025755c9950d753ad32");

#[test]
fn channel_id_matches_the_official_package() {
    assert_eq!(channel_id(&config(), 84532), ID);
    assert_ne!(channel_id(&config(), 8453), ID, "the id binds the chain");
}

#[test]
fn type_hashes_are_the_contracts() {
    assert_eq!(
        ChannelConfig::default().eip712_type_hash(),
        keccak256("ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)")
    );
    let batch = ClaimBatch { claims: vec![] };
    assert_eq!(
        batch.eip712_type_hash(),
        keccak256("ClaimBatch(ClaimEntry[] claims)ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)")
    );
}

#[test]
fn voucher_refund_and_claim_batch_digests_match_the_official_package() {
    assert_eq!(
        voucher_digest(ID, 5000, 84532),
        b256!("0x0af5d155b1924153d2fe79da1881867dcc376344450947336d1b708dd9b08c0d")
    );
    assert_eq!(
        refund_digest(ID, U256::from(3), 1500, 84532),
        b256!("0x5df1df1bde5f63cd1af1b06fc4c89a1f5ab153bf08b81c8d5f1e4cf12fecef0d")
    );
    let row = IX402BatchSettlement::VoucherClaim {
        voucher: IX402BatchSettlement::VoucherData {
            channel: config(),
            maxClaimableAmount: 5000,
        },
        signature: Default::default(),
        totalClaimed: 4000,
    };
    assert_eq!(
        claim_batch_digest(&[row], 84532),
        b256!("0x53596779649f0bb16fdd722ff17897ccf8b80bb808d99d8df1c2cea9747c199f")
    );
}

#[test]
fn erc3009_deposit_nonce_matches_the_official_package() {
    assert_eq!(
        erc3009_deposit_nonce(ID, config().salt),
        b256!("0x2bd9a3ae00eb09e05cd06f80fc9b07937f092a37e3ee0a0b32982322288f3f6b")
    );
}

mod voucher_signature {
    use secp256k1::{Message, SecretKey, SECP256K1};

    use super::*;
    use crate::batch_settlement::checks::{check_voucher_signature, VoucherSigner};
    use crate::batch_settlement::wire::WireVoucher;
    use crate::Reason;

    fn key() -> (SecretKey, Address) {
        let sk = SecretKey::from_slice(&[0x42; 32]).unwrap();
        let pk = sk.public_key(SECP256K1).serialize_uncompressed();
        (sk, Address::from_slice(&keccak256(&pk[1..])[12..]))
    }

    fn voucher(signature: Vec<u8>) -> WireVoucher {
        WireVoucher {
            channel_id: ID,
            max_claimable_amount: 5000,
            signature: signature.into(),
        }
    }

    fn signed_by(sk: &SecretKey) -> Vec<u8> {
        let digest = voucher_digest(ID, 5000, 84532);
        let sig = SECP256K1.sign_ecdsa_recoverable(&Message::from_digest(digest.0), sk);
        let (id, rs) = sig.serialize_compact();
        let mut out = rs.to_vec();
        out.push(27 + i32::from(id) as u8);
        out
    }

    #[test]
    fn ecdsa_by_the_payer_authorizer_is_checked_here() {
        let (sk, authorizer) = key();
        let mut c = config();
        c.payerAuthorizer = authorizer;
        assert_eq!(
            check_voucher_signature(&c, &voucher(signed_by(&sk)), 84532),
            Ok(VoucherSigner::Ecdsa)
        );
        // Another chain's digest, or someone else's key: refused without the chain.
        assert_eq!(
            check_voucher_signature(&c, &voucher(signed_by(&sk)), 8453),
            Err(Reason::BatchSettlementVoucherSignature)
        );
        c.payerAuthorizer = address!("0x2222222222222222222222222222222222222222");
        assert_eq!(
            check_voucher_signature(&c, &voucher(signed_by(&sk)), 84532),
            Err(Reason::BatchSettlementVoucherSignature)
        );
    }

    #[test]
    fn a_zero_payer_authorizer_leaves_the_payers_signature_to_the_chain() {
        let mut c = config();
        c.payerAuthorizer = Address::ZERO;
        // Whatever the signature (a wallet's may be any length), the payer's code decides how
        // it is checked, for the very digest the contract checks.
        for signature in [signed_by(&key().0), vec![], vec![7; 300]] {
            assert_eq!(
                check_voucher_signature(&c, &voucher(signature), 84532),
                Ok(VoucherSigner::Payer {
                    digest: voucher_digest(ID, 5000, 84532)
                })
            );
        }
    }
}

#[test]
fn the_permit2_deposit_witness_is_the_collectors() {
    // The collector's `DEPOSIT_WITNESS_TYPE_STRING`, after Permit2's own stub.
    assert_eq!(
        permit2_typed::PermitWitnessTransferFrom::eip712_encode_type(),
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,DepositWitness witness)DepositWitness(bytes32 channelId)TokenPermissions(address token,uint256 amount)"
    );
}

mod permit2_deposit {
    use secp256k1::{Message, SecretKey, SECP256K1};
    use serde_json::json;

    use super::*;
    use crate::batch_settlement::checks::{check, Phase};
    use crate::batch_settlement::wire::Permit2Deposit;
    use crate::Reason;

    const NOW: u64 = 1_750_000_000;
    const CHAIN: u64 = 84532;

    fn sign(sk: &SecretKey, digest: B256) -> String {
        let sig = SECP256K1.sign_ecdsa_recoverable(&Message::from_digest(digest.0), sk);
        let (id, rs) = sig.serialize_compact();
        let mut out = rs.to_vec();
        out.push(27 + i32::from(id) as u8);
        format!("0x{}", alloy_primitives::hex::encode(out))
    }

    /// A deposit of 1000 paid through Permit2 by the key's address (also its payerAuthorizer),
    /// with `edit` applied to the `permit2Authorization` before it is signed.
    fn judge(
        edit: impl Fn(&mut serde_json::Value),
        extensions: Option<serde_json::Value>,
    ) -> Result<(), Reason> {
        let sk = SecretKey::from_slice(&[0x42; 32]).unwrap();
        let pk = sk.public_key(SECP256K1).serialize_uncompressed();
        let payer = Address::from_slice(&keccak256(&pk[1..])[12..]);
        let mut c = config();
        c.payer = payer;
        c.payerAuthorizer = payer;
        let id = channel_id(&c, CHAIN);
        let mut auth = json!({
            "from": payer,
            "permitted": {"token": c.token, "amount": "1000"},
            "spender": PERMIT2_DEPOSIT_COLLECTOR,
            "nonce": "123456789",
            "deadline": (NOW + 600).to_string(),
            "witness": {"channelId": id},
            "signature": "0x",
        });
        edit(&mut auth);
        let p: Permit2Deposit = serde_json::from_value(auth.clone()).unwrap();
        auth["signature"] = sign(&sk, permit2_deposit_digest(&p, CHAIN)).into();
        let reqs = json!({"scheme": "batch-settlement", "network": "eip155:84532",
            "amount": "100", "asset": c.token, "payTo": c.receiver, "maxTimeoutSeconds": 60,
            "extra": {"receiverAuthorizer": c.receiverAuthorizer, "withdrawDelay": 900}});
        let mut payment = json!({"x402Version": 2, "accepted": reqs, "payload": {
            "type": "deposit",
            "channelConfig": {"payer": payer, "payerAuthorizer": payer, "receiver": c.receiver,
                "receiverAuthorizer": c.receiverAuthorizer, "token": c.token,
                "withdrawDelay": 900, "salt": c.salt},
            "voucher": {"channelId": id, "maxClaimableAmount": "100",
                "signature": sign(&sk, voucher_digest(id, 100, CHAIN))},
            "deposit": {"amount": "1000", "authorization": {"permit2Authorization": auth}}}});
        if let Some(e) = extensions {
            payment["extensions"] = e;
        }
        let body =
            json!({"x402Version": 2, "paymentRequirements": reqs, "paymentPayload": payment});
        let r = crate::proto::parse_facilitator_request(&body).unwrap();
        let v = check(
            &r,
            r.channel.as_ref().unwrap(),
            Phase::Verify,
            NOW,
            U256::ZERO,
        )?
        .unwrap();
        let d = v.deposit.unwrap();
        assert_eq!(d.collector, PERMIT2_DEPOSIT_COLLECTOR);
        assert_eq!(d.nonce, B256::from(U256::from(123_456_789u64)));
        assert_eq!(
            r.payload.authorization.nonce, d.nonce,
            "the ledger keys on the Permit2 nonce"
        );
        assert_eq!(d.needs_permit2_allowance, extensions_absent(&body));
        Ok(())
    }

    fn extensions_absent(body: &serde_json::Value) -> bool {
        body["paymentPayload"].get("extensions").is_none()
    }

    #[test]
    fn a_permit2_deposit_is_checked_by_the_references_rules() {
        assert_eq!(judge(|_| {}, None), Ok(()));
        type Edit = fn(&mut serde_json::Value);
        let cases: [(Edit, Reason); 6] = [
            (
                |a| a["from"] = json!(PERMIT2_DEPOSIT_COLLECTOR),
                Reason::BatchSettlementPermit2InvalidSignature,
            ),
            (
                |a| a["spender"] = json!(BATCH_SETTLEMENT),
                Reason::BatchSettlementPermit2InvalidSpender,
            ),
            (
                |a| a["permitted"]["token"] = json!(BATCH_SETTLEMENT),
                Reason::BatchSettlementTokenMismatch,
            ),
            (
                |a| a["permitted"]["amount"] = json!("999"),
                Reason::BatchSettlementPermit2AmountMismatch,
            ),
            (
                |a| a["witness"]["channelId"] = json!(ID),
                Reason::BatchSettlementChannelIdMismatch,
            ),
            (
                |a| a["deadline"] = json!((NOW + 5).to_string()),
                Reason::BatchSettlementPermit2DeadlineExpired,
            ),
        ];
        for (edit, reason) in cases {
            assert_eq!(judge(edit, None), Err(reason));
        }
    }

    #[test]
    fn an_eip2612_permit_of_permit2_must_be_the_payers_for_the_deposit() {
        let permit = |amount: &str, spender: Address| {
            let sk = SecretKey::from_slice(&[0x42; 32]).unwrap();
            let pk = sk.public_key(SECP256K1).serialize_uncompressed();
            let payer = Address::from_slice(&keccak256(&pk[1..])[12..]);
            json!({"eip2612GasSponsoring": {"info": {"from": payer, "asset": config().token,
                "spender": spender, "amount": amount, "nonce": "0",
                "deadline": (NOW + 600).to_string(), "signature": format!("0x{}", "11".repeat(64) + "1b"),
                "version": "1"}}})
        };
        assert_eq!(
            judge(|_| {}, Some(permit("1000", crate::permit2::PERMIT2))),
            Ok(())
        );
        assert_eq!(
            judge(|_| {}, Some(permit("999", crate::permit2::PERMIT2))),
            Err(Reason::BatchSettlementEip2612AmountMismatch)
        );
        assert_eq!(
            judge(|_| {}, Some(permit("1000", PERMIT2_DEPOSIT_COLLECTOR))),
            Err(Reason::Eip2612SpenderNotPermit2)
        );
    }

    #[test]
    fn the_permit2_collector_data_is_what_the_collector_decodes() {
        let data = permit2_collector_data(U256::from(7), U256::from(9), &[1, 2, 3], None).unwrap();
        let (nonce, deadline, sig, permit) = <(
            U256,
            U256,
            alloy_primitives::Bytes,
            alloy_primitives::Bytes,
        ) as alloy_sol_types::SolValue>::abi_decode_params(
            &data
        )
        .unwrap();
        assert_eq!(
            (nonce, deadline, sig.to_vec(), permit.len()),
            (U256::from(7), U256::from(9), vec![1, 2, 3], 0)
        );
    }
}
