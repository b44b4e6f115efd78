//! A local Solana cluster for tests and `dev`: the `surfnet` runner (`devnet/surfnet/`, an
//! offline surfpool-core surfnet running the real SPL Token, Token-2022, associated-token-account
//! and Memo programs) spawned as a child process, set up over JSON-RPC with a USDC-like mint
//! (6 decimals) under each token program and funded payers.
//!
//! Also: a builder for the payment transaction exactly as the official `@x402/svm` 2.27 client
//! builds it ([`PaymentBuilder`]: a v0 message `[SetComputeUnitLimit 20000,
//! SetComputeUnitPrice 1, TransferChecked, Memo(16 random bytes, hex)]`, fee payer = the
//! facilitator's key, partially signed by the buyer), with knobs for the refused variants, and
//! cluster helpers: token balances, signature status, clock pause and time travel.
//!
//! Pitfalls handled here:
//! - The runner exits when its stdin closes: the child keeps a piped stdin, so a test process
//!   that dies (even by SIGKILL) takes its cluster with it. Drop sends SIGTERM, then SIGKILL.
//! - The runner's stdout is drained for the life of the process (after its READY line).
//! - A duplicate `sendTransaction` on surfnet answers `BlockhashNotFound`, not
//!   `AlreadyProcessed` as a real validator would: never key on send error text.
//! - `@x402/svm` accepts only the three known CAIP-2 networks, so the local cluster is served as
//!   devnet ([`DEVNET_NETWORK`]); surfnet's genesis hash is its own, not devnet's.
//!
//! The JSON-RPC client is hand-written on reqwest (as the facilitator's own is): no
//! `solana-client`, whose newer versions need a newer Rust and ~90 more crates.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
pub use solana_hash::Hash;
pub use solana_instruction::{AccountMeta, Instruction};
pub use solana_keypair::Keypair;
pub use solana_message::{AddressLookupTableAccount, VersionedMessage};
pub use solana_pubkey::Pubkey;
pub use solana_signature::Signature;
pub use solana_signer::Signer;
pub use solana_transaction::versioned::VersionedTransaction;

/// The CAIP-2 id the local cluster is served as: Solana devnet's (the official clients refuse
/// any network but mainnet, devnet and testnet).
pub const DEVNET_NETWORK: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";

pub const SYSTEM_PROGRAM: Pubkey = Pubkey::from_str_const("11111111111111111111111111111111");
pub const TOKEN_PROGRAM: Pubkey = Pubkey::from_str_const(x402::svm::TOKEN_PROGRAM);
pub const TOKEN_2022_PROGRAM: Pubkey = Pubkey::from_str_const(x402::svm::TOKEN_2022_PROGRAM);
pub const ASSOCIATED_TOKEN_PROGRAM: Pubkey =
    Pubkey::from_str_const(x402::svm::ASSOCIATED_TOKEN_PROGRAM);
pub const COMPUTE_BUDGET_PROGRAM: Pubkey =
    Pubkey::from_str_const(x402::svm::COMPUTE_BUDGET_PROGRAM);
pub const MEMO_PROGRAM: Pubkey = Pubkey::from_str_const(x402::svm::MEMO_PROGRAM);
/// The Lighthouse assertion program (the spec allows its instructions after the transfer).
pub const LIGHTHOUSE_PROGRAM: Pubkey = Pubkey::from_str_const(x402::svm::LIGHTHOUSE_PROGRAM);
pub const ADDRESS_LOOKUP_TABLE_PROGRAM: Pubkey =
    Pubkey::from_str_const("AddressLookupTab1e1111111111111111111111111");

/// The official client's compute-unit limit and price (micro-lamports per unit).
pub const DEFAULT_COMPUTE_UNIT_LIMIT: u32 = 20_000;
pub const DEFAULT_COMPUTE_UNIT_PRICE: u64 = 1;
/// The spec's cap on the compute-unit price (5 lamports per unit).
pub const MAX_COMPUTE_UNIT_PRICE: u64 = x402::exact::svm::MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS;

const LAMPORTS_PER_SOL: u64 = 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum SolanaError {
    #[error(
        "surfnet runner not found ({0}): run scripts/build-surfnet.sh or set X402_SURFNET_BIN"
    )]
    RunnerMissing(String),
    #[error("surfnet: {0}")]
    Runner(String),
    #[error("rpc {method}: {message}")]
    Rpc { method: String, message: String },
    #[error("transaction {0}: {1}")]
    Transaction(String, String),
    #[error("{0}")]
    Other(String),
}

