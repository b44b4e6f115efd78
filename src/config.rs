//! Configuration: `config.yaml` for non-secret defaults, overlaid by `APP__SECTION__KEY`
//! environment variables (figment). Secrets are typed as `SecretString` so they can't be
//! printed by accident, and have no usable default: development mode generates ephemeral ones
//! and says so; production mode refuses to start without them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Yaml};
use figment::Figment;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub environment: Environment,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// The allocator: arenas, and giving freed memory back.
    #[serde(default)]
    pub memory: MemorySettings,
    #[serde(default)]
    pub settlement: SettlementSettings,
    /// `/verify`: the block-synchronised state mirror.
    #[serde(default)]
    pub verify: VerifySettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default)]
    pub fleet: FleetSettings,
    /// Chain access defaults: timeouts and health probing of every network's RPC endpoints.
    #[serde(default)]
    pub rpc: RpcSettings,
    /// What `GET /ready` requires besides the database.
    #[serde(default)]
    pub ready: ReadySettings,
    /// Keyed by network id with `_` for `-` (`base_sepolia`), so that the key can be set from
    /// the environment: `APP__NETWORKS__BASE_SEPOLIA__RPC_URL`.
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkSettings>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// 0 = one worker per core.
    #[serde(default)]
    pub workers: usize,
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// Take the client IP (for login, signup and refresh limits) from `X-Forwarded-For` /
    /// `Forwarded`. Only behind a proxy that sets them: anyone can send these headers.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// A request body must arrive whole within this many seconds of its headers (else 408).
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// A request's headers must arrive within this many seconds of its connection (else 408).
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Open connections at most, all workers together; past it new ones wait in the backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_body_limit() -> usize {
    64 * 1024
}

fn default_body_timeout() -> u64 {
    10
}

fn default_header_timeout() -> u64 {
    5
}

fn default_max_connections() -> usize {
    4096
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` or `postgres://user@host/db`. May hold a password, so it is a
    /// secret for logging purposes.
    pub url: SecretString,
    /// Pool size. Default: 16 on PostgreSQL; 2 on SQLite, which has one writer anyway (the
    /// settle writes are group-committed), where each more connection is one more page cache
    /// and worker thread.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// A commit returns only once it is on disk (SQLite `synchronous=FULL`, PostgreSQL
    /// `synchronous_commit=on`). Off trades the last commits before a power cut or OS crash
    /// (never a process crash) for commits that do not wait on the disk: for throwaway
    /// databases such as tests and benchmarks, not for a ledger of real money.
    #[serde(default = "default_true")]
    pub durable_commits: bool,
    /// SQLite's page cache per pooled connection, KiB (each of `max_connections` has its own;
    /// SQLite's default is 2000). Misses are reads from the operating system's file cache.
    #[serde(default = "default_sqlite_cache_kib")]
    pub sqlite_cache_kib: u32,
}

fn default_sqlite_cache_kib() -> u32 {
    512
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub jwt_secret: Option<SecretString>,
    pub admin_token: Option<SecretString>,
    pub client_token_key: Option<SecretString>,
    #[serde(default = "default_access_ttl")]
    pub access_token_ttl_secs: u64,
    #[serde(default = "default_refresh_ttl")]
    pub refresh_token_ttl_secs: u64,
    #[serde(default = "default_min_password")]
    pub min_password_length: usize,
}

fn default_access_ttl() -> u64 {
    900
}
fn default_refresh_ttl() -> u64 {
    30 * 24 * 3600
}
fn default_min_password() -> usize {
    10
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct LogSettings {
    /// `pretty` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".into()
}

/// `/verify` without the node: a per-network mirror of the served tokens' state, kept block
/// by block (`actors/src/mirror.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct VerifySettings {
    /// Answer the verify of a mirrored EOA payer from memory (no RPC call). Off by default:
    /// today's behaviour (one simulation per verify) until it is switched on.
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
            mirror: false,
            mirror_accounts: 10_000,
            mirror_max_head_age_ms: 3000,
            max_signature_bytes: x402::exact::evm::DEFAULT_MAX_SIGNATURE_BYTES,
        }
    }
}

