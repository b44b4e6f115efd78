//! Gas-bounded settlement, on a real anvil: a settlement's gas limit is its call's estimate
//! plus the margin, within `max_gas_per_settlement`; a smart wallet is simulated as its
//! transaction will run (ERC-1271 wallets that answer on `tx.gasprice` or `gasleft()` are
//! refused with nothing sent); a settlement that reverts on chain is on its key's ledger row and
//! in the metrics, gas and fee. The wallets are `tests/fixtures/gas_wallets/GasWallets.sol`,
//! compiled by `build.mjs` into `artifacts.json`.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{BlockId, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolCall;
use devnet::Devnet;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::chain_helpers::*;
use crate::helpers::*;

sol! {
    #[sol(rpc)]
    contract SwitchWallet {
        function setApproving(bool value) external;
    }

    /// FiatTokenV2_2's ERC-1271 overload: what a smart wallet's settlement calls.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes signature
    );
}

/// The margin the facilitator adds to an estimate (`FeePolicy::gas_limit_for`).
fn with_margin(estimate: u64) -> u64 {
    estimate + estimate / 5 + facilitator_actors::settlement::GAS_MARGIN
}

fn artifact(name: &str) -> Bytes {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gas_wallets/artifacts.json"
    );
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all[name].as_str().unwrap().parse().unwrap()
}

/// Deploy one of the wallets and give it `usdc` to pay with.
async fn wallet(devnet: &Devnet, creation: &str, usdc: u64) -> Address {
    let address = devnet
        .deploy_code(artifact(creation).to_vec(), creation)
        .await
        .unwrap();
    devnet.mint(address, U256::from(usdc)).await.unwrap();
    address
}

/// A payment from a contract wallet: a stranger's 65-byte signature, which only the wallet's
/// `isValidSignature` can judge (these wallets approve any signature when they approve).
fn wallet_payment(app: &ChainApp, wallet: Address, value: u64) -> (Payment, Value) {
    let pay = Payment::usdc(wallet, app.devnet.chain_id, app.devnet.usdc, value);
    let body = pay.v2(&pay.sign(&PrivateKeySigner::random()), value);
    (pay, body)
}

fn signer(app: &ChainApp) -> Address {
    app.devnet.facilitator_keys[0].address()
}

/// The signer's (mined nonce, pending nonce, native balance): unchanged = nothing sent.
async fn signer_state(app: &ChainApp) -> (u64, u64, U256) {
    let p = app.devnet.provider();
    let s = signer(app);
    (
        p.get_transaction_count(s).latest().await.unwrap(),
        p.get_transaction_count(s).pending().await.unwrap(),
        p.get_balance(s).await.unwrap(),
    )
}