fn other<E: std::fmt::Display>(e: E) -> SolanaError {
    SolanaError::Other(e.to_string())
}

mod instructions;
mod rpc;
mod transactions;
pub use instructions::*;
pub use rpc::*;
pub use transactions::*;

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

/// The `surfnet` runner binary: `X402_SURFNET_BIN`; else `surfnet` in `$CARGO_TARGET_DIR/debug`
/// (or `release`), beside or above the running executable (a test binary lives in
/// `target/debug/deps/`), in this workspace's `target/`, or in the runner crate's own `target/`.
pub fn surfnet_path() -> Result<PathBuf, SolanaError> {
    if let Some(p) = std::env::var_os("X402_SURFNET_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(SolanaError::RunnerMissing(p.display().to_string()))
        };
    }
    let mut candidates = Vec::new();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut targets: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Some(root) = manifest.parent() {
        targets.push(root.join("target"));
    }
    targets.push(manifest.join("surfnet/target"));
    for t in targets {
        candidates.push(t.join("debug/surfnet"));
        candidates.push(t.join("release/surfnet"));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(3) {
            candidates.push(dir.join("surfnet"));
        }
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            SolanaError::RunnerMissing(format!(
                "looked at {}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

#[derive(Debug, Clone)]
pub struct SolanaClusterOptions {
    /// Buyers, funded with `payer_tokens` of each mint (and `payer_lamports` of SOL).
    pub payers: usize,
    pub payer_tokens: u64,
    /// 0 by default: an x402 buyer pays no fees, the facilitator's fee payer does.
    pub payer_lamports: u64,
    /// Facilitator fee-payer keys, funded with `fee_payer_lamports`.
    pub fee_payers: usize,
    pub fee_payer_lamports: u64,
    /// Slot length in ms (400 as on mainnet: a blockhash lives ~60 s).
    pub slot_time_ms: u64,
    /// The runner binary (default: [`surfnet_path`]).
    pub runner: Option<PathBuf>,
}

impl Default for SolanaClusterOptions {
    fn default() -> Self {
        Self {
            payers: 4,
            payer_tokens: 1_000_000_000_000, // a million USDC
            payer_lamports: 0,
            fee_payers: 2,
            fee_payer_lamports: 100 * LAMPORTS_PER_SOL,
            slot_time_ms: 400,
            runner: None,
        }
    }
}

/// A running local cluster with two USDC-like mints and funded keys. Dropping it stops the
/// runner (as does the death of this process: the runner exits on EOF of its stdin).
pub struct SolanaCluster {
    pub rpc_url: String,
    pub ws_url: String,
    pub rpc: SolanaRpc,
    /// Mint authority of both mints and payer of every setup transaction (10,000 SOL).
    pub authority: Keypair,
    /// USDC-like, 6 decimals, under SPL Token (Tokenkeg…).
    pub usdc: Mint,
    /// USDC-like, 6 decimals, under Token-2022 (Tokenz…).
    pub usdc_2022: Mint,
    /// Facilitator fee-payer keys, funded with SOL.
    pub fee_payers: Vec<Keypair>,
    /// Buyers, with token accounts for both mints.
    pub payers: Vec<Keypair>,
    child: Option<Child>,
    /// Kept open for the runner's life: closing it stops the runner.
    _stdin: Option<ChildStdin>,
    /// How long the runner took to answer (spawn to READY).
    pub startup: Duration,
    pub slot_time: Duration,
}

struct Runner {
    child: Child,
    stdin: ChildStdin,
    rpc_url: String,
    ws_url: String,
}

fn spawn_runner(opts: &SolanaClusterOptions) -> Result<Runner, SolanaError> {
    let path = match &opts.runner {
        Some(p) => p.clone(),
        None => surfnet_path()?,
    };
    // DEVNET_SURFNET_LOG=FILE keeps the runner's stderr (errors, and with SURFNET_LOG=1 every
    // event).
    let stderr = match std::env::var_os("DEVNET_SURFNET_LOG") {
        Some(p) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null()),
        None => Stdio::null(),
    };
    let mut child = Command::new(&path)
        .args(["--port", "0", "--slot-time"])
        .arg(opts.slot_time_ms.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| SolanaError::Runner(format!("spawn {}: {e}", path.display())))?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut sent = false;
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if !sent {
                if let Some(rest) = line.trim().strip_prefix("READY ") {
                    let mut parts = rest.split_whitespace();
                    let http = parts.next().map(str::to_owned);
                    let ws = parts
                        .next()
                        .and_then(|w| w.strip_prefix("ws="))
                        .map(str::to_owned);
                    let _ = tx.send(http.zip(ws));
                    sent = true;
                }
            }
            line.clear();
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some((rpc_url, ws_url))) => Ok(Runner {
            child,
            stdin,
            rpc_url,
            ws_url,
        }),
        other => {
            let _ = child.kill();
            let status = child.wait().ok();
            Err(SolanaError::Runner(format!(
                "no READY line ({other:?}); exit status {status:?}"
            )))
        }
    }
}

