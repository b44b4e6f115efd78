//! Payment channels (`batch-settlement`) opened by a Permit2 deposit, on anvil with the channel
//! contracts, their Permit2 deposit collector and Permit2 at the canonical addresses and
//! Circle's USDC, on both databases: the payer approved Permit2 (or signs an EIP-2612 permit of
//! it), signs `PermitWitnessTransferFrom` to the collector with the channel as witness; the
//! facilitator verifies, settles it once, and the channel's vouchers then work. Refusals carry
//! the reference's reasons and send nothing. A Safe payer's ERC-1271 signature of the permit is
//! Permit2's to judge in the simulation. Payers sign with alloy (`devnet::channel_permit2`);
//! last, the official `@x402/evm` buyer deposits through Permit2 and pays the reference server
//! through us.

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use devnet::batch_settlement::{Channel, BATCH_SETTLEMENT};
use devnet::Devnet;
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::channels::{assert_refused, assert_snapshot, options, requirements, voucher_body};
use crate::helpers::*;

/// Far enough ahead for any test.
fn deadline() -> u64 {
    now() + 3600
}

fn body(devnet: &Devnet, ch: &Channel, p: &x402::batch_settlement::wire::Permit2Deposit) -> Value {
    v2_body(
        requirements(devnet, ch, 100),
        ch.permit2_deposit_payload(devnet, p, 100),
    )
}

/// Transactions the facilitator's signer has sent.
async fn sent(app: &ChainApp) -> u64 {
    let signer = app.devnet.facilitator_keys[0].address();
    app.devnet
        .provider()
        .get_transaction_count(signer)
        .await
        .unwrap()
}

/// Refused at `/verify` and at `/settle` with `reason`, nothing sent, nothing moved.
async fn refused_unsent(app: &ChainApp, ch: &Channel, body: &Value, reason: &str) {
    let before = (
        sent(app).await,
        app.devnet.usdc_balance(ch.payer.address()).await.unwrap(),
    );
    assert_refused(&app.verify(body).await, reason);
    let settled = app.settle(body).await;
    assert_eq!(settled["success"], false, "{settled}");
    assert_eq!(settled["errorReason"], reason, "{settled}");
    let after = (
        sent(app).await,
        app.devnet.usdc_balance(ch.payer.address()).await.unwrap(),
    );
    assert_eq!(before, after, "nothing is sent for a refused deposit");
}