/// `eth_call` of the settlement with the node's defaults (gas price 0, the block's gas): what a
/// simulation that does not run as the transaction will passes.
async fn passes_a_default_call(app: &ChainApp, pay: &Payment, body: &Value) -> bool {
    let signature: Bytes = body["paymentPayload"]["payload"]["signature"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let data = transferWithAuthorizationCall {
        from: pay.from,
        to: pay.to,
        value: pay.value,
        validAfter: U256::from(pay.valid_after),
        validBefore: U256::from(pay.valid_before),
        nonce: pay.nonce,
        signature,
    }
    .abi_encode();
    app.devnet
        .provider()
        .call(
            TransactionRequest::default()
                .from(signer(app))
                .to(app.devnet.usdc)
                .input(Bytes::from(data).into()),
        )
        .await
        .is_ok()
}

async fn a_wallet_answering_on_gas_price_or_gas_left_is_refused_unsent(kind: Db) {
    let app = ChainApp::spawn(kind, devnet::DevnetOptions::default()).await;
    for (creation, reason) in [
        // The estimate runs with the real fees: the wallet says no, the transfer reverts.
        (
            "gasPriceWalletCreation",
            "invalid_exact_evm_payload_signature",
        ),
        // Its estimate is what it takes to leave it 2M gas: past the network's bound.
        ("gasLeftWalletCreation", "settlement_gas_exceeds_limit"),
    ] {
        let w = wallet(&app.devnet, creation, 10_000).await;
        let (pay, body) = wallet_payment(&app, w, 1_000);
        assert!(
            passes_a_default_call(&app, &pay, &body).await,
            "{creation}: a plain eth_call approves it"
        );
        let before = signer_state(&app).await;

        let verified = app.verify(&body).await;
        assert_eq!(verified["isValid"], false, "{creation}: {verified}");
        assert_eq!(verified["invalidReason"], reason, "{creation}: {verified}");
        let settled = app.settle(&body).await;
        assert_eq!(settled["success"], false, "{creation}: {settled}");
        assert_eq!(settled["errorReason"], reason, "{creation}: {settled}");
        assert_eq!(settled["transaction"], "", "{creation}: {settled}");

        assert_eq!(signer_state(&app).await, before, "{creation}: nothing sent");
        assert_eq!(app.balance(w).await, U256::from(10_000));
        assert!(!app.devnet.authorization_state(w, pay.nonce).await.unwrap());
    }
}
both_dbs!(a_wallet_answering_on_gas_price_or_gas_left_is_refused_unsent);

/// The mined transaction's gas limit, and the estimate of its call in the block before (the
/// state the facilitator estimated in), made as the facilitator made it.
async fn limit_and_estimate(app: &ChainApp, tx: &str, as_sent: bool) -> (u64, u64) {
    let p = app.devnet.provider();
    let hash: B256 = tx.parse().unwrap();
    let sent = p.get_transaction_by_hash(hash).await.unwrap().unwrap();
    let block = sent.block_number.unwrap();
    let mut call = TransactionRequest::default()
        .from(signer(app))
        .to(app.devnet.usdc)
        .input(alloy::consensus::Transaction::input(&sent).clone().into());
    if as_sent {
        call = call
            .max_fee_per_gas(alloy::consensus::Transaction::max_fee_per_gas(&sent))
            .max_priority_fee_per_gas(
                alloy::consensus::Transaction::max_priority_fee_per_gas(&sent).unwrap(),
            );
    }
    let estimate = p
        .estimate_gas(call)
        .block(BlockId::number(block - 1))
        .await
        .unwrap();
    (alloy::consensus::Transaction::gas_limit(&sent), estimate)
}

async fn a_settlement_gas_limit_is_its_estimate_plus_margin_within_the_cap(kind: Db) {
    let app = ChainApp::spawn(kind, devnet::DevnetOptions::default()).await;
    let cap = facilitator_actors::settlement::FeePolicy::default().max_gas_per_settlement;

    // An EOA's payment: its settle's simulation is the estimate.
    let pay = Payment::new(&app, 0, 1_000);
    let settled = app.settle(&pay.v2(&pay.sign(app.payer(0)), 1_000)).await;
    assert_eq!(settled["success"], true, "{settled}");
    let tx = settled["transaction"].as_str().unwrap();
    let (limit, estimate) = limit_and_estimate(&app, tx, false).await;
    assert_eq!(
        limit,
        with_margin(estimate),
        "EOA: limit {limit}, estimate {estimate}"
    );
    assert!(limit <= cap);
    let used = app
        .devnet
        .receipt(tx.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .gas_used;
    assert!(used <= estimate, "used {used}, estimated {estimate}");

    // A smart wallet's: estimated as sent, with the transaction's fees.
    let w = wallet(&app.devnet, "switchWalletCreation", 10_000).await;
    let (_, body) = wallet_payment(&app, w, 2_000);
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    let tx = settled["transaction"].as_str().unwrap();
    let (limit, estimate) = limit_and_estimate(&app, tx, true).await;
    assert_eq!(
        limit,
        with_margin(estimate),
        "1271: limit {limit}, estimate {estimate}"
    );
    assert!(limit <= cap);
    assert_eq!(app.balance(w).await, U256::from(8_000));

    // The same EOA payment on a network whose bound is below it: refused, nothing sent.
    let low = ChainApp::with_merchant(
        ChainApp::start_app_with(
            TestDb::create(kind).await,
            &app.devnet,
            app.devnet.facilitator_keys[..1].to_vec(),
            json!({ "max_gas_per_settlement": estimate.min(80_000) }),
        )
        .await,
        app.devnet.clone_handle(),
    )
    .await;
    let pay = Payment::new(&low, 1, 1_000);
    let before = signer_state(&low).await;
    let settled = low.settle(&pay.v2(&pay.sign(low.payer(1)), 1_000)).await;
    assert_eq!(settled["success"], false, "{settled}");
    assert_eq!(
        settled["errorReason"], "settlement_gas_exceeds_limit",
        "{settled}"
    );
    assert_eq!(signer_state(&low).await, before, "nothing sent");
    let payer = low.payer(1).address();
    assert!(!low
        .devnet
        .authorization_state(payer, pay.nonce)
        .await
        .unwrap());
}
both_dbs!(a_settlement_gas_limit_is_its_estimate_plus_margin_within_the_cap);

/// Poll `what` until it holds, for at most 30 s.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of a Prometheus sample (`name{labels}`), 0 when absent.
fn sample(scrape: &str, name_and_labels: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A wallet that approves while simulated and is switched off before the settlement is mined
/// (anvil mines only on demand here, and orders a block by tip): the settlement reverts, and
/// its gas and fee are on the row of the key that asked for it and in the metrics.
async fn a_settlement_that_reverts_on_chain_is_charged_to_its_key(kind: Db) {
    let app = ChainApp::spawn(kind, devnet::DevnetOptions::default()).await;
    let w = wallet(&app.devnet, "switchWalletCreation", 10_000).await;
    let (pay, body) = wallet_payment(&app, w, 1_000);
    let p = app.devnet.provider();
    let (_, pending_before, eth_before) = signer_state(&app).await;
    app.devnet.set_automine(false).await.unwrap();

    let switch_off = async {
        until("the settlement in the pool", || async {
            p.get_transaction_count(signer(&app))
                .pending()
                .await
                .unwrap()
                > pending_before
        })
        .await;
        let deployer = app.devnet.deployer.address();
        let sent = p.get_transaction_count(deployer).pending().await.unwrap();
        let _switched = SwitchWallet::new(w, p)
            .setApproving(false)
            .max_fee_per_gas(1_000_000_000_000)
            .max_priority_fee_per_gas(100_000_000_000)
            .send()
            .await
            .unwrap();
        until("the switch in the pool", || async {
            p.get_transaction_count(deployer).pending().await.unwrap() > sent
        })
        .await;
        app.devnet.mine().await.unwrap();
    };
    let (settled, ()) = futures::join!(app.settle(&body), switch_off);
    app.devnet.set_automine(true).await.unwrap();

    assert_eq!(settled["success"], false, "{settled}");
    assert_eq!(
        settled["errorReason"], "invalid_transaction_state",
        "{settled}"
    );
    let tx = settled["transaction"].as_str().unwrap();
    let receipt = app
        .devnet
        .receipt(tx.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!receipt.status(), "reverted on chain");
    let gas = receipt.gas_used;
    let fee = U256::from(receipt.effective_gas_price) * U256::from(gas);
    assert!(gas > 21_000);
    assert_eq!(app.balance(w).await, U256::from(10_000), "nothing moved");
    assert!(!app.devnet.authorization_state(w, pay.nonce).await.unwrap());
    assert_eq!(
        p.get_balance(signer(&app)).await.unwrap(),
        eth_before - fee,
        "the operator paid the fee"
    );

    // The ledger row: failed, its gas and fee, the key that asked.
    let db = sea_orm::Database::connect(&app.app.db.url).await.unwrap();
    let row = entities::settlement::Entity::find()
        .filter(entities::settlement::Column::TxHash.eq(tx))
        .one(&db)
        .await
        .unwrap()
        .expect("the settlement's row");
    db.close().await.ok();
    assert_eq!(row.status, "failed");
    assert_eq!(
        row.error_reason.as_deref(),
        Some("invalid_transaction_state")
    );
    assert_eq!(row.gas_used, Some(gas as i64));
    assert_eq!(row.fee_wei.as_deref(), Some(fee.to_string().as_str()));
    assert_eq!(row.client_id.as_deref(), Some(app.client_id.as_str()));

    // The metrics: reverted gas and fee of the network.
    let scrape = app.app.get("/metrics", None).await.text().await.unwrap();
    let labels = "{network=\"base-sepolia\"}";
    assert_eq!(
        sample(
            &scrape,
            &format!("x402_reverted_settlement_gas_total{labels}")
        ),
        gas as f64,
        "{scrape}"
    );
    assert_eq!(
        sample(
            &scrape,
            &format!("x402_reverted_settlement_fee_wei_total{labels}")
        ),
        f64::from(fee),
        "{scrape}"
    );
    assert_eq!(
        sample(
            &scrape,
            "x402_transfers_total{network=\"base-sepolia\",outcome=\"reverted\"}"
        ),
        1.0,
        "{scrape}"
    );
}
both_dbs!(a_settlement_that_reverts_on_chain_is_charged_to_its_key);