impl SolanaCluster {
    pub async fn start() -> Result<SolanaCluster, SolanaError> {
        Self::start_with(SolanaClusterOptions::default()).await
    }

    pub async fn start_with(opts: SolanaClusterOptions) -> Result<SolanaCluster, SolanaError> {
        let t0 = Instant::now();
        let Runner {
            mut child,
            stdin,
            rpc_url,
            ws_url,
        } = spawn_runner(&opts)?;
        let startup = t0.elapsed();
        let rpc = SolanaRpc::new(rpc_url.clone());
        let authority = Keypair::new();
        let mut cluster = SolanaCluster {
            rpc_url,
            ws_url,
            rpc,
            authority,
            usdc: Mint {
                address: Pubkey::default(),
                token_program: TOKEN_PROGRAM,
                decimals: 6,
            },
            usdc_2022: Mint {
                address: Pubkey::default(),
                token_program: TOKEN_2022_PROGRAM,
                decimals: 6,
            },
            fee_payers: (0..opts.fee_payers).map(|_| Keypair::new()).collect(),
            payers: (0..opts.payers).map(|_| Keypair::new()).collect(),
            child: None,
            _stdin: None,
            startup,
            slot_time: Duration::from_millis(opts.slot_time_ms.max(1)),
        };
        match cluster.set_up(&opts).await {
            Ok(()) => {
                cluster.child = Some(child);
                cluster._stdin = Some(stdin);
                Ok(cluster)
            }
            Err(e) => {
                drop(stdin);
                crate::stop_child(&mut child);
                Err(e)
            }
        }
    }

    async fn set_up(&mut self, opts: &SolanaClusterOptions) -> Result<(), SolanaError> {
        self.rpc
            .airdrop(&self.authority.pubkey(), 10_000 * LAMPORTS_PER_SOL)
            .await?;
        self.usdc = self.create_mint(TOKEN_PROGRAM, 6).await?;
        self.usdc_2022 = self.create_mint(TOKEN_2022_PROGRAM, 6).await?;
        // Fee payers: one transfer each from the authority, in one transaction.
        let (blockhash, _) = self.rpc.latest_blockhash().await?;
        let mut sends = Vec::new();
        if !self.fee_payers.is_empty() {
            let ixs: Vec<Instruction> = self
                .fee_payers
                .iter()
                .map(|k| {
                    system_transfer(self.authority.pubkey(), k.pubkey(), opts.fee_payer_lamports)
                })
                .collect();
            sends.push(self.signed(&ixs, &[], blockhash.clone())?);
        }
        let payers: Vec<Pubkey> = self.payers.iter().map(|k| k.pubkey()).collect();
        for p in &payers {
            sends.push(self.signed(
                &self.funding_instructions(p, opts.payer_tokens, opts.payer_lamports),
                &[],
                blockhash.clone(),
            )?);
        }
        self.send_all(&sends).await
    }

    /// A transaction paid and signed by the authority (plus `signers`).
    fn signed(
        &self,
        ixs: &[Instruction],
        signers: &[&Keypair],
        blockhash: Hash,
    ) -> Result<VersionedTransaction, SolanaError> {
        let mut all = vec![&self.authority];
        all.extend_from_slice(signers);
        let message = compile_message(&self.authority.pubkey(), ixs, blockhash, false, &[])?;
        Ok(sign_partial(message, &all))
    }

    /// Send all, then wait for all to confirm.
    async fn send_all(&self, txs: &[VersionedTransaction]) -> Result<(), SolanaError> {
        let mut sigs = Vec::new();
        for tx in txs {
            sigs.push(self.rpc.send_transaction(tx).await?);
        }
        for sig in sigs {
            self.rpc.confirm(&sig, Duration::from_secs(30)).await?;
        }
        Ok(())
    }