/// Settlement housekeeping.
#[derive(Debug, Clone, Deserialize)]
pub struct SettlementSettings {
    /// A transaction that answered `settlement_pending` is watched this long afterwards
    /// (0 = not at all: reconciliation alone resolves it).
    #[serde(default = "default_background_watch")]
    pub background_watch_secs: u64,
    /// Unresolved ledger rows are reconciled against the chain this often (and at start-up).
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval_secs: u64,
    /// How long an idempotency key of `/settle` is remembered (at least 24 h).
    #[serde(default = "default_idempotency_ttl")]
    pub idempotency_ttl_hours: u64,
    /// Batched settlement: up to this many settles of one network queued within
    /// `batch_window_ms` go out as one Multicall3 `aggregate3` transaction (0 or 1 = off:
    /// one transaction per settle).
    #[serde(default)]
    pub batch_max: usize,
    /// How long the first settle of a batch waits for others.
    #[serde(default = "default_batch_window")]
    pub batch_window_ms: u64,
    /// A batched settle of an EOA payer that the state mirror can judge at the current head
    /// is cleared by the mirror instead of an `eth_call` simulation (its amount is counted
    /// as pending at once). A wrong clearance costs only that call's gas in the batch: it
    /// fails alone and is reported failed.
    #[serde(default = "default_true")]
    pub batch_mirror_precheck: bool,
    /// How often each network's new blocks are read for the receipts of settlements awaited
    /// (one `eth_blockNumber`, and one `eth_getBlockReceipts` per new block).
    #[serde(default = "default_receipt_poll")]
    pub receipt_poll_ms: u64,
}

fn default_receipt_poll() -> u64 {
    250
}

fn default_batch_window() -> u64 {
    50
}

impl Default for SettlementSettings {
    fn default() -> Self {
        Self {
            background_watch_secs: default_background_watch(),
            reconcile_interval_secs: default_reconcile_interval(),
            idempotency_ttl_hours: default_idempotency_ttl(),
            batch_max: 0,
            batch_window_ms: default_batch_window(),
            batch_mirror_precheck: true,
            receipt_poll_ms: default_receipt_poll(),
        }
    }
}

fn default_idempotency_ttl() -> u64 {
    24
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
    /// How often signer balances are read (a signer that cannot pay gets no new settlement).
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

/// Throttling: client-key rate limits (shared by the instances on PostgreSQL, in memory on
/// SQLite) and the login / signup / refresh limits (in the database, shared by instances).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    /// Requests per second per client key on `/verify`, `/settle`, `/supported`
    /// (`0` = unlimited); the operator overrides one key with `PATCH /admin/clients/{id}`.
    pub client_rate_limit_per_second: u32,
    /// Requests per second of all the keys of an account together on the same endpoints
    /// (`0` = unlimited); the operator overrides one account with `PATCH /admin/users/{id}`.
    pub account_rate_limit_per_second: u32,
    /// Live (neither revoked nor expired) client keys an account may have.
    pub max_keys_per_account: u64,
    /// Resources an account may register.
    pub max_resources_per_account: u64,
    /// Failed logins allowed per account, and per client IP, in a window before a lock.
    pub login_failures_per_account: u32,
    pub login_failures_per_ip: u32,
    pub login_window_secs: u64,
    /// The first lock; each further lock in the window lasts twice as long (capped at the
    /// window).
    pub login_lockout_secs: u64,
    /// Signups allowed per client IP in a window.
    pub signups_per_ip: u32,
    pub signup_window_secs: u64,
    /// Token refreshes allowed per client IP in a window.
    pub refreshes_per_ip: u32,
    pub refresh_window_secs: u64,
}

impl LimitSettings {
    pub fn throttles(&self) -> facilitator_actors::auth::Throttles {
        use facilitator_actors::throttle::Policy;
        use std::time::Duration;
        let login = |limit| Policy {
            limit,
            window: Duration::from_secs(self.login_window_secs),
            lockout: Duration::from_secs(self.login_lockout_secs),
        };
        // Signups and refreshes: past the limit, wait out the rest of a window.
        let per_window = |limit, secs| Policy {
            limit,
            window: Duration::from_secs(secs),
            lockout: Duration::from_secs(secs),
        };
        facilitator_actors::auth::Throttles {
            login_per_account: login(self.login_failures_per_account),
            login_per_ip: login(self.login_failures_per_ip),
            signup_per_ip: per_window(self.signups_per_ip, self.signup_window_secs),
            refresh_per_ip: per_window(self.refreshes_per_ip, self.refresh_window_secs),
        }
    }

    pub fn account_caps(&self) -> facilitator_actors::auth::accounts::AccountCaps {
        facilitator_actors::auth::accounts::AccountCaps {
            max_keys: self.max_keys_per_account,
            max_resources: self.max_resources_per_account,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            client_rate_limit_per_second: 0,
            account_rate_limit_per_second: 0,
            max_keys_per_account: 20,
            max_resources_per_account: 100,
            login_failures_per_account: 5,
            login_failures_per_ip: 20,
            login_window_secs: 900,
            login_lockout_secs: 30,
            signups_per_ip: 20,
            signup_window_secs: 3600,
            refreshes_per_ip: 120,
            refresh_window_secs: 60,
        }
    }
}

