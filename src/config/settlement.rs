//! The sections about payments: `verify` (the state mirror), `settlement` (watching, batching,
//! housekeeping), `fleet` (several instances on one PostgreSQL database), `rpc` (chain access)
//! and `ready` (what `GET /ready` requires).

use serde::Deserialize;

use super::{split_list, StringOrList};

/// `/verify` without the node: a per-network mirror of the served tokens' state, kept block
/// by block (`actors/src/mirror`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct VerifySettings {
    /// Answer the verify of a mirrored EOA payer from memory (no RPC call). On by default;
    /// off: one simulation per verify.
    pub mirror: bool,
    /// Accounts (payers and payees) kept per network, least recently used dropped first.
    pub mirror_accounts: usize,
    /// The mirror answers only while the last head the RPC probe saw is at most this old
    /// (keep it above `rpc.probe_interval_ms`, which is how often heads are read).
    pub mirror_max_head_age_ms: u64,
    /// The longest signature accepted from a contract wallet (ERC-1271) or as an ERC-6492
    /// wrapper, bytes; an EOA's is 65 whatever this says. Longer ones are refused before any
    /// other work.
    pub max_signature_bytes: usize,
}

impl Default for VerifySettings {
    fn default() -> Self {
        Self {
            mirror: true,
            mirror_accounts: 10_000,
            mirror_max_head_age_ms: 3000,
            max_signature_bytes: x402::exact::evm::DEFAULT_MAX_SIGNATURE_BYTES,
        }
    }
}

/// Settlement: watching, batching and housekeeping.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SettlementSettings {
    /// A transaction that answered `settlement_pending` is watched this long afterwards
    /// (0 = not at all: reconciliation alone resolves it).
    pub background_watch_secs: u64,
    /// Unresolved ledger rows are reconciled against the chain this often (and at start-up).
    pub reconcile_interval_secs: u64,
    /// How long an idempotency key of `/settle` is remembered (at least 24 h).
    pub idempotency_ttl_hours: u64,
    /// Batched settlement: up to this many settles of one network queued within
    /// `batch_window_ms` go out as one Multicall3 `aggregate3` transaction (0 or 1 = off:
    /// one transaction per settle). On by default (100).
    pub batch_max: usize,
    /// How long the first settle of a batch waits for others at most. It waits only while
    /// other settles are on their way to the batch (claimed, being judged): a lone settle
    /// goes out at once.
    pub batch_window_ms: u64,
    /// A batched settle of an EOA payer that the state mirror can judge at the current head
    /// is cleared by the mirror instead of an `eth_call` simulation (its amount is counted
    /// as pending at once). A wrong clearance costs only that call's gas in the batch: it
    /// fails alone and is reported failed.
    pub batch_mirror_precheck: bool,
    /// How often each network's new blocks are read for the receipts of settlements awaited
    /// (one `eth_blockNumber`, and one `eth_getBlockReceipts` per new block). While settles
    /// wait, the head is also read every 1/40 of the chain's block time (at least 10 ms) from
    /// just before a block is due, when that is more often than this.
    pub receipt_poll_ms: u64,
    /// Serve the `batch-settlement` scheme (payment channels). Off by default: a preview
    /// (vouchers, deposits, signed claims, the sweep and signed refunds work; the managed
    /// claimer claims accepted vouchers before a payer's withdrawal delay runs out only on
    /// channels delegated to `channels_authorizer_key_*`: a merchant who signs its own claims
    /// must claim them itself).
    pub channels: bool,
    /// The environment variable holding the key (hex) with which the facilitator signs the
    /// claims and refunds of channels whose merchants delegate their `receiverAuthorizer` to
    /// it (advertised in `/supported` `extra.receiverAuthorizer`). Unset, as
    /// `channels_authorizer_key_file`: none, merchants sign their own.
    pub channels_authorizer_key_env: Option<String>,
    /// A file holding that key.
    pub channels_authorizer_key_file: Option<std::path::PathBuf>,
    /// With channels on and an authorizer key: how often the managed claimer looks for
    /// channels of that key with a payer's withdrawal pending, and claims their accepted
    /// vouchers at once (far inside the contract's least withdrawal delay, 900 s).
    pub channels_claim_interval_secs: u64,
    /// And how often it claims every accepted voucher not yet claimed on those channels,
    /// withdrawal or not (one transaction per token and network).
    pub channels_claim_all_secs: u64,
}

