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

// ---------------------------------------------------------------------------------------------
// Instructions (hand-encoded: each is a few bytes, not worth a crate per program)
// ---------------------------------------------------------------------------------------------

/// ComputeBudget `SetComputeUnitLimit` (discriminator 2, u32 LE).
pub fn set_compute_unit_limit(units: u32) -> Instruction {
    let mut data = vec![2u8];
    data.extend_from_slice(&units.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET_PROGRAM, &data, vec![])
}

/// ComputeBudget `SetComputeUnitPrice` (discriminator 3, u64 LE micro-lamports).
pub fn set_compute_unit_price(micro_lamports: u64) -> Instruction {
    let mut data = vec![3u8];
    data.extend_from_slice(&micro_lamports.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET_PROGRAM, &data, vec![])
}

/// A token instruction's data `[tag, amount (u64 LE), decimals]` (the `*Checked` ones).
fn checked_data(tag: u8, amount: u64, decimals: u8) -> Vec<u8> {
    let mut data = vec![tag];
    data.extend_from_slice(&amount.to_le_bytes());
    data.push(decimals);
    data
}

/// SPL Token / Token-2022 `TransferChecked` (tag 12, u64 LE amount, u8 decimals).
pub fn transfer_checked(
    token_program: Pubkey,
    source: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    authority: Pubkey,
    amount: u64,
    decimals: u8,
) -> Instruction {
    Instruction::new_with_bytes(
        token_program,
        &checked_data(12, amount, decimals),
        vec![
            AccountMeta::new(source, false),
            AccountMeta::new_readonly(mint, false),
            AccountMeta::new(destination, false),
            AccountMeta::new_readonly(authority, true),
        ],
    )
}

/// A memo with no signer accounts (as the official client sends it).
pub fn memo(data: &[u8]) -> Instruction {
    Instruction::new_with_bytes(MEMO_PROGRAM, data, vec![])
}

/// System `CreateAccount` (index 0).
pub fn create_account(
    from: Pubkey,
    to: Pubkey,
    lamports: u64,
    space: u64,
    owner: Pubkey,
) -> Instruction {
    let mut data = 0u32.to_le_bytes().to_vec();
    data.extend_from_slice(&lamports.to_le_bytes());
    data.extend_from_slice(&space.to_le_bytes());
    data.extend_from_slice(owner.as_ref());
    Instruction::new_with_bytes(
        SYSTEM_PROGRAM,
        &data,
        vec![AccountMeta::new(from, true), AccountMeta::new(to, true)],
    )
}

/// System `Transfer` (index 2) of lamports.
pub fn system_transfer(from: Pubkey, to: Pubkey, lamports: u64) -> Instruction {
    let mut data = 2u32.to_le_bytes().to_vec();
    data.extend_from_slice(&lamports.to_le_bytes());
    Instruction::new_with_bytes(
        SYSTEM_PROGRAM,
        &data,
        vec![AccountMeta::new(from, true), AccountMeta::new(to, false)],
    )
}

/// Token `InitializeMint2` (tag 20): no freeze authority.
pub fn initialize_mint2(
    token_program: Pubkey,
    mint: Pubkey,
    authority: Pubkey,
    decimals: u8,
) -> Instruction {
    let mut data = vec![20u8, decimals];
    data.extend_from_slice(authority.as_ref());
    data.push(0); // freeze authority: None
    Instruction::new_with_bytes(token_program, &data, vec![AccountMeta::new(mint, false)])
}

/// Token `MintToChecked` (tag 14).
pub fn mint_to_checked(
    token_program: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    authority: Pubkey,
    amount: u64,
    decimals: u8,
) -> Instruction {
    Instruction::new_with_bytes(
        token_program,
        &checked_data(14, amount, decimals),
        vec![
            AccountMeta::new(mint, false),
            AccountMeta::new(destination, false),
            AccountMeta::new_readonly(authority, true),
        ],
    )
}

/// The associated token account of `owner` for `mint` under `token_program`: the verifier's
/// own derivation.
pub use x402::svm::associated_token_address;