    /// Create and initialize a new mint (authority = [`Self::authority`], no freeze authority).
    pub async fn create_mint(
        &self,
        token_program: Pubkey,
        decimals: u8,
    ) -> Result<Mint, SolanaError> {
        const MINT_LEN: usize = 82;
        let mint = Keypair::new();
        let rent = self
            .rpc
            .minimum_balance_for_rent_exemption(MINT_LEN)
            .await?;
        let (blockhash, _) = self.rpc.latest_blockhash().await?;
        let ixs = [
            create_account(
                self.authority.pubkey(),
                mint.pubkey(),
                rent,
                MINT_LEN as u64,
                token_program,
            ),
            initialize_mint2(
                token_program,
                mint.pubkey(),
                self.authority.pubkey(),
                decimals,
            ),
        ];
        self.rpc
            .send_and_confirm(&self.signed(&ixs, &[&mint], blockhash)?)
            .await?;
        Ok(Mint {
            address: mint.pubkey(),
            token_program,
            decimals,
        })
    }

    /// Token accounts for both mints, `tokens` minted into each, and `lamports` of SOL.
    fn funding_instructions(&self, owner: &Pubkey, tokens: u64, lamports: u64) -> Vec<Instruction> {
        let a = self.authority.pubkey();
        let mut ixs = Vec::new();
        for mint in [self.usdc, self.usdc_2022] {
            ixs.push(create_associated_token_account_idempotent(
                a,
                *owner,
                mint.address,
                mint.token_program,
            ));
            if tokens > 0 {
                ixs.push(mint_to_checked(
                    mint.token_program,
                    mint.address,
                    mint.ata(owner),
                    a,
                    tokens,
                    mint.decimals,
                ));
            }
        }
        if lamports > 0 {
            ixs.push(system_transfer(a, *owner, lamports));
        }
        ixs
    }

    /// Give `owner` token accounts for both mints (idempotent) holding `tokens` more of each,
    /// minted by real `MintToChecked` instructions.
    pub async fn fund(&self, owner: &Pubkey, tokens: u64) -> Result<(), SolanaError> {
        let (blockhash, _) = self.rpc.latest_blockhash().await?;
        let tx = self.signed(&self.funding_instructions(owner, tokens, 0), &[], blockhash)?;
        self.rpc.send_and_confirm(&tx).await.map(|_| ())
    }

    /// Create `owner`'s associated token accounts for both mints, empty (a `payTo` must have
    /// one: the official client does not create it).
    pub async fn create_token_accounts(&self, owner: &Pubkey) -> Result<(), SolanaError> {
        self.fund(owner, 0).await
    }

    /// A new funded buyer (token accounts for both mints, `tokens` of each).
    pub async fn new_payer(&self, tokens: u64) -> Result<Keypair, SolanaError> {
        let k = Keypair::new();
        self.fund(&k.pubkey(), tokens).await?;
        Ok(k)
    }

    /// Send SOL from the authority.
    pub async fn transfer_sol(&self, to: &Pubkey, lamports: u64) -> Result<(), SolanaError> {
        let (blockhash, _) = self.rpc.latest_blockhash().await?;
        let tx = self.signed(
            &[system_transfer(self.authority.pubkey(), *to, lamports)],
            &[],
            blockhash,
        )?;
        self.rpc.send_and_confirm(&tx).await.map(|_| ())
    }

    /// `owner`'s balance of `mint` (its associated token account; 0 when it has none).
    pub async fn token_balance(&self, owner: &Pubkey, mint: &Mint) -> Result<u64, SolanaError> {
        Ok(self
            .rpc
            .token_account_balance(&mint.ata(owner))
            .await?
            .unwrap_or(0))
    }

    /// The official client's payment of `amount` of `mint` from `buyer` to `pay_to` with
    /// `fee_payer` as `extra.feePayer`, on the latest blockhash (change fields for variants).
    pub async fn payment(
        &self,
        mint: &Mint,
        buyer: &Pubkey,
        pay_to: &Pubkey,
        amount: u64,
        fee_payer: &Pubkey,
    ) -> Result<PaymentBuilder, SolanaError> {
        let (blockhash, _) = self.rpc.latest_blockhash().await?;
        Ok(PaymentBuilder::new(
            mint, buyer, pay_to, amount, fee_payer, blockhash,
        ))
    }