impl SettlementSettings {
    /// The channels' delegated authorizer key, if one is configured. Errors never echo key
    /// material.
    pub fn channels_authorizer(
        &self,
    ) -> Result<Option<alloy::signers::local::PrivateKeySigner>, super::ConfigError> {
        let raw = super::networks::read_keys(
            "settlement",
            self.channels_authorizer_key_env.as_deref(),
            self.channels_authorizer_key_file.as_deref(),
            "channels_authorizer_key_file",
        )?;
        let keys = facilitator_actors::settlement::parse_signer_keys(&raw).map_err(|message| {
            super::ConfigError::Signers {
                network: "settlement.channels_authorizer".into(),
                message,
            }
        })?;
        match keys.as_slice() {
            [] => Ok(None),
            [key] => Ok(Some(key.clone())),
            _ => Err(super::ConfigError::Signers {
                network: "settlement.channels_authorizer".into(),
                message: "one key, not several".into(),
            }),
        }
    }
}

impl Default for SettlementSettings {
    fn default() -> Self {
        Self {
            background_watch_secs: 1800,
            reconcile_interval_secs: 300,
            idempotency_ttl_hours: 24,
            batch_max: 100,
            batch_window_ms: 50,
            batch_mirror_precheck: true,
            receipt_poll_ms: 250,
            channels: false,
            channels_authorizer_key_env: None,
            channels_authorizer_key_file: None,
            channels_claim_interval_secs: 15,
            channels_claim_all_secs: 3600,
        }
    }
}

/// Several instances on one PostgreSQL database.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FleetSettings {
    /// A signer lease lasts this long unless renewed (renewed every third of it); a dead
    /// instance's keys are taken over after at most this long.
    pub lease_ttl_secs: u64,
    /// How long a settle that this instance cannot send (it holds no lease of the network)
    /// waits for a lease holder to take it.
    pub queue_pickup_secs: u64,
    /// How often signer balances are read (a signer that cannot pay gas gets no new settlement).
    pub signer_balance_poll_secs: u64,
}

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            lease_ttl_secs: 15,
            queue_pickup_secs: 5,
            signer_balance_poll_secs: 5,
        }
    }
}

/// Chain access: every RPC call is bounded, every endpoint is probed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RpcSettings {
    /// Bound of one RPC call, failover included (a network's `rpc_timeout_ms` wins).
    pub timeout_ms: u64,
    /// Every endpoint is asked for its latest block this often; an unhealthy one comes back
    /// after a probe it answers.
    pub probe_interval_ms: u64,
    /// An endpoint whose latest block is this much older than the best endpoint's is lagging
    /// and gets no calls while another one is healthy.
    pub max_head_lag_secs: u64,
}

impl Default for RpcSettings {
    fn default() -> Self {
        Self {
            timeout_ms: 5000,
            probe_interval_ms: 1000,
            max_head_lag_secs: 30,
        }
    }
}

/// `GET /ready`: the database answers, and the networks named here are not down.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ReadySettings {
    pub networks: ReadyNetworks,
}

/// Which networks must be up (active or degraded) for the instance to be ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReadyNetworks {
    /// Every served network (the default).
    #[default]
    All,
    /// At least one served network.
    Any,
    /// None: the database alone decides.
    None,
    /// These networks (config keys like `base_sepolia`, or v1 names like `base-sepolia`).
    Only(Vec<String>),
}

impl<'de> Deserialize<'de> for ReadyNetworks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = match StringOrList::deserialize(d)? {
            StringOrList::One(s) => match s.trim() {
                "all" => return Ok(Self::All),
                "any" => return Ok(Self::Any),
                "none" | "" => return Ok(Self::None),
                list => split_list(list),
            },
            StringOrList::Many(items) => items.iter().flat_map(|i| split_list(i)).collect(),
        };
        Ok(Self::Only(names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_file(content: &str) -> Result<Option<alloy::primitives::Address>, String> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), content).unwrap();
        let settings = SettlementSettings {
            channels_authorizer_key_file: Some(file.path().to_owned()),
            ..SettlementSettings::default()
        };
        settings
            .channels_authorizer()
            .map(|key| key.map(|k| k.address()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_channels_authorizer_is_one_key_or_none() {
        assert_eq!(
            SettlementSettings::default().channels_authorizer().ok(),
            Some(None)
        );
        let key = alloy::signers::local::PrivateKeySigner::random();
        let hex = format!("0x{}", alloy::hex::encode(key.to_bytes()));
        assert_eq!(from_file(&format!("{hex}\n")), Ok(Some(key.address())));
        assert_eq!(from_file(""), Ok(None));
        let other = alloy::signers::local::PrivateKeySigner::random();
        let two = format!("{hex}\n0x{}\n", alloy::hex::encode(other.to_bytes()));
        assert!(from_file(&two).unwrap_err().contains("one key"));
        // A bad key is refused without being echoed.
        let bad = from_file("0xnot-a-key-secret").unwrap_err();
        assert!(!bad.contains("not-a-key-secret"), "{bad}");
    }
}
