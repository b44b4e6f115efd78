//! The `svm_networks` section: one entry per SVM (Solana) cluster served, keyed by its v1
//! name with `_` for `-` (`solana_devnet`). A key naming a built-in network (`solana`,
//! `solana_devnet`) takes its CAIP-2 id and USDC; any other key is a cluster known from
//! configuration alone and needs its `genesis_hash` (its CAIP-2 id is
//! `solana:<first 32 characters>`). Disabled until an RPC URL is configured.

use std::path::PathBuf;
use std::time::Duration;

use facilitator_actors::svm::{parse_fee_payer_keys, FeePayer, SvmAsset};
use serde::Deserialize;
use x402::exact::svm::{
    Limits, DEFAULT_MAX_COMPUTE_UNIT_LIMIT, DEFAULT_MAX_LAMPORTS_PER_SETTLEMENT,
    MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS,
};
use x402::svm::SvmNetwork;

use super::{ConfigError, MinAmount, RpcSettings, RpcUrls};

/// `confirm_timeout_secs` when unset: a blockhash lives ~60-90 s; most transactions confirm in
/// a few seconds.
const CONFIRM_TIMEOUT_SECS: u64 = 20;

#[derive(Debug, Clone, Deserialize, Default)]
pub struct SvmNetworkSettings {
    /// The cluster's x402 v1 name (default: the key with `-` for `_`).
    pub v1_name: Option<String>,
    /// Base58; required for a cluster the built-in table lacks.
    pub genesis_hash: Option<String>,
    /// At start-up, the RPC's `getGenesisHash` must be the network's (default: on for a
    /// configured cluster and for `solana`; a local cluster standing in for `solana-devnet`
    /// turns it off).
    pub check_genesis: Option<bool>,
    /// One or more URLs (tried in this order); each may embed a provider API key: secret.
    pub rpc_url: Option<RpcUrls>,
    /// Bound of one RPC call on this network (default: `rpc.timeout_ms`).
    pub rpc_timeout_ms: Option<u64>,
    /// Name of the environment variable holding the fee payer keys (base58 keypairs or seeds,
    /// or the Solana CLI's JSON arrays; one per line or comma-separated). Never in this file.
    pub fee_payer_keys_env: Option<String>,
    /// A file holding fee payer keys, one per line (a Solana CLI keypair file works).
    pub fee_payer_keys_file: Option<PathBuf>,
    /// Tokens accepted besides the network's USDC.
    #[serde(default)]
    pub assets: Vec<SvmAssetSettings>,
    /// The least a payment in the network's USDC (else its first asset) may move, atomic units.
    pub min_amount: Option<MinAmount>,
    /// The highest compute-unit price accepted, micro-lamports (default and ceiling: the
    /// spec's 5,000,000).
    pub max_compute_unit_price: Option<u64>,
    /// The highest compute-unit limit accepted (default 200,000).
    pub max_compute_unit_limit: Option<u32>,
    /// The most one settlement may cost the fee payer: signatures plus priority fee, lamports
    /// (default 1,010,000).
    pub max_lamports_per_settlement: Option<u64>,
    /// How long a settle waits for confirmation before answering `settlement_pending`.
    pub confirm_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SvmAssetSettings {
    /// The mint, base58.
    pub mint: String,
    pub symbol: Option<String>,
    pub decimals: u8,
    /// `token` (default) or `token-2022`, or a program id.
    pub token_program: Option<String>,
    pub min_amount: Option<MinAmount>,
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Network {
        network: key.to_owned(),
        message: message.into(),
    }
}

impl SvmNetworkSettings {
    /// The cluster a `svm_networks.<key>` entry stands for (registered with `x402::svm` when
    /// the table lacks it).
    pub fn network(&self, key: &str) -> Result<&'static SvmNetwork, ConfigError> {
        let v1 = self
            .v1_name
            .clone()
            .unwrap_or_else(|| key.replace('_', "-"));
        let builtin = x402::svm::KNOWN_SVM_NETWORKS
            .iter()
            .find(|n| n.v1_name == v1);
        match (builtin, &self.genesis_hash) {
            (Some(n), Some(h)) if Some(h.as_str()) != n.genesis_hash => Err(invalid(
                key,
                format!("genesis_hash: `{v1}` is the built-in network with another genesis hash"),
            )),
            (Some(n), _) => Ok(n),
            (None, Some(hash)) => {
                x402::svm::register(&v1, hash.trim()).map_err(|e| invalid(key, e.to_string()))
            }
            (None, None) => Err(ConfigError::UnknownNetwork(format!(
                "{key} (not a built-in SVM network: give its genesis_hash to serve it)"
            ))),
        }
    }

