//! SVM (Solana) networks at run time: each served cluster's chain access, JSON-RPC calls, fee
//! payer keys and accepted tokens ([`SvmRuntime`]).
//!
//! The JSON-RPC goes through the same [`ChainAccess`] as an EVM network's (`crate::chain`):
//! one deadline per call (`rpc.timeout_ms`) across every attempt, failover between URLs,
//! per-URL health on `/status`, redacted labels. Only the probe differs
//! ([`ProbeFamily::Svm`]: `getBlockHeight`). The calls are written here by hand over it (no
//! `solana-client`): the eight the `exact` scheme needs.

use std::sync::Arc;
use std::time::Duration;

use alloy::providers::{Provider, RootProvider};
use alloy::transports::RpcError;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;
use x402::exact::svm::Limits;
use x402::svm::SvmNetwork;

use crate::chain::ChainAccess;

mod status_batch;
use crate::error::ServiceError;
use status_batch::StatusBatch;

/// A token accepted on an SVM network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvmAsset {
    pub mint: Pubkey,
    pub symbol: String,
    pub decimals: u8,
    /// `Token` or `Token-2022`.
    pub token_program: Pubkey,
    /// The economic floor of a payment in it, atomic units (0: anything above 0).
    pub min_amount: u64,
}

/// A fee payer key. Never printed: `Debug` shows the public key only.
pub struct FeePayer(Keypair);

impl FeePayer {
    pub fn new(keypair: Keypair) -> Self {
        Self(keypair)
    }

    pub fn pubkey(&self) -> Pubkey {
        self.0.pubkey()
    }

    pub fn sign(&self, message: &[u8]) -> solana_signature::Signature {
        self.0.sign_message(message)
    }
}

impl std::fmt::Debug for FeePayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FeePayer({})", self.pubkey())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeePayerKeyError {
    /// Never echoes key material: only which line.
    #[error("fee payer key #{0} is neither base58 (a 64-byte keypair or 32-byte seed) nor a JSON array of 64 bytes")]
    Unreadable(usize),
}

/// Fee payer keys, one per line (or comma-separated): base58 of a 64-byte keypair or a 32-byte
/// seed, or the Solana CLI's JSON array of 64 bytes. Errors name the line, never the key.
pub fn parse_fee_payer_keys(raw: &str) -> Result<Vec<FeePayer>, FeePayerKeyError> {
    let mut keys = Vec::new();
    let lines = raw
        .lines()
        .flat_map(|l| {
            if l.trim_start().starts_with('[') {
                vec![l]
            } else {
                l.split(',').collect()
            }
        })
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    for (i, line) in lines.enumerate() {
        let bytes: Option<Vec<u8>> = if line.starts_with('[') {
            serde_json::from_str::<Vec<u8>>(line).ok()
        } else {
            bs58::decode(line).into_vec().ok()
        };
        let keypair = match bytes.as_deref() {
            Some(b) if b.len() == 64 => Keypair::try_from(b).ok(),
            Some(b) if b.len() == 32 => <[u8; 32]>::try_from(b).ok().map(Keypair::new_from_array),
            _ => None,
        };
        keys.push(FeePayer(
            keypair.ok_or(FeePayerKeyError::Unreadable(i + 1))?,
        ));
    }
    Ok(keys)
}

/// Why a Solana RPC call did not give what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvmRpcError {
    /// No endpoint answered in time (the chain access's text, URLs redacted).
    #[error("{0}")]
    Unavailable(String),
    /// A JSON-RPC error answer (a preflight failure, an unknown blockhash...).
    #[error("RPC error {code}: {message}")]
    Rpc { code: i64, message: String },
    /// An answer of the wrong shape.
    #[error("unreadable answer to {0}")]
    Decode(&'static str),
}

impl From<SvmRpcError> for ServiceError {
    fn from(e: SvmRpcError) -> Self {
        ServiceError::Unavailable(e.to_string())
    }
}

/// The status of a sent transaction (`getSignatureStatuses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureStatus {
    pub slot: u64,
    /// The transaction's error, when it failed on chain.
    pub err: Option<String>,
    /// `processed`, `confirmed` or `finalized`.
    pub confirmation_status: Option<String>,
}

/// The Solana JSON-RPC methods the `exact` scheme needs, over one network's chain access.
#[derive(Clone)]
pub struct SvmRpc {
    provider: RootProvider,
}

#[derive(Deserialize)]
struct WithContext<T> {
    value: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockhashAnswer {
    blockhash: String,
    last_valid_block_height: u64,
}

#[derive(Deserialize)]
struct AccountAnswer {
    data: (String, String),
    owner: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusAnswer {
    slot: u64,
    err: Option<Value>,
    confirmation_status: Option<String>,
}

/// An account's owner program and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub owner: String,
    pub data: Vec<u8>,
}

impl SvmRpc {
    pub fn new(provider: RootProvider) -> Self {
        Self { provider }
    }

