//! The `batch-settlement` contracts on the devnet, checked on chain through their ABI: a
//! sponsored ERC-3009 deposit, `claimWithSignature`, the `settle` sweep, `refundWithSignature`
//! and the payer's timed withdrawal. Every signature is made here with alloy, from the hashes
//! of `x402::batch_settlement` (themselves checked against the official package's).

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use devnet::batch_settlement::{
    random_b256, sign, Channel, IX402BatchSettlement as C, BATCH_SETTLEMENT,
    ERC3009_DEPOSIT_COLLECTOR,
};
use devnet::{Devnet, DevnetOptions};
use x402::batch_settlement::{refund_digest, voucher_digest};

fn random_address() -> Address {
    PrivateKeySigner::random().address()
}

async fn usdc(devnet: &Devnet, who: Address) -> u128 {
    devnet.usdc_balance(who).await.unwrap().to::<u128>()
}

#[tokio::test]
async fn deposit_claim_settle_refund_and_withdraw_on_chain() {
    let devnet = Devnet::start(DevnetOptions {
        payers: 2,
        batch_settlement: true,
        ..DevnetOptions::default()
    })
    .await
    .expect("devnet");
    let relay = devnet.facilitator_keys[0].clone();
    let ch = Channel::new(&devnet, devnet.payers[0].clone(), random_address());
    let payer_before = usdc(&devnet, ch.payer.address()).await;

    // The contract and we agree on the channel id.
    let on_chain_id = devnet
        .read(
            BATCH_SETTLEMENT,
            C::getChannelIdCall {
                config: ch.config.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(on_chain_id, ch.id);

    // Deposit, sponsored: the relay pays the gas, the payer's USDC moves into escrow.
    devnet
        .send_as(
            &relay,
            BATCH_SETTLEMENT,
            ch.deposit_call(&devnet, 1_000_000),
        )
        .await
        .unwrap();
    let s = devnet.channel_state(ch.id).await.unwrap();
    assert_eq!((s.balance, s.total_claimed), (1_000_000, 0));
    assert_eq!(usdc(&devnet, BATCH_SETTLEMENT).await, 1_000_000);
    assert_eq!(
        usdc(&devnet, ch.payer.address()).await,
        payer_before - 1_000_000
    );
    assert_eq!(usdc(&devnet, ERC3009_DEPOSIT_COLLECTOR).await, 0);

    // The same authorization twice: the token refuses its nonce.
    let again = ch.deposit_call(&devnet, 1);
    let mut replay = again.clone();
    devnet
        .send_as(&relay, BATCH_SETTLEMENT, again)
        .await
        .unwrap();
    replay.amount = 1;
    let r = devnet
        .try_send_as(&relay, BATCH_SETTLEMENT, replay)
        .await
        .unwrap();
    assert!(!r.status(), "an ERC-3009 authorization is used once");
    assert_eq!(
        devnet.channel_state(ch.id).await.unwrap().balance,
        1_000_001
    );

    // A claim batch relayed by anyone, signed by the receiverAuthorizer.
    let claim = ch.claim_call(&devnet, vec![ch.voucher(&devnet, 300, 300)]);
    devnet
        .send_as(&relay, BATCH_SETTLEMENT, claim.clone())
        .await
        .unwrap();
    assert_eq!(
        devnet.channel_state(ch.id).await.unwrap().total_claimed,
        300
    );
    let r = devnet
        .read(
            BATCH_SETTLEMENT,
            C::receiversCall {
                receiver: ch.config.receiver,
                token: devnet.usdc,
            },
        )
        .await
        .unwrap();
    assert_eq!((r.totalClaimed, r.totalSettled), (300, 0));
    // Replayed, it changes nothing.
    devnet
        .send_as(&relay, BATCH_SETTLEMENT, claim)
        .await
        .unwrap();
    assert_eq!(
        devnet.channel_state(ch.id).await.unwrap().total_claimed,
        300
    );

    // Refused: a claim above the voucher's ceiling, a voucher not signed by the payerAuthorizer,
    // a batch not signed by the receiverAuthorizer.
    let over = ch.claim_call(&devnet, vec![ch.voucher(&devnet, 400, 401)]);
    assert!(!devnet
        .try_send_as(&relay, BATCH_SETTLEMENT, over)
        .await
        .unwrap()
        .status());
    let mut forged = ch.voucher(&devnet, 400, 400);
    forged.signature = sign(&ch.payer, voucher_digest(ch.id, 400, devnet.chain_id));
    let forged = ch.claim_call(&devnet, vec![forged]);
    assert!(!devnet
        .try_send_as(&relay, BATCH_SETTLEMENT, forged)
        .await
        .unwrap()
        .status());
    let mut unauthorized = ch.claim_call(&devnet, vec![ch.voucher(&devnet, 400, 400)]);
    unauthorized.authorizerSignature = sign(&relay, random_b256());
    assert!(!devnet
        .try_send_as(&relay, BATCH_SETTLEMENT, unauthorized)
        .await
        .unwrap()
        .status());
    assert_eq!(
        devnet.channel_state(ch.id).await.unwrap().total_claimed,
        300
    );

    // The sweep: exactly what was claimed reaches the receiver, once.
    let settle = C::settleCall {
        receiver: ch.config.receiver,
        token: devnet.usdc,
    };
    devnet
        .send_as(&relay, BATCH_SETTLEMENT, settle.clone())
        .await
        .unwrap();
    assert_eq!(usdc(&devnet, ch.config.receiver).await, 300);
    devnet
        .send_as(&relay, BATCH_SETTLEMENT, settle)
        .await
        .unwrap();
    assert_eq!(usdc(&devnet, ch.config.receiver).await, 300);

    // A cooperative refund signed by the receiverAuthorizer, relayed; its nonce is used once.
    let refund = C::refundWithSignatureCall {
        config: ch.config.clone(),
        amount: 200,
        nonce: U256::ZERO,
        receiverAuthorizerSignature: sign(
            &ch.receiver_authorizer,
            refund_digest(ch.id, U256::ZERO, 200, devnet.chain_id),
        ),
    };
    devnet
        .send_as(&relay, BATCH_SETTLEMENT, refund.clone())
        .await
        .unwrap();
    let s = devnet.channel_state(ch.id).await.unwrap();
    assert_eq!(
        (s.balance, s.refund_nonce),
        (1_000_001 - 200, U256::from(1))
    );
    assert!(!devnet
        .try_send_as(&relay, BATCH_SETTLEMENT, refund)
        .await
        .unwrap()
        .status());
    assert_eq!(
        usdc(&devnet, ch.payer.address()).await,
        payer_before - 1_000_001 + 200
    );

    // The payer's timed withdrawal: not before the delay; the receiver side can still claim
    // meanwhile; after it the payer gets what is unclaimed, capped at the request.
    let initiate = C::initiateWithdrawCall {
        config: ch.config.clone(),
        amount: 999_000,
    };
    devnet
        .send_as(&ch.payer, BATCH_SETTLEMENT, initiate)
        .await
        .unwrap();
    let s = devnet.channel_state(ch.id).await.unwrap();
    assert_eq!(s.withdraw_amount, 999_000);
    assert!(s.withdraw_requested_at > 0);
    let finalize = C::finalizeWithdrawCall {
        config: ch.config.clone(),
    };
    let early = devnet
        .try_send_as(&ch.payer, BATCH_SETTLEMENT, finalize.clone())
        .await
        .unwrap();
    assert!(!early.status(), "the withdrawal delay has not run out");
    let claim = ch.claim_call(&devnet, vec![ch.voucher(&devnet, 1_500, 1_500)]);
    devnet
        .send_as(&relay, BATCH_SETTLEMENT, claim)
        .await
        .unwrap();
    devnet.advance_time(900).await.unwrap();
    let payer_mid = usdc(&devnet, ch.payer.address()).await;
    devnet
        .send_as(&ch.payer, BATCH_SETTLEMENT, finalize)
        .await
        .unwrap();
    let s = devnet.channel_state(ch.id).await.unwrap();
    // Unclaimed was 999_801 - 1_500 = 998_301 < 999_000: the payer gets all of it.
    assert_eq!((s.balance, s.total_claimed), (1_500, 1_500));
    assert_eq!((s.withdraw_amount, s.withdraw_requested_at), (0, 0));
    assert_eq!(usdc(&devnet, ch.payer.address()).await, payer_mid + 998_301);
    // Everything deposited is accounted for: with the payer, or owed to the receiver.
    devnet
        .send_as(
            &relay,
            BATCH_SETTLEMENT,
            C::settleCall {
                receiver: ch.config.receiver,
                token: devnet.usdc,
            },
        )
        .await
        .unwrap();
    assert_eq!(usdc(&devnet, ch.config.receiver).await, 1_500);
    assert_eq!(usdc(&devnet, BATCH_SETTLEMENT).await, 0);
    assert_eq!(
        usdc(&devnet, ch.payer.address()).await,
        payer_before - 1_500
    );
    devnet.stop().await;
}