fn default_background_watch() -> u64 {
    1800
}

fn default_reconcile_interval() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    /// How often in-memory rollups are written to the database.
    #[serde(default = "default_flush_interval")]
    pub flush_interval_secs: u64,
    /// `GET /metrics` access: with a token, `Authorization: Bearer <token>` is required (from
    /// anywhere); without one, only loopback clients may scrape. Secret: set it with
    /// `APP__METRICS__PROMETHEUS_TOKEN`.
    pub prometheus_token: Option<SecretString>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            flush_interval_secs: default_flush_interval(),
            prometheus_token: None,
        }
    }
}

fn default_flush_interval() -> u64 {
    5
}

/// glibc's allocator (`crate::memory`): no effect on other C libraries.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MemorySettings {
    /// At most this many malloc arenas (0 = glibc's default, 8 per core).
    pub arena_max: u32,
    /// Give the allocator's free pages back to the system this often (0 = never).
    pub trim_interval_secs: u64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            arena_max: 2,
            trim_interval_secs: 5,
        }
    }
}

/// Chain access: every RPC call is bounded, every endpoint is probed.
#[derive(Debug, Clone, Deserialize)]
pub struct RpcSettings {
    /// Bound of one RPC call, failover included (a network's `rpc_timeout_ms` wins).
    #[serde(default = "default_rpc_timeout")]
    pub timeout_ms: u64,
    /// Every endpoint is asked for its latest block this often; an unhealthy one comes back
    /// after a probe it answers.
    #[serde(default = "default_probe_interval")]
    pub probe_interval_ms: u64,
    /// An endpoint whose latest block is this much older than the best endpoint's is lagging
    /// and gets no calls while another one is healthy.
    #[serde(default = "default_max_head_lag")]
    pub max_head_lag_secs: u64,
}

impl Default for RpcSettings {
    fn default() -> Self {
        Self {
            timeout_ms: default_rpc_timeout(),
            probe_interval_ms: default_probe_interval(),
            max_head_lag_secs: default_max_head_lag(),
        }
    }
}

fn default_rpc_timeout() -> u64 {
    5000
}

fn default_probe_interval() -> u64 {
    1000
}

fn default_max_head_lag() -> u64 {
    30
}

/// `GET /ready`: the database answers, and the networks named here are not down.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ReadySettings {
    #[serde(default)]
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

/// A YAML list, or one string with comma-separated items (how an environment variable says
/// a list).
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
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

/// The items of a YAML list or of one comma-separated string.
fn list_items<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match StringOrList::deserialize(d)? {
        StringOrList::One(s) => split_list(&s),
        StringOrList::Many(items) => items.iter().flat_map(|i| split_list(i)).collect(),
    })
}

impl<'de> Deserialize<'de> for RpcUrls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(
            list_items(d)?.into_iter().map(SecretString::from).collect(),
        ))
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// One network. Disabled until an RPC URL is configured.
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
    pub receipt_timeout_secs: Option<u64>,
    /// Replace a settlement transaction still unmined after this long (same nonce, +12.5% fees).
    pub replace_after_secs: Option<u64>,
    /// A signer whose native balance falls below this (ether units) is reported: a warning,
    /// `/status`, and the Prometheus gauge. Default 0.01.
    pub min_signer_balance_eth: Option<f64>,
    /// A mined settlement counts as `confirmed` once its block is this deep (1 = at once);
    /// until then a reorg is watched for. Default: by chain (see `default_confirmations`).
    pub confirmations: Option<u64>,
}

