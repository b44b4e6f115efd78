//! The registry's choice of a method, without a chain.

use alloy::primitives::{Address, B256};
use serde_json::{json, Value};
use x402::exact::evm as exact;
use x402::proto::parse_facilitator_request;

use super::*;

fn body(version: u8, scheme: &str, network: &str, payload: Value) -> Value {
    let reqs = json!({
        "scheme": scheme, "network": network, "amount": "10000",
        "maxAmountRequired": "10000", "resource": "https://x", "description": "", "mimeType": "",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60,
    });
    json!({
        "x402Version": version,
        "paymentPayload": {
            "x402Version": version, "scheme": scheme, "network": network,
            "accepted": reqs, "payload": payload,
        },
        "paymentRequirements": reqs,
    })
}

fn authorization() -> Value {
    json!({
        "signature": format!("0x{}", "11".repeat(65)),
        "authorization": {
            "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
            "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "value": "10000", "validAfter": "0", "validBefore": "99999999999",
            "nonce": format!("0x{}", "ab".repeat(32)),
        }
    })
}

fn permit2() -> Value {
    json!({
        "signature": format!("0x{}", "11".repeat(65)),
        "permit2Authorization": {
            "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
            "permitted": { "token": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "amount": "10000" },
            "spender": "0x4020615294c913F045dc10f0a5cdEbd86c280001",
            "nonce": "1", "deadline": "99999999999",
            "witness": { "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "validAfter": "0" },
        }
    })
}

fn names(registry: &MethodRegistry, body: &Value) -> Vec<&'static str> {
    let req = parse_facilitator_request(body).expect("parses");
    registry.candidates(&req).iter().map(|m| m.name()).collect()
}

#[test]
fn the_registry_picks_the_module_of_each_payload() {
    let r = MethodRegistry::builtin();
    let eip3009 = vec!["eip3009-eoa", "eip3009-smart-wallet"];
    for version in [1, 2] {
        for network in ["base-sepolia", "eip155:84532"] {
            let b = body(version, "exact", network, authorization());
            assert_eq!(names(&r, &b), eip3009, "v{version} {network}");
            assert_eq!(
                names(&r, &body(version, "exact", network, permit2())),
                ["permit2-exact"]
            );
            assert_eq!(
                names(&r, &body(version, "upto", network, permit2())),
                ["permit2-upto"]
            );
        }
    }
    // No method of that key: the built-in one for the payload's shape answers (its checks
    // name the scheme or the network that is wrong).
    assert_eq!(
        names(&r, &body(2, "toy", "base-sepolia", authorization())),
        eip3009
    );
    assert_eq!(
        names(&r, &body(2, "exact", "solana", authorization())),
        eip3009
    );
    assert_eq!(
        names(&r, &body(2, "toy", "base-sepolia", permit2())),
        ["permit2-exact"]
    );
}

#[test]
fn an_eoa_signature_is_the_eoa_module_s_and_anything_else_a_smart_wallet_s() {
    let r = MethodRegistry::builtin();
    let req = parse_facilitator_request(&body(2, "exact", "base-sepolia", authorization()))
        .expect("parses");
    let checked = |needs_onchain_signature_check| {
        let network = x402::network::parse_network("base-sepolia").unwrap();
        Checked::new(exact::OffchainVerified {
            payer: Address::ZERO,
            network,
            domain: exact::domain("USDC", "2", network.chain_id, Address::ZERO),
            signing_hash: B256::ZERO,
            needs_onchain_signature_check,
        })
    };
    let pick = |c: &Checked| {
        r.candidates(&req)
            .iter()
            .find(|m| m.claims(&req, c))
            .map(|m| m.name())
    };
    assert_eq!(pick(&checked(false)), Some("eip3009-eoa"));
    assert_eq!(pick(&checked(true)), Some("eip3009-smart-wallet"));
}

/// A method of its own key, registered beside the built-in ones.
struct Toy;

impl PaymentMethod for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }
    fn keys(&self) -> Vec<MethodKey> {
        vec![MethodKey::new(
            2,
            "toy",
            Family::Eip155,
            Transfer::Authorization,
        )]
    }
    fn check(
        &self,
        _ctx: &MethodContext<'_>,
        _req: &PaymentRequest,
        _phase: Phase,
    ) -> Result<Checked, Reason> {
        Ok(Checked::new(()))
    }
    fn judge<'a>(
        &'a self,
        _ctx: &'a MethodContext<'a>,
        _req: &'a PaymentRequest,
        _checked: &'a Checked,
        _from: Address,
        _phase: Phase,
    ) -> MethodFuture<'a, Result<SettleCall, Reason>> {
        Box::pin(async { Ok(Err(Reason::InvalidTransactionState)) })
    }
}

#[test]
fn a_registered_method_serves_its_key_only() {
    let mut r = MethodRegistry::builtin();
    r.register(Arc::new(Toy));
    assert_eq!(
        names(&r, &body(2, "toy", "base-sepolia", authorization())),
        ["toy"]
    );
    assert_eq!(
        names(&r, &body(1, "toy", "base-sepolia", authorization())),
        ["eip3009-eoa", "eip3009-smart-wallet"]
    );
    assert_eq!(
        names(&r, &body(2, "exact", "base-sepolia", authorization())),
        ["eip3009-eoa", "eip3009-smart-wallet"]
    );
    assert!(r
        .keys()
        .iter()
        .any(|k| k.scheme == "toy" && k.x402_version == 2));
}

#[test]
fn checked_values_are_the_method_s_own() {
    let c = Checked::new(7u32);
    assert_eq!(c.get::<u32>(), Some(&7));
    assert!(c.get::<exact::OffchainVerified>().is_none());
}
