//! Permit2 payments on a real anvil: `exact` via Permit2 on a plain ERC-20, `upto` (the server
//! settles less than the maximum), `eip2612GasSponsoring`, every bad-payment reason shown by a
//! real bad payment, and one success out of 30 concurrent settles of one authorization.
//!
//! Fixtures: Permit2's canonical runtime (npm `@uniswap/v4-periphery` 1.0.3) and our two proxies
//! (`tests/fixtures/permit2/*.sol`, compiled by `build.mjs` into `artifacts.json`) placed with
//! `anvil_setCode` at the canonical addresses; an OpenZeppelin ERC20 + ERC20Permit deployed.
//! Buyers sign with alloy here, not with the code under test.

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

use crate::both_dbs;
use crate::chain_helpers::*;
use crate::helpers::*;

pub const PERMIT2: Address = address!("0x000000000022D473030F116dDEE9F6B43aC78BA3");
pub const EXACT_PROXY: Address = address!("0x402085c248EeA27D92E8b30b2C58ed07f9E20001");
pub const UPTO_PROXY: Address = address!("0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");
const TOKEN_NAME: &str = "Test Token";

mod exact_sig {
    alloy::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; uint256 validAfter; }
        struct PermitWitnessTransferFrom { TokenPermissions permitted; address spender; uint256 nonce; uint256 deadline; Witness witness; }
    }
}

