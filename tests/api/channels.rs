//! Payment channels (`batch-settlement`) through `/verify` and `/settle`, on anvil with the
//! channel contracts at their canonical addresses and Circle's USDC, on both databases: a
//! deposit settled through the ERC-3009 collector (checked on chain), vouchers verified from
//! the channel state in the database (the highest ceiling wins, a replay is refused, also
//! across a restart and under concurrent verifies), a server's claim settled as one
//! `claimWithSignature`, the spec's reasons, and the channel snapshot in every answer. Payers sign with alloy (`devnet::batch_settlement::Channel`), not
//! with the code under test.

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use devnet::batch_settlement::{Channel, IX402BatchSettlement as C, BATCH_SETTLEMENT};
use devnet::{Devnet, DevnetOptions};
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::helpers::*;

pub(crate) fn options() -> DevnetOptions {
    DevnetOptions {
        batch_settlement: true,
        ..DevnetOptions::default()
    }
}

/// An app on a chain with the channel contracts whose facilitator holds `authorizer` as
/// merchants' delegated `receiverAuthorizer`; `top`: further top-level settings.
pub(crate) async fn delegated_app(kind: Db, authorizer: &PrivateKeySigner, top: Value) -> ChainApp {
    let devnet = Devnet::start(options()).await.unwrap();
    let db = TestDb::create(kind).await;
    let mut build = x402_facilitator::startup::BuildOptions::default();
    build
        .signer_keys
        .insert("base-sepolia".into(), devnet.facilitator_keys[..1].to_vec());
    build.channels_authorizer = Some(authorizer.clone());
    let app = ChainApp::start_app_options(db, &devnet, json!({}), top, build).await;
    ChainApp::with_merchant(app, devnet).await
}

pub(crate) fn requirements(devnet: &Devnet, ch: &Channel, amount: u64) -> Value {
    ch.requirements_json(devnet, amount)
}

pub(crate) fn config(ch: &Channel) -> Value {
    ch.config_json()
}

pub(crate) fn voucher(devnet: &Devnet, ch: &Channel, max: u128) -> Value {
    ch.voucher_json(devnet, max)
}

pub(crate) fn voucher_body(devnet: &Devnet, ch: &Channel, max: u128) -> Value {
    v2_body(
        requirements(devnet, ch, 100),
        ch.voucher_payload(devnet, max),
    )
}

pub(crate) fn deposit_body(devnet: &Devnet, ch: &Channel, amount: u128, max: u128) -> Value {
    v2_body(
        requirements(devnet, ch, 100),
        ch.deposit_payload(devnet, amount, max),
    )
}

pub(crate) fn assert_refused(answer: &Value, reason: &str) {
    assert_eq!(answer["isValid"], false, "{answer}");
    assert_eq!(answer["invalidReason"], reason, "{answer}");
}

pub(crate) fn assert_snapshot(extra: &Value, ch: &Channel, balance: u128, claimed: u128) {
    assert_eq!(extra["channelId"], ch.id.to_string(), "{extra}");
    assert_eq!(extra["balance"], balance.to_string(), "{extra}");
    assert_eq!(extra["totalClaimed"], claimed.to_string(), "{extra}");
    assert_eq!(extra["withdrawRequestedAt"], 0, "{extra}");
    assert_eq!(extra["refundNonce"], "0", "{extra}");
}

