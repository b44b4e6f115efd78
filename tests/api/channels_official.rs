//! Payment channels (`batch-settlement`) with the official clients, on anvil with the channel
//! contracts at their canonical addresses, on both databases: the `@x402/fetch` + `@x402/evm`
//! batch-settlement buyer pays an `@x402/express` resource server using the reference's
//! batch-settlement server package, whose facilitator is this app (`tools/e2e/channels.mjs`).
//! One deposit, 100 paid requests on one channel, then the server's channel manager claims and
//! sweeps through us: the receiver's USDC rises by exactly the sum of the 100 prices, and a
//! voucher already paid with is refused when sent again (to the resource server and to our
//! `/verify`). Then the buyer's cooperative refund of what it did not spend, completed by the
//! server and settled by us: the payer paid exactly the sum, and the chain's channel says what
//! was claimed. With the facilitator as the merchant's delegated `receiverAuthorizer`
//! (advertised in `/supported`) and with the merchant signing its own claims and refunds; with
//! every voucher verified by us and with the server verifying them itself (the reference's
//! default).

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use devnet::batch_settlement::BATCH_SETTLEMENT;
use devnet::Devnet;
use sea_orm::{Database, EntityTrait};
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::channels::options;
use crate::helpers::*;
use crate::replay::{e2e_state, node, write_state};

/// The price of `tools/e2e/common.mjs` (0.01 USDC) and the deposit of `tools/e2e/channels.mjs`.
const PRICE: u128 = 10_000;
const DEPOSIT: u128 = 1_500_000;
const REQUESTS: u128 = 100;

/// A mined, successful transaction of the answer field `tx`, sent to the channel contract.
async fn mined_to_contract(app: &ChainApp, tx: &Value) {
    let hash: B256 = tx.as_str().expect("a transaction hash").parse().unwrap();
    let receipt = app.devnet.receipt(hash).await.unwrap().expect("mined");
    assert!(receipt.status(), "{hash}");
    assert_eq!(receipt.to, Some(BATCH_SETTLEMENT));
}

/// The highest voucher this app accepted on channel `id`.
async fn accepted(app: &ChainApp, id: &str) -> u128 {
    let conn = Database::connect(&app.app.db.url).await.unwrap();
    let row = entities::channel::Entity::find_by_id(id.to_lowercase())
        .one(&conn)
        .await
        .unwrap()
        .expect("the channel's row");
    conn.close().await.unwrap();
    row.accepted.parse().unwrap()
}

