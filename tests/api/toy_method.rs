//! The payment-method seam is real: a method defined entirely here, in the test crate, is
//! registered through the application's build options and paid through `/verify` and
//! `/settle` on a real anvil chain with Circle's USDC, with no shared code knowing it.
//!
//! The toy method (scheme `toy`, x402 v2, EVM networks): the payer has approved the
//! facilitator's signer on the token (ERC-20 `approve`) and signs a payment order (EIP-191
//! `personal_sign` of its fields) carried in the EIP-3009-shaped payload; verify checks the
//! order and reads allowance and balance; settle sends `transferFrom(payer, payTo, value)` from
//! the signer. One order, one success: the facilitator's ledger keys it by its nonce.

use std::sync::Arc;

use alloy::network::EthereumWallet;
use alloy::primitives::{keccak256, Address, Bytes, Signature, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol;
use alloy::sol_types::{SolCall, SolValue};
use devnet::{Devnet, DevnetOptions};
use facilitator_actors::methods::{
    Checked, Family, MethodContext, MethodFuture, MethodKey, PaymentMethod, Phase, SettleCall,
    Transfer,
};
use serde_json::{json, Value};
use x402::proto::PaymentRequest;
use x402::Reason;
use x402_facilitator::startup::{Application, BuildOptions};

use crate::chain_helpers::*;
use crate::helpers::*;

sol! {
    #[sol(rpc)]
    interface IToyToken {
        function approve(address spender, uint256 amount) external returns (bool);
        function allowance(address owner, address spender) external view returns (uint256);
        function balanceOf(address account) external view returns (uint256);
        function transferFrom(address from, address to, uint256 value) external returns (bool);
    }
}

/// What the payer signs: every field of the order, bound to the chain and the token.
fn order_hash(chain_id: u64, asset: Address, req_auth: &x402::proto::Authorization) -> Vec<u8> {
    let fields = (
        "toy".to_string(),
        U256::from(chain_id),
        asset,
        req_auth.from,
        req_auth.to,
        req_auth.value,
        req_auth.valid_after,
        req_auth.valid_before,
        req_auth.nonce,
    );
    keccak256(fields.abi_encode()).to_vec()
}

/// The toy method.
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
        ctx: &MethodContext<'_>,
        req: &PaymentRequest,
        _phase: Phase,
    ) -> Result<Checked, Reason> {
        if req.scheme != "toy" || req.payload_scheme != "toy" {
            return Err(Reason::InvalidScheme);
        }
        let Some(rt) = ctx.runtime else {
            return Err(Reason::InvalidNetwork);
        };
        if !req.accepted_matches {
            return Err(Reason::InvalidPaymentRequirements);
        }
        let known = ctx
            .assets()
            .iter()
            .any(|a| a.asset.parse::<Address>().ok() == Some(req.asset));
        if !known {
            return Err(Reason::InvalidPaymentRequirements);
        }
        let a = &req.payload.authorization;
        if a.to != req.pay_to {
            return Err(Reason::InvalidExactEvmPayloadRecipientMismatch);
        }
        if a.value.is_zero() || a.value != req.amount_required || a.from == req.pay_to {
            return Err(Reason::InvalidExactEvmPayloadAuthorizationValue);
        }
        let now = U256::from(ctx.now());
        if a.valid_before <= now {
            return Err(Reason::InvalidExactEvmPayloadAuthorizationValidBefore);
        }
        if a.valid_after > now {
            return Err(Reason::InvalidExactEvmPayloadAuthorizationValidAfter);
        }
        let signer = Signature::from_raw(&req.payload.signature)
            .ok()
            .and_then(|s| {
                s.recover_address_from_msg(order_hash(rt.entry.info.chain_id, req.asset, a))
                    .ok()
            });
        if signer != Some(a.from) {
            return Err(Reason::InvalidExactEvmPayloadSignature);
        }
        Ok(Checked::new(()))
    }

    fn judge<'a>(
        &'a self,
        ctx: &'a MethodContext<'a>,
        req: &'a PaymentRequest,
        _checked: &'a Checked,
        from: Address,
        phase: Phase,
    ) -> MethodFuture<'a, Result<SettleCall, Reason>> {
        Box::pin(async move {
            let rt = ctx.runtime.expect("checked: the network is served");
            let a = &req.payload.authorization;
            let read = |data: Vec<u8>| {
                TransactionRequest::default()
                    .to(req.asset)
                    .input(TransactionInput::new(data.into()))
            };
            let unavailable = |e: alloy::transports::TransportError| {
                facilitator_actors::ServiceError::Unavailable(e.to_string())
            };
            let word = |b: Bytes| U256::try_from_be_slice(&b).unwrap_or_default();
            let allowance = rt
                .provider
                .call(read(
                    IToyToken::allowanceCall {
                        owner: a.from,
                        spender: from,
                    }
                    .abi_encode(),
                ))
                .await
                .map_err(unavailable)?;
            let balance = rt
                .provider
                .call(read(
                    IToyToken::balanceOfCall { account: a.from }.abi_encode(),
                ))
                .await
                .map_err(unavailable)?;
            if word(balance) < a.value {
                return Ok(Err(Reason::InsufficientFunds));
            }
            if word(allowance) < a.value {
                return Ok(Err(Reason::InvalidTransactionState));
            }
            let data: Bytes = IToyToken::transferFromCall {
                from: a.from,
                to: a.to,
                value: a.value,
            }
            .abi_encode()
            .into();
            let gas_limit = match phase {
                Phase::Verify => None,
                Phase::Settle => {
                    let call = TransactionRequest::default()
                        .from(from)
                        .to(req.asset)
                        .input(TransactionInput::new(data.clone()));
                    match rt.provider.estimate_gas(call).await {
                        Ok(gas) => match rt.fees.gas_limit_for(gas) {
                            Some(limit) => Some(limit),
                            None => return Ok(Err(Reason::SettlementGasExceedsLimit)),
                        },
                        Err(_) => return Ok(Err(Reason::InvalidTransactionState)),
                    }
                }
            };
            Ok(Ok(SettleCall {
                to: req.asset,
                data,
                gas_limit,
            }))
        })
    }
}