/// Associated-token-account `CreateIdempotent` (data `[1]`), paid by `payer`.
pub fn create_associated_token_account_idempotent(
    payer: Pubkey,
    owner: Pubkey,
    mint: Pubkey,
    token_program: Pubkey,
) -> Instruction {
    Instruction::new_with_bytes(
        ASSOCIATED_TOKEN_PROGRAM,
        &[1],
        vec![
            AccountMeta::new(payer, true),
            AccountMeta::new(
                associated_token_address(&owner, &mint, &token_program),
                false,
            ),
            AccountMeta::new_readonly(owner, false),
            AccountMeta::new_readonly(mint, false),
            AccountMeta::new_readonly(SYSTEM_PROGRAM, false),
            AccountMeta::new_readonly(token_program, false),
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------------

/// Compile `instructions` into a v0 message (with `lookup_tables`) or a legacy one.
pub fn compile_message(
    fee_payer: &Pubkey,
    instructions: &[Instruction],
    blockhash: Hash,
    legacy: bool,
    lookup_tables: &[AddressLookupTableAccount],
) -> Result<VersionedMessage, SolanaError> {
    if legacy {
        Ok(VersionedMessage::Legacy(
            solana_message::legacy::Message::new_with_blockhash(
                instructions,
                Some(fee_payer),
                &blockhash,
            ),
        ))
    } else {
        solana_message::v0::Message::try_compile(fee_payer, instructions, lookup_tables, blockhash)
            .map(VersionedMessage::V0)
            .map_err(other)
    }
}

/// An unsigned transaction of `message` (every required signature zero), signed by those of
/// `signers` the message requires; the others are ignored. Partial signing, as a buyer does.
pub fn sign_partial(message: VersionedMessage, signers: &[&Keypair]) -> VersionedTransaction {
    let mut tx = VersionedTransaction {
        signatures: vec![
            Signature::default();
            usize::from(message.header().num_required_signatures)
        ],
        message,
    };
    add_signatures(&mut tx, signers);
    tx
}

/// Sign `tx`'s message with each of `signers` the message requires (the facilitator's
/// co-sign is `add_signatures(&mut tx, &[&fee_payer])`).
pub fn add_signatures(tx: &mut VersionedTransaction, signers: &[&Keypair]) {
    let bytes = tx.message.serialize();
    let required = usize::from(tx.message.header().num_required_signatures);
    let keys = tx.message.static_account_keys();
    for signer in signers {
        if let Some(i) = keys
            .iter()
            .take(required)
            .position(|k| *k == signer.pubkey())
        {
            tx.signatures[i] = signer.sign_message(&bytes);
        }
    }
}

/// The wire form: bincode of the transaction, base64 (the `payload.transaction` of x402).
pub fn encode_transaction(tx: &VersionedTransaction) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bincode::serialize(tx).expect("a transaction serializes"))
}

pub fn decode_transaction(b64: &str) -> Result<VersionedTransaction, SolanaError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(other)?;
    bincode::deserialize(&bytes).map_err(other)
}

/// A USDC-like mint on the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mint {
    pub address: Pubkey,
    pub token_program: Pubkey,
    pub decimals: u8,
}

impl Mint {
    /// `owner`'s associated token account for this mint.
    pub fn ata(&self, owner: &Pubkey) -> Pubkey {
        associated_token_address(owner, &self.address, &self.token_program)
    }
}

