//! Configuration: built-in defaults, overlaid by a YAML file (`config.yaml`, which documents
//! them) and then by `APP__SECTION__KEY` environment variables (figment). Each default is
//! written once, in its section's `Default` (every section is `#[serde(default)]`), so the
//! server runs with an empty configuration file or none. Secrets are typed as `SecretString`
//! so they can't be printed by accident, and have no usable default: development mode
//! generates ephemeral ones and says so; production mode refuses to start without them.
//!
//! One file per group of sections: `server` (server, log, metrics, memory), `database`,
//! `auth` (auth, limits), `settlement` (verify, settlement, fleet, rpc, ready), `networks`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use facilitator_actors::auth::AuthConfig;
use facilitator_actors::chain::{ChainConfig, ProbeFamily};
use facilitator_actors::facilitator::FacilitatorConfig;
use facilitator_actors::settlement::batch::BatchConfig;
use figment::providers::{Env, Format, Yaml};
use figment::Figment;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod auth;
mod database;
mod networks;
mod server;
mod settlement;
mod svm;
mod webhooks;

pub use auth::{AuthSettings, LimitSettings};
pub use database::DatabaseSettings;
pub use networks::{
    default_confirmations, AddressList, AssetSettings, MinAmount, NetworkSettings, RpcUrls,
};
pub use server::{LogFormat, LogSettings, MemorySettings, MetricsSettings, ServerSettings};
pub use settlement::{
    FleetSettings, ReadyNetworks, ReadySettings, RpcSettings, SettlementSettings, VerifySettings,
};
pub use svm::{SvmAssetSettings, SvmNetworkSettings};
pub use webhooks::WebhookSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    pub environment: Environment,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    /// The allocator: arenas, and giving freed memory back.
    pub memory: MemorySettings,
    pub settlement: SettlementSettings,
    /// `/verify`: the block-synchronised state mirror.
    pub verify: VerifySettings,
    pub limits: LimitSettings,
    pub fleet: FleetSettings,
    /// Chain access defaults: timeouts and health probing of every network's RPC endpoints.
    pub rpc: RpcSettings,
    /// What `GET /ready` requires besides the database.
    pub ready: ReadySettings,
    /// Delivery of webhook events to merchants' endpoints.
    pub webhooks: WebhookSettings,
    /// Keyed by network id with `_` for `-` (`base_sepolia`), so that the key can be set from
    /// the environment: `APP__NETWORKS__BASE_SEPOLIA__RPC_URL`.
    pub networks: BTreeMap<String, NetworkSettings>,
    /// SVM (Solana) clusters, keyed by v1 name with `_` for `-` (`solana_devnet`):
    /// `APP__SVM_NETWORKS__SOLANA_DEVNET__RPC_URL`.
    pub svm_networks: BTreeMap<String, SvmNetworkSettings>,
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

