//! What the state-mirror tests share: an app with the mirror on behind a TCP proxy, metric
//! readers, waits on observable state (the mirror at the head, a broadcast, seeded accounts),
//! the token owner's actions, concurrent senders, and a simulation at a given block.

use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::sol;
use alloy::sol_types::SolCall;
use devnet::Devnet;
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::helpers::*;

sol! {
    interface IAdmin {
        function transfer(address to, uint256 value) returns (bool);
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s);
        function authorizationState(address authorizer, bytes32 nonce) view returns (bool);
        function balanceOf(address account) view returns (uint256);
        function blacklist(address account);
        function unBlacklist(address account);
        function pause();
        function unpause();
        function mint(address to, uint256 amount) returns (bool);
    }
}

/// An app with the mirror on, its RPC through `rpc_url`; heads read every 100 ms.
pub(crate) async fn mirror_app(devnet: Devnet, rpc_url: &str, rpc_timeout_ms: u64) -> ChainApp {
    let app = ChainApp::start_app_full(
        TestDb::create(Db::Sqlite).await,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        json!({ "rpc_url": rpc_url }),
        json!({
            "verify": { "mirror": true, "mirror_max_head_age_ms": 1500 },
            "rpc": { "probe_interval_ms": 100, "timeout_ms": rpc_timeout_ms },
        }),
    )
    .await;
    ChainApp::with_merchant(app, devnet).await
}