    async fn call<R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<R, SvmRpcError> {
        let raw: Value = self
            .provider
            .raw_request(method.into(), params)
            .await
            .map_err(|e| match e {
                RpcError::ErrorResp(p) => SvmRpcError::Rpc {
                    code: p.code,
                    message: p.message.chars().take(300).collect(),
                },
                other => SvmRpcError::Unavailable(other.to_string()),
            })?;
        serde_json::from_value(raw).map_err(|_| SvmRpcError::Decode(method))
    }

    /// The latest blockhash (`confirmed`) and the last block height it is valid at.
    pub async fn latest_blockhash(&self) -> Result<(String, u64), SvmRpcError> {
        let a: WithContext<BlockhashAnswer> = self
            .call("getLatestBlockhash", json!([{ "commitment": "confirmed" }]))
            .await?;
        Ok((a.value.blockhash, a.value.last_valid_block_height))
    }

    /// The current block height (`confirmed`).
    pub async fn block_height(&self) -> Result<u64, SvmRpcError> {
        self.call("getBlockHeight", json!([{ "commitment": "confirmed" }]))
            .await
    }

    /// Is this blockhash still valid (`processed`)? A transaction on an invalid one can never
    /// land again.
    pub async fn blockhash_valid(&self, blockhash: &str) -> Result<bool, SvmRpcError> {
        let a: WithContext<bool> = self
            .call(
                "isBlockhashValid",
                json!([blockhash, { "commitment": "processed" }]),
            )
            .await?;
        Ok(a.value)
    }

    pub async fn genesis_hash(&self) -> Result<String, SvmRpcError> {
        self.call("getGenesisHash", json!([])).await
    }

    fn account(a: AccountAnswer) -> Result<Account, SvmRpcError> {
        let data = base64::engine::general_purpose::STANDARD
            .decode(a.data.0)
            .map_err(|_| SvmRpcError::Decode("account data"))?;
        Ok(Account {
            owner: a.owner,
            data,
        })
    }

    /// One account (`None`: it does not exist).
    pub async fn account_info(&self, key: &Pubkey) -> Result<Option<Account>, SvmRpcError> {
        let a: WithContext<Option<AccountAnswer>> = self
            .call(
                "getAccountInfo",
                json!([key.to_string(), { "encoding": "base64", "commitment": "confirmed" }]),
            )
            .await?;
        a.value.map(Self::account).transpose()
    }

    /// Several accounts in one call, in order (`None`: that one does not exist).
    pub async fn multiple_accounts(
        &self,
        keys: &[Pubkey],
    ) -> Result<Vec<Option<Account>>, SvmRpcError> {
        let keys: Vec<String> = keys.iter().map(Pubkey::to_string).collect();
        let a: WithContext<Vec<Option<AccountAnswer>>> = self
            .call(
                "getMultipleAccounts",
                json!([keys, { "encoding": "base64", "commitment": "confirmed" }]),
            )
            .await?;
        a.value
            .into_iter()
            .map(|a| a.map(Self::account).transpose())
            .collect()
    }

    /// Simulate a signed transaction (base64) with its own blockhash: `Ok(Err(why))` when it
    /// would fail. Without the node's signature verification: both signatures are known good
    /// before this is asked (the buyer's verified against the message by
    /// `x402::exact::svm`'s checks, the fee payer's ours, just made), so the node is not asked
    /// to verify them again; the reference facilitator simulates the same way.
    pub async fn simulate(&self, tx_base64: &str) -> Result<Result<(), String>, SvmRpcError> {
        let a: WithContext<Value> = self
            .call(
                "simulateTransaction",
                json!([tx_base64, {
                    "encoding": "base64",
                    "sigVerify": false,
                    "replaceRecentBlockhash": false,
                    "commitment": "confirmed",
                }]),
            )
            .await?;
        Ok(match a.value.get("err") {
            None | Some(Value::Null) => Ok(()),
            Some(err) => Err(describe(err, a.value.get("logs"))),
        })
    }

    /// Send a signed transaction (base64) with preflight on: `Ok(Err(why))` when the node
    /// refused it (its preflight simulation failed: nothing was broadcast).
    pub async fn send(&self, tx_base64: &str) -> Result<Result<String, String>, SvmRpcError> {
        match self
            .call::<String>(
                "sendTransaction",
                json!([tx_base64, {
                    "encoding": "base64",
                    "skipPreflight": false,
                    "preflightCommitment": "confirmed",
                    "maxRetries": 0,
                }]),
            )
            .await
        {
            Ok(signature) => Ok(Ok(signature)),
            Err(SvmRpcError::Rpc { message, .. }) => Ok(Err(message)),
            Err(e) => Err(e),
        }
    }

    /// A transaction's status, searched in the node's whole history (`None`: unknown to it).
    pub async fn signature_status(
        &self,
        signature: &str,
    ) -> Result<Option<SignatureStatus>, SvmRpcError> {
        Ok(self
            .statuses(&[signature], true)
            .await?
            .into_iter()
            .next()
            .flatten())
    }

