//! The `networks` section: one entry per chain, keyed by network id with `_` for `-`. An
//! entry's unset keys take their defaults here (or, for the gas policy, the settlement
//! actor's `FeePolicy::default`); which chain an entry is lives in `crate::chains`.

use std::path::PathBuf;
use std::time::Duration;

use alloy_primitives::U256;
use facilitator_actors::settlement::FeePolicy;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{list_items, split_list, ConfigError, RpcSettings};

/// `receipt_timeout_secs` when unset.
const RECEIPT_TIMEOUT_SECS: u64 = 20;
/// `replace_after_secs` when unset.
const REPLACE_AFTER_SECS: u64 = 12;
/// `min_signer_balance_eth` when unset.
const MIN_SIGNER_BALANCE_ETH: f64 = 0.01;

/// One network. Disabled until an RPC URL is configured. Its keys are optional: unset, a
/// network-wide section's value or the default below applies (see the accessors).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct NetworkSettings {
    /// Required for a chain the built-in table lacks (its CAIP-2 id is `eip155:<chain_id>`);
    /// on a built-in network it must be the table's.
    pub chain_id: Option<u64>,
    /// The chain's x402 v1 name (default: the key with `-` for `_`).
    pub v1_name: Option<String>,
    /// ERC-6492 factories whose counterfactual wallets this network deploys at settlement
    /// (paid with the signers' gas); empty: such payments are refused before anything is sent.
    #[serde(default)]
    pub erc6492_allowed_factories: AddressList,
    /// Multicall3 here (default: its canonical address): ERC-6492 deploy + transfer go
    /// through its `aggregate3` as one call.
    pub multicall3_address: Option<String>,
    /// One or more URLs (tried in this order); each may embed a provider API key: secret.
    pub rpc_url: Option<RpcUrls>,
    /// Bound of one RPC call on this network (default: `rpc.timeout_ms`).
    pub rpc_timeout_ms: Option<u64>,
    /// Name of the environment variable holding this network's signer keys (comma-separated
    /// 0x-hex private keys). Keys never live in this file.
    pub signer_keys_env: Option<String>,
    /// A file holding signer keys, one per line.
    pub signer_keys_file: Option<PathBuf>,
    /// Extra assets besides the network's USDC.
    #[serde(default)]
    pub assets: Vec<AssetSettings>,
    /// The least a payment in the network's default token (its USDC, else the first asset) may
    /// move, atomic units; an asset's own `min_amount` wins. 0 is refused whatever this says.
    pub min_amount: Option<MinAmount>,
    /// Overrides of the well-known chain id / USDC for chains that stand in for a network
    /// (a local anvil playing `base-sepolia`).
    pub usdc_address: Option<String>,
    pub max_fee_per_gas_gwei: Option<f64>,
    /// No settlement transaction's gas limit passes this (a batch's: this per payment). Each
    /// one's is its call's estimate plus a margin; a payment whose estimate passes it is
    /// refused unsent. `gas_limit`, the fixed limit it replaces, is read as this.
    #[serde(alias = "gas_limit")]
    pub max_gas_per_settlement: Option<u64>,
    /// Wait this long for a receipt before answering `settlement_pending` (default 20).
    pub receipt_timeout_secs: Option<u64>,
    /// Replace a settlement transaction still unmined after this long (same nonce, +12.5%
    /// fees; default 12).
    pub replace_after_secs: Option<u64>,
    /// A signer whose native balance falls below this (ether units) is reported: a warning,
    /// `/status`, and the Prometheus gauge. Default 0.01.
    pub min_signer_balance_eth: Option<f64>,
    /// A mined settlement counts as `confirmed` once its block is this deep (1 = at once);
    /// until then a reorg is watched for. Default: by chain (see [`default_confirmations`]).
    pub confirmations: Option<u64>,
    /// A block explorer's base URL (`https://sepolia.basescan.org`): the console links a
    /// settlement's transaction to `<explorer_url>/tx/<hash>`. `http(s)` only; unset, no link.
    pub explorer_url: Option<String>,
}

impl NetworkSettings {
    /// The signer balance floor, wei.
    pub fn min_signer_balance_wei(&self) -> U256 {
        let eth = self
            .min_signer_balance_eth
            .unwrap_or(MIN_SIGNER_BALANCE_ETH)
            .max(0.0);
        U256::from((eth * 1e18) as u128)
    }