async fn a_channel_is_opened_and_paid_by_vouchers(kind: Db) {
    let app = ChainApp::spawn(kind, options()).await;
    let ch = Channel::new(&app.devnet, app.payer(0).clone(), PAY_TO);

    // No channel yet: a voucher is refused, and says why.
    assert_refused(
        &app.verify(&voucher_body(&app.devnet, &ch, 100)).await,
        "invalid_batch_settlement_evm_channel_not_found",
    );

    // A deposit of more than the payer holds is refused at verify (rule 8), nothing sent.
    let payer_holds = app.devnet.usdc_balance(ch.payer.address()).await.unwrap();
    let too_much = deposit_body(&app.devnet, &ch, payer_holds.to::<u128>() + 1, 100);
    assert_refused(
        &app.verify(&too_much).await,
        "invalid_batch_settlement_evm_insufficient_balance",
    );

    // The deposit, verified (its amount counts toward the balance) then settled: the payer's
    // USDC is in escrow on chain, the answer carries the new state.
    let deposit = deposit_body(&app.devnet, &ch, 1_000_000, 100);
    let verified = app.verify(&deposit).await;
    assert_eq!(verified["isValid"], true, "{verified}");
    assert_snapshot(&verified["extra"], &ch, 0, 0);
    let payer_before = app.devnet.usdc_balance(ch.payer.address()).await.unwrap();
    let settled = app.settle(&deposit).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["amount"], "1000000");
    assert_eq!(settled["payer"], ch.payer.address().to_checksum(None));
    assert_snapshot(&settled["extra"]["channelState"], &ch, 1_000_000, 0);
    let tx: B256 = settled["transaction"].as_str().unwrap().parse().unwrap();
    let receipt = app.devnet.receipt(tx).await.unwrap().expect("mined");
    assert!(receipt.status());
    assert_eq!(receipt.to, Some(BATCH_SETTLEMENT));
    let on_chain = app.devnet.channel_state(ch.id).await.unwrap();
    assert_eq!((on_chain.balance, on_chain.total_claimed), (1_000_000, 0));
    assert_eq!(
        app.devnet.usdc_balance(ch.payer.address()).await.unwrap(),
        payer_before - alloy::primitives::U256::from(1_000_000)
    );
    // One deposit, one success.
    let again = app.settle(&deposit).await;
    assert_eq!(again["success"], false, "{again}");

    // The deposit's voucher (100) is accepted: a voucher at or below it is a replay.
    assert_refused(
        &app.verify(&voucher_body(&app.devnet, &ch, 100)).await,
        "invalid_batch_settlement_evm_cumulative_below_claimed",
    );
    // Higher vouchers are accepted, each once.
    for max in [200u128, 300] {
        let answer = app.verify(&voucher_body(&app.devnet, &ch, max)).await;
        assert_eq!(answer["isValid"], true, "{answer}");
        assert_eq!(answer["payer"], ch.payer.address().to_checksum(None));
        assert_snapshot(&answer["extra"], &ch, 1_000_000, 0);
    }
    for max in [300u128, 250] {
        let answer = app.verify(&voucher_body(&app.devnet, &ch, max)).await;
        assert_refused(
            &answer,
            "invalid_batch_settlement_evm_cumulative_below_claimed",
        );
        assert_snapshot(&answer["extra"], &ch, 1_000_000, 0);
    }

    // Beyond the balance; signed by someone else; a config that does not hash to the id;
    // requirements naming another receiverAuthorizer or withdraw delay.
    assert_refused(
        &app.verify(&voucher_body(&app.devnet, &ch, 1_000_001)).await,
        "invalid_batch_settlement_evm_cumulative_exceeds_balance",
    );
    let mut forged = voucher_body(&app.devnet, &ch, 400);
    let other = Channel::new(&app.devnet, PrivateKeySigner::random(), PAY_TO);
    forged["paymentPayload"]["payload"]["voucher"]["signature"] =
        json!(other.voucher_signature(&app.devnet, 400).to_string());
    assert_refused(
        &app.verify(&forged).await,
        "invalid_batch_settlement_evm_voucher_signature",
    );
    let mut mismatched = voucher_body(&app.devnet, &ch, 400);
    mismatched["paymentPayload"]["payload"]["channelConfig"]["salt"] =
        json!(B256::repeat_byte(1).to_string());
    assert_refused(
        &app.verify(&mismatched).await,
        "invalid_batch_settlement_evm_channel_id_mismatch",
    );
    let mut other_authorizer = voucher_body(&app.devnet, &ch, 400);
    for side in ["paymentRequirements", "paymentPayload"] {
        let reqs = if side == "paymentPayload" {
            &mut other_authorizer[side]["accepted"]
        } else {
            &mut other_authorizer[side]
        };
        reqs["extra"]["receiverAuthorizer"] = json!(Address::repeat_byte(9).to_checksum(None));
    }
    assert_refused(
        &app.verify(&other_authorizer).await,
        "invalid_batch_settlement_evm_receiver_authorizer_mismatch",
    );
    // A voucher is never settled: only verified.
    let settled = app.settle(&voucher_body(&app.devnet, &ch, 400)).await;
    assert_eq!(settled["success"], false, "{settled}");
    assert_eq!(
        settled["errorReason"],
        "invalid_batch_settlement_evm_payload_type"
    );

    // Concurrent verifies of one new voucher: exactly one is accepted.
    let bodies: Vec<Value> = (0..8)
        .map(|_| voucher_body(&app.devnet, &ch, 400))
        .collect();
    let answers = futures::future::join_all(bodies.iter().map(|b| app.verify(b))).await;
    let accepted = answers.iter().filter(|a| a["isValid"] == true).count();
    assert_eq!(accepted, 1, "{answers:?}");
    for a in answers.iter().filter(|a| a["isValid"] != true) {
        assert_eq!(
            a["invalidReason"],
            "invalid_batch_settlement_evm_cumulative_below_claimed"
        );
    }

    // A restart loses nothing: the accepted voucher is in the database.
    let ChainApp {
        app: server,
        devnet,
        client_id,
        client_token,
    } = app;
    let db = server.stop().await;
    let signers = devnet.facilitator_keys[..1].to_vec();
    let server = ChainApp::start_app(db, &devnet, signers).await;
    let app = ChainApp {
        app: server,
        devnet,
        client_id,
        client_token,
    };
    assert_refused(
        &app.verify(&voucher_body(&app.devnet, &ch, 400)).await,
        "invalid_batch_settlement_evm_cumulative_below_claimed",
    );
    let answer = app.verify(&voucher_body(&app.devnet, &ch, 500)).await;
    assert_eq!(answer["isValid"], true, "{answer}");

    // What was accepted is claimed as stored: the server's claim payload, built from the
    // voucher's signature read back from the database and signed by the receiverAuthorizer,
    // settled by the facilitator as one claimWithSignature.
    let conn = sea_orm::Database::connect(&app.app.db.url).await.unwrap();
    let row = {
        use sea_orm::EntityTrait;
        entities::channel::Entity::find_by_id(format!("{:#x}", ch.id))
            .one(&conn)
            .await
            .unwrap()
            .expect("the channel's row")
    };
    assert_eq!(row.accepted.parse::<u128>().unwrap(), 500);
    let signature = row.accepted_signature.unwrap();
    let mut row_claim = ch.voucher(&app.devnet, 500, 500);
    row_claim.signature = signature.parse().unwrap();
    let call: C::claimWithSignatureCall = ch.claim_call(&app.devnet, vec![row_claim]);
    let claim = v2_body(
        requirements(&app.devnet, &ch, 100),
        json!({
            "type": "claim",
            "claims": [{
                "voucher": { "channel": config(&ch), "maxClaimableAmount": "500" },
                "signature": signature,
                "totalClaimed": "500",
            }],
            "claimAuthorizerSignature": call.authorizerSignature.to_string(),
        }),
    );
    // Without the authorizer's signature: this facilitator signs for no receiverAuthorizer.
    let mut unsigned = claim.clone();
    unsigned["paymentPayload"]["payload"]
        .as_object_mut()
        .unwrap()
        .remove("claimAuthorizerSignature");
    let refused = app.settle(&unsigned).await;
    assert_eq!(
        refused["errorReason"], "invalid_batch_settlement_evm_authorizer_not_configured",
        "{refused}"
    );
    // Signed by someone else: the simulation says no, nothing is sent.
    let mut forged = claim.clone();
    forged["paymentPayload"]["payload"]["claimAuthorizerSignature"] =
        json!(devnet::batch_settlement::sign(&PrivateKeySigner::random(), ch.id).to_string());
    let refused = app.settle(&forged).await;
    assert_eq!(
        refused["errorReason"], "invalid_batch_settlement_evm_claim_simulation_failed",
        "{refused}"
    );
    assert_eq!(
        app.devnet.channel_state(ch.id).await.unwrap().total_claimed,
        0
    );
    let settled = app.settle(&claim).await;
    assert_eq!(settled["success"], true, "{settled}");
    // A claim only updates accounting: its answer's `amount` is empty, as the spec has it.
    assert_eq!(settled["amount"], "", "{settled}");
    let tx: B256 = settled["transaction"].as_str().unwrap().parse().unwrap();
    assert!(app
        .devnet
        .receipt(tx)
        .await
        .unwrap()
        .expect("mined")
        .status());
    assert_eq!(
        app.devnet.channel_state(ch.id).await.unwrap().total_claimed,
        500
    );
    // The database follows the claim: the next answer's snapshot says it.
    let answer = app.verify(&voucher_body(&app.devnet, &ch, 600)).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    assert_snapshot(&answer["extra"], &ch, 1_000_000, 500);
}

crate::both_dbs!(a_channel_is_opened_and_paid_by_vouchers);