    /// Statuses of `signatures`, in order (`history`: search the whole history, else the
    /// node's recent statuses only, the last ~150 slots).
    pub(crate) async fn statuses(
        &self,
        signatures: &[&str],
        history: bool,
    ) -> Result<Vec<Option<SignatureStatus>>, SvmRpcError> {
        let a: WithContext<Vec<Option<StatusAnswer>>> = self
            .call(
                "getSignatureStatuses",
                json!([signatures, { "searchTransactionHistory": history }]),
            )
            .await?;
        if a.value.len() != signatures.len() {
            return Err(SvmRpcError::Decode("getSignatureStatuses"));
        }
        Ok(a.value
            .into_iter()
            .map(|s| {
                s.map(|s| SignatureStatus {
                    slot: s.slot,
                    err: s.err.map(|e| e.to_string()),
                    confirmation_status: s.confirmation_status,
                })
            })
            .collect())
    }
}

/// A simulation's error and the last lines of its logs, short enough for an answer.
fn describe(err: &Value, logs: Option<&Value>) -> String {
    let last = logs
        .and_then(Value::as_array)
        .and_then(|l| l.iter().rev().find_map(Value::as_str))
        .unwrap_or_default();
    let mut s = format!("{err} {last}");
    s.truncate(300);
    s.trim().to_owned()
}

/// One served SVM network at run time.
pub struct SvmRuntime {
    pub network: &'static SvmNetwork,
    pub chain: ChainAccess,
    pub rpc: SvmRpc,
    /// The status reads of settles waiting for their transactions, batched.
    statuses: StatusBatch,
    fee_payers: Vec<Arc<FeePayer>>,
    pub assets: Vec<SvmAsset>,
    /// The compute-unit and fee bounds of a settlement (`min_amount` per asset from `assets`).
    pub limits: Limits,
    /// How long a settle waits for its transaction to be confirmed before answering
    /// `settlement_pending`.
    pub confirm_timeout: Duration,
}

impl SvmRuntime {
    pub fn new(
        network: &'static SvmNetwork,
        chain: ChainAccess,
        fee_payers: Vec<FeePayer>,
        assets: Vec<SvmAsset>,
        limits: Limits,
        confirm_timeout: Duration,
    ) -> Self {
        Self {
            network,
            rpc: SvmRpc::new(chain.provider()),
            statuses: StatusBatch::default(),
            chain,
            fee_payers: fee_payers.into_iter().map(Arc::new).collect(),
            assets,
            limits,
            confirm_timeout,
        }
    }

    /// A sent transaction's status from the node's recent statuses (the last ~150 slots, where
    /// a transaction on a young blockhash is), read with those of every other settle waiting:
    /// the cheap read of a confirmation wait.
    pub async fn recent_signature_status(
        &self,
        signature: &str,
    ) -> Result<Option<SignatureStatus>, SvmRpcError> {
        self.statuses.recent_status(&self.rpc, signature).await
    }

    /// The fee payers' public keys, in configured order.
    pub fn fee_payer_keys(&self) -> Vec<Pubkey> {
        self.fee_payers.iter().map(|k| k.pubkey()).collect()
    }

    /// The fee payer a buyer should name (`extra.feePayer`): the first.
    pub fn advertised_fee_payer(&self) -> Option<Pubkey> {
        self.fee_payers.first().map(|k| k.pubkey())
    }

    pub fn fee_payer(&self, key: &Pubkey) -> Option<Arc<FeePayer>> {
        self.fee_payers.iter().find(|k| k.pubkey() == *key).cloned()
    }

    pub fn asset(&self, mint: &str) -> Option<&SvmAsset> {
        let mint = x402::svm::parse_pubkey(mint)?;
        self.assets.iter().find(|a| a.mint == mint)
    }

    /// The limits of a payment in `asset`: the network's, with the asset's floor.
    pub fn limits_for(&self, asset: &SvmAsset) -> Limits {
        Limits {
            min_amount: asset.min_amount,
            ..self.limits
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_payer_keys_read_base58_seeds_keypairs_and_cli_arrays_and_never_echo() {
        let a = Keypair::new();
        let b = Keypair::new();
        let seed = [9u8; 32];
        let cli = serde_json::to_string(&a.to_bytes().to_vec()).unwrap();
        let raw = format!(
            "{}\n# comment\n{cli}\n{}, {}",
            bs58::encode(b.to_bytes()).into_string(),
            bs58::encode(seed).into_string(),
            bs58::encode(a.to_bytes()).into_string()
        );
        let keys = parse_fee_payer_keys(&raw).unwrap();
        let pubkeys: Vec<Pubkey> = keys.iter().map(FeePayer::pubkey).collect();
        assert_eq!(
            pubkeys,
            vec![
                b.pubkey(),
                a.pubkey(),
                Keypair::new_from_array(seed).pubkey(),
                a.pubkey()
            ]
        );
        assert_eq!(
            format!("{:?}", keys[0]),
            format!("FeePayer({})", b.pubkey())
        );
        let secret = bs58::encode([1u8; 20]).into_string();
        let err = parse_fee_payer_keys(&format!("{}\n{secret}", bs58::encode(seed).into_string()))
            .err()
            .unwrap();
        assert_eq!(err, FeePayerKeyError::Unreadable(2));
        assert!(!err.to_string().contains(&secret));
    }
}
