//! What the state mirror needs to be on by default: it starts over after a reorg and answers
//! as the new chain, it follows an EIP-7702 delegation made after it seeded the payer, and on
//! a node that refuses `eth_getLogs` from block 0 (as range-bounded providers do) it still
//! answers right, reading each nonce instead of the payer's history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::eips::eip7702::Authorization;
use alloy::network::{TransactionBuilder, TransactionBuilder7702};
use alloy::primitives::U256;
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::SignerSync;
use devnet::{Devnet, DevnetOptions};
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::mirror_helpers::*;

/// A payment of `value` from payer `i`, and its `/verify` body.
fn paid(app: &ChainApp, i: usize, value: u64) -> (Payment, String, Value) {
    let p = Payment::new(app, i, value);
    let sig = p.sign(app.payer(i));
    let body = p.v2(&sig, value);
    (p, sig, body)
}

/// Verify `body` until the mirror answers it from memory (bounded); that answer.
async fn until_answered_from_memory(app: &ChainApp, body: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = mirror_outcome(app, "answered").await;
        let answer = app.verify(body).await;
        if mirror_outcome(app, "answered").await > before {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "never answered from memory: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A reorg replaces the block in which a payer was drained: the mirror, which had applied it
/// (and answered `insufficient_funds` from memory), starts over and answers as the new chain,
/// where the payer still holds its money.
#[actix_web::test]
async fn after_a_reorg_the_mirror_starts_over_and_answers_as_the_new_chain() {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let url = devnet.rpc_url.clone();
    let app = mirror_app(devnet, &url, 5000).await;
    let balance = app.balance(app.payer(0).address()).await;
    let all: u64 = balance.to();

    // Seeded, then answered from memory.
    let (_, _, small) = paid(&app, 0, 10);
    assert_eq!(app.verify(&small).await["isValid"], true);
    wait_accounts(&app, 2).await;
    assert_eq!(
        until_answered_from_memory(&app, &small).await["isValid"],
        true
    );

    // Drained by a transfer the mirror follows: answered from memory as too poor.
    let (drain, drain_sig, _) = paid(&app, 0, all);
    // Sent by the token's deployer, not the facilitator.
    as_owner(&app, twa_calldata(&drain, &drain_sig)).await;
    let (_, _, after) = paid(&app, 0, 10);
    let poor = until_answered_from_memory(&app, &after).await;
    assert_eq!(poor["invalidReason"], "insufficient_funds", "{poor}");

    // The drain's block is replaced by an empty one.
    let head = app.devnet.provider().get_block_number().await.unwrap();
    let _: Value = app
        .devnet
        .provider()
        .raw_request("anvil_reorg".into(), json!([1, []]))
        .await
        .unwrap();
    assert_eq!(app.balance(app.payer(0).address()).await, balance);
    assert_eq!(
        app.devnet.provider().get_block_number().await.unwrap(),
        head
    );

    // The mirror drops what it knew (a head of the same height with another hash) and, once
    // seeded again, answers as the new chain.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&app, "x402_mirror_accounts", &[]).await > 0 {
        assert!(Instant::now() < deadline, "the mirror never started over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, _, again) = paid(&app, 0, 10);
    assert_eq!(app.verify(&again).await["isValid"], true);
    wait_accounts(&app, 2).await;
    let answer = until_answered_from_memory(&app, &again).await;
    assert_eq!(answer["isValid"], true, "{answer}");
}

/// A payer the mirror judged as an EOA delegates its account (EIP-7702, a type-4 transaction
/// someone else sends) to a contract: from that block its signature is the contract's to
/// judge, and FiatTokenV2_2 asks it (ERC-1271). The mirror forgets the payer, reads it again
/// with its code, and leaves its payments to the simulation, which refuses them.
#[actix_web::test]
async fn a_payer_that_delegates_after_seeding_is_no_longer_judged_as_an_eoa() {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let url = devnet.rpc_url.clone();
    let app = mirror_app(devnet, &url, 5000).await;
    let (_, _, first) = paid(&app, 0, 10);
    assert_eq!(app.verify(&first).await["isValid"], true);
    wait_accounts(&app, 2).await;
    assert_eq!(
        until_answered_from_memory(&app, &first).await["isValid"],
        true
    );

    // The payer signs a delegation to the token's own code (which has no `isValidSignature`);
    // the deployer sends it.
    let payer = app.payer(0);
    let nonce = app.devnet.nonce_of(payer.address()).await.unwrap();
    let auth = Authorization {
        chain_id: U256::from(app.devnet.chain_id),
        address: app.devnet.usdc,
        nonce,
    };
    let signature = payer.sign_hash_sync(&auth.signature_hash()).unwrap();
    let tx = TransactionRequest::default()
        .with_to(payer.address())
        .with_authorization_list(vec![auth.into_signed(signature)]);
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
    let code = app
        .devnet
        .provider()
        .get_code_at(payer.address())
        .await
        .unwrap();
    assert!(!code.is_empty(), "the payer is delegated");
    wait_mirror_at_head(&app).await;

    // Never answered from memory again; the simulation refuses the EOA signature.
    let answered = mirror_outcome(&app, "answered").await;
    for _ in 0..3 {
        let (_, _, body) = paid(&app, 0, 10);
        let answer = app.verify(&body).await;
        assert_eq!(answer["isValid"], false, "{answer}");
        wait_accounts(&app, 2).await;
    }
    assert_eq!(mirror_outcome(&app, "answered").await, answered);
    assert!(mirror_outcome(&app, "fallback_has_code").await >= 1);
}

/// A JSON-RPC proxy in front of anvil that answers every `eth_getLogs` from block 0 with an
/// error, as providers that bound log ranges do. That one answer is a mock (anvil serves any
/// range: a fault it cannot make); every other call is anvil's.
struct LogRangeRefusal {
    url: String,
    refused: Arc<AtomicU64>,
    server: actix_web::dev::ServerHandle,
}

impl LogRangeRefusal {
    async fn start(upstream: &str) -> Self {
        let refused = Arc::new(AtomicU64::new(0));
        let state = (upstream.to_owned(), reqwest::Client::new(), refused.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(actix_web::web::Data::new(state.clone()))
                .default_service(actix_web::web::to(refuse_log_ranges))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}"),
            refused,
            server: handle,
        }
    }
}

type ProxyState = (String, reqwest::Client, Arc<AtomicU64>);

async fn refuse_log_ranges(
    body: actix_web::web::Bytes,
    state: actix_web::web::Data<ProxyState>,
) -> actix_web::HttpResponse {
    let (upstream, http, refused) = state.get_ref();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (calls, batch) = match request {
        Value::Array(calls) => (calls, true),
        one => (vec![one], false),
    };
    let refuse = |c: &Value| {
        c["method"] == "eth_getLogs"
            && matches!(
                c["params"][0]["fromBlock"].as_str(),
                Some("0x0") | Some("earliest")
            )
    };
    let passed: Vec<Value> = calls.iter().filter(|c| !refuse(c)).cloned().collect();
    let mut answers: HashMap<String, Value> = HashMap::new();
    if !passed.is_empty() {
        let res: Value = http
            .post(upstream)
            .json(&passed)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for a in res.as_array().cloned().unwrap_or_default() {
            answers.insert(a["id"].to_string(), a);
        }
    }
    let out: Vec<Value> = calls
        .iter()
        .map(|c| {
            if refuse(c) {
                refused.fetch_add(1, Ordering::Relaxed);
                json!({
                    "jsonrpc": "2.0",
                    "id": c["id"],
                    "error": { "code": -32005, "message": "query exceeds max block range 10000" },
                })
            } else {
                answers.remove(&c["id"].to_string()).unwrap_or(Value::Null)
            }
        })
        .collect();
    let body = if batch {
        Value::Array(out)
    } else {
        out.into_iter().next().unwrap_or(Value::Null)
    };
    actix_web::HttpResponse::Ok().json(body)
}

/// On a node refusing the payer's authorization logs from block 0 (mocked refusal, above), the
/// mirror seeds the payer without its history and judges a nonce from memory only once it has
/// read it: a nonce used behind its back is never called free, and a fresh one is answered from
/// memory from its second verify on.
#[actix_web::test]
async fn on_a_node_refusing_logs_from_block_0_mocked_refusal_nonces_are_read_one_by_one() {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let proxy = LogRangeRefusal::start(&devnet.rpc_url).await;
    let app = mirror_app(devnet, &proxy.url, 5000).await;

    // A nonce of payer 0 used before the mirror ever saw the payer.
    let (used, used_sig, used_body) = paid(&app, 0, 10);
    as_owner(&app, twa_calldata(&used, &used_sig)).await;

    let first = app.verify(&used_body).await;
    assert_eq!(
        first["invalidReason"], "invalid_exact_evm_nonce_already_used",
        "{first}"
    );
    wait_accounts(&app, 2).await;
    assert!(
        proxy.refused.load(Ordering::Relaxed) >= 1,
        "the seed asked for the history"
    );
    // Seeded without history: the used nonce is read, never judged free.
    let unknown = mirror_outcome(&app, "fallback_unknown_nonce").await;
    let again = app.verify(&used_body).await;
    assert_eq!(
        again["invalidReason"], "invalid_exact_evm_nonce_already_used",
        "{again}"
    );
    assert!(mirror_outcome(&app, "fallback_unknown_nonce").await > unknown);
    let remembered = until_answered_from_memory(&app, &used_body).await;
    assert_eq!(
        remembered["invalidReason"], "invalid_exact_evm_nonce_already_used",
        "{remembered}"
    );

    // A fresh nonce: simulated once, then answered from memory.
    let (_, _, fresh) = paid(&app, 0, 10);
    assert_eq!(app.verify(&fresh).await["isValid"], true);
    let answer = until_answered_from_memory(&app, &fresh).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    proxy.server.stop(false).await;
}