/// A facilitator on `devnet` that also serves the toy method, with a merchant's client key.
async fn toy_app(kind: Db, devnet: Devnet) -> ChainApp {
    let db = TestDb::create(kind).await;
    let settings = test_settings(
        &db.url,
        json!({ "networks": { "base_sepolia": {
            "rpc_url": devnet.rpc_url,
            "usdc_address": devnet.usdc.to_checksum(None),
            "receipt_timeout_secs": 25,
        } } }),
    );
    let mut options = BuildOptions::default();
    options
        .signer_keys
        .insert("base-sepolia".into(), devnet.facilitator_keys[..1].to_vec());
    options.methods.push(Arc::new(Toy));
    let app = Application::build_with(settings, options)
        .await
        .expect("build app");
    ChainApp::with_merchant(TestApp::from_application(app, db), devnet).await
}

/// A toy payment request of `value` from `payer` to `PAY_TO`, signed by `payer`.
fn toy_request(app: &ChainApp, payer: &PrivateKeySigner, value: u64) -> Value {
    let pay = Payment::new(app, 0, value);
    let auth = x402::proto::Authorization {
        from: payer.address(),
        to: PAY_TO,
        value: U256::from(value),
        valid_after: U256::from(pay.valid_after),
        valid_before: U256::from(pay.valid_before),
        nonce: pay.nonce,
    };
    let signature = payer
        .sign_message_sync(&order_hash(app.devnet.chain_id, app.devnet.usdc, &auth))
        .expect("sign");
    let requirements = json!({
        "scheme": "toy",
        "network": "eip155:84532",
        "amount": value.to_string(),
        "asset": app.devnet.usdc.to_checksum(None),
        "payTo": PAY_TO.to_checksum(None),
        "maxTimeoutSeconds": 60,
    });
    json!({
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2,
            "resource": { "url": "http://127.0.0.1/paid" },
            "accepted": requirements,
            "payload": {
                "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
                "authorization": {
                    "from": auth.from.to_checksum(None),
                    "to": auth.to.to_checksum(None),
                    "value": auth.value.to_string(),
                    "validAfter": auth.valid_after.to_string(),
                    "validBefore": auth.valid_before.to_string(),
                    "nonce": auth.nonce.to_string(),
                },
            },
        },
        "paymentRequirements": requirements,
    })
}

