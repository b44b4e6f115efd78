//! Permit2 fixtures for the chain tests: Permit2's canonical runtime (npm
//! `@uniswap/v4-periphery` 1.0.3) and our two proxies (`tests/fixtures/permit2/*.sol`, compiled
//! by `build.mjs` into `artifacts.json`) placed with `anvil_setCode` at the canonical
//! addresses; an OpenZeppelin ERC20 + ERC20Permit deployed; buyers' Permit2 payments signed
//! with alloy (not with the code under test).

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{address, Address, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol;
use alloy::sol_types::{eip712_domain, SolStruct};
use devnet::{Devnet, DevnetOptions};
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::helpers::*;

pub const PERMIT2: Address = address!("0x000000000022D473030F116dDEE9F6B43aC78BA3");
pub const EXACT_PROXY: Address = address!("0x402085c248EeA27D92E8b30b2C58ed07f9E20001");
pub const UPTO_PROXY: Address = address!("0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");
pub(crate) const TOKEN_NAME: &str = "Test Token";

pub(crate) mod exact_sig {
    alloy::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; uint256 validAfter; }
        struct PermitWitnessTransferFrom { TokenPermissions permitted; address spender; uint256 nonce; uint256 deadline; Witness witness; }
    }
}

pub(crate) mod upto_sig {
    alloy::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; address facilitator; uint256 validAfter; }
        struct PermitWitnessTransferFrom { TokenPermissions permitted; address spender; uint256 nonce; uint256 deadline; Witness witness; }
    }
}

sol! {
    struct Permit { address owner; address spender; uint256 value; uint256 nonce; uint256 deadline; }

    #[sol(rpc)]
    interface ITestToken {
        function balanceOf(address) external view returns (uint256);
        function transfer(address to, uint256 amount) external returns (bool);
        function approve(address spender, uint256 amount) external returns (bool);
        function allowance(address owner, address spender) external view returns (uint256);
        function nonces(address owner) external view returns (uint256);
    }

    #[sol(rpc)]
    interface IPermit2Nonces {
        function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external;
    }
}

/// A facilitator on anvil with Permit2, both proxies and a plain ERC-20 registered as an asset.
pub struct Permit2App {
    pub chain: ChainApp,
    pub token: Address,
}

pub(crate) fn artifacts() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/permit2/artifacts.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub(crate) fn hex_bytes(v: &Value) -> Bytes {
    v.as_str().unwrap().parse().unwrap()
}

/// Place Permit2 and the proxies, deploy the token, give each payer `per_payer` of it.
pub async fn deploy_fixtures(devnet: &Devnet, per_payer: U256) -> Address {
    let a = artifacts();
    let p = devnet.provider();
    for (at, code) in [
        (PERMIT2, "permit2Runtime"),
        (EXACT_PROXY, "exactProxyRuntime"),
        (UPTO_PROXY, "uptoProxyRuntime"),
    ] {
        p.raw_request::<_, ()>("anvil_setCode".into(), (at, hex_bytes(&a[code])))
            .await
            .unwrap();
    }
    let mut code = hex_bytes(&a["testTokenCreation"]).to_vec();
    code.extend_from_slice(&alloy::sol_types::SolValue::abi_encode_params(&(
        TOKEN_NAME.to_owned(),
        U256::from(10u64).pow(U256::from(18)),
    )));
    let receipt = p
        .send_transaction(TransactionRequest::default().with_deploy_code(Bytes::from(code)))
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    let token = receipt.contract_address.unwrap();
    let erc20 = ITestToken::new(token, p);
    for payer in &devnet.payers {
        let r = erc20
            .transfer(payer.address(), per_payer)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(r.status());
    }
    token
}

impl DbApp for Permit2App {
    type Options = ();
    fn start(kind: Db, (): ()) -> impl std::future::Future<Output = Self> {
        Self::spawn(kind)
    }
}

impl Permit2App {
    pub async fn spawn(kind: Db) -> Self {
        Self::spawn_with(kind, 1).await
    }