/// The payment transaction of the official `@x402/svm` 2.27 client (`ExactSvmScheme`'s
/// `createPaymentPayload`), field by field, so a test can change one thing and get a refused
/// variant. [`PaymentBuilder::new`] gives exactly the official transaction:
/// v0, `[SetComputeUnitLimit 20000, SetComputeUnitPrice 1, TransferChecked(buyer's ATA ->
/// payTo's ATA, authority buyer), Memo(32 hex chars of 16 random bytes)]`, fee payer the
/// facilitator's key, signed by the buyer only.
///
/// Knobs: every field is public (`amount`, `mint`, `destination`, `authority`, `source`,
/// `compute_unit_price`, `legacy`, `lookup_tables`, ...); `before_transfer` / `extra` add
/// instructions; [`PaymentBuilder::instructions`] + [`PaymentBuilder::build_with`] allow any
/// reordering or removal.
#[derive(Debug, Clone)]
pub struct PaymentBuilder {
    pub fee_payer: Pubkey,
    pub token_program: Pubkey,
    pub mint: Pubkey,
    pub decimals: u8,
    pub source: Pubkey,
    pub destination: Pubkey,
    pub authority: Pubkey,
    pub amount: u64,
    /// `None` leaves the instruction out.
    pub compute_unit_limit: Option<u32>,
    /// `None` leaves the instruction out.
    pub compute_unit_price: Option<u64>,
    /// The memo's bytes (`extra.memo` when the seller gives one); `None` leaves it out.
    pub memo: Option<Vec<u8>>,
    /// Instructions placed between the compute-budget ones and the transfer.
    pub before_transfer: Vec<Instruction>,
    /// Instructions appended after the memo.
    pub extra: Vec<Instruction>,
    pub blockhash: Hash,
    /// A legacy message instead of v0.
    pub legacy: bool,
    /// Tables the v0 message may load addresses from (any key of an instruction that is in one
    /// and is neither a signer nor a program id is loaded from it).
    pub lookup_tables: Vec<AddressLookupTableAccount>,
}

impl PaymentBuilder {
    /// The official payment of `amount` (atomic units) of `mint` from `buyer` to `pay_to`, for a
    /// facilitator whose `extra.feePayer` is `fee_payer`.
    pub fn new(
        mint: &Mint,
        buyer: &Pubkey,
        pay_to: &Pubkey,
        amount: u64,
        fee_payer: &Pubkey,
        blockhash: Hash,
    ) -> Self {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let memo: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            fee_payer: *fee_payer,
            token_program: mint.token_program,
            mint: mint.address,
            decimals: mint.decimals,
            source: mint.ata(buyer),
            destination: mint.ata(pay_to),
            authority: *buyer,
            amount,
            compute_unit_limit: Some(DEFAULT_COMPUTE_UNIT_LIMIT),
            compute_unit_price: Some(DEFAULT_COMPUTE_UNIT_PRICE),
            memo: Some(memo.into_bytes()),
            before_transfer: vec![],
            extra: vec![],
            blockhash,
            legacy: false,
            lookup_tables: vec![],
        }
    }

    /// Transfer from `owner`'s own token account with `owner` as authority (e.g. the fee
    /// payer paying out of its own account: refused).
    pub fn from_owner(mut self, owner: &Pubkey) -> Self {
        self.source = associated_token_address(owner, &self.mint, &self.token_program);
        self.authority = *owner;
        self
    }

    /// The `TransferChecked` of this payment.
    pub fn transfer_instruction(&self) -> Instruction {
        transfer_checked(
            self.token_program,
            self.source,
            self.mint,
            self.destination,
            self.authority,
            self.amount,
            self.decimals,
        )
    }

    /// The instructions, in the official order.
    pub fn instructions(&self) -> Vec<Instruction> {
        let mut ixs = Vec::new();
        if let Some(units) = self.compute_unit_limit {
            ixs.push(set_compute_unit_limit(units));
        }
        if let Some(price) = self.compute_unit_price {
            ixs.push(set_compute_unit_price(price));
        }
        ixs.extend(self.before_transfer.iter().cloned());
        ixs.push(self.transfer_instruction());
        if let Some(m) = &self.memo {
            ixs.push(memo(m));
        }
        ixs.extend(self.extra.iter().cloned());
        ixs
    }

    pub fn message(&self) -> Result<VersionedMessage, SolanaError> {
        self.message_with(&self.instructions())
    }

    pub fn message_with(&self, ixs: &[Instruction]) -> Result<VersionedMessage, SolanaError> {
        compile_message(
            &self.fee_payer,
            ixs,
            self.blockhash.clone(),
            self.legacy,
            &self.lookup_tables,
        )
    }

    /// The transaction signed by those of `signers` it requires (normally just the buyer).
    pub fn build(&self, signers: &[&Keypair]) -> Result<VersionedTransaction, SolanaError> {
        Ok(sign_partial(self.message()?, signers))
    }

    /// [`PaymentBuilder::build`] with other instructions (start from [`Self::instructions`]).
    pub fn build_with(
        &self,
        ixs: &[Instruction],
        signers: &[&Keypair],
    ) -> Result<VersionedTransaction, SolanaError> {
        Ok(sign_partial(self.message_with(ixs)?, signers))
    }
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC
// ---------------------------------------------------------------------------------------------