async fn a_permit2_deposit_opens_a_channel(kind: Db) {
    let app = ChainApp::spawn(kind, options()).await;
    let devnet = &app.devnet;
    let ch = Channel::new(devnet, app.payer(0).clone(), PAY_TO);
    let amount = 1_000_000u128;

    // No allowance to Permit2 yet (and no EIP-2612 permit): refused, nothing sent.
    assert_eq!(ch.permit2_allowance(devnet).await.unwrap(), U256::ZERO);
    let deposit = ch.permit2_deposit_with(devnet, amount, deadline(), |_| {});
    refused_unsent(
        &app,
        &ch,
        &body(devnet, &ch, &deposit),
        "invalid_batch_settlement_evm_permit2_allowance_required",
    )
    .await;

    ch.approve_permit2(devnet, U256::MAX).await.unwrap();

    // A permit witnessing another channel, for another amount, expiring, or signed by someone
    // else: refused with the reference's reasons, nothing sent.
    let other = ch.permit2_deposit_with(devnet, amount, deadline(), |p| {
        p.witness.channel_id = B256::repeat_byte(7)
    });
    refused_unsent(
        &app,
        &ch,
        &body(devnet, &ch, &other),
        "invalid_batch_settlement_evm_channel_id_mismatch",
    )
    .await;
    let mut short = body(devnet, &ch, &deposit);
    short["paymentPayload"]["payload"]["deposit"]["amount"] = "999999".into();
    refused_unsent(
        &app,
        &ch,
        &short,
        "invalid_batch_settlement_evm_permit2_amount_mismatch",
    )
    .await;
    let expiring = ch.permit2_deposit_with(devnet, amount, now() + 2, |_| {});
    refused_unsent(
        &app,
        &ch,
        &body(devnet, &ch, &expiring),
        "invalid_batch_settlement_evm_permit2_deadline_expired",
    )
    .await;
    let forged = ch.permit2_deposit_signed_by(
        devnet,
        &PrivateKeySigner::random(),
        amount,
        deadline(),
        |_| {},
    );
    refused_unsent(
        &app,
        &ch,
        &body(devnet, &ch, &forged),
        "invalid_batch_settlement_evm_permit2_invalid_signature",
    )
    .await;
    let wrong_spender =
        ch.permit2_deposit_with(devnet, amount, deadline(), |p| p.spender = BATCH_SETTLEMENT);
    refused_unsent(
        &app,
        &ch,
        &body(devnet, &ch, &wrong_spender),
        "invalid_batch_settlement_evm_permit2_invalid_spender",
    )
    .await;
    assert_eq!(devnet.channel_state(ch.id).await.unwrap().balance, 0);

    // The payer's deposit: valid, settled once, the escrow exactly what left the payer.
    let deposit = body(devnet, &ch, &deposit);
    let verified = app.verify(&deposit).await;
    assert_eq!(verified["isValid"], true, "{verified}");
    assert_eq!(verified["payer"], ch.payer.address().to_checksum(None));
    assert_snapshot(&verified["extra"], &ch, 0, 0);
    let payer_before = devnet.usdc_balance(ch.payer.address()).await.unwrap();
    let settled = app.settle(&deposit).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["amount"], amount.to_string());
    assert_snapshot(&settled["extra"]["channelState"], &ch, amount, 0);
    let tx: B256 = settled["transaction"].as_str().unwrap().parse().unwrap();
    let receipt = devnet.receipt(tx).await.unwrap().expect("mined");
    assert!(receipt.status());
    assert_eq!(receipt.to, Some(BATCH_SETTLEMENT));
    let on_chain = devnet.channel_state(ch.id).await.unwrap();
    assert_eq!((on_chain.balance, on_chain.total_claimed), (amount, 0));
    assert_eq!(
        devnet.usdc_balance(ch.payer.address()).await.unwrap(),
        payer_before - U256::from(amount)
    );

    // One deposit, one success: the same deposit again is not paid twice.
    let sent_before = sent(&app).await;
    let again = app.settle(&deposit).await;
    assert_eq!(again["success"], false, "{again}");
    assert_eq!(devnet.channel_state(ch.id).await.unwrap().balance, amount);
    assert_eq!(
        devnet.usdc_balance(ch.payer.address()).await.unwrap(),
        payer_before - U256::from(amount)
    );
    assert_eq!(sent(&app).await, sent_before);

    // The deposit's voucher (100) is the accepted one; higher vouchers work, a replay does not.
    assert_refused(
        &app.verify(&voucher_body(devnet, &ch, 100)).await,
        "invalid_batch_settlement_evm_cumulative_below_claimed",
    );
    let answer = app.verify(&voucher_body(devnet, &ch, 200)).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    assert_snapshot(&answer["extra"], &ch, amount, 0);
    assert_refused(
        &app.verify(&voucher_body(devnet, &ch, 200)).await,
        "invalid_batch_settlement_evm_cumulative_below_claimed",
    );
}

crate::both_dbs!(a_permit2_deposit_opens_a_channel);

async fn an_eip2612_permit_of_permit2_pays_for_the_allowance(kind: Db) {
    let app = ChainApp::spawn(kind, options()).await;
    let devnet = &app.devnet;
    let ch = Channel::new(devnet, app.payer(1).clone(), PAY_TO);
    let amount = 500_000u128;
    let deposit = ch.permit2_deposit_with(devnet, amount, deadline(), |_| {});
    let mut paid = body(devnet, &ch, &deposit);

    // A permit for another amount: refused with the reference's reason, nothing sent.
    let mut wrong = paid.clone();
    wrong["paymentPayload"]["extensions"] = ch
        .eip2612_extension(devnet, amount + 1, deadline())
        .await
        .unwrap();
    refused_unsent(
        &app,
        &ch,
        &wrong,
        "invalid_batch_settlement_evm_eip2612_amount_mismatch",
    )
    .await;

    // The payer never approved Permit2: its permit, submitted by the collector, does it.
    paid["paymentPayload"]["extensions"] = ch
        .eip2612_extension(devnet, amount, deadline())
        .await
        .unwrap();
    let verified = app.verify(&paid).await;
    assert_eq!(verified["isValid"], true, "{verified}");
    let payer_before = devnet.usdc_balance(ch.payer.address()).await.unwrap();
    let settled = app.settle(&paid).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(devnet.channel_state(ch.id).await.unwrap().balance, amount);
    assert_eq!(
        devnet.usdc_balance(ch.payer.address()).await.unwrap(),
        payer_before - U256::from(amount)
    );
    // The permit was spent on exactly the deposit.
    assert_eq!(ch.permit2_allowance(devnet).await.unwrap(), U256::ZERO);
}

crate::both_dbs!(an_eip2612_permit_of_permit2_pays_for_the_allowance);