mod upto_sig {
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

fn artifacts() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/permit2/artifacts.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex_bytes(v: &Value) -> Bytes {
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

fn reason(answer: &Value) -> &str {
    answer["invalidReason"]
        .as_str()
        .or(answer["errorReason"].as_str())
        .unwrap_or_default()
}

both_dbs!(
    exact_permit2_on_a_plain_erc20_verifies_and_settles_once,
    |app: Permit2App| {
        app.approve_permit2(0).await;
        let payer = app.chain.payer(0).clone();
        let before = (
            app.balance(payer.address()).await,
            app.balance(PAY_TO).await,
        );
        let body = Permit2Payment::exact(&app, 0, 25_000).signed(&payer);

        let v = app.chain.verify(&body).await;
        assert_eq!(v["isValid"], true, "{v}");
        assert_eq!(v["payer"], json!(payer.address().to_checksum(None)));

        let s = app.chain.settle(&body).await;
        assert_eq!(s["success"], true, "{s}");
        assert_eq!(s["amount"], "25000", "{s}");
        let tx: alloy::primitives::B256 = s["transaction"].as_str().unwrap().parse().unwrap();
        let receipt = app.chain.devnet.receipt(tx).await.unwrap().unwrap();
        assert!(receipt.status());
        assert_eq!(receipt.to, Some(EXACT_PROXY), "sent to the exact proxy");
        assert_eq!(
            app.balance(payer.address()).await,
            before.0 - U256::from(25_000)
        );
        assert_eq!(app.balance(PAY_TO).await, before.1 + U256::from(25_000));

        // The same authorization again: the ledger refuses it, and verify no longer calls it valid.
        let again = app.chain.settle(&body).await;
        assert_eq!(again["success"], false);
        assert_eq!(reason(&again), "invalid_exact_evm_nonce_already_used");
        let v = app.chain.verify(&body).await;
        assert_eq!(v["isValid"], false);
        assert_eq!(app.balance(PAY_TO).await, before.1 + U256::from(25_000));

        // The row is keyed by (network, token, owner, Permit2 nonce) and readable by its hash.
        let row = app.chain.settlement(&tx.to_string()).await;
        assert_eq!(row["asset"], json!(app.token.to_checksum(None)), "{row}");
    }
);

both_dbs!(
    every_bad_permit2_payment_gets_its_reason,
    |app: Permit2App| {
        app.approve_permit2(0).await;
        let payer = app.chain.payer(0).clone();
        let start_nonce = app.signer_nonce().await;
        let good = Permit2Payment::exact(&app, 0, 1_000);

        let mut cases: Vec<(&str, Value)> = Vec::new();
        let mut p = good.clone();
        p.spender = Address::repeat_byte(0x42);
        cases.push(("invalid_permit2_spender", p.signed(&payer)));
        // Signed for the upto proxy but presented as exact: the wrong proxy.
        let mut p = good.clone();
        p.spender = UPTO_PROXY;
        cases.push(("invalid_permit2_spender", p.signed(&payer)));
        let mut p = good.clone();
        p.deadline = now() - 1;
        cases.push(("permit2_deadline_expired", p.signed(&payer)));
        let mut p = good.clone();
        p.valid_after = now() + 3600;
        cases.push(("permit2_not_yet_valid", p.signed(&payer)));
        let mut p = good.clone();
        p.to = Address::repeat_byte(0x07);
        cases.push(("invalid_permit2_recipient_mismatch", p.signed(&payer)));
        cases.push((
            "permit2_amount_mismatch",
            good.body(&good.sign(&payer), 999),
        ));
        // Signed by someone else: Permit2 refuses the signature.
        cases.push((
            "invalid_permit2_signature",
            good.body(&good.sign(app.chain.payer(1)), 1_000),
        ));
        // More than the payer has.
        let mut p = good.clone();
        p.amount = U256::from(10u64).pow(U256::from(15));
        cases.push(("permit2_insufficient_balance", p.signed(&payer)));
        // A nonce the payer burned on chain itself.
        let mut p = good.clone();
        p.nonce = U256::from(77);
        app.invalidate_nonce(0, p.nonce).await;
        cases.push(("permit2_invalid_nonce", p.signed(&payer)));
        // No Permit2 allowance (payer 1 never approved) and no sponsoring.
        let p = Permit2Payment::exact(&app, 1, 1_000);
        cases.push(("permit2_allowance_required", p.signed(app.chain.payer(1))));
        // A permit of another token (USDC) presented for this one.
        let mut p = good.clone();
        p.token = app.chain.devnet.usdc;
        let mut body = p.signed(&payer);
        body["paymentPayload"]["accepted"]["asset"] = json!(app.token.to_checksum(None));
        body["paymentRequirements"]["asset"] = json!(app.token.to_checksum(None));
        cases.push(("permit2_token_mismatch", body));
        // upto: a witness naming another facilitator; a settle above the maximum.
        let mut p = Permit2Payment::upto(&app, 0, 5_000);
        p.facilitator = Address::repeat_byte(0x66);
        cases.push(("upto_facilitator_mismatch", p.signed(&payer)));

        for (expected, body) in &cases {
            let v = app.chain.verify(body).await;
            assert_eq!(v["isValid"], false, "{expected}: {v}");
            assert_eq!(reason(&v), *expected, "verify: {v}");
            let s = app.chain.settle(body).await;
            assert_eq!(s["success"], false, "{expected}: {s}");
            assert_eq!(reason(&s), *expected, "settle: {s}");
        }
        let up = Permit2Payment::upto(&app, 0, 5_000);
        let over = up.body(&up.sign(&payer), 5_001);
        let s = app.chain.settle(&over).await;
        assert_eq!(
            reason(&s),
            "invalid_upto_evm_payload_settlement_exceeds_amount",
            "{s}"
        );

        // The proxy missing from the chain.
        app.chain
            .devnet
            .provider()
            .raw_request::<_, ()>("anvil_setCode".into(), (EXACT_PROXY, Bytes::new()))
            .await
            .unwrap();
        let v = app.chain.verify(&good.signed(&payer)).await;
        assert_eq!(reason(&v), "permit2_proxy_not_deployed", "{v}");

        // No refusal spent gas, and nothing moved.
        assert_eq!(app.signer_nonce().await, start_nonce);
        assert_eq!(app.balance(PAY_TO).await, U256::ZERO);
    }
);

both_dbs!(
    upto_settles_what_the_server_used_not_the_maximum,
    |app: Permit2App| {
        app.approve_permit2(0).await;
        let payer = app.chain.payer(0).clone();
        let before = app.balance(payer.address()).await;
        let p = Permit2Payment::upto(&app, 0, 20_000);
        let sig = p.sign(&payer);

        // Verify judges the signed maximum.
        let v = app.chain.verify(&p.body(&sig, 20_000)).await;
        assert_eq!(v["isValid"], true, "{v}");
        // Settle carries the amount used.
        let s = app.chain.settle(&p.body(&sig, 1_858)).await;
        assert_eq!(s["success"], true, "{s}");
        assert_eq!(s["amount"], "1858", "{s}");
        let tx: alloy::primitives::B256 = s["transaction"].as_str().unwrap().parse().unwrap();
        let receipt = app.chain.devnet.receipt(tx).await.unwrap().unwrap();
        assert_eq!(receipt.to, Some(UPTO_PROXY));
        assert_eq!(
            app.balance(payer.address()).await,
            before - U256::from(1_858)
        );
        assert_eq!(app.balance(PAY_TO).await, U256::from(1_858));

        // The rest of the maximum cannot be taken with the same authorization.
        let again = app.chain.settle(&p.body(&sig, 10_000)).await;
        assert_eq!(again["success"], false);
        assert_eq!(app.balance(PAY_TO).await, U256::from(1_858));
    }
);

both_dbs!(
    a_payer_without_allowance_pays_with_eip2612_sponsoring,
    |app: Permit2App| {
        // Payer 1 never approved Permit2.
        let payer = app.chain.payer(1).clone();
        assert_eq!(app.allowance(payer.address()).await, U256::ZERO);
        let start_nonce = app.signer_nonce().await;
        let p = Permit2Payment::exact(&app, 1, 4_000);
        let plain = p.signed(&payer);

        // Without the extension: the allowance reason, and no gas spent.
        let s = app.chain.settle(&plain).await;
        assert_eq!(reason(&s), "permit2_allowance_required", "{s}");
        assert_eq!(app.signer_nonce().await, start_nonce);

        // A sponsored permit for the wrong amount is refused before the chain.
        let mut wrong = plain.clone();
        sponsor(&app, &mut wrong, 1, U256::from(3_999)).await;
        let v = app.chain.verify(&wrong).await;
        assert_eq!(reason(&v), "permit2_2612_amount_mismatch", "{v}");

        let mut body = plain.clone();
        sponsor(&app, &mut body, 1, U256::from(4_000)).await;
        // A sponsored permit that is not this payment's, or malformed, gets its reason.
        let foreign = [
            (
                "eip2612_from_mismatch",
                "from",
                json!(app.chain.payer(0).address()),
            ),
            (
                "eip2612_asset_mismatch",
                "asset",
                json!(app.chain.devnet.usdc),
            ),
            ("eip2612_spender_not_permit2", "spender", json!(EXACT_PROXY)),
            (
                "eip2612_deadline_expired",
                "deadline",
                json!((now() - 1).to_string()),
            ),
            (
                "invalid_eip2612_extension_format",
                "signature",
                json!("0x1234"),
            ),
            ("invalid_eip2612_extension_format", "amount", json!("-1")),
        ];
        for (expected, field, value) in foreign {
            let mut bad = body.clone();
            bad["paymentPayload"]["extensions"]["eip2612GasSponsoring"]["info"][field] = value;
            let v = app.chain.verify(&bad).await;
            assert_eq!(reason(&v), expected, "{field}: {v}");
        }
        assert_eq!(app.signer_nonce().await, start_nonce);

        let v = app.chain.verify(&body).await;
        assert_eq!(v["isValid"], true, "{v}");
        let s = app.chain.settle(&body).await;
        assert_eq!(s["success"], true, "{s}");
        // One transaction (settleWithPermit): the permit and the transfer together.
        assert_eq!(app.signer_nonce().await, start_nonce + 1);
        assert_eq!(app.balance(PAY_TO).await, U256::from(4_000));
        assert_eq!(app.allowance(payer.address()).await, U256::ZERO);

        // The upto proxy takes a sponsored permit too.
        let up = Permit2Payment::upto(&app, 1, 3_000);
        let sig = up.sign(&payer);
        let mut body = up.body(&sig, 2_000);
        sponsor(&app, &mut body, 1, U256::from(3_000)).await;
        let s = app.chain.settle(&body).await;
        assert_eq!(s["success"], true, "{s}");
        assert_eq!(app.balance(PAY_TO).await, U256::from(6_000));
    }
);

both_dbs!(
    thirty_concurrent_settles_of_one_permit2_authorization_succeed_once,
    |app: Permit2App| {
        app.approve_permit2(0).await;
        let payer = app.chain.payer(0).clone();
        let body = Permit2Payment::exact(&app, 0, 7_000).signed(&payer);
        let answers = futures::future::join_all(
            (0..30).map(|_| app.chain.post_x402("/api/v1/settle", &body)),
        )
        .await;
        let mut successes = 0;
        for res in answers {
            assert_eq!(res.status(), 200);
            let a: Value = res.json().await.unwrap();
            if a["success"] == true {
                successes += 1;
            } else {
                assert_eq!(reason(&a), "invalid_exact_evm_nonce_already_used", "{a}");
            }
        }
        assert_eq!(successes, 1);
        assert_eq!(app.balance(PAY_TO).await, U256::from(7_000));
    }
);

/// With several signers, an `upto` settlement is sent by the one its witness names (the
/// proxy takes it from nobody else), whichever the router would pick next.
#[actix_web::test]
async fn upto_is_sent_by_the_signer_its_witness_names() {
    let app = Permit2App::spawn_with(Db::Sqlite, 2).await;
    app.approve_permit2(0).await;
    let payer = app.chain.payer(0).clone();
    for named in [1, 0, 1] {
        let mut p = Permit2Payment::upto(&app, 0, 3_000);
        p.facilitator = app.chain.devnet.facilitator_keys[named].address();
        let sig = p.sign(&payer);
        let s = app.chain.settle(&p.body(&sig, 1_000)).await;
        assert_eq!(s["success"], true, "{s}");
        let tx: alloy::primitives::B256 = s["transaction"].as_str().unwrap().parse().unwrap();
        let receipt = app.chain.devnet.receipt(tx).await.unwrap().unwrap();
        assert_eq!(receipt.from, p.facilitator);
    }
    assert_eq!(app.balance(PAY_TO).await, U256::from(3_000));
}

both_dbs!(supported_lists_permit2_upto_and_sponsoring, |app| {
    let body: Value = app
        .get("/api/v1/networks", None)
        .await
        .json()
        .await
        .unwrap();
    let kinds = body["kinds"].as_array().unwrap();
    let exact_v2 = kinds
        .iter()
        .find(|k| k["x402Version"] == 2 && k["scheme"] == "exact")
        .unwrap();
    assert_eq!(
        exact_v2["extra"]["assetTransferMethods"],
        json!(["eip3009", "permit2"])
    );
    assert_eq!(
        exact_v2["extra"]["extensions"],
        json!(["eip2612GasSponsoring"])
    );
    let upto = kinds.iter().find(|k| k["scheme"] == "upto").unwrap();
    assert_eq!(upto["network"], "eip155:84532");
    assert_eq!(upto["extra"]["facilitatorAddress"], upto["feePayer"]);
    assert_eq!(body["extensions"], json!(["eip2612GasSponsoring"]));
});

both_dbs!(
    the_official_v2_client_pays_with_permit2_exact_and_upto,
    |app: Permit2App| {
        app.approve_permit2(0).await;
        let payer = app.chain.payer(0).address();
        let e2e_pay_to = address!("0x0000000000000000000000000000000000000e2e");
        let before = app.balance(payer).await;
        let state = json!({
            "facilitatorUrl": app.chain.app.url("/api/v1"),
            "clientId": app.chain.client_id,
            "clientToken": app.chain.client_token,
            "network": "base-sepolia",
            "chainId": app.chain.devnet.chain_id,
            "rpcUrl": app.chain.devnet.rpc_url,
            "token": app.token.to_checksum(None),
            "tokenName": TOKEN_NAME,
            "payerPrivateKeys": app.chain.devnet.payers.iter()
                .map(|k| format!("0x{}", alloy::hex::encode(k.to_bytes())))
                .collect::<Vec<_>>(),
        });
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), state.to_string()).unwrap();
        let path = file.path().to_str().unwrap();
        let result = crate::replay::node("tools/e2e/permit2.mjs", &[path]).await;
        assert_eq!(result["ok"], true, "{result}");
        assert_eq!(result["exact"]["settlement"]["amount"], "25000", "{result}");
        assert_eq!(result["upto"]["settlement"]["amount"], "1858", "{result}");
        assert_eq!(app.balance(e2e_pay_to).await, U256::from(25_000 + 1_858));
        assert_eq!(
            app.balance(payer).await,
            before - U256::from(25_000 + 1_858)
        );
    }
);
