//! A facilitator wired to a real anvil with Circle's USDC, plus buyers that sign EIP-3009
//! authorizations the way wallets do (EIP-712 typed data, signed here with alloy — not with the
//! code under test).

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol;
use alloy::sol_types::{eip712_domain, SolStruct};
use base64::Engine;
use devnet::{Devnet, DevnetOptions};
use serde_json::{json, Value};
use x402_facilitator::startup::{Application, BuildOptions};

use crate::helpers::*;

sol! {
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

pub const PAY_TO: Address =
    alloy::primitives::address!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C");

pub struct ChainApp {
    pub app: TestApp,
    pub devnet: Devnet,
    pub client_id: String,
    pub client_token: String,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl DbApp for ChainApp {
    type Options = DevnetOptions;
    fn start(kind: Db, options: DevnetOptions) -> impl std::future::Future<Output = Self> {
        Self::spawn(kind, options)
    }
}

impl ChainApp {
    pub async fn spawn(kind: Db, opts: DevnetOptions) -> Self {
        let devnet = Devnet::start(opts).await.expect("devnet");
        let db = TestDb::create(kind).await;
        let app = Self::start_app(db, &devnet, devnet.facilitator_keys[..1].to_vec()).await;
        Self::with_merchant(app, devnet).await
    }

    /// Wrap a running app: a merchant signs up and gets a `verify,settle` client key.
    pub async fn with_merchant(app: TestApp, devnet: Devnet) -> Self {
        let (access, _, _) = app.user("merchant@example.com").await;
        let (client_id, client_token) = app.client_key(&access, "verify,settle").await;
        Self {
            app,
            devnet,
            client_id,
            client_token,
        }
    }

    pub async fn start_app(db: TestDb, devnet: &Devnet, signers: Vec<PrivateKeySigner>) -> TestApp {
        Self::start_app_with(db, devnet, signers, json!({})).await
    }

    /// `network` overrides keys of the base-sepolia network settings (timeouts, fee caps).
    pub async fn start_app_with(
        db: TestDb,
        devnet: &Devnet,
        signers: Vec<PrivateKeySigner>,
        network: Value,
    ) -> TestApp {
        Self::start_app_full(db, devnet, signers, network, json!({})).await
    }

    /// Also `top`: top-level configuration sections (e.g. `settlement`).
    pub async fn start_app_full(
        db: TestDb,
        devnet: &Devnet,
        signers: Vec<PrivateKeySigner>,
        network: Value,
        top: Value,
    ) -> TestApp {
        let mut options = BuildOptions::default();
        options.signer_keys.insert("base-sepolia".into(), signers);
        Self::start_app_options(db, devnet, network, top, options).await
    }

    /// As [`ChainApp::start_app_full`], with the build options given (signer keys included).
    pub async fn start_app_options(
        db: TestDb,
        devnet: &Devnet,
        network: Value,
        top: Value,
        options: BuildOptions,
    ) -> TestApp {
        let mut base = json!({
            "rpc_url": devnet.rpc_url,
            "usdc_address": devnet.usdc.to_checksum(None),
            "receipt_timeout_secs": 25,
        });
        for (k, v) in network.as_object().into_iter().flatten() {
            base[k] = v.clone();
        }
        let mut extra = json!({ "networks": { "base_sepolia": base } });
        for (k, v) in top.as_object().into_iter().flatten() {
            extra[k] = v.clone();
        }
        let settings = test_settings(&db.url, extra);
        let app = Application::build_with(settings, options)
            .await
            .expect("build app");
        TestApp::from_application(app, db)
    }

    pub async fn post_x402(&self, path: &str, body: &Value) -> reqwest::Response {
        self.app
            .post_as_client(path, &self.client_id, &self.client_token, body)
            .await
    }

    pub async fn verify(&self, body: &Value) -> Value {
        let res = self.post_x402("/api/v1/verify", body).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    pub async fn settle(&self, body: &Value) -> Value {
        let res = self.post_x402("/api/v1/settle", body).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// `POST /settle` with an `Idempotency-Key` header.
    pub async fn settle_with_key(&self, body: &Value, key: &str) -> reqwest::Response {
        self.app
            .http
            .post(self.app.url("/api/v1/settle"))
            .header("X-Client-ID", &self.client_id)
            .header("X-Client-Token", &self.client_token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `GET /settlements/{tx}` with this app's key: the `data` of a 200.
    pub async fn settlement(&self, tx: &str) -> Value {
        let res = self
            .app
            .get_as_client(
                &format!("/api/v1/settlements/{tx}"),
                &self.client_id,
                &self.client_token,
            )
            .await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["data"].clone()
    }

    pub fn payer(&self, i: usize) -> &PrivateKeySigner {
        &self.devnet.payers[i]
    }

    pub async fn balance(&self, who: Address) -> U256 {
        self.devnet.usdc_balance(who).await.expect("balance")
    }
}

/// What a buyer signs, with knobs for the bad payments.
#[derive(Clone)]
pub struct Payment {
    pub from: Address,
    pub to: Address,
    pub value: U256,
    pub valid_after: u64,
    pub valid_before: u64,
    pub nonce: B256,
    /// EIP-712 domain the buyer signs with.
    pub domain_name: String,
    pub domain_version: String,
    pub chain_id: u64,
    pub asset: Address,
}

impl Payment {
    pub fn new(app: &ChainApp, payer: usize, value: u64) -> Self {
        Self::usdc(
            app.payer(payer).address(),
            app.devnet.chain_id,
            app.devnet.usdc,
            value,
        )
    }

    /// A valid payment of `value` to `PAY_TO` in the USDC at `asset` ("USDC", version "2"),
    /// valid from a minute ago for ten minutes, with a fresh nonce.
    pub fn usdc(from: Address, chain_id: u64, asset: Address, value: u64) -> Self {
        Self {
            from,
            to: PAY_TO,
            value: U256::from(value),
            valid_after: now() - 60,
            valid_before: now() + 600,
            nonce: B256::from(rand::random::<[u8; 32]>()),
            domain_name: "USDC".into(),
            domain_version: "2".into(),
            chain_id,
            asset,
        }
    }

    pub fn sign(&self, signer: &PrivateKeySigner) -> String {
        let sig = signer.sign_hash_sync(&self.digest()).expect("sign");
        format!("0x{}", alloy::hex::encode(sig.as_bytes()))
    }

    /// The EIP-712 digest of this authorization (what a wallet's ERC-1271 is asked about).
    pub fn digest(&self) -> B256 {
        let domain = eip712_domain! {
            name: self.domain_name.clone(),
            version: self.domain_version.clone(),
            chain_id: self.chain_id,
            verifying_contract: self.asset,
        };
        let msg = TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value,
            validAfter: U256::from(self.valid_after),
            validBefore: U256::from(self.valid_before),
            nonce: self.nonce,
        };
        msg.eip712_signing_hash(&domain)
    }

    fn payload(&self, signature: &str) -> Value {
        json!({
            "signature": signature,
            "authorization": {
                "from": self.from.to_checksum(None),
                "to": self.to.to_checksum(None),
                "value": self.value.to_string(),
                "validAfter": self.valid_after.to_string(),
                "validBefore": self.valid_before.to_string(),
                "nonce": self.nonce.to_string(),
            }
        })
    }

    /// A v1 facilitator request; `required` is `maxAmountRequired`.
    pub fn v1(&self, signature: &str, required: u64) -> Value {
        json!({
            "x402Version": 1,
            "paymentPayload": {
                "x402Version": 1,
                "scheme": "exact",
                "network": "base-sepolia",
                "payload": self.payload(signature),
            },
            "paymentRequirements": {
                "scheme": "exact",
                "network": "base-sepolia",
                "maxAmountRequired": required.to_string(),
                "resource": "http://127.0.0.1/paid",
                "description": "test",
                "mimeType": "application/json",
                "payTo": PAY_TO.to_checksum(None),
                "maxTimeoutSeconds": 60,
                "asset": self.asset.to_checksum(None),
                "extra": { "name": self.domain_name, "version": self.domain_version },
            }
        })
    }

    /// The same, with the payload as a base64 string (the API reference allows both).
    pub fn v1_base64(&self, signature: &str, required: u64) -> Value {
        let mut body = self.v1(signature, required);
        let inner = serde_json::to_vec(&body["paymentPayload"]["payload"]).unwrap();
        body["paymentPayload"]["payload"] =
            json!(base64::engine::general_purpose::STANDARD.encode(inner));
        body
    }

    /// A v2 facilitator request; `amount` is the exact amount required.
    pub fn v2(&self, signature: &str, amount: u64) -> Value {
        let requirements = json!({
            "scheme": "exact",
            "network": "eip155:84532",
            "amount": amount.to_string(),
            "asset": self.asset.to_checksum(None),
            "payTo": PAY_TO.to_checksum(None),
            "maxTimeoutSeconds": 60,
            "extra": { "name": self.domain_name, "version": self.domain_version },
        });
        v2_body(requirements, self.payload(signature))
    }
}

/// A v2 facilitator request: `payload` under `requirements` (also its `accepted`).
pub fn v2_body(requirements: Value, payload: Value) -> Value {
    json!({
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2,
            "resource": { "url": "http://127.0.0.1/paid" },
            "accepted": requirements,
            "payload": payload,
        },
        "paymentRequirements": requirements,
    })
}