/// A transaction's status as `getSignatureStatuses` reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureStatus {
    pub slot: u64,
    pub confirmations: Option<u64>,
    /// `TransactionError` as JSON, `None` when it succeeded.
    pub err: Option<Value>,
    /// "processed", "confirmed" or "finalized".
    pub confirmation_status: Option<String>,
}

impl SignatureStatus {
    pub fn is_confirmed(&self) -> bool {
        matches!(
            self.confirmation_status.as_deref(),
            Some("confirmed" | "finalized")
        )
    }
}

/// An account as `getAccountInfo` (base64) reports it.
#[derive(Debug, Clone)]
pub struct AccountInfo {
    pub lamports: u64,
    pub owner: Pubkey,
    pub data: Vec<u8>,
    pub executable: bool,
}

/// Solana JSON-RPC over reqwest, with surfnet's cheatcodes.
#[derive(Debug, Clone)]
pub struct SolanaRpc {
    pub url: String,
    http: reqwest::Client,
    id: std::sync::Arc<AtomicU64>,
}

impl SolanaRpc {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            id: Default::default(),
        }
    }

    /// One call; a JSON-RPC error is `SolanaError::Rpc` with its message (and data).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, SolanaError> {
        let err = |message: String| SolanaError::Rpc {
            method: method.to_owned(),
            message,
        };
        let id = self.id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?
            .json()
            .await
            .map_err(|e| err(e.to_string()))?;
        if let Some(e) = resp.get("error") {
            return Err(err(e.to_string()));
        }
        serde_json::from_value(resp.get("result").cloned().unwrap_or(Value::Null))
            .map_err(|e| err(format!("{e}: {resp}")))
    }

    /// `result.value` of a call answering `{context, value}`.
    async fn call_value<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, SolanaError> {
        let v: Value = self.call(method, params).await?;
        serde_json::from_value(v.get("value").cloned().unwrap_or(Value::Null)).map_err(|e| {
            SolanaError::Rpc {
                method: method.to_owned(),
                message: format!("{e}: {v}"),
            }
        })
    }

    /// The latest blockhash and its `lastValidBlockHeight`.
    pub async fn latest_blockhash(&self) -> Result<(Hash, u64), SolanaError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Latest {
            blockhash: String,
            last_valid_block_height: u64,
        }
        let l: Latest = self
            .call_value("getLatestBlockhash", json!([{"commitment": "confirmed"}]))
            .await?;
        Ok((
            l.blockhash.parse().map_err(other)?,
            l.last_valid_block_height,
        ))
    }

    pub async fn is_blockhash_valid(&self, hash: &Hash) -> Result<bool, SolanaError> {
        self.call_value(
            "isBlockhashValid",
            json!([hash.to_string(), {"commitment": "confirmed"}]),
        )
        .await
    }

    pub async fn block_height(&self) -> Result<u64, SolanaError> {
        self.call("getBlockHeight", json!([{"commitment": "confirmed"}]))
            .await
    }

    pub async fn slot(&self) -> Result<u64, SolanaError> {
        self.call("getSlot", json!([{"commitment": "confirmed"}]))
            .await
    }

    pub async fn genesis_hash(&self) -> Result<String, SolanaError> {
        self.call("getGenesisHash", json!([])).await
    }

    /// Lamports of `who` (0 when the account does not exist).
    pub async fn balance(&self, who: &Pubkey) -> Result<u64, SolanaError> {
        self.call_value(
            "getBalance",
            json!([who.to_string(), {"commitment": "confirmed"}]),
        )
        .await
    }

    pub async fn minimum_balance_for_rent_exemption(&self, len: usize) -> Result<u64, SolanaError> {
        self.call("getMinimumBalanceForRentExemption", json!([len]))
            .await
    }

    pub async fn account(&self, who: &Pubkey) -> Result<Option<AccountInfo>, SolanaError> {
        #[derive(Deserialize)]
        struct Raw {
            lamports: u64,
            owner: String,
            data: (String, String),
            executable: bool,
        }
        let raw: Option<Raw> = self
            .call_value(
                "getAccountInfo",
                json!([who.to_string(), {"encoding": "base64", "commitment": "confirmed"}]),
            )
            .await?;
        raw.map(|r| {
            Ok(AccountInfo {
                lamports: r.lamports,
                owner: r.owner.parse().map_err(other)?,
                data: base64::engine::general_purpose::STANDARD
                    .decode(r.data.0)
                    .map_err(other)?,
                executable: r.executable,
            })
        })
        .transpose()
    }

    /// Atomic units held by token account `account`; `None` when it does not exist.
    pub async fn token_account_balance(
        &self,
        account: &Pubkey,
    ) -> Result<Option<u64>, SolanaError> {
        let Some(info) = self.account(account).await? else {
            return Ok(None);
        };
        if info.owner != TOKEN_PROGRAM && info.owner != TOKEN_2022_PROGRAM || info.data.len() < 72 {
            return Err(SolanaError::Other(format!(
                "{account} is not a token account"
            )));
        }
        // Token account layout: mint (32), owner (32), amount (u64 LE), ...
        Ok(Some(u64::from_le_bytes(
            info.data[64..72].try_into().expect("8 bytes"),
        )))
    }

    /// Send (preflight on, base64) and return the signature.
    pub async fn send_transaction(
        &self,
        tx: &VersionedTransaction,
    ) -> Result<Signature, SolanaError> {
        let sig: String = self
            .call(
                "sendTransaction",
                json!([encode_transaction(tx), {"encoding": "base64", "preflightCommitment": "confirmed"}]),
            )
            .await?;
        sig.parse().map_err(other)
    }

    /// `simulateTransaction` with signature verification and the transaction's own blockhash
    /// (as the reference facilitator simulates); the `value` (`err`, `logs`, `unitsConsumed`).
    pub async fn simulate_transaction(
        &self,
        tx: &VersionedTransaction,
    ) -> Result<Value, SolanaError> {
        self.call_value(
            "simulateTransaction",
            json!([encode_transaction(tx), {
                "encoding": "base64",
                "sigVerify": true,
                "replaceRecentBlockhash": false,
                "commitment": "confirmed"
            }]),
        )
        .await
    }

    /// Status of `sig`, searching the whole history; `None` if the cluster never saw it land.
    pub async fn signature_status(
        &self,
        sig: &Signature,
    ) -> Result<Option<SignatureStatus>, SolanaError> {
        Ok(self
            .signature_statuses(std::slice::from_ref(sig))
            .await?
            .pop()
            .flatten())
    }

    /// Statuses of `sigs`, in order, searching the whole history (256 a call, the RPC's most).
    pub async fn signature_statuses(
        &self,
        sigs: &[Signature],
    ) -> Result<Vec<Option<SignatureStatus>>, SolanaError> {
        let mut out = Vec::with_capacity(sigs.len());
        for chunk in sigs.chunks(256) {
            let names: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            let v: Vec<Option<SignatureStatus>> = self
                .call_value(
                    "getSignatureStatuses",
                    json!([names, {"searchTransactionHistory": true}]),
                )
                .await?;
            if v.len() != chunk.len() {
                return Err(SolanaError::Other(format!(
                    "getSignatureStatuses answered {} statuses for {} signatures",
                    v.len(),
                    chunk.len()
                )));
            }
            out.extend(v);
        }
        Ok(out)
    }

    /// `getTransaction` of `sig` (`confirmed`, JSON encoding): `null` when not found.
    pub async fn transaction(&self, sig: &Signature) -> Result<Value, SolanaError> {
        self.call(
            "getTransaction",
            json!([sig.to_string(), {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}]),
        )
        .await
    }

    /// Poll until `sig` is confirmed (Ok) or failed on-chain (Err), for at most `timeout`.
    pub async fn confirm(
        &self,
        sig: &Signature,
        timeout: Duration,
    ) -> Result<SignatureStatus, SolanaError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.signature_status(sig).await? {
                if let Some(err) = &status.err {
                    return Err(SolanaError::Transaction(sig.to_string(), err.to_string()));
                }
                if status.is_confirmed() {
                    return Ok(status);
                }
            }
            if Instant::now() >= deadline {
                return Err(SolanaError::Transaction(
                    sig.to_string(),
                    format!("not confirmed within {timeout:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn send_and_confirm(
        &self,
        tx: &VersionedTransaction,
    ) -> Result<Signature, SolanaError> {
        let sig = self.send_transaction(tx).await?;
        self.confirm(&sig, Duration::from_secs(30)).await?;
        Ok(sig)
    }

    /// `requestAirdrop` of `lamports` to `to`, confirmed.
    pub async fn airdrop(&self, to: &Pubkey, lamports: u64) -> Result<(), SolanaError> {
        let sig: String = self
            .call("requestAirdrop", json!([to.to_string(), lamports]))
            .await?;
        self.confirm(&sig.parse().map_err(other)?, Duration::from_secs(30))
            .await
            .map(|_| ())
    }

    // --- surfnet cheatcodes ---------------------------------------------------------------

    /// `surfnet_setAccount`: write an account outright.
    pub async fn set_account(
        &self,
        who: &Pubkey,
        lamports: u64,
        data: &[u8],
        owner: &Pubkey,
    ) -> Result<(), SolanaError> {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        self.call::<Value>(
            "surfnet_setAccount",
            json!([who.to_string(), {"lamports": lamports, "data": hex, "owner": owner.to_string()}]),
        )
        .await
        .map(|_| ())
    }

    /// `surfnet_setTokenAccount`: set (creating if needed) `owner`'s associated token account
    /// for `mint` to hold `amount`.
    pub async fn set_token_balance(
        &self,
        owner: &Pubkey,
        mint: &Mint,
        amount: u64,
    ) -> Result<(), SolanaError> {
        self.call::<Value>(
            "surfnet_setTokenAccount",
            json!([owner.to_string(), mint.address.to_string(), {"amount": amount, "state": "initialized"}, mint.token_program.to_string()]),
        )
        .await
        .map(|_| ())
    }

    /// `surfnet_pauseClock`. One block may still follow (a clock tick already queued): use
    /// [`SolanaCluster::pause_clock`], which waits for the height to hold.
    pub async fn pause_clock(&self) -> Result<Value, SolanaError> {
        self.call("surfnet_pauseClock", json!([])).await
    }

    pub async fn resume_clock(&self) -> Result<Value, SolanaError> {
        self.call("surfnet_resumeClock", json!([])).await
    }

    /// Jump forward to `slot` (epoch info after the jump).
    pub async fn time_travel_to_slot(&self, slot: u64) -> Result<Value, SolanaError> {
        self.call("surfnet_timeTravel", json!([{"absoluteSlot": slot}]))
            .await
    }

    /// Move the cluster past `last_valid_block_height` (a blockhash's), so transactions using
    /// that blockhash can never land. Returns the new block height.
    pub async fn expire_blockhash(&self, last_valid_block_height: u64) -> Result<u64, SolanaError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let height = self.block_height().await?;
            if height > last_valid_block_height {
                return Ok(height);
            }
            if Instant::now() >= deadline {
                return Err(SolanaError::Other(format!(
                    "block height {height} did not pass {last_valid_block_height}"
                )));
            }
            let slot = self.slot().await?;
            self.time_travel_to_slot(slot + (last_valid_block_height - height) + 2)
                .await?;
        }
    }
}

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
