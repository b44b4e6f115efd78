//! Payment channels whose payer signs its own vouchers (`payerAuthorizer` zero: ERC-1271 for
//! a contract wallet, ECDSA for a payer without code, as the contract's `SignatureChecker`), on
//! anvil with a real Safe 1.4.1 as the payer, on both databases: the deposit (its voucher asked
//! of the wallet, its ERC-3009 authorization checked by the token's ERC-1271 in the
//! simulation) and the vouchers are accepted at `/verify` and `/settle` when the wallet says so
//! and refused with the spec's reason when it does not (a stranger's signature, the owner's
//! bare ECDSA), nothing sent for a refused one; an EOA payer's own signature passes, a
//! stranger's does not; the claim of the last voucher and the sweep move exactly its amount to
//! the receiver, a refund whose voucher the wallet signs exactly the refund to the wallet; and
//! a node that does not answer is an error answer, never "valid". The wallet signs with alloy
//! (`devnet::SafeWallet`), not with the code under test.

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use devnet::batch_settlement::Channel;
use devnet::channel_payloads::{claim_payload, sweep_payload};
use devnet::{Devnet, SafeWallet};
use serde_json::{json, Value};
use x402::batch_settlement::voucher_digest;

use crate::chain_helpers::*;
use crate::channel_settle::refund_body;
use crate::channels::{assert_refused, assert_snapshot, deposit_body, options, voucher_body};
use crate::helpers::*;
use crate::tcp_proxy::TcpProxy;

const VOUCHER_SIGNATURE: &str = "invalid_batch_settlement_evm_voucher_signature";

/// An app on a chain with the channel contracts and Safe's, reaching the node through `proxy`
/// (RPC timeout 2 s), and a deployed Safe of a fresh owner holding 2 USDC.
pub(crate) async fn safe_channel_app(kind: Db) -> (ChainApp, TcpProxy, SafeWallet) {
    let devnet = Devnet::start(options()).await.unwrap();
    let proxy = TcpProxy::start(&devnet.rpc_url).await;
    let app = ChainApp::start_app_full(
        TestDb::create(kind).await,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        json!({ "rpc_url": [proxy.url()] }),
        json!({ "rpc": { "timeout_ms": 2000 } }),
    )
    .await;
    let app = ChainApp::with_merchant(app, devnet).await;
    let safe = app.devnet.deploy_safe_contracts().await.unwrap();
    let owner = PrivateKeySigner::random();
    let w = app
        .devnet
        .counterfactual_safe(&safe, owner, rand::random::<u32>().into())
        .await
        .unwrap();
    app.devnet.deploy_safe(&w).await.unwrap();
    app.devnet
        .mint(w.address, U256::from(2_000_000))
        .await
        .unwrap();
    (app, proxy, w)
}

/// `body` with its voucher's signature replaced.
fn resigned(mut body: Value, signature: &Bytes) -> Value {
    body["paymentPayload"]["payload"]["voucher"]["signature"] = json!(signature.to_string());
    body
}

async fn sent_by_facilitator(app: &ChainApp) -> u64 {
    let signer = app.devnet.facilitator_keys[0].address();
    app.devnet.nonce_of(signer).await.unwrap()
}