    /// The explorer's base URL without a trailing `/`; refused unless `http(s)://host...`
    /// (the console puts it in a link).
    pub fn explorer(&self) -> Result<Option<String>, String> {
        let Some(url) = self.explorer_url.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if url.is_empty() {
            return Ok(None);
        }
        let lower = url.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"))
            .ok_or_else(|| format!("explorer_url must start with https:// or http://: {url}"))?;
        if rest.is_empty()
            || rest.starts_with('/')
            || url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "\"'<>\\`".contains(c))
        {
            return Err(format!("explorer_url is not a URL: {url}"));
        }
        Ok(Some(url.trim_end_matches('/').to_owned()))
    }

    /// How long a settle waits for its receipt before answering `settlement_pending`.
    pub fn receipt_timeout(&self) -> Duration {
        Duration::from_secs(self.receipt_timeout_secs.unwrap_or(RECEIPT_TIMEOUT_SECS))
    }

    /// After how long an unmined settlement transaction is replaced.
    pub fn replace_after(&self) -> Duration {
        Duration::from_secs(self.replace_after_secs.unwrap_or(REPLACE_AFTER_SECS))
    }

    /// Bound of one RPC call on this network: its own, else the `rpc` section's.
    pub fn rpc_timeout(&self, rpc: &RpcSettings) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms.unwrap_or(rpc.timeout_ms).max(1))
    }

    /// The depth at which a mined settlement of chain `chain_id` counts as confirmed (≥ 1).
    pub fn confirmations(&self, chain_id: u64) -> u64 {
        self.confirmations
            .unwrap_or_else(|| default_confirmations(chain_id))
            .max(1)
    }

    /// The network's gas limit and fee cap; unset ones are the settlement actor's defaults.
    pub fn fee_policy(&self) -> FeePolicy {
        let default = FeePolicy::default();
        FeePolicy {
            max_fee_per_gas_cap: self
                .max_fee_per_gas_gwei
                .map_or(default.max_fee_per_gas_cap, |g| (g * 1e9) as u128),
            max_gas_per_settlement: self
                .max_gas_per_settlement
                .unwrap_or(default.max_gas_per_settlement),
            ..default
        }
    }

    /// The network's signer keys, from the environment variable named by `signer_keys_env`
    /// and/or the file `signer_keys_file`. Errors never echo key material.
    pub fn signer_keys(&self, network: &str) -> Result<Option<SecretString>, ConfigError> {
        let raw = read_keys(
            network,
            self.signer_keys_env.as_deref(),
            self.signer_keys_file.as_deref(),
            "signer_keys_file",
        )?;
        Ok((!raw.trim().is_empty()).then(|| SecretString::from(raw)))
    }
}

/// Key material from the environment variable `env` and/or the file `file` (`what` names the
/// file's key in errors, which never echo key material).
pub(super) fn read_keys(
    network: &str,
    env: Option<&str>,
    file: Option<&std::path::Path>,
    what: &str,
) -> Result<String, ConfigError> {
    let mut raw = String::new();
    if let Some(var) = env {
        if let Ok(v) = std::env::var(var) {
            raw.push_str(&v);
            raw.push('\n');
        }
    }
    if let Some(path) = file {
        let content = std::fs::read_to_string(path).map_err(|e| ConfigError::Signers {
            network: network.to_owned(),
            message: format!("cannot read {what} {}: {e}", path.display()),
        })?;
        raw.push_str(&content);
    }
    Ok(raw)
}

/// How deep a settlement's block must be before the ledger calls it confirmed, when the
/// configuration does not say: Ethereum's mainnet reorgs a few blocks (12 is the custom),
/// Polygon PoS deeper; rollups and chains with single-slot finality (Base, Optimism, Arbitrum,
/// Avalanche, Celo, Sei, IoTeX) and test chains count at once.
pub fn default_confirmations(chain_id: u64) -> u64 {
    match chain_id {
        1 => 12,
        137 => 32,
        _ => 1,
    }
}

/// A network's RPC URLs, in order of preference: one string (comma-separated for several, as
/// in `APP__NETWORKS__BASE__RPC_URL=https://a,https://b`) or a YAML list. URLs often embed a
/// provider API key, so each is a secret: `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct RpcUrls(Vec<SecretString>);

impl RpcUrls {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The URLs themselves, for the chain-access layer only (never log them).
    pub fn expose(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|u| u.expose_secret().to_owned())
            .collect()
    }
}

impl From<String> for RpcUrls {
    fn from(s: String) -> Self {
        Self(split_list(&s).into_iter().map(SecretString::from).collect())
    }
}

impl std::fmt::Debug for RpcUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpcUrls([{} redacted])", self.0.len())
    }
}

impl<'de> Deserialize<'de> for RpcUrls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(
            list_items(d)?.into_iter().map(SecretString::from).collect(),
        ))
    }
}

/// Addresses as a YAML list or one comma-separated string (an environment variable).
#[derive(Debug, Clone, Default)]
pub struct AddressList(pub Vec<String>);

impl<'de> Deserialize<'de> for AddressList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        list_items(d).map(Self)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AssetSettings {
    pub address: String,
    /// Default: the EIP-712 name.
    pub symbol: Option<String>,
    pub decimals: u8,
    pub eip712_name: Option<String>,
    pub eip712_version: Option<String>,
    /// The least a payment in this token may move, atomic units (default: anything above 0).
    pub min_amount: Option<MinAmount>,
}

/// An amount in atomic units: a decimal string (any size) or a whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinAmount(pub U256);

impl<'de> Deserialize<'de> for MinAmount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Number(n) => Some(U256::from(n)),
            Raw::Text(s) => x402::proto::parse_amount(s.trim()),
        };
        parsed.map(Self).ok_or_else(|| {
            serde::de::Error::custom("min_amount must be a whole number of atomic units")
        })
    }
}