    /// With `signers` settlement signers.
    pub async fn spawn_with(kind: Db, signers: usize) -> Self {
        let devnet = Devnet::start(DevnetOptions::default())
            .await
            .expect("devnet");
        let token = deploy_fixtures(&devnet, U256::from(1_000_000_000u64)).await;
        let db = TestDb::create(kind).await;
        let app = ChainApp::start_app_with(
            db,
            &devnet,
            devnet.facilitator_keys[..signers].to_vec(),
            json!({ "assets": [{
                "address": token.to_checksum(None), "symbol": "TT", "decimals": 6,
                "eip712_name": TOKEN_NAME, "eip712_version": "1",
            }] }),
        )
        .await;
        let chain = ChainApp::with_merchant(app, devnet).await;
        Self { chain, token }
    }

    pub fn facilitator(&self) -> Address {
        self.chain.devnet.facilitator_keys[0].address()
    }

    pub async fn balance(&self, who: Address) -> U256 {
        ITestToken::new(self.token, self.chain.devnet.provider())
            .balanceOf(who)
            .call()
            .await
            .unwrap()
    }

    pub async fn allowance(&self, owner: Address) -> U256 {
        ITestToken::new(self.token, self.chain.devnet.provider())
            .allowance(owner, PERMIT2)
            .call()
            .await
            .unwrap()
    }

    /// A provider that signs as `who` (given gas money).
    async fn as_payer(&self, who: &PrivateKeySigner) -> impl Provider {
        self.chain
            .devnet
            .set_eth_balance(who.address(), U256::from(10u64).pow(U256::from(18)))
            .await
            .unwrap();
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(who.clone()))
            .connect_http(self.chain.devnet.rpc_url.parse().unwrap())
    }

    /// The payer's one-time `approve(Permit2, max)`, paid by the payer.
    pub async fn approve_permit2(&self, payer: usize) {
        let who = self.chain.payer(payer).clone();
        let p = self.as_payer(&who).await;
        let r = ITestToken::new(self.token, &p)
            .approve(PERMIT2, U256::MAX)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(r.status());
    }

    /// The payer burns one of its Permit2 nonces itself (no facilitator involved).
    pub async fn invalidate_nonce(&self, payer: usize, nonce: U256) {
        let who = self.chain.payer(payer).clone();
        let p = self.as_payer(&who).await;
        let r = IPermit2Nonces::new(PERMIT2, &p)
            .invalidateUnorderedNonces(nonce >> 8, U256::from(1) << (nonce & U256::from(0xff)))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(r.status());
    }

    pub async fn signer_nonce(&self) -> u64 {
        self.chain
            .devnet
            .nonce_of(self.facilitator())
            .await
            .unwrap()
    }
}

/// What a buyer signs for Permit2, with knobs for the bad payments.
#[derive(Clone)]
pub struct Permit2Payment {
    pub upto: bool,
    pub from: Address,
    pub token: Address,
    pub amount: U256,
    pub spender: Address,
    pub nonce: U256,
    pub deadline: u64,
    pub to: Address,
    pub facilitator: Address,
    pub valid_after: u64,
    pub chain_id: u64,
}

impl Permit2Payment {
    pub fn exact(app: &Permit2App, payer: usize, amount: u64) -> Self {
        Self {
            upto: false,
            from: app.chain.payer(payer).address(),
            token: app.token,
            amount: U256::from(amount),
            spender: EXACT_PROXY,
            nonce: U256::from_be_bytes(rand::random::<[u8; 32]>()),
            deadline: now() + 600,
            to: PAY_TO,
            facilitator: Address::ZERO,
            valid_after: now() - 60,
            chain_id: app.chain.devnet.chain_id,
        }
    }

    pub fn upto(app: &Permit2App, payer: usize, max: u64) -> Self {
        Self {
            upto: true,
            spender: UPTO_PROXY,
            facilitator: app.facilitator(),
            ..Self::exact(app, payer, max)
        }
    }

