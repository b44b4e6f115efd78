//! Payment channels (`batch-settlement`) past the voucher, on anvil, on both databases: a
//! deposit answered `settlement_pending` holds its voucher from its ledger claim on (a copy is
//! a replay, a higher voucher passes, a second deposit waits), and a deposit that finally fails
//! takes its voucher with it; the sweep to the receiver (`settle`) and the cooperative refund
//! (`refundWithSignature`, alone and after the claims it carries) move exactly what the chain
//! says, once per sweep and once per refund nonce, with nothing sent for one that would move
//! nothing; and the facilitator as a merchant's delegated `receiverAuthorizer` (advertised in
//! `/supported`, signing claims and refunds of the channels naming it, and a refund only once
//! every voucher it accepted is claimed).

use std::time::{Duration, Instant};

use alloy::primitives::{keccak256, Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use devnet::batch_settlement::{Channel, IX402BatchSettlement as C};
use devnet::Devnet;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::channels::{
    assert_refused, assert_snapshot, config, delegated_app, deposit_body, options, requirements,
    voucher, voucher_body,
};
use crate::helpers::*;

/// An app answering `settlement_pending` after 2 s (no replacement) on a chain with the
/// channel contracts.
async fn pending_app(kind: Db) -> ChainApp {
    let devnet = Devnet::start(options()).await.unwrap();
    let db = TestDb::create(kind).await;
    let network = json!({ "receipt_timeout_secs": 2, "replace_after_secs": 600 });
    let signers = devnet.facilitator_keys[..1].to_vec();
    let app = ChainApp::start_app_with(db, &devnet, signers, network).await;
    ChainApp::with_merchant(app, devnet).await
}

/// The channel's row as stored: (accepted, deposit_row).
async fn stored(app: &ChainApp, ch: &Channel) -> (u128, Option<i64>) {
    let conn = Database::connect(&app.app.db.url).await.unwrap();
    let row = entities::channel::Entity::find_by_id(format!("{:#x}", ch.id))
        .one(&conn)
        .await
        .unwrap()
        .expect("the channel's row");
    conn.close().await.unwrap();
    (row.accepted.parse().unwrap(), row.deposit_row)
}

/// The ledger row of `tx` once its status is `want` (waiting up to 20 s on the background
/// watch, without asking the facilitator anything).
async fn row_reaches(app: &ChainApp, tx: &str, want: &str) {
    let conn = Database::connect(&app.app.db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = entities::settlement::Entity::find()
            .filter(entities::settlement::Column::TxHash.eq(tx))
            .one(&conn)
            .await
            .unwrap()
            .expect("the deposit's row");
        if row.status == want {
            break;
        }
        assert!(Instant::now() < deadline, "row {tx} stayed {}", row.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.close().await.unwrap();
}

/// Empty the payer's USDC (FiatToken keeps balances in the mapping at slot 9).
async fn drain(devnet: &Devnet, who: Address) {
    let slot = keccak256((who, U256::from(9)).abi_encode());
    devnet
        .provider()
        .raw_request::<_, bool>("anvil_setStorageAt".into(), (devnet.usdc, slot, B256::ZERO))
        .await
        .unwrap();
    assert_eq!(devnet.usdc_balance(who).await.unwrap(), U256::ZERO);
}

async fn a_pending_deposit_holds_its_voucher(kind: Db) {
    let app = pending_app(kind).await;
    let ch = Channel::new(&app.devnet, app.payer(0).clone(), PAY_TO);
    let opened = app
        .settle(&deposit_body(&app.devnet, &ch, 1_000_000, 100))
        .await;
    assert_eq!(opened["success"], true, "{opened}");

    // A top-up whose receipt does not come in time: its voucher (200) is accepted with its
    // ledger claim, before it is sent.
    app.devnet.set_automine(false).await.unwrap();
    let top_up = deposit_body(&app.devnet, &ch, 500_000, 200);
    let pending = app.settle(&top_up).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    let tx = pending["transaction"].as_str().unwrap().to_owned();
    let (accepted, row) = stored(&app, &ch).await;
    assert_eq!(accepted, 200);
    assert!(row.is_some(), "the voucher waits on the deposit's row");
    // Its voucher again, as a voucher: a replay. The deposit again: the same payment.
    assert_refused(
        &app.verify(&voucher_body(&app.devnet, &ch, 200)).await,
        "invalid_batch_settlement_evm_cumulative_below_claimed",
    );
    let copy = app.settle(&top_up).await;
    assert_eq!(copy["errorReason"], "invalid_exact_evm_nonce_already_used");

    // Mined: the voucher stays, the balance is the chain's, a higher voucher passes.
    app.devnet.mine().await.unwrap();
    row_reaches(&app, &tx, "confirmed").await;
    let answer = app.verify(&voucher_body(&app.devnet, &ch, 300)).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    assert_snapshot(&answer["extra"], &ch, 1_500_000, 0);
    assert_eq!(stored(&app, &ch).await, (300, None));

    // A top-up whose voucher (1 600 000) only the deposit covers, pending...
    let doomed = deposit_body(&app.devnet, &ch, 2_000_000, 1_600_000);
    let pending = app.settle(&doomed).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    let tx = pending["transaction"].as_str().unwrap().to_owned();
    assert_eq!(stored(&app, &ch).await.0, 1_600_000);
    // (As a voucher it is refused first for the balance, which has no deposit yet.)
    assert_refused(
        &app.verify(&voucher_body(&app.devnet, &ch, 1_600_000)).await,
        "invalid_batch_settlement_evm_cumulative_exceeds_balance",
    );
    // ...and another deposit meanwhile waits for it: nothing is sent.
    let signer = app.devnet.facilitator_keys[0].address();
    let nonce = app
        .devnet
        .provider()
        .get_transaction_count(signer)
        .pending();
    let sent_before = nonce.await.unwrap();
    let busy = app
        .settle(&deposit_body(&app.devnet, &ch, 2_000_000, 1_700_000))
        .await;
    assert_eq!(
        busy["errorReason"], "invalid_batch_settlement_evm_channel_busy",
        "{busy}"
    );
    let nonce = app
        .devnet
        .provider()
        .get_transaction_count(signer)
        .pending();
    assert_eq!(nonce.await.unwrap(), sent_before);

    // ...then reverts (the payer's funds are gone when it is mined): its voucher goes with it,
    // the channel is back at the voucher before (300), and 1 600 000 is more than it holds.
    drain(&app.devnet, ch.payer.address()).await;
    app.devnet.mine().await.unwrap();
    row_reaches(&app, &tx, "failed").await;
    assert_eq!(
        app.devnet.channel_state(ch.id).await.unwrap().balance,
        1_500_000
    );
    let answer = app.verify(&voucher_body(&app.devnet, &ch, 1_600_000)).await;
    assert_refused(
        &answer,
        "invalid_batch_settlement_evm_cumulative_exceeds_balance",
    );
    assert_snapshot(&answer["extra"], &ch, 1_500_000, 0);
    assert_eq!(stored(&app, &ch).await, (300, None));
    let answer = app.verify(&voucher_body(&app.devnet, &ch, 400)).await;
    assert_eq!(answer["isValid"], true, "{answer}");
}

crate::both_dbs!(a_pending_deposit_holds_its_voucher);

/// The server's claim of `ch` up to `max`, signed by its receiverAuthorizer.
pub(crate) fn claim_body(devnet: &Devnet, ch: &Channel, max: u128) -> Value {
    v2_body(
        requirements(devnet, ch, 100),
        devnet::channel_payloads::claim_payload(devnet, &[(ch, max)]),
    )
}

pub(crate) fn claim_row(devnet: &Devnet, ch: &Channel, max: u128) -> Value {
    ch.claim_row_json(devnet, max)
}

pub(crate) fn sweep_body(devnet: &Devnet, ch: &Channel) -> Value {
    v2_body(
        requirements(devnet, ch, 100),
        devnet::channel_payloads::sweep_payload(PAY_TO, devnet.usdc),
    )
}

/// A completed refund of `amount` at `nonce`, its zero-charge voucher at `charged`, carrying
/// the claim of `claim` (if any) before it.
pub(crate) fn refund_body(
    devnet: &Devnet,
    ch: &Channel,
    charged: u128,
    amount: u128,
    nonce: u64,
    claim: Option<u128>,
) -> Value {
    let mut payload = json!({
        "type": "refund",
        "channelConfig": config(ch),
        "voucher": voucher(devnet, ch, charged),
        "amount": amount.to_string(),
        "refundNonce": nonce.to_string(),
        "claims": [],
        "refundAuthorizerSignature": ch.refund_signature(devnet, nonce, amount).to_string(),
    });
    if let Some(max) = claim {
        let call = ch.claim_call(devnet, vec![ch.voucher(devnet, max, max)]);
        payload["claims"] = json!([claim_row(devnet, ch, max)]);
        payload["claimAuthorizerSignature"] = json!(call.authorizerSignature.to_string());
    }
    v2_body(requirements(devnet, ch, 100), payload)
}

async fn sweeps_and_refunds_move_exact_amounts(kind: Db) {
    let app = ChainApp::spawn(kind, options()).await;
    let ch = Channel::new(&app.devnet, app.payer(0).clone(), PAY_TO);
    let opened = app
        .settle(&deposit_body(&app.devnet, &ch, 1_000_000, 100))
        .await;
    assert_eq!(opened["success"], true, "{opened}");
    let signer = app.devnet.facilitator_keys[0].address();
    let sent = || async { app.devnet.nonce_of(signer).await.unwrap() };

    // Nothing claimed yet: nothing to sweep, nothing sent.
    let before = sent().await;
    let nothing = app.settle(&sweep_body(&app.devnet, &ch)).await;
    assert_refused_settle(&nothing, "invalid_batch_settlement_evm_nothing_to_settle");
    assert_eq!(sent().await, before);

    // Claim 500, sweep: the receiver gets exactly 500; the same sweep again is refused (a
    // copy of a sweep of that state), then there is nothing left to sweep.
    let claimed = app.settle(&claim_body(&app.devnet, &ch, 500)).await;
    assert_eq!(claimed["success"], true, "{claimed}");
    let receiver_before = app.balance(PAY_TO).await;
    let sweeps = [sweep_body(&app.devnet, &ch), sweep_body(&app.devnet, &ch)];
    let answers = futures::future::join_all(sweeps.iter().map(|b| app.settle(b))).await;
    let swept: Vec<&Value> = answers.iter().filter(|a| a["success"] == true).collect();
    assert_eq!(swept.len(), 1, "{answers:?}");
    assert_eq!(swept[0]["amount"], "500");
    assert_eq!(app.balance(PAY_TO).await - receiver_before, U256::from(500));
    let before = sent().await;
    let nothing = app.settle(&sweep_body(&app.devnet, &ch)).await;
    assert_refused_settle(&nothing, "invalid_batch_settlement_evm_nothing_to_settle");
    assert_eq!(sent().await, before);

    // A later claim makes a later sweep: 200 more, exactly.
    let answer = app.verify(&voucher_body(&app.devnet, &ch, 700)).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    let claimed = app.settle(&claim_body(&app.devnet, &ch, 700)).await;
    assert_eq!(claimed["success"], true, "{claimed}");
    let later = app.settle(&sweep_body(&app.devnet, &ch)).await;
    assert_eq!(later["success"], true, "{later}");
    assert_eq!(later["amount"], "200");
    assert_eq!(app.balance(PAY_TO).await - receiver_before, U256::from(700));
    // A sweep for someone else's receiver, or in another token, is not this payment's.
    let mut other = sweep_body(&app.devnet, &ch);
    other["paymentPayload"]["payload"]["receiver"] =
        json!(Address::repeat_byte(7).to_checksum(None));
    let refused = app.settle(&other).await;
    assert_refused_settle(&refused, "invalid_batch_settlement_evm_receiver_mismatch");

    // A refund of 10 000 at nonce 0: the payer gets exactly that back; the answer carries the
    // new state. The same refund again is the same payment; a stale nonce is refused unsent.
    let payer_before = app.balance(ch.payer.address()).await;
    let refund = refund_body(&app.devnet, &ch, 700, 10_000, 0, None);
    let refunded = app.settle(&refund).await;
    assert_eq!(refunded["success"], true, "{refunded}");
    assert_eq!(refunded["amount"], "10000");
    assert_eq!(refunded["payer"], ch.payer.address().to_checksum(None));
    let state = &refunded["extra"]["channelState"];
    assert_eq!(state["balance"], "990000", "{state}");
    assert_eq!(state["totalClaimed"], "700");
    assert_eq!(state["refundNonce"], "1");
    assert_eq!(
        app.balance(ch.payer.address()).await - payer_before,
        U256::from(10_000)
    );
    let again = app.settle(&refund).await;
    assert_eq!(again["errorReason"], "invalid_exact_evm_nonce_already_used");
    let before = sent().await;
    let stale = app
        .settle(&refund_body(&app.devnet, &ch, 700, 20_000, 0, None))
        .await;
    assert_refused_settle(
        &stale,
        "invalid_batch_settlement_evm_refund_simulation_failed",
    );
    assert_eq!(sent().await, before);

    // The full refund after the last voucher's claim, in one transaction: the claim raises
    // totalClaimed to 900, the payer gets the rest of the escrow, the receiver's claim stands.
    let answer = app.verify(&voucher_body(&app.devnet, &ch, 900)).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    let rest = 990_000 - 900;
    let payer_before = app.balance(ch.payer.address()).await;
    let full = app
        .settle(&refund_body(&app.devnet, &ch, 900, rest, 1, Some(900)))
        .await;
    assert_eq!(full["success"], true, "{full}");
    assert_eq!(full["amount"], rest.to_string());
    assert_eq!(
        app.balance(ch.payer.address()).await - payer_before,
        U256::from(rest)
    );
    let on_chain = app.devnet.channel_state(ch.id).await.unwrap();
    assert_eq!((on_chain.balance, on_chain.total_claimed), (900, 900));
    assert_eq!(on_chain.refund_nonce, U256::from(2));
    let state = &full["extra"]["channelState"];
    assert_eq!(state["balance"], "900", "{state}");
    assert_eq!(state["totalClaimed"], "900");
    // Nothing unclaimed is left: a further refund is refused, nothing sent.
    let before = sent().await;
    let empty = app
        .settle(&refund_body(&app.devnet, &ch, 900, 1, 2, None))
        .await;
    assert_refused_settle(&empty, "invalid_batch_settlement_evm_refund_no_balance");
    assert_eq!(sent().await, before);
    // The claim's 200 is the receiver's to sweep.
    let last = app.settle(&sweep_body(&app.devnet, &ch)).await;
    assert_eq!(last["amount"], "200", "{last}");
    assert_eq!(app.balance(PAY_TO).await - receiver_before, U256::from(900));
    let (claimed, settled) = app
        .devnet
        .read(
            devnet::batch_settlement::BATCH_SETTLEMENT,
            C::receiversCall {
                receiver: PAY_TO,
                token: app.devnet.usdc,
            },
        )
        .await
        .map(|r| (r.totalClaimed, r.totalSettled))
        .unwrap();
    assert_eq!((claimed, settled), (900, 900));
}

crate::both_dbs!(sweeps_and_refunds_move_exact_amounts);

fn assert_refused_settle(answer: &Value, reason: &str) {
    assert_eq!(answer["success"], false, "{answer}");
    assert_eq!(answer["errorReason"], reason, "{answer}");
    assert_eq!(answer["transaction"], "", "{answer}");
}

/// A merchant's claim or refund left for the facilitator to sign: the payload without its
/// authorizer signatures.
fn unsigned(mut body: Value) -> Value {
    let payload = body["paymentPayload"]["payload"].as_object_mut().unwrap();
    payload.remove("claimAuthorizerSignature");
    payload.remove("refundAuthorizerSignature");
    body
}

async fn the_facilitator_signs_for_delegating_merchants(kind: Db) {
    let authorizer = PrivateKeySigner::random();
    let app = delegated_app(kind, &authorizer, json!({})).await;

    // Advertised on every batch-settlement kind, as the reference facilitator does.
    let res = app
        .app
        .get_as_client("/api/v1/supported", &app.client_id, &app.client_token)
        .await;
    let supported: Value = res.json().await.unwrap();
    let kinds: Vec<&Value> = supported["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["scheme"] == "batch-settlement")
        .collect();
    assert!(!kinds.is_empty(), "{supported}");
    for k in kinds {
        assert_eq!(
            k["extra"]["receiverAuthorizer"],
            authorizer.address().to_checksum(None)
        );
    }

    // A channel delegated to the facilitator: an unsigned claim is signed here and mined.
    let ch = Channel::delegated(&app.devnet, app.payer(0).clone(), PAY_TO, authorizer);
    let opened = app
        .settle(&deposit_body(&app.devnet, &ch, 1_000_000, 100))
        .await;
    assert_eq!(opened["success"], true, "{opened}");
    let answer = app.verify(&voucher_body(&app.devnet, &ch, 300)).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    let claimed = app
        .settle(&unsigned(claim_body(&app.devnet, &ch, 300)))
        .await;
    assert_eq!(claimed["success"], true, "{claimed}");
    let on_chain = app.devnet.channel_state(ch.id).await.unwrap();
    assert_eq!(on_chain.total_claimed, 300);

    // A channel whose merchant kept its own authorizer: the facilitator signs nothing for it.
    let own = Channel::new(&app.devnet, app.payer(1).clone(), PAY_TO);
    let opened = app
        .settle(&deposit_body(&app.devnet, &own, 1_000_000, 100))
        .await;
    assert_eq!(opened["success"], true, "{opened}");
    let signer = app.devnet.facilitator_keys[0].address();
    let sent = || async { app.devnet.nonce_of(signer).await.unwrap() };
    let before = sent().await;
    let refused = app
        .settle(&unsigned(claim_body(&app.devnet, &own, 100)))
        .await;
    assert_refused_settle(
        &refused,
        "invalid_batch_settlement_evm_authorizer_address_mismatch",
    );
    let refused = app
        .settle(&unsigned(refund_body(&app.devnet, &own, 100, 500, 0, None)))
        .await;
    assert_refused_settle(
        &refused,
        "invalid_batch_settlement_evm_authorizer_address_mismatch",
    );

    // A refund it would sign must first claim every voucher it accepted (600 here): one that
    // claims less would hand the merchant's escrow back to the payer. Nothing is sent.
    let answer = app.verify(&voucher_body(&app.devnet, &ch, 600)).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    let short = unsigned(refund_body(&app.devnet, &ch, 600, 5_000, 0, Some(500)));
    assert_refused_settle(
        &app.settle(&short).await,
        "invalid_batch_settlement_evm_refund_payload",
    );
    let none = unsigned(refund_body(&app.devnet, &ch, 600, 5_000, 0, None));
    assert_refused_settle(
        &app.settle(&none).await,
        "invalid_batch_settlement_evm_refund_payload",
    );
    assert_eq!(sent().await, before);

    // Claiming the accepted 600 with it: signed here (claim and refund), the payer gets the
    // 5 000 back exactly, the merchant's 600 are claimed and then swept (600 in all: the other
    // channel claimed nothing).
    let payer_before = app.balance(ch.payer.address()).await;
    let receiver_before = app.balance(PAY_TO).await;
    let refund = unsigned(refund_body(&app.devnet, &ch, 600, 5_000, 0, Some(600)));
    let refunded = app.settle(&refund).await;
    assert_eq!(refunded["success"], true, "{refunded}");
    assert_eq!(refunded["amount"], "5000");
    assert_eq!(
        app.balance(ch.payer.address()).await - payer_before,
        U256::from(5_000)
    );
    let on_chain = app.devnet.channel_state(ch.id).await.unwrap();
    assert_eq!((on_chain.balance, on_chain.total_claimed), (995_000, 600));
    let swept = app.settle(&sweep_body(&app.devnet, &ch)).await;
    assert_eq!(swept["amount"], "600", "{swept}");
    assert_eq!(app.balance(PAY_TO).await - receiver_before, U256::from(600));
}

crate::both_dbs!(the_facilitator_signs_for_delegating_merchants);