async fn official_buyer_pays_through_the_reference_server(kind: Db) {
    let devnet = Devnet::start(options()).await.unwrap();
    let db = TestDb::create(kind).await;
    let authorizer = PrivateKeySigner::random();
    let mut build = x402_facilitator::startup::BuildOptions::default();
    build
        .signer_keys
        .insert("base-sepolia".into(), devnet.facilitator_keys[..1].to_vec());
    build.channels_authorizer = Some(authorizer);
    let app = ChainApp::start_app_options(db, &devnet, json!({}), json!({}), build).await;
    let app = ChainApp::with_merchant(app, devnet).await;
    let merchant_key = PrivateKeySigner::random();

    // (who signs the claims, who verifies the vouchers, the payer): the facilitator as the
    // delegated authorizer or the merchant itself; every voucher verified by us (the server's
    // mirror never fresh) or, the reference's default, by the server while its mirror is fresh.
    let runs = [
        ("facilitator", "facilitator", 0usize),
        ("merchant", "facilitator", 1),
        ("facilitator", "local", 2),
    ];
    for (mode, verify, payer) in runs {
        // A receiver of its own per run: its balance is what the sweeps paid it.
        let pay_to = PrivateKeySigner::random().address();
        let mut state = e2e_state(&app);
        state["channels"] = json!({
            "payTo": pay_to.to_checksum(None),
            "payer": payer,
            "merchantAuthorizerKey": format!("0x{}", alloy::hex::encode(merchant_key.to_bytes())),
        });
        let file = write_state(&state);
        let path = file.path().to_str().unwrap();
        let payer = app.payer(payer).address();
        let payer_before = app.balance(payer).await;
        let requests = REQUESTS.to_string();

        let result = node("tools/e2e/channels.mjs", &[path, &requests, mode, verify]).await;
        assert_eq!(result["ok"], true, "{mode}, {verify}: {result}");
        assert_eq!(result["requests"], 100, "{result}");
        assert_eq!(
            (result["deposits"].clone(), result["vouchers"].clone()),
            (json!(1), json!(99))
        );
        // What the server asked us: the deposit's verify and every voucher's (or the deposit's
        // alone when the server verifies vouchers itself); four settles: deposit, claim, sweep
        // and refund.
        let verified_here = if verify == "facilitator" { 100 } else { 1 };
        assert_eq!(result["verifyCalls"], verified_here, "{result}");
        assert_eq!(result["settleCalls"], 4, "{result}");

        // The deposit: mined through the contract, its answer the deposited amount and the
        // channel's state; a voucher's answer moves nothing on chain.
        mined_to_contract(&app, &result["depositTransaction"]).await;
        let deposit = &result["depositSettlement"];
        assert_eq!(deposit["amount"], DEPOSIT.to_string(), "{deposit}");
        assert_eq!(
            deposit["extra"]["channelState"]["balance"],
            DEPOSIT.to_string()
        );
        let voucher = &result["voucherSettlement"];
        assert_eq!(voucher["transaction"], "", "{voucher}");
        assert_eq!(voucher["extra"]["chargedAmount"], PRICE.to_string());

        // The claim and the sweep: one transaction each, through us.
        let sum = PRICE * REQUESTS;
        assert_eq!(result["lastMaxClaimable"], sum.to_string());
        assert_eq!(
            result["claimable"],
            json!([{ "maxClaimableAmount": sum.to_string(), "totalClaimed": sum.to_string() }])
        );
        let claims = result["claims"].as_array().unwrap();
        assert_eq!(claims.len(), 1, "{result}");
        assert_eq!(claims[0]["vouchers"], 1);
        mined_to_contract(&app, &claims[0]["transaction"]).await;
        mined_to_contract(&app, &result["settle"]["transaction"]).await;

        // The cooperative refund the buyer asked the server for, settled here: what was not
        // spent goes back, the answer says so and carries the channel's state after it.
        let refund = &result["refund"];
        assert_eq!(refund["success"], true, "{refund}");
        assert_eq!(refund["amount"], (DEPOSIT - sum).to_string(), "{refund}");
        let after = &refund["extra"]["channelState"];
        assert_eq!(after["balance"], sum.to_string(), "{refund}");
        assert_eq!(after["totalClaimed"], sum.to_string(), "{refund}");
        assert_eq!(after["refundNonce"], "1", "{refund}");
        mined_to_contract(&app, &refund["transaction"]).await;
        assert_eq!(result["refunded"], (DEPOSIT - sum).to_string());

        // On chain: the receiver got exactly the sum and the payer paid exactly the sum (the
        // deposit less the refund); the channel holds what was claimed and swept.
        assert_eq!(result["receivedBeforeSweep"], "0");
        assert_eq!(app.balance(pay_to).await, U256::from(sum), "{mode}");
        assert_eq!(payer_before - app.balance(payer).await, U256::from(sum));
        let id: B256 = result["channelId"].as_str().unwrap().parse().unwrap();
        let on_chain = app.devnet.channel_state(id).await.unwrap();
        assert_eq!((on_chain.balance, on_chain.total_claimed), (sum, sum));
        assert_eq!(on_chain.refund_nonce, U256::from(1));

        // The highest voucher accepted here: the last one when every voucher came through our
        // /verify, else the deposit's (the first request's).
        let highest = if verify == "facilitator" { sum } else { PRICE };
        assert_eq!(accepted(&app, &id.to_string()).await, highest);

        // A voucher paid with, sent again: not served, and refused by us as a replay (before
        // the claim only when it came through us; after it, the chain's `totalClaimed` covers
        // it).
        for when in ["earlier", "last", "afterClaim"] {
            let r = &result["replayed"][when];
            assert_eq!(r["server"]["status"], 402, "{when}: {r}");
            assert_eq!(r["server"]["served"], false, "{when}: {r}");
            if verify == "local" && when != "afterClaim" {
                assert_eq!(r["verify"], Value::Null, "{when}: {r}");
                continue;
            }
            assert_eq!(r["verify"]["status"], 200, "{when}: {r}");
            assert_eq!(r["verify"]["isValid"], false, "{when}: {r}");
            assert_eq!(
                r["verify"]["invalidReason"],
                "invalid_batch_settlement_evm_cumulative_below_claimed",
                "{when}: {r}"
            );
        }
    }
}

crate::both_dbs!(official_buyer_pays_through_the_reference_server);