async fn a_smart_wallet_pays_a_channel_by_erc1271_vouchers(kind: Db) {
    let (app, proxy, w) = safe_channel_app(kind).await;
    let devnet = &app.devnet;
    let chain_id = devnet.chain_id;
    let ch = Channel::smart_wallet(devnet, w.clone(), PAY_TO, PrivateKeySigner::random());
    assert_eq!(ch.config.payerAuthorizer, Address::ZERO);
    let stranger = PrivateKeySigner::random();
    let digest = |max: u128| voucher_digest(ch.id, max, chain_id);

    // A deposit whose voucher the wallet does not own (a stranger's signature in the Safe's
    // format): refused at verify and at settle, nothing sent.
    let forged = resigned(
        deposit_body(devnet, &ch, 1_000_000, 100),
        &w.sign_as(&stranger, chain_id, digest(100)),
    );
    assert_refused(&app.verify(&forged).await, VOUCHER_SIGNATURE);
    let sent = sent_by_facilitator(&app).await;
    let refused = app.settle(&forged).await;
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(refused["errorReason"], VOUCHER_SIGNATURE, "{refused}");
    assert_eq!(sent_by_facilitator(&app).await, sent);

    // The wallet's deposit: verified, then settled through the ERC-3009 collector (the token
    // asks the wallet too). The escrow is on chain, taken from the wallet.
    let deposit = deposit_body(devnet, &ch, 1_000_000, 100);
    let verified = app.verify(&deposit).await;
    assert_eq!(verified["isValid"], true, "{verified}");
    assert_eq!(verified["payer"], w.address.to_checksum(None), "{verified}");
    assert_snapshot(&verified["extra"], &ch, 0, 0);
    let settled = app.settle(&deposit).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["amount"], "1000000");
    assert_snapshot(&settled["extra"]["channelState"], &ch, 1_000_000, 0);
    let on_chain = devnet.channel_state(ch.id).await.unwrap();
    assert_eq!((on_chain.balance, on_chain.total_claimed), (1_000_000, 0));
    assert_eq!(
        devnet.usdc_balance(w.address).await.unwrap(),
        U256::from(1_000_000)
    );

    // Vouchers the wallet signs are accepted; a stranger's, or the owner's bare ECDSA of the
    // digest (not the Safe's message format, so the wallet reverts), are refused.
    let answer = app.verify(&voucher_body(devnet, &ch, 300)).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    assert_snapshot(&answer["extra"], &ch, 1_000_000, 0);
    let by_stranger = w.sign_as(&stranger, chain_id, digest(400));
    let bare = devnet::batch_settlement::sign(&w.owner, digest(400));
    for signature in [&by_stranger, &bare] {
        let body = resigned(voucher_body(devnet, &ch, 400), signature);
        assert_refused(&app.verify(&body).await, VOUCHER_SIGNATURE);
    }
    // A zero payerAuthorizer whose payer has no code (an EOA signing as one): its own ECDSA is
    // what the contract's SignatureChecker accepts, so the signature passes and the channel's
    // state decides (never deposited: no balance); a stranger's signature is refused.
    let mut eoa = Channel::new(devnet, PrivateKeySigner::random(), PAY_TO);
    eoa.config.payerAuthorizer = Address::ZERO;
    eoa.id = x402::batch_settlement::channel_id(&eoa.config, chain_id);
    let eoa_digest = voucher_digest(eoa.id, 5, chain_id);
    let own = devnet::batch_settlement::sign(&eoa.payer, eoa_digest);
    let answer = app
        .verify(&resigned(voucher_body(devnet, &eoa, 5), &own))
        .await;
    assert_eq!(answer["isValid"], false, "{answer}");
    assert_ne!(answer["invalidReason"], VOUCHER_SIGNATURE, "{answer}");
    let foreign = devnet::batch_settlement::sign(&stranger, eoa_digest);
    let body = resigned(voucher_body(devnet, &eoa, 5), &foreign);
    assert_refused(&app.verify(&body).await, VOUCHER_SIGNATURE);

    // A node that does not answer: the wallet cannot be asked, so the voucher is an error
    // answer (the channel's state is fresh in the database: the wallet is the only question).
    // Once the node is back, the same voucher is accepted: nothing was taken meanwhile.
    proxy.refuse();
    let res = app
        .post_x402("/api/v1/verify", &voucher_body(devnet, &ch, 500))
        .await;
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "VERIFICATION_FAILED", "{body}");
    assert!(body.get("isValid").is_none(), "{body}");
    proxy.pass();
    let answer = app.verify(&voucher_body(devnet, &ch, 500)).await;
    assert_eq!(answer["isValid"], true, "{answer}");

    // The server claims the last voucher (the contract asks the wallet again) and sweeps: the
    // receiver gets exactly the voucher's amount, the escrow keeps the rest.
    let receiver_before = devnet.usdc_balance(PAY_TO).await.unwrap();
    let reqs = ch.requirements_json(devnet, 100);
    let claimed = app
        .settle(&v2_body(reqs.clone(), claim_payload(devnet, &[(&ch, 500)])))
        .await;
    assert_eq!(claimed["success"], true, "{claimed}");
    let on_chain = devnet.channel_state(ch.id).await.unwrap();
    assert_eq!((on_chain.balance, on_chain.total_claimed), (1_000_000, 500));
    let swept = app
        .settle(&v2_body(reqs, sweep_payload(PAY_TO, devnet.usdc)))
        .await;
    assert_eq!(swept["success"], true, "{swept}");
    assert_eq!(swept["amount"], "500", "{swept}");
    assert_eq!(
        devnet.usdc_balance(PAY_TO).await.unwrap(),
        receiver_before + U256::from(500)
    );
    assert_eq!(
        devnet.usdc_balance(w.address).await.unwrap(),
        U256::from(1_000_000)
    );
    // Below what is claimed now: a replay, whoever signs it.
    assert_refused(
        &app.verify(&voucher_body(devnet, &ch, 500)).await,
        "invalid_batch_settlement_evm_cumulative_below_claimed",
    );

    // A cooperative refund of 10 000: its zero-charge voucher is the wallet's too, asked again
    // before anything is sent. A stranger's is refused unsent; the wallet's returns exactly
    // the refund to the wallet.
    let refund = refund_body(devnet, &ch, 500, 10_000, 0, None);
    let forged = resigned(refund.clone(), &w.sign_as(&stranger, chain_id, digest(500)));
    let sent = sent_by_facilitator(&app).await;
    let refused = app.settle(&forged).await;
    assert_eq!(refused["errorReason"], VOUCHER_SIGNATURE, "{refused}");
    assert_eq!(sent_by_facilitator(&app).await, sent);
    let refunded = app.settle(&refund).await;
    assert_eq!(refunded["success"], true, "{refunded}");
    assert_eq!(refunded["amount"], "10000", "{refunded}");
    assert_eq!(
        devnet.usdc_balance(w.address).await.unwrap(),
        U256::from(1_010_000)
    );
    let on_chain = devnet.channel_state(ch.id).await.unwrap();
    assert_eq!((on_chain.balance, on_chain.total_claimed), (990_000, 500));
}

crate::both_dbs!(a_smart_wallet_pays_a_channel_by_erc1271_vouchers);
