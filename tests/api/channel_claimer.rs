//! The managed claimer of payment channels, on anvil with the channel contracts, on both
//! databases: a facilitator holding a delegated `receiverAuthorizer` key, its claimer passing
//! every second. Payers whose channels name that key start withdrawals after vouchers were
//! accepted at `/verify`: each channel's highest accepted voucher is claimed on chain before
//! `withdrawRequestedAt + withdrawDelay` (chain time), by exactly one transaction each; nothing
//! is claimed for a channel without a withdrawal pending (the claim-everything pass is an hour
//! away), nor ever for a channel whose authorizer is not ours, though its payer withdraws too.
//! The contract's least `withdrawDelay` is 900 s: the claim is judged against chain time, not
//! waited for.

use std::time::{Duration, Instant};

use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use devnet::batch_settlement::{Channel, IX402BatchSettlement as C, BATCH_SETTLEMENT};
use devnet::Devnet;
use serde_json::json;

use crate::chain_helpers::*;
use crate::channels::{delegated_app, deposit_body, voucher_body};
use crate::helpers::*;

/// How long a claimer alone on its database may take to claim a withdrawing channel.
const CLAIM_WITHIN: Duration = Duration::from_secs(30);

/// A channel opened with a deposit of 1 000 000 (its voucher 100), then vouchers up to 500
/// accepted at `/verify`.
async fn open_and_pay(app: &ChainApp, ch: &Channel) {
    let opened = app
        .settle(&deposit_body(&app.devnet, ch, 1_000_000, 100))
        .await;
    assert_eq!(opened["success"], true, "{opened}");
    for max in [200, 300, 400, 500] {
        let answer = app.verify(&voucher_body(&app.devnet, ch, max)).await;
        assert_eq!(answer["isValid"], true, "{answer}");
    }
}

/// The payer asks for its whole balance back; the withdrawal's deadline (chain time).
pub(crate) async fn withdraw(devnet: &Devnet, ch: &Channel) -> u64 {
    let call = C::initiateWithdrawCall {
        config: ch.config.clone(),
        amount: 1_000_000,
    };
    devnet
        .send_as(&ch.payer, BATCH_SETTLEMENT, call)
        .await
        .unwrap();
    let state = devnet.channel_state(ch.id).await.unwrap();
    assert_ne!(state.withdraw_requested_at, 0);
    state.withdraw_requested_at + ch.config.withdrawDelay.to::<u64>()
}

/// Chain time now.
async fn chain_time(devnet: &Devnet) -> u64 {
    let block = devnet
        .provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap();
    block.header.timestamp
}

/// Poll (bounded by `within`) until `ch` has `amount` claimed on chain; then it must be before
/// `deadline` (chain time).
pub(crate) async fn claimed_before(
    devnet: &Devnet,
    ch: &Channel,
    amount: u128,
    deadline: u64,
    within: Duration,
) {
    let start = Instant::now();
    loop {
        let state = devnet.channel_state(ch.id).await.unwrap();
        if state.total_claimed == amount {
            break;
        }
        assert_eq!(state.total_claimed, 0, "claimed only in part");
        assert!(
            start.elapsed() < within,
            "the withdrawing channel was not claimed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        chain_time(devnet).await < deadline,
        "claimed after the delay"
    );
}

async fn a_withdrawal_is_claimed_ahead_of(kind: Db) {
    let authorizer = PrivateKeySigner::random();
    let top = json!({ "settlement": { "channels": true, "channels_claim_interval_secs": 1 } });
    let app = delegated_app(kind, &authorizer, top).await;

    let ours = Channel::delegated(
        &app.devnet,
        app.payer(0).clone(),
        PAY_TO,
        authorizer.clone(),
    );
    let later = Channel::delegated(&app.devnet, app.payer(2).clone(), PAY_TO, authorizer);
    let theirs = Channel::new(&app.devnet, app.payer(1).clone(), PAY_TO);
    for ch in [&ours, &later, &theirs] {
        open_and_pay(&app, ch).await;
    }
    let signer = app.devnet.facilitator_keys[0].address();
    let before = app.devnet.nonce_of(signer).await.unwrap();

    // Two payers withdraw, one of them on a channel not delegated to us.
    let deadline = withdraw(&app.devnet, &ours).await;
    withdraw(&app.devnet, &theirs).await;
    claimed_before(&app.devnet, &ours, 500, deadline, CLAIM_WITHIN).await;

    // Later the third payer withdraws: claimed in its turn (the passes in between sent nothing).
    let deadline = withdraw(&app.devnet, &later).await;
    claimed_before(&app.devnet, &later, 500, deadline, CLAIM_WITHIN).await;

    // One claim transaction each, none for the channel whose authorizer is not ours.
    assert_eq!(app.devnet.nonce_of(signer).await.unwrap() - before, 2);
    assert_eq!(
        app.devnet
            .channel_state(theirs.id)
            .await
            .unwrap()
            .total_claimed,
        0
    );
    assert_eq!(
        app.devnet
            .channel_state(ours.id)
            .await
            .unwrap()
            .total_claimed,
        500
    );
}

crate::both_dbs!(a_withdrawal_is_claimed_ahead_of);