/// The official buyer (`@x402/evm` batch-settlement client) deposits through Permit2 when the
/// requirements say `assetTransferMethod: "permit2"`, paying the reference's resource server
/// whose facilitator is this app (`tools/e2e/channels.mjs ... permit2`): one Permit2 deposit, 10
/// vouchers, the claim, the sweep and the refund through us; the payer paid exactly the sum and
/// Permit2 spent exactly the deposit of the allowance the payer gave it.
async fn official_buyer_deposits_through_permit2(kind: Db) {
    use crate::replay::{e2e_state, node, write_state};
    const PRICE: u128 = 10_000;
    const DEPOSIT: u128 = 1_500_000;
    const REQUESTS: u128 = 10;
    let app = crate::channels::delegated_app(kind, &PrivateKeySigner::random(), json!({})).await;
    let payer = app.payer(0).clone();
    app.devnet
        .approve_permit2(&payer, U256::from(DEPOSIT))
        .await
        .unwrap();

    let pay_to = PrivateKeySigner::random().address();
    let mut state = e2e_state(&app);
    state["channels"] = json!({
        "payTo": pay_to.to_checksum(None),
        "payer": 0,
        "merchantAuthorizerKey": format!("0x{}", alloy::hex::encode(PrivateKeySigner::random().to_bytes())),
    });
    let file = write_state(&state);
    let path = file.path().to_str().unwrap();
    let payer_before = app.balance(payer.address()).await;
    let requests = REQUESTS.to_string();
    let args = [path, &requests, "facilitator", "facilitator", "permit2"];
    let result = node("tools/e2e/channels.mjs", &args).await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(
        result["depositAuthorization"],
        json!(["permit2Authorization"])
    );
    assert_eq!(
        (result["deposits"].clone(), result["vouchers"].clone()),
        (json!(1), json!(9))
    );
    let deposit = &result["depositSettlement"];
    assert_eq!(deposit["amount"], DEPOSIT.to_string(), "{deposit}");
    let tx: B256 = result["depositTransaction"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let receipt = app.devnet.receipt(tx).await.unwrap().expect("mined");
    assert!(receipt.status());
    assert_eq!(receipt.to, Some(BATCH_SETTLEMENT));
    // Permit2 moved the deposit: the allowance given to it is spent.
    assert_eq!(
        app.devnet.permit2_allowance(payer.address()).await.unwrap(),
        U256::ZERO
    );
    let sum = PRICE * REQUESTS;
    assert_eq!(result["refunded"], (DEPOSIT - sum).to_string());
    assert_eq!(app.balance(pay_to).await, U256::from(sum));
    assert_eq!(
        payer_before - app.balance(payer.address()).await,
        U256::from(sum)
    );
}

crate::both_dbs!(official_buyer_deposits_through_permit2);

/// A Safe payer (`payerAuthorizer` zero) deposits through Permit2: its ERC-1271 signature of the
/// permit is left to the deposit's simulation (Permit2 asks the wallet), which takes the
/// wallet's and refuses a stranger's, nothing sent.
async fn a_safe_deposits_through_permit2(kind: Db) {
    let (app, _proxy, w) = crate::channels_1271::safe_channel_app(kind).await;
    let devnet = &app.devnet;
    let ch = Channel::smart_wallet(devnet, w.clone(), PAY_TO, PrivateKeySigner::random());
    let amount = 1_000_000u128;
    devnet
        .approve_permit2_as_contract(w.address, U256::from(amount))
        .await
        .unwrap();

    // Signed in the Safe's format by a stranger: Permit2's ERC-1271 question says no.
    let stranger = PrivateKeySigner::random();
    let mut forged = ch.permit2_deposit_with(devnet, amount, deadline(), |_| {});
    let digest = x402::batch_settlement::permit2_deposit_digest(&forged, devnet.chain_id);
    forged.signature = w.sign_as(&stranger, devnet.chain_id, digest);
    refused_unsent(
        &app,
        &ch,
        &body(devnet, &ch, &forged),
        "invalid_batch_settlement_evm_deposit_simulation_failed",
    )
    .await;

    // The wallet's: valid, settled, the escrow exactly what left the wallet.
    let deposit = body(
        devnet,
        &ch,
        &ch.permit2_deposit_with(devnet, amount, deadline(), |_| {}),
    );
    let verified = app.verify(&deposit).await;
    assert_eq!(verified["isValid"], true, "{verified}");
    let before = devnet.usdc_balance(w.address).await.unwrap();
    let settled = app.settle(&deposit).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(devnet.channel_state(ch.id).await.unwrap().balance, amount);
    assert_eq!(
        devnet.usdc_balance(w.address).await.unwrap(),
        before - U256::from(amount)
    );
}

crate::both_dbs!(a_safe_deposits_through_permit2);
