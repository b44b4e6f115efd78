//! The official x402 Solana buyer and resource server against us, on a real local cluster
//! (`devnet::solana`): `@x402/fetch` + `@x402/svm` pay an `@x402/express` server whose
//! facilitator is this app (`tools/e2e/svm.mjs`). 200, the payee's token account rises by the
//! price once, the replayed payment header is not served; ten concurrent requests carrying one
//! payment are served once. With the SPL Token mint and the Token-2022 one.

use devnet::solana::{Keypair, Signer as _, SolanaCluster, SolanaClusterOptions};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::replay::{node, write_state};
use crate::svm::start_app;

/// The price of `tools/e2e/common.mjs` (0.01 USDC).
const E2E_PRICE: u64 = 10_000;

async fn official_buyer_pays_once(kind: Db) {
    let cluster = SolanaCluster::start_with(SolanaClusterOptions {
        payers: 3,
        ..Default::default()
    })
    .await
    .expect("solana cluster");
    let app = start_app(
        TestDb::create(kind).await,
        &cluster,
        &cluster.rpc_url,
        json!({}),
    )
    .await;
    let (access, _, _) = app.user("merchant@example.com").await;
    let (client_id, client_token) = app.client_key(&access, "verify,settle").await;
    let pay_to = Keypair::new().pubkey();
    cluster.create_token_accounts(&pay_to).await.unwrap();

    for (mint, payer) in [(cluster.usdc, "0"), (cluster.usdc_2022, "1")] {
        let mut solana = cluster.dev_state();
        solana["payTo"] = json!(pay_to.to_string());
        solana["mint"] = json!(mint.address.to_string());
        solana["tokenProgram"] = json!(mint.token_program.to_string());
        let state = write_state(&json!({
            "facilitatorUrl": app.url("/api/v1"),
            "clientId": client_id,
            "clientToken": client_token,
            "solana": solana,
        }));
        let path = state.path().to_str().unwrap();
        let program = mint.token_program;

        // One paid request, then its payment header replayed.
        let result = node("tools/e2e/svm.mjs", &[path, "pay", "10", payer]).await;
        assert_eq!(result["ok"], true, "{program}: {result}");
        assert_eq!(result["status"], 200, "{result}");
        assert_eq!(result["paid"], E2E_PRICE.to_string(), "{result}");
        assert_ne!(result["replayStatus"], 200, "{result}");
        assert_eq!(result["paidAfterReplay"], E2E_PRICE.to_string(), "{result}");
        assert_eq!(result["network"], devnet::solana::DEVNET_NETWORK);
        // The settlement the server got back is a landed transaction of the cluster.
        let sig = result["transaction"].as_str().unwrap().parse().unwrap();
        let status = cluster.rpc.signature_status(&sig).await.unwrap();
        assert!(
            status.as_ref().is_some_and(|s| s.err.is_none()),
            "{status:?}"
        );
        assert_eq!(
            cluster.token_balance(&pay_to, &mint).await.unwrap(),
            E2E_PRICE
        );

        // Ten concurrent requests carrying one payment: one served, one payment.
        let result = node("tools/e2e/svm.mjs", &[path, "replay", "10", payer]).await;
        assert_eq!(result["served"], 1, "{program}: {result}");
        let statuses: Vec<Value> = result["statuses"].as_array().unwrap().clone();
        assert_eq!(statuses.len(), 10);
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{result}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 402),
            "the others are asked to pay: {result}"
        );
        assert_eq!(
            cluster.token_balance(&pay_to, &mint).await.unwrap(),
            2 * E2E_PRICE,
            "{program}: the payee is paid the price once per payment"
        );
    }
}

#[actix_web::test]
async fn official_svm_buyer_pays_once_sqlite() {
    official_buyer_pays_once(Db::Sqlite).await
}

#[actix_web::test]
async fn official_svm_buyer_pays_once_postgres() {
    official_buyer_pays_once(Db::Postgres).await
}