    /// An address lookup table account holding `addresses`, written directly (surfnet's
    /// `setAccount`), active at once, with no authority.
    pub async fn create_lookup_table(
        &self,
        addresses: &[Pubkey],
    ) -> Result<AddressLookupTableAccount, SolanaError> {
        let key = Keypair::new().pubkey();
        // ProgramState::LookupTable(LookupTableMeta) (56 bytes) then the addresses.
        let mut data = Vec::with_capacity(56 + 32 * addresses.len());
        data.extend_from_slice(&1u32.to_le_bytes()); // variant LookupTable
        data.extend_from_slice(&u64::MAX.to_le_bytes()); // deactivation_slot: active
        data.extend_from_slice(&0u64.to_le_bytes()); // last_extended_slot
        data.push(0); // last_extended_slot_start_index
        data.push(0); // authority: None (frozen)
        data.extend_from_slice(&[0u8; 32]);
        data.extend_from_slice(&[0u8; 2]); // padding
        debug_assert_eq!(data.len(), 56);
        for a in addresses {
            data.extend_from_slice(a.as_ref());
        }
        let rent = self
            .rpc
            .minimum_balance_for_rent_exemption(data.len())
            .await?;
        self.rpc
            .set_account(&key, rent, &data, &ADDRESS_LOOKUP_TABLE_PROGRAM)
            .await?;
        Ok(AddressLookupTableAccount {
            key,
            addresses: addresses.to_vec(),
        })
    }

    /// The `solana` section of `dev-state.json`: where the cluster is, its mints, and the
    /// secret keys (base58 of the 64-byte keypair, as Phantom and `@solana/kit` read them) of
    /// the demo payers and the facilitator's fee payers.
    pub fn dev_state(&self) -> Value {
        let mint = |m: &Mint| json!({"address": m.address.to_string(), "decimals": m.decimals, "tokenProgram": m.token_program.to_string()});
        json!({
            "rpcUrl": self.rpc_url,
            "wsUrl": self.ws_url,
            "network": DEVNET_NETWORK,
            "mint": self.usdc.address.to_string(),
            "decimals": self.usdc.decimals,
            "tokenProgram": self.usdc.token_program.to_string(),
            "mints": {"token": mint(&self.usdc), "token2022": mint(&self.usdc_2022)},
            "payers": self.payers.iter().map(|k| json!({
                "address": k.pubkey().to_string(),
                "secretKey": k.to_base58_string(),
            })).collect::<Vec<_>>(),
            "feePayers": self.fee_payers.iter().map(|k| json!({
                "address": k.pubkey().to_string(),
                "secretKey": k.to_base58_string(),
            })).collect::<Vec<_>>(),
        })
    }

    /// Freeze the clock: no new slot, so no new block height and no transaction processed (a
    /// sent one waits, unlanded) until [`Self::resume_clock`]. surfnet's pause can let one
    /// already-queued tick through, so this returns once the processed height held for two
    /// slot times (there is no event to wait on). Returns that height.
    pub async fn pause_clock(&self) -> Result<u64, SolanaError> {
        self.rpc.pause_clock().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut height = self.processed_height().await?;
        loop {
            tokio::time::sleep(self.slot_time * 2).await;
            let now = self.processed_height().await?;
            if now == height {
                return Ok(height);
            }
            if Instant::now() >= deadline {
                return Err(SolanaError::Other("the clock did not stop".into()));
            }
            height = now;
        }
    }

    async fn processed_height(&self) -> Result<u64, SolanaError> {
        self.rpc
            .call("getBlockHeight", json!([{"commitment": "processed"}]))
            .await
    }

    pub async fn resume_clock(&self) -> Result<(), SolanaError> {
        self.rpc.resume_clock().await.map(|_| ())
    }

    /// The runner's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop the runner now (also done on drop).
    pub async fn stop(mut self) {
        self._stdin.take();
        if let Some(mut child) = self.child.take() {
            tokio::task::spawn_blocking(move || crate::stop_child(&mut child))
                .await
                .ok();
        }
    }
}

impl Drop for SolanaCluster {
    fn drop(&mut self) {
        self._stdin.take();
        if let Some(mut child) = self.child.take() {
            crate::stop_child(&mut child);
        }
    }
}
