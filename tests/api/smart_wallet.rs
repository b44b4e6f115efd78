//! Smart-wallet payers against real wallet contracts: Safe 1.4.1 from
//! `@safe-global/safe-contracts` (ERC-1271 through its CompatibilityFallbackHandler), deployed
//! (ERC-1271) and counterfactual (ERC-6492, deployed at settlement through an allowlisted
//! `SafeProxyFactory`, batched with the transfer in Multicall3's `aggregate3`).

use alloy::primitives::{Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use devnet::{Devnet, DevnetOptions, SafeContracts, SafeWallet};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::chain_helpers::*;
use crate::helpers::*;
use crate::replay::{e2e_state, node, write_state, E2E_PAY_TO, E2E_PRICE};

/// A chain with Multicall3 and Safe's contracts, and an app on it whose base-sepolia entry
/// takes `network` (e.g. the factory allowlist).
async fn safe_app(kind: Db, allow_factory: bool, network: Value) -> (ChainApp, SafeContracts) {
    let devnet = Devnet::start(DevnetOptions {
        multicall3: true,
        ..DevnetOptions::default()
    })
    .await
    .expect("devnet");
    let safe = devnet
        .deploy_safe_contracts()
        .await
        .expect("safe contracts");
    let mut settings = json!({ "gas_limit": 1_000_000 });
    if allow_factory {
        settings["erc6492_allowed_factories"] = json!([safe.factory.to_checksum(None)]);
    }
    for (k, v) in network.as_object().into_iter().flatten() {
        settings[k] = v.clone();
    }
    let db = TestDb::create(kind).await;
    let app =
        ChainApp::start_app_with(db, &devnet, devnet.facilitator_keys[..1].to_vec(), settings)
            .await;
    (ChainApp::with_merchant(app, devnet).await, safe)
}

/// A fresh Safe of a fresh owner, funded with `funds` USDC; deployed when `deployed`.
async fn wallet(app: &ChainApp, safe: &SafeContracts, deployed: bool, funds: u64) -> SafeWallet {
    let owner = PrivateKeySigner::random();
    let w = app
        .devnet
        .counterfactual_safe(safe, owner, rand::random::<u32>().into())
        .await
        .expect("counterfactual safe");
    app.devnet
        .mint(w.address, U256::from(funds))
        .await
        .expect("mint");
    if deployed {
        app.devnet.deploy_safe(&w).await.expect("deploy safe");
    }
    w
}

fn hex(b: &Bytes) -> String {
    format!("0x{}", alloy::hex::encode(b))
}

/// What the facilitator's signer has sent so far (its nonce): "no gas spent" is "unchanged".
async fn sent_by_facilitator(app: &ChainApp) -> u64 {
    app.devnet
        .nonce_of(app.devnet.facilitator_keys[0].address())
        .await
        .unwrap()
}

async fn a_deployed_wallet_pays_and_a_wrong_signature_is_refused(kind: Db) {
    let (app, safe) = safe_app(kind, false, json!({})).await;
    let w = wallet(&app, &safe, true, 50_000).await;
    let pay = Payment::usdc(w.address, app.devnet.chain_id, app.devnet.usdc, 12_345);

    // Signed by someone who is not an owner: the wallet's ERC-1271 says no.
    let stranger = PrivateKeySigner::random();
    let bad = pay.v2(
        &hex(&w.sign_as(&stranger, pay.chain_id, pay.digest())),
        12_345,
    );
    let sent = sent_by_facilitator(&app).await;
    let refused = app.verify(&bad).await;
    assert_eq!(refused["isValid"], false);
    assert_eq!(
        refused["invalidReason"], "invalid_exact_evm_payload_signature",
        "{refused}"
    );
    let refused = app.settle(&bad).await;
    assert_eq!(
        refused["errorReason"], "invalid_exact_evm_payload_signature",
        "{refused}"
    );
    assert_eq!(sent_by_facilitator(&app).await, sent, "nothing sent");

    // The owner's signature: verify, settle, and exact balances.
    let good = pay.v2(&hex(&w.sign(pay.chain_id, pay.digest())), 12_345);
    let verified = app.verify(&good).await;
    assert_eq!(verified["isValid"], true, "{verified}");
    assert_eq!(
        verified["payer"].as_str().unwrap().to_lowercase(),
        w.address.to_string().to_lowercase()
    );
    let settled = app.settle(&good).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(app.balance(w.address).await, U256::from(50_000 - 12_345));
    assert_eq!(app.balance(PAY_TO).await, U256::from(12_345));
    assert!(app
        .devnet
        .authorization_state(w.address, pay.nonce)
        .await
        .unwrap());

    // The same signature as a v1 (v, r, s-shaped, 65 bytes) payment also goes through the
    // `bytes` overload: it does not recover to the wallet.
    let pay = Payment::usdc(w.address, app.devnet.chain_id, app.devnet.usdc, 5);
    let settled = app
        .settle(&pay.v1(&hex(&w.sign(pay.chain_id, pay.digest())), 5))
        .await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(app.balance(PAY_TO).await, U256::from(12_350));
}
both_dbs!(a_deployed_wallet_pays_and_a_wrong_signature_is_refused);

async fn a_counterfactual_wallet_is_deployed_and_pays_through_an_allowed_factory(kind: Db) {
    let (app, safe) = safe_app(kind, true, json!({})).await;
    let w = wallet(&app, &safe, false, 80_000).await;
    assert!(app.devnet.code_at(w.address).await.unwrap().is_empty());
    let pay = Payment::usdc(w.address, app.devnet.chain_id, app.devnet.usdc, 30_000);
    let signature = w.erc6492(w.sign(pay.chain_id, pay.digest()));
    let body = pay.v2(&hex(&signature), 30_000);

    let verified = app.verify(&body).await;
    assert_eq!(verified["isValid"], true, "{verified}");
    assert!(
        app.devnet.code_at(w.address).await.unwrap().is_empty(),
        "verify deploys nothing"
    );
    let sent = sent_by_facilitator(&app).await;
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(
        sent_by_facilitator(&app).await,
        sent + 1,
        "deploy + transfer: one transaction"
    );
    assert!(!app.devnet.code_at(w.address).await.unwrap().is_empty());
    assert_eq!(app.balance(w.address).await, U256::from(50_000));
    assert_eq!(app.balance(PAY_TO).await, U256::from(30_000));

    // One ledger entry for it, idempotent like any other: a copy is a used authorization.
    let tx = settled["transaction"].as_str().unwrap();
    let row = app.settlement(tx).await;
    assert_eq!(
        row["payer"].as_str().unwrap().to_lowercase(),
        w.address.to_string().to_lowercase(),
        "{row}"
    );
    let again = app.settle(&body).await;
    assert_eq!(
        again["errorReason"], "invalid_exact_evm_nonce_already_used",
        "{again}"
    );

    // Now deployed, the wallet's next ERC-6492 signature needs no deployment (and the same
    // wrapper would not need the allowlist either).
    let pay = Payment::usdc(w.address, app.devnet.chain_id, app.devnet.usdc, 1_000);
    let body = pay.v2(&hex(&w.erc6492(w.sign(pay.chain_id, pay.digest()))), 1_000);
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(app.balance(PAY_TO).await, U256::from(31_000));
}
both_dbs!(a_counterfactual_wallet_is_deployed_and_pays_through_an_allowed_factory);

async fn a_counterfactual_wallet_of_a_factory_not_allowed_is_refused_before_any_gas(kind: Db) {
    let (app, safe) = safe_app(kind, false, json!({})).await;
    let w = wallet(&app, &safe, false, 80_000).await;
    let pay = Payment::usdc(w.address, app.devnet.chain_id, app.devnet.usdc, 30_000);
    let body = pay.v2(&hex(&w.erc6492(w.sign(pay.chain_id, pay.digest()))), 30_000);
    let sent = sent_by_facilitator(&app).await;
    let refused = app.verify(&body).await;
    assert_eq!(
        refused["invalidReason"], "eip6492_factory_not_allowed",
        "{refused}"
    );
    let refused = app.settle(&body).await;
    assert_eq!(refused["success"], false);
    assert_eq!(
        refused["errorReason"], "eip6492_factory_not_allowed",
        "{refused}"
    );
    assert_eq!(refused["transaction"], "", "{refused}");
    assert!(
        app.devnet.code_at(w.address).await.unwrap().is_empty(),
        "nothing deployed"
    );
    assert_eq!(sent_by_facilitator(&app).await, sent, "no gas spent");
    assert_eq!(app.balance(w.address).await, U256::from(80_000));
}
both_dbs!(a_counterfactual_wallet_of_a_factory_not_allowed_is_refused_before_any_gas);

/// The other smart-wallet refusals, each from a real bad payment.
async fn smart_wallet_refusals_have_their_reasons(kind: Db) {
    // A deployment the network's gas limit cannot carry.
    let (app, safe) = safe_app(kind, true, json!({ "gas_limit": 150_000 })).await;
    let w = wallet(&app, &safe, false, 10_000).await;
    let pay = Payment::usdc(w.address, app.devnet.chain_id, app.devnet.usdc, 1_000);
    let body = pay.v2(&hex(&w.erc6492(w.sign(pay.chain_id, pay.digest()))), 1_000);
    let sent = sent_by_facilitator(&app).await;
    let refused = app.settle(&body).await;
    assert_eq!(
        refused["errorReason"], "smart_wallet_deployment_failed",
        "{refused}"
    );
    assert_eq!(sent_by_facilitator(&app).await, sent, "no gas spent");
    assert!(app.devnet.code_at(w.address).await.unwrap().is_empty());

    // A smart wallet's signature (not 65 bytes) for an address with no code and no ERC-6492
    // deployment data.
    let inner = w.sign(pay.chain_id, pay.digest());
    let long = Bytes::from([inner.to_vec(), vec![0u8; 32]].concat());
    let pay = Payment::usdc(w.address, app.devnet.chain_id, app.devnet.usdc, 1_000);
    let refused = app.verify(&pay.v2(&hex(&long), 1_000)).await;
    assert_eq!(
        refused["invalidReason"], "invalid_exact_evm_payload_undeployed_smart_wallet",
        "{refused}"
    );

    // A counterfactual wallet whose inner signature is wrong: the batched simulation names it
    // (its gas estimate fails first, so the gas limit plays no part).
    let stranger = PrivateKeySigner::random();
    let pay = Payment::usdc(w.address, app.devnet.chain_id, app.devnet.usdc, 1_000);
    let wrong = w.erc6492(w.sign_as(&stranger, pay.chain_id, pay.digest()));
    let refused = app.verify(&pay.v2(&hex(&wrong), 1_000)).await;
    assert_eq!(
        refused["invalidReason"], "invalid_exact_evm_payload_signature",
        "{refused}"
    );

    // A network whose Multicall3 is not where the configuration says: the batch cannot run,
    // and nothing is sent.
    let (app, safe) = safe_app(
        kind,
        true,
        json!({ "multicall3_address": "0x000000000000000000000000000000000000dEaD" }),
    )
    .await;
    let w = wallet(&app, &safe, false, 10_000).await;
    let pay = Payment::usdc(w.address, app.devnet.chain_id, app.devnet.usdc, 1_000);
    let body = pay.v2(&hex(&w.erc6492(w.sign(pay.chain_id, pay.digest()))), 1_000);
    let sent = sent_by_facilitator(&app).await;
    let refused = app.settle(&body).await;
    assert_eq!(
        refused["errorReason"], "invalid_transaction_state",
        "{refused}"
    );
    assert_eq!(sent_by_facilitator(&app).await, sent, "no gas spent");
    assert!(app.devnet.code_at(w.address).await.unwrap().is_empty());
}
both_dbs!(smart_wallet_refusals_have_their_reasons);

/// The official v2 buyer (`@x402/fetch` + `@x402/evm`) paying from a counterfactual Safe
/// through the official resource server: the settle deploys the wallet and pays.
async fn the_official_v2_client_pays_from_a_counterfactual_safe(kind: Db) {
    let (app, safe) = safe_app(kind, true, json!({})).await;
    let w = wallet(&app, &safe, false, 50_000).await;
    let mut state = e2e_state(&app);
    state["safe"] = json!({
        "address": w.address.to_checksum(None),
        "ownerPrivateKey": format!("0x{}", alloy::hex::encode(w.owner.to_bytes())),
        "factory": w.factory.to_checksum(None),
        "factoryCalldata": hex(&w.factory_calldata),
    });
    let file = write_state(&state);
    let result = node(
        "tools/e2e/smart-wallet.mjs",
        &[file.path().to_str().unwrap()],
    )
    .await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(
        result["payer"].as_str().unwrap().to_lowercase(),
        w.address.to_string().to_lowercase()
    );
    assert!(!app.devnet.code_at(w.address).await.unwrap().is_empty());
    assert_eq!(app.balance(E2E_PAY_TO).await, U256::from(E2E_PRICE));
    assert_eq!(app.balance(w.address).await, U256::from(50_000 - E2E_PRICE));
}
both_dbs!(the_official_v2_client_pays_from_a_counterfactual_safe);