/// The items of a YAML list or of one comma-separated string.
fn list_items<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match StringOrList::deserialize(d)? {
        StringOrList::One(s) => split_list(&s),
        StringOrList::Many(items) => items.iter().flat_map(|i| split_list(i)).collect(),
    })
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

    /// The file (if it exists) under the environment; what neither sets takes its default.
    pub fn figment(path: &Path) -> Figment {
        Figment::new()
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

    /// The auth actor's configuration: the `auth` and `limits` sections with the secrets.
    pub fn auth_config(&self, secrets: &Secrets) -> AuthConfig {
        AuthConfig {
            throttles: self.limits.throttles(),
            jwt_secret: secrets.jwt_secret.clone(),
            client_token_key: secrets.client_token_key.clone(),
            access_ttl: Duration::from_secs(self.auth.access_token_ttl_secs),
            refresh_ttl: Duration::from_secs(self.auth.refresh_token_ttl_secs),
            min_password_length: self.auth.min_password_length,
            caps: self.limits.account_caps(),
        }
    }

    /// The facilitator's configuration; `fleet`: other instances may share the database.
    pub fn facilitator_config(&self, fleet: bool) -> FacilitatorConfig {
        FacilitatorConfig {
            background_watch: Duration::from_secs(self.settlement.background_watch_secs),
            fleet,
            queue_pickup: Duration::from_secs(self.fleet.queue_pickup_secs.max(1)),
            funds_poll: Duration::from_secs(self.fleet.signer_balance_poll_secs.max(1)),
            batch: BatchConfig::enabled(
                self.settlement.batch_max,
                self.settlement.batch_window_ms,
                self.settlement.batch_mirror_precheck,
            ),
            max_signature_bytes: self.verify.max_signature_bytes,
            channels: self.settlement.channels,
            ..FacilitatorConfig::default()
        }
    }

    /// How an SVM network's RPC endpoints are used: as an EVM network's, probed with
    /// `getBlockHeight`.
    pub fn svm_chain_config(&self, network: &SvmNetworkSettings) -> ChainConfig {
        ChainConfig {
            timeout: network.rpc_timeout(&self.rpc),
            probe_interval: Duration::from_millis(self.rpc.probe_interval_ms.max(100)),
            max_head_lag: Duration::from_secs(self.rpc.max_head_lag_secs),
            family: ProbeFamily::Svm,
        }
    }

    /// How a network's RPC endpoints are used: the `rpc` section, the network's own timeout.
    pub fn chain_config(&self, network: &NetworkSettings) -> ChainConfig {
        ChainConfig {
            timeout: network.rpc_timeout(&self.rpc),
            probe_interval: Duration::from_millis(self.rpc.probe_interval_ms.max(100)),
            max_head_lag: Duration::from_secs(self.rpc.max_head_lag_secs),
            family: ProbeFamily::Evm,
        }
    }
}

/// 32 random bytes, hex: used for generated development secrets.
pub fn random_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    SecretString::from(hex)
}

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
    fn an_explorer_url_is_an_http_link_or_refused() {
        let explorer = |v: serde_json::Value| {
            settings(serde_json::json!({ "networks": { "base": { "explorer_url": v } } })).networks
                ["base"]
                .explorer()
        };
        assert_eq!(
            explorer("https://basescan.org/".into()),
            Ok(Some("https://basescan.org".to_owned()))
        );
        assert_eq!(
            explorer(" http://127.0.0.1:4000/explorer ".into()),
            Ok(Some("http://127.0.0.1:4000/explorer".to_owned()))
        );
        assert_eq!(explorer("".into()), Ok(None));
        for bad in [
            "javascript:alert(1)",
            "data:text/html,<b>x</b>",
            "//basescan.org",
            "https://",
            "https:///tx",
            "https://basescan.org/\"><script>",
            "https://basescan.org/<script>",
            "ftp://basescan.org",
        ] {
            assert!(explorer(bad.into()).is_err(), "{bad}");
        }
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
    fn the_server_runs_on_defaults_without_a_file_or_with_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "# nothing set\n").unwrap();
        for path in [Path::new("/nonexistent.yaml"), empty.as_path()] {
            let s = Settings::load(path).unwrap();
            assert_eq!(s.server.port, 8080);
            assert_eq!(s.server.body_limit_bytes, 65536);
            assert_eq!(s.log.level, "info");
            assert_eq!(
                s.database_url(),
                "sqlite://x402-facilitator.sqlite?mode=rwc"
            );
            assert!(s.database.durable_commits);
            assert!(s.networks.is_empty());
        }
    }

    /// `config.yaml` documents the defaults; it must not be where one lives (or differs).
    #[test]
    fn the_shipped_config_only_restates_the_defaults() {
        let mut shipped = Settings::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config.yaml"
        )))
        .unwrap();
        let defaults = Settings::default();
        assert_eq!(shipped.database_url(), defaults.database_url());
        shipped.networks.clear();
        assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn a_section_given_in_part_keeps_the_defaults_of_its_other_keys() {
        let s = settings(serde_json::json!({ "server": { "port": 9000 } }));
        assert_eq!((s.server.host.as_str(), s.server.port), ("127.0.0.1", 9000));
        assert_eq!(s.server.max_connections, 4096);
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