impl NetworkSettings {
    /// The signer balance floor, wei.
    pub fn min_signer_balance_wei(&self) -> alloy_primitives::U256 {
        let eth = self.min_signer_balance_eth.unwrap_or(0.01).max(0.0);
        alloy_primitives::U256::from((eth * 1e18) as u128)
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
pub struct MinAmount(pub alloy_primitives::U256);

impl<'de> Deserialize<'de> for MinAmount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Number(n) => Some(alloy_primitives::U256::from(n)),
            Raw::Text(s) => x402::proto::parse_amount(s.trim()),
        };
        parsed.map(Self).ok_or_else(|| {
            serde::de::Error::custom("min_amount must be a whole number of atomic units")
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("network {network}: {message}")]
    Signers { network: String, message: String },
    #[error("network {network}: {message}")]
    Rpc { network: String, message: String },
    #[error("cannot read configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error(
        "{var} must be set when APP__ENVIRONMENT=production (it is a secret and has no default)"
    )]
    MissingSecret { var: &'static str },
    #[error("{var} is too short: use at least {min} characters")]
    WeakSecret { var: &'static str, min: usize },
    #[error("unknown network `{0}` in config (see the networks table in the README)")]
    UnknownNetwork(String),
    #[error("network {network}: {message}")]
    Network { network: String, message: String },
}

/// The secrets the server runs with, resolved (given or generated).
#[derive(Clone)]
pub struct Secrets {
    pub jwt_secret: SecretString,
    pub admin_token: SecretString,
    pub client_token_key: SecretString,
    /// Names of the secrets that were generated for this process only.
    pub generated: Vec<&'static str>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

const MIN_SECRET_LEN: usize = 32;

impl Settings {
    /// Load `path` (if it exists) and overlay `APP__*` environment variables.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::figment(path)
            .extract()
            .map_err(|e| Box::new(e).into())
    }

    pub fn figment(path: &Path) -> Figment {
        Figment::new()
            .merge(Yaml::string(DEFAULTS))
            .merge(Yaml::file(path))
            .merge(Env::prefixed("APP__").split("__"))
    }

    /// Resolve secrets: given ones are checked, missing ones generated in development and fatal
    /// in production.
    pub fn resolve_secrets(&self) -> Result<Secrets, ConfigError> {
        let mut generated = Vec::new();
        let mut resolve = |given: &Option<SecretString>, var: &'static str| match given {
            Some(s) if s.expose_secret().len() < MIN_SECRET_LEN => Err(ConfigError::WeakSecret {
                var,
                min: MIN_SECRET_LEN,
            }),
            Some(s) => Ok(s.clone()),
            None if self.environment == Environment::Production => {
                Err(ConfigError::MissingSecret { var })
            }
            None => {
                generated.push(var);
                Ok(random_secret())
            }
        };
        let jwt_secret = resolve(&self.auth.jwt_secret, "APP__AUTH__JWT_SECRET")?;
        let admin_token = resolve(&self.auth.admin_token, "APP__AUTH__ADMIN_TOKEN")?;
        let client_token_key = resolve(&self.auth.client_token_key, "APP__AUTH__CLIENT_TOKEN_KEY")?;
        Ok(Secrets {
            jwt_secret,
            admin_token,
            client_token_key,
            generated,
        })
    }

    pub fn database_url(&self) -> &str {
        self.database.url.expose_secret()
    }
}

impl NetworkSettings {
    /// The network's signer keys, from the environment variable named by `signer_keys_env`
    /// and/or the file `signer_keys_file`. Errors never echo key material.
    pub fn signer_keys(&self, network: &str) -> Result<Option<SecretString>, ConfigError> {
        let mut raw = String::new();
        if let Some(var) = &self.signer_keys_env {
            if let Ok(v) = std::env::var(var) {
                raw.push_str(&v);
                raw.push('\n');
            }
        }
        if let Some(path) = &self.signer_keys_file {
            let content = std::fs::read_to_string(path).map_err(|e| ConfigError::Signers {
                network: network.to_owned(),
                message: format!("cannot read signer_keys_file {}: {e}", path.display()),
            })?;
            raw.push_str(&content);
        }
        Ok((!raw.trim().is_empty()).then(|| SecretString::from(raw)))
    }
}

/// 32 random bytes, hex: used for generated development secrets.
pub fn random_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    SecretString::from(hex)
}

/// Built-in defaults so that a missing key in `config.yaml` is never a start-up failure.
const DEFAULTS: &str = r#"
environment: development
server:
  host: 127.0.0.1
  port: 8080
  workers: 0
  body_limit_bytes: 65536
database:
  url: "sqlite://x402-facilitator.sqlite?mode=rwc"
  sqlite_cache_kib: 512
auth:
  access_token_ttl_secs: 900
  refresh_token_ttl_secs: 2592000
  min_password_length: 10
log:
  format: pretty
  level: info
metrics:
  flush_interval_secs: 5
memory:
  arena_max: 2
  trim_interval_secs: 5
settlement:
  background_watch_secs: 1800
  reconcile_interval_secs: 300
  idempotency_ttl_hours: 24
  batch_max: 0
  batch_window_ms: 50
  batch_mirror_precheck: true
  receipt_poll_ms: 250
fleet:
  lease_ttl_secs: 15
  queue_pickup_secs: 5
  signer_balance_poll_secs: 5
limits:
  client_rate_limit_per_second: 0
  account_rate_limit_per_second: 0
  max_keys_per_account: 20
  max_resources_per_account: 100
  login_failures_per_account: 5
  login_failures_per_ip: 20
  login_window_secs: 900
  login_lockout_secs: 30
  signups_per_ip: 20
  signup_window_secs: 3600
  refreshes_per_ip: 120
  refresh_window_secs: 60