    pub fn sign(&self, signer: &PrivateKeySigner) -> String {
        let domain = eip712_domain! {
            name: "Permit2",
            chain_id: self.chain_id,
            verifying_contract: PERMIT2,
        };
        let hash = if self.upto {
            upto_sig::PermitWitnessTransferFrom {
                permitted: upto_sig::TokenPermissions {
                    token: self.token,
                    amount: self.amount,
                },
                spender: self.spender,
                nonce: self.nonce,
                deadline: U256::from(self.deadline),
                witness: upto_sig::Witness {
                    to: self.to,
                    facilitator: self.facilitator,
                    validAfter: U256::from(self.valid_after),
                },
            }
            .eip712_signing_hash(&domain)
        } else {
            exact_sig::PermitWitnessTransferFrom {
                permitted: exact_sig::TokenPermissions {
                    token: self.token,
                    amount: self.amount,
                },
                spender: self.spender,
                nonce: self.nonce,
                deadline: U256::from(self.deadline),
                witness: exact_sig::Witness {
                    to: self.to,
                    validAfter: U256::from(self.valid_after),
                },
            }
            .eip712_signing_hash(&domain)
        };
        let sig = signer.sign_hash_sync(&hash).unwrap();
        format!("0x{}", alloy::hex::encode(sig.as_bytes()))
    }

    /// A v2 facilitator request; `amount` is the requirements' amount (for upto at settle:
    /// what the server settles).
    pub fn body(&self, signature: &str, amount: u64) -> Value {
        let scheme = if self.upto { "upto" } else { "exact" };
        let mut witness = json!({
            "to": self.to.to_checksum(None),
            "validAfter": self.valid_after.to_string(),
        });
        let mut extra = json!({ "name": TOKEN_NAME, "version": "1" });
        if self.upto {
            witness["facilitator"] = json!(self.facilitator.to_checksum(None));
            extra["facilitatorAddress"] = json!(self.facilitator.to_checksum(None));
        } else {
            extra["assetTransferMethod"] = json!("permit2");
        }
        let requirements = |amount: U256| {
            json!({
                "scheme": scheme, "network": "eip155:84532", "amount": amount.to_string(),
                "asset": self.token.to_checksum(None), "payTo": PAY_TO.to_checksum(None),
                "maxTimeoutSeconds": 60, "extra": extra,
            })
        };
        json!({
            "x402Version": 2,
            "paymentPayload": {
                "x402Version": 2,
                "resource": { "url": "http://127.0.0.1/paid" },
                // upto: `accepted` is the signed maximum, the requirements what is settled.
                "accepted": requirements(if self.upto { self.amount } else { U256::from(amount) }),
                "payload": {
                    "signature": signature,
                    "permit2Authorization": {
                        "from": self.from.to_checksum(None),
                        "permitted": { "token": self.token.to_checksum(None), "amount": self.amount.to_string() },
                        "spender": self.spender.to_checksum(None),
                        "nonce": self.nonce.to_string(),
                        "deadline": self.deadline.to_string(),
                        "witness": witness,
                    }
                },
            },
            "paymentRequirements": requirements(U256::from(amount)),
        })
    }

    /// Sign and build, the requirements asking for the signed amount.
    pub fn signed(&self, signer: &PrivateKeySigner) -> Value {
        self.body(&self.sign(signer), self.amount.to::<u64>())
    }
}

/// Add the payer's EIP-2612 permit of Permit2 for `value` (the eip2612GasSponsoring extension).
pub async fn sponsor(app: &Permit2App, body: &mut Value, payer: usize, value: U256) {
    let signer = app.chain.payer(payer);
    let nonce = ITestToken::new(app.token, app.chain.devnet.provider())
        .nonces(signer.address())
        .call()
        .await
        .unwrap();
    let deadline = U256::from(now() + 600);
    let domain = eip712_domain! {
        name: TOKEN_NAME,
        version: "1",
        chain_id: app.chain.devnet.chain_id,
        verifying_contract: app.token,
    };
    let hash = Permit {
        owner: signer.address(),
        spender: PERMIT2,
        value,
        nonce,
        deadline,
    }
    .eip712_signing_hash(&domain);
    let sig = signer.sign_hash_sync(&hash).unwrap();
    body["paymentPayload"]["extensions"] = json!({
        "eip2612GasSponsoring": { "info": {
            "from": signer.address().to_checksum(None),
            "asset": app.token.to_checksum(None),
            "spender": PERMIT2.to_checksum(None),
            "amount": value.to_string(),
            "nonce": nonce.to_string(),
            "deadline": deadline.to_string(),
            "signature": format!("0x{}", alloy::hex::encode(sig.as_bytes())),
            "version": "1",
        } }
    });
}