    /// Whether start-up checks the RPC's genesis hash against the network's.
    pub fn checks_genesis(&self, network: &SvmNetwork) -> bool {
        self.check_genesis
            .unwrap_or(network.v1_name != "solana-devnet")
    }

    pub fn rpc_timeout(&self, rpc: &RpcSettings) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms.unwrap_or(rpc.timeout_ms).max(1))
    }

    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_secs(self.confirm_timeout_secs.unwrap_or(CONFIRM_TIMEOUT_SECS))
    }

    /// The network's bounds on a settlement's compute and fee.
    pub fn limits(&self) -> Limits {
        Limits {
            max_compute_unit_price: self
                .max_compute_unit_price
                .unwrap_or(MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS)
                .min(MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS),
            max_compute_unit_limit: self
                .max_compute_unit_limit
                .unwrap_or(DEFAULT_MAX_COMPUTE_UNIT_LIMIT),
            max_lamports_per_settlement: self
                .max_lamports_per_settlement
                .unwrap_or(DEFAULT_MAX_LAMPORTS_PER_SETTLEMENT),
            min_amount: 0,
        }
    }

    /// The fee payer keys, from the environment variable and/or the file. Errors never echo
    /// key material.
    pub fn fee_payers(&self, key: &str) -> Result<Vec<FeePayer>, ConfigError> {
        let raw = super::networks::read_keys(
            key,
            self.fee_payer_keys_env.as_deref(),
            self.fee_payer_keys_file.as_deref(),
            "fee_payer_keys_file",
        )?;
        parse_fee_payer_keys(&raw).map_err(|e| ConfigError::Signers {
            network: key.to_owned(),
            message: e.to_string(),
        })
    }

    /// The tokens accepted: the network's USDC (if any), then `assets`.
    pub fn assets(&self, key: &str, network: &SvmNetwork) -> Result<Vec<SvmAsset>, ConfigError> {
        let pubkey = |what: &str, s: &str| {
            x402::svm::parse_pubkey(s)
                .ok_or_else(|| invalid(key, format!("{what}: `{s}` is not a base58 address")))
        };
        let floor = |m: Option<MinAmount>| -> Result<u64, ConfigError> {
            m.map_or(Ok(0), |m| {
                u64::try_from(m.0).map_err(|_| invalid(key, "min_amount: above u64"))
            })
        };
        let mut assets = Vec::new();
        if let Some(usdc) = network.usdc {
            assets.push(SvmAsset {
                mint: pubkey("usdc", usdc.mint)?,
                symbol: usdc.symbol.to_owned(),
                decimals: usdc.decimals,
                token_program: pubkey("usdc", usdc.token_program)?,
                min_amount: floor(self.min_amount)?,
            });
        }
        for a in &self.assets {
            let program = match a.token_program.as_deref().map(str::trim) {
                None | Some("token") => x402::svm::TOKEN_PROGRAM,
                Some("token-2022") | Some("token_2022") => x402::svm::TOKEN_2022_PROGRAM,
                Some(other) => other,
            };
            let token_program = pubkey("token_program", program)?;
            if token_program != x402::svm::pubkey(x402::svm::TOKEN_PROGRAM)
                && token_program != x402::svm::pubkey(x402::svm::TOKEN_2022_PROGRAM)
            {
                return Err(invalid(key, "token_program: neither Token nor Token-2022"));
            }
            let min_amount = match a.min_amount {
                Some(m) => floor(Some(m))?,
                None if assets.is_empty() => floor(self.min_amount)?,
                None => 0,
            };
            assets.push(SvmAsset {
                mint: pubkey("mint", &a.mint)?,
                symbol: a.symbol.clone().unwrap_or_else(|| "TOKEN".to_owned()),
                decimals: a.decimals,
                token_program,
                min_amount,
            });
        }
        Ok(assets)
    }
}