/// The payer's `approve(signer, amount)` on the token, paid by the payer.
async fn approve(app: &ChainApp, payer: &PrivateKeySigner, spender: Address, amount: U256) {
    app.devnet
        .set_eth_balance(payer.address(), U256::from(10u64).pow(U256::from(18)))
        .await
        .unwrap();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(payer.clone()))
        .connect_http(app.devnet.rpc_url.parse().unwrap());
    let receipt = IToyToken::new(app.devnet.usdc, &provider)
        .approve(spender, amount)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
}

async fn a_toy_method_registered_in_the_test_crate_is_paid_once(kind: Db) {
    let devnet = Devnet::start(DevnetOptions::default())
        .await
        .expect("devnet");
    let app = toy_app(kind, devnet).await;
    let payer = app.payer(0).clone();
    let signer = app.devnet.facilitator_keys[0].address();
    let value = 25_000u64;
    let body = toy_request(&app, &payer, value);

    // Advertised beside the built-in kinds: one `toy` kind per network, x402 v2.
    let supported: Value = app
        .app
        .get_as_client("/api/v1/supported", &app.client_id, &app.client_token)
        .await
        .json()
        .await
        .unwrap();
    let kinds = supported["kinds"].as_array().unwrap();
    let toy: Vec<&Value> = kinds.iter().filter(|k| k["scheme"] == "toy").collect();
    assert_eq!(toy.len(), 1, "{supported}");
    assert_eq!(toy[0]["x402Version"], 2);
    assert_eq!(toy[0]["network"], "eip155:84532");
    assert_eq!(
        kinds.last().unwrap()["scheme"],
        "toy",
        "after the built-in kinds: {supported}"
    );

    // Not approved yet: the method's own judgement refuses it.
    let verify = app.verify(&body).await;
    assert_eq!(verify["isValid"], false, "{verify}");
    assert_eq!(verify["invalidReason"], "invalid_transaction_state");

    approve(&app, &payer, signer, U256::from(value)).await;
    // A fresh order (the refusal above may be cached briefly).
    let body = toy_request(&app, &payer, value);
    let verify = app.verify(&body).await;
    assert_eq!(verify["isValid"], true, "{verify}");
    assert_eq!(verify["payer"], payer.address().to_checksum(None));

    // A forged order (signed by someone else) is the method's to refuse.
    let mut forged = body.clone();
    forged["paymentPayload"]["payload"]["signature"] = json!(format!(
        "0x{}",
        alloy::hex::encode(
            PrivateKeySigner::random()
                .sign_message_sync(b"not the order")
                .unwrap()
                .as_bytes()
        )
    ));
    let refused = app.verify(&forged).await;
    assert_eq!(
        refused["invalidReason"], "invalid_exact_evm_payload_signature",
        "{refused}"
    );

    let (payer_before, pay_to_before) = (
        app.balance(payer.address()).await,
        app.balance(PAY_TO).await,
    );
    let settle = app.settle(&body).await;
    assert_eq!(settle["success"], true, "{settle}");
    assert_eq!(settle["payer"], payer.address().to_checksum(None));
    assert_eq!(settle["amount"], value.to_string());
    let tx: alloy::primitives::B256 = settle["transaction"].as_str().unwrap().parse().unwrap();
    let receipt = app.devnet.receipt(tx).await.unwrap().expect("mined");
    assert!(receipt.status());
    assert_eq!(receipt.from, signer, "sent by the facilitator's signer");
    assert_eq!(
        app.balance(payer.address()).await,
        payer_before - U256::from(value)
    );
    assert_eq!(app.balance(PAY_TO).await, pay_to_before + U256::from(value));

    // One payment, one success: the same order again is refused, and nothing more moves.
    let again = app.settle(&body).await;
    assert_eq!(again["success"], false, "{again}");
    assert_eq!(again["errorReason"], "invalid_exact_evm_nonce_already_used");
    let verify = app.verify(&body).await;
    assert_eq!(verify["isValid"], false, "{verify}");
    assert_eq!(app.balance(PAY_TO).await, pay_to_before + U256::from(value));
}

crate::both_dbs!(a_toy_method_registered_in_the_test_crate_is_paid_once);