/// Sum of a Prometheus series' samples whose labels contain every `labels` part.
pub(crate) async fn metric(app: &ChainApp, name: &str, labels: &[&str]) -> u64 {
    let text = app.app.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

pub(crate) async fn mirror_outcome(app: &ChainApp, outcome: &str) -> u64 {
    let label = format!("outcome=\"{outcome}\"");
    metric(app, "x402_verify_mirror_total", &[&label]).await
}

/// RPC requests that can be a verify's (`eth_call`, `batch`), as counted by the app.
pub(crate) async fn verify_rpc(app: &ChainApp) -> u64 {
    metric(
        app,
        "x402_rpc_request_duration_seconds_count",
        &["method=\"eth_call\""],
    )
    .await
        + metric(
            app,
            "x402_rpc_request_duration_seconds_count",
            &["method=\"batch\""],
        )
        .await
}

/// Poll until the mirror has applied the chain's latest block (bounded).
pub(crate) async fn wait_mirror_at_head(app: &ChainApp) -> u64 {
    let head = app.devnet.provider().get_block_number().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if metric(app, "x402_mirror_block", &[]).await == head {
            return head;
        }
        assert!(
            Instant::now() < deadline,
            "mirror never reached block {head}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A call of the token's owner (pauser, blacklister), mined (auto-mine), then followed.
pub(crate) async fn as_owner(app: &ChainApp, data: Vec<u8>) {
    let tx = TransactionRequest::default()
        .to(app.devnet.usdc)
        .input(Bytes::from(data).into());
    let receipt = app
        .devnet
        .provider()
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    wait_mirror_at_head(app).await;
}

/// A settle of `body` through the app, answering in the background.
pub(crate) fn spawn_settle(app: &ChainApp, body: Value) -> tokio::task::JoinHandle<Value> {
    let client = app.app.http.clone();
    let url = app.app.url("/api/v1/settle");
    let (id, token) = (app.client_id.clone(), app.client_token.clone());
    tokio::spawn(async move {
        client
            .post(url)
            .header("X-Client-ID", id)
            .header("X-Client-Token", token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    })
}

/// Poll until `signer` has a transaction past nonce `sent_before` in the pool (bounded).
pub(crate) async fn wait_broadcast(app: &ChainApp, signer: Address, sent_before: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending: u64 = app
            .devnet
            .provider()
            .get_transaction_count(signer)
            .pending()
            .await
            .unwrap();
        if pending > sent_before {
            return;
        }
        assert!(Instant::now() < deadline, "nothing was broadcast");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll until the mirror keeps at least `n` accounts (bounded).
pub(crate) async fn wait_accounts(app: &ChainApp, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(app, "x402_mirror_accounts", &[]).await < n {
        assert!(
            Instant::now() < deadline,
            "mirror never seeded {n} accounts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Transactions from the deployer and the payers, with nonces, gas and fees set here (mining
/// is manual: nothing waits for a receipt).
pub(crate) struct Senders {
    provider: DynProvider,
    chain_id: u64,
    nonces: std::collections::HashMap<Address, u64>,
}

impl Senders {
    pub(crate) async fn new(devnet: &Devnet) -> Self {
        let mut wallet = EthereumWallet::from(devnet.deployer.clone());
        for p in &devnet.payers {
            wallet.register_signer(p.clone());
        }
        let provider = ProviderBuilder::new()
            .wallet(wallet)
            .connect_http(devnet.rpc_url.parse().unwrap())
            .erased();
        let mut nonces = std::collections::HashMap::new();
        for who in std::iter::once(devnet.deployer.address())
            .chain(devnet.payers.iter().map(|p| p.address()))
        {
            nonces.insert(who, devnet.nonce_of(who).await.unwrap());
        }
        Self {
            provider,
            chain_id: devnet.chain_id,
            nonces,
        }
    }

    /// Into the pool (may revert when mined: that is part of the game).
    pub(crate) async fn send(&mut self, from: Address, to: Address, data: Vec<u8>) {
        let nonce = self.nonces.get_mut(&from).expect("known sender");
        let tx = TransactionRequest::default()
            .from(from)
            .to(to)
            .input(Bytes::from(data).into())
            .nonce(*nonce)
            .with_chain_id(self.chain_id)
            .gas_limit(300_000)
            .max_fee_per_gas(100_000_000_000)
            .max_priority_fee_per_gas(1_000_000_000);
        *nonce += 1;
        let _pending = self.provider.send_transaction(tx).await.expect("send");
    }
}

pub(crate) fn split(signature: &str) -> (u8, B256, B256) {
    let bytes = alloy::hex::decode(signature).unwrap();
    (
        bytes[64],
        B256::from_slice(&bytes[..32]),
        B256::from_slice(&bytes[32..64]),
    )
}

pub(crate) fn twa_calldata(p: &Payment, signature: &str) -> Vec<u8> {
    let (v, r, s) = split(signature);
    IAdmin::transferWithAuthorizationCall {
        from: p.from,
        to: p.to,
        value: p.value,
        validAfter: U256::from(p.valid_after),
        validBefore: U256::from(p.valid_before),
        nonce: p.nonce,
        v,
        r,
        s,
    }
    .abi_encode()
}

pub(crate) async fn call_at(
    provider: &DynProvider,
    to: Address,
    data: Vec<u8>,
    block: u64,
    from: Address,
) -> Result<Bytes, String> {
    let tx = TransactionRequest::default()
        .from(from)
        .to(to)
        .input(Bytes::from(data).into());
    provider
        .call(tx)
        .block(block.into())
        .await
        .map_err(|e| e.to_string())
}

/// What the simulation says of `p` at `block`, named as verify names it: the
/// `transferWithAuthorization` call, and when it reverts, the nonce state and balance there.
pub(crate) async fn simulated(
    app: &ChainApp,
    p: &Payment,
    signature: &str,
    block: u64,
) -> (bool, Value) {
    let provider = app.devnet.provider();
    let sender = app.devnet.facilitator_keys[0].address();
    let usdc = app.devnet.usdc;
    if call_at(provider, usdc, twa_calldata(p, signature), block, sender)
        .await
        .is_ok()
    {
        return (true, json!(""));
    }
    let used = call_at(
        provider,
        usdc,
        IAdmin::authorizationStateCall {
            authorizer: p.from,
            nonce: p.nonce,
        }
        .abi_encode(),
        block,
        sender,
    )
    .await
    .unwrap();
    let balance = call_at(
        provider,
        usdc,
        IAdmin::balanceOfCall { account: p.from }.abi_encode(),
        block,
        sender,
    )
    .await
    .unwrap();
    let used = IAdmin::authorizationStateCall::abi_decode_returns(&used).unwrap();
    let balance = IAdmin::balanceOfCall::abi_decode_returns(&balance).unwrap();
    let reason = if used {
        "invalid_exact_evm_nonce_already_used"
    } else if balance < p.value {
        "insufficient_funds"
    } else {
        "invalid_transaction_state"
    };
    (false, json!(reason))
}