rpc:
  timeout_ms: 5000
  probe_interval_ms: 1000
  max_head_lag_secs: 30
ready:
  networks: all
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    fn settings(extra: serde_json::Value) -> Settings {
        Settings::figment(Path::new("/nonexistent.yaml"))
            .merge(Serialized::defaults(extra))
            .extract()
            .unwrap()
    }

    #[test]
    fn production_without_a_secret_names_the_variable() {
        let s = settings(serde_json::json!({
            "environment": "production",
            "auth": { "jwt_secret": "j".repeat(32), "admin_token": "a".repeat(32) },
        }));
        let err = s.resolve_secrets().unwrap_err();
        assert_eq!(
            err.to_string(),
            "APP__AUTH__CLIENT_TOKEN_KEY must be set when APP__ENVIRONMENT=production (it is a secret and has no default)"
        );
    }

    #[test]
    fn development_generates_missing_secrets_and_says_which() {
        let s = settings(serde_json::json!({ "auth": { "admin_token": "a".repeat(40) } }));
        let secrets = s.resolve_secrets().unwrap();
        assert_eq!(
            secrets.generated,
            ["APP__AUTH__JWT_SECRET", "APP__AUTH__CLIENT_TOKEN_KEY"]
        );
        assert_eq!(secrets.admin_token.expose_secret(), "a".repeat(40));
        assert_eq!(secrets.jwt_secret.expose_secret().len(), 64);
        assert!(
            !format!("{secrets:?}").contains(&"a".repeat(40)),
            "Debug hides secrets"
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        let s = settings(serde_json::json!({ "auth": { "jwt_secret": "short" } }));
        assert!(matches!(
            s.resolve_secrets(),
            Err(ConfigError::WeakSecret {
                var: "APP__AUTH__JWT_SECRET",
                ..
            })
        ));
    }

    #[test]
    fn the_shipped_config_parses_and_serves_no_network_without_rpc() {
        let s = Settings::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config.yaml"
        )))
        .unwrap();
        assert_eq!(s.networks.len(), 12);
        assert!(s.networks.values().all(|n| n.rpc_url.is_none()));
        assert!(s.auth.jwt_secret.is_none() && s.auth.admin_token.is_none());
        assert_eq!(s.rpc.timeout_ms, 5000);
        assert_eq!(s.ready.networks, ReadyNetworks::All);
    }

    #[test]
    fn rpc_url_takes_one_string_a_comma_list_or_a_yaml_list() {
        let urls = |v: serde_json::Value| {
            settings(serde_json::json!({ "networks": { "base": { "rpc_url": v } } })).networks
                ["base"]
                .rpc_url
                .clone()
                .unwrap()
                .expose()
        };
        assert_eq!(
            urls("https://a.example/k1".into()),
            ["https://a.example/k1"]
        );
        assert_eq!(
            urls(" https://a.example/k1 , https://b.example/?key=2 ".into()),
            ["https://a.example/k1", "https://b.example/?key=2"]
        );
        assert_eq!(
            urls(serde_json::json!([
                "https://a.example/k1",
                "https://b.example/k2"
            ])),
            ["https://a.example/k1", "https://b.example/k2"]
        );
        let s = settings(serde_json::json!({
            "networks": { "base": { "rpc_url": "https://a.example/secret-key" } }
        }));
        assert!(!format!("{s:?}").contains("secret-key"), "Debug hides URLs");
    }

    #[test]
    fn the_environment_sets_several_rpc_urls_and_ready_networks() {
        // What figment makes of an environment variable's value: one string, commas kept.
        let value: figment::value::Value =
            "http://127.0.0.1:1/a,http://127.0.0.1:2/b".parse().unwrap();
        let urls: RpcUrls = value.deserialize().unwrap();
        assert_eq!(
            urls.expose(),
            ["http://127.0.0.1:1/a", "http://127.0.0.1:2/b"]
        );
        let ready = |v: serde_json::Value| {
            settings(serde_json::json!({ "ready": { "networks": v } }))
                .ready
                .networks
        };
        assert_eq!(ready("any".into()), ReadyNetworks::Any);
        assert_eq!(ready("none".into()), ReadyNetworks::None);
        assert_eq!(
            ready("base, base_sepolia".into()),
            ReadyNetworks::Only(vec!["base".into(), "base_sepolia".into()])
        );
        assert_eq!(
            ready(serde_json::json!(["base-sepolia"])),
            ReadyNetworks::Only(vec!["base-sepolia".into()])
        );
    }
}
