//! The served networks: which `networks.<key>` entries are served (those with an RPC URL), and
//! each one's runtime, built by one function ([`network_runtime`]): its chain access, its
//! signers and their settlement actors, its receipt watcher and state mirror. Then the
//! registry that lists them, and the first health probe of every endpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor as _;
use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::Address;
use facilitator_actors::chain::ChainAccess;
use facilitator_actors::facilitator::{NetworkRuntime, SmartWalletPolicy};
use facilitator_actors::fleet::Fleet;
use facilitator_actors::metrics::MetricsHandle;
use facilitator_actors::mirror::{Mirror, MirrorConfig};
use facilitator_actors::registry::{NetworkEntry, NewAsset, RegistryHandle};
use facilitator_actors::settlement::{
    parse_signer_keys, NetworkSide, ReceiptWatcher, SettlementActor, SettlementRouter, SignerStats,
};
use facilitator_actors::svm::{FeePayer, SvmRuntime};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;

use crate::config::{ConfigError, NetworkSettings, ReadyNetworks, RpcUrls, Settings};

/// Signer keys per v1 network name, handed over by the caller (the dev command, tests); they
/// win over the environment and files the configuration names.
pub type SignerKeys = HashMap<String, Vec<PrivateKeySigner>>;

/// The served networks, running.
pub struct Networks {
    pub runtimes: Vec<Arc<NetworkRuntime>>,
    /// Lists the networks, their assets and the registered resources.
    pub registry: RegistryHandle,
    /// `ready.networks`, checked against the served networks.
    pub ready: ReadyNetworks,
    /// Block explorers' base URLs by v1 name (`explorer_url`), for the console's links.
    pub explorers: BTreeMap<String, String>,
}

/// What every network's runtime is built with.
struct RuntimeParts<'a> {
    settings: &'a Settings,
    db: &'a DatabaseConnection,
    fleet: &'a Fleet,
    metrics: &'a MetricsHandle,
}

/// A configuration entry to serve, resolved (`crate::chains`).
struct Served {
    entry: NetworkEntry,
    settings: NetworkSettings,
    smart_wallets: SmartWalletPolicy,
}

/// Start every served network, the registry listing them, and their endpoints' probing.
pub async fn start(
    settings: &Settings,
    db: &DatabaseConnection,
    fleet: &Fleet,
    metrics: &MetricsHandle,
    mut signer_keys: SignerKeys,
) -> anyhow::Result<Networks> {
    let parts = RuntimeParts {
        settings,
        db,
        fleet,
        metrics,
    };
    let (served, assets) = served_networks(settings)?;
    let ready = ready_networks(settings, &served)?;
    if settings.verify.mirror
        && settings.verify.mirror_max_head_age_ms <= settings.rpc.probe_interval_ms
    {
        tracing::warn!(
            "verify.mirror_max_head_age_ms is not above rpc.probe_interval_ms: the mirror \
             will rarely answer"
        );
    }
    let mut runtimes = Vec::new();
    let mut chains = Vec::new();
    let mut explorers = BTreeMap::new();
    for network in served {
        let v1 = network.entry.info.v1_name;
        if let Some(url) = network
            .settings
            .explorer()
            .map_err(|message| anyhow::anyhow!("networks.{v1}: {message}"))?
        {
            explorers.insert(v1.to_owned(), url);
        }
        let keys = signer_keys_of(v1, &network.settings, &mut signer_keys)?;
        // The state mirror follows the network's active tokens.
        let followed = assets
            .iter()
            .filter(|a| a.network == v1 && a.active)
            .map(|a| a.address)
            .collect();
        let (runtime, chain) = network_runtime(&parts, network, keys, followed)?;
        runtimes.push(runtime);
        chains.push(chain);
    }
    let registry = RegistryHandle::start(
        db.clone(),
        runtimes.iter().map(|r| r.entry.clone()).collect(),
        assets,
        settings.limits.max_resources_per_account,
    )
    .await?;
    // Every endpoint's health known before the first request (probes run concurrently, each
    // bounded by its network's timeout), then kept up to date in the background.
    futures::future::join_all(chains.iter().map(ChainAccess::probe)).await;
    for (runtime, chain) in runtimes.iter().zip(chains) {
        chain.start_probing();
        registry.attach_chain(runtime.entry.info.v1_name, chain);
    }
    Ok(Networks {
        runtimes,
        registry,
        ready,
        explorers,
    })
}

/// One network's runtime: its chain access (every chain call of the network goes through its
/// endpoints: bounded, failing over, health tracked), a settlement actor per signer key, the
/// receipt watcher, and the state mirror of `followed` tokens when `verify.mirror` is on.
/// The chain access is returned beside it for the registry and the probes.
fn network_runtime(
    parts: &RuntimeParts<'_>,
    network: Served,
    keys: Vec<PrivateKeySigner>,
    followed: Vec<Address>,
) -> Result<(Arc<NetworkRuntime>, ChainAccess), ConfigError> {
    let Served {
        mut entry,
        settings: ns,
        smart_wallets,
    } = network;
    let settings = parts.settings;
    let v1 = entry.info.v1_name;
    let urls = ns.rpc_url.as_ref().map(RpcUrls::expose).unwrap_or_default();
    let chain = ChainAccess::new(
        v1,
        &urls,
        settings.chain_config(&ns),
        Some(parts.metrics.rpc()),
    )
    .map_err(|e| ConfigError::Rpc {
        network: v1.to_owned(),
        message: e.to_string(),
    })?;
    let provider = chain.provider();
    let fees = ns.fee_policy();
    let side = NetworkSide {
        network: v1,
        chain_id: entry.info.chain_id,
        provider: provider.clone(),
        db: parts.db.clone(),
        policy: fees,
    };
    let signers: Vec<_> = keys
        .into_iter()
        .map(|key| {
            let address = key.address();
            let stats = Arc::new(SignerStats::default());
            let actor = SettlementActor::new(&side, key, stats.clone(), parts.fleet.holder());
            (address, actor.start(), stats)
        })
        .collect();
    entry.signers = signers.iter().map(|(a, _, _)| *a).collect();
    // The state mirror follows the heads this network's probe reads.
    let mirror = settings.verify.mirror.then(|| {
        let mirror = Mirror::new(
            v1,
            followed,
            MirrorConfig {
                max_accounts: settings.verify.mirror_accounts,
                max_head_age: Duration::from_millis(settings.verify.mirror_max_head_age_ms),
            },
            provider.clone(),
            chain.heads(),
            Some(parts.metrics.rpc()),
        );
        mirror.start();
        mirror
    });
    let watcher = ReceiptWatcher::start(
        provider.clone(),
        Duration::from_millis(settings.settlement.receipt_poll_ms.max(10)),
    );
    let runtime = NetworkRuntime {
        min_amounts: crate::chains::min_amounts(v1, entry.usdc, &ns)?,
        confirmations: ns.confirmations(entry.info.chain_id),
        receipt_timeout: ns.receipt_timeout(),
        replace_after: ns.replace_after(),
        min_signer_balance: ns.min_signer_balance_wei(),
        entry,
        provider,
        router: SettlementRouter::new(signers),
        watcher,
        fees,
        smart_wallets,
        mirror,
    };
    Ok((Arc::new(runtime), chain))
}

/// A network's signer keys: the caller's, else those the configuration names (none: the
/// network verifies but cannot settle).
fn signer_keys_of(
    v1: &str,
    ns: &NetworkSettings,
    given: &mut SignerKeys,
) -> Result<Vec<PrivateKeySigner>, ConfigError> {
    let keys = match given.remove(v1) {
        Some(keys) => keys,
        None => match ns.signer_keys(v1)? {
            Some(raw) => {
                parse_signer_keys(raw.expose_secret()).map_err(|message| ConfigError::Signers {
                    network: v1.to_owned(),
                    message,
                })?
            }
            None => Vec::new(),
        },
    };
    if keys.is_empty() {
        tracing::warn!(
            network = v1,
            "no signer keys: this network can verify but not settle"
        );
    }
    Ok(keys)
}

/// Networks with an RPC URL, and the assets they accept by default (their USDC + configured).
/// Every entry is checked (`crate::chains`), served or not; two keys may not be one chain.
fn served_networks(settings: &Settings) -> Result<(Vec<Served>, Vec<NewAsset>), ConfigError> {
    let mut networks = Vec::new();
    let mut assets = Vec::new();
    let mut seen = HashMap::new();
    for (key, ns) in &settings.networks {
        let resolved = crate::chains::resolve(key, ns)?;
        if let Some(other) = seen.insert(resolved.info.chain_id, key) {
            return Err(ConfigError::Network {
                network: key.clone(),
                message: format!("chain id {} is also `{other}`", resolved.info.chain_id),
            });
        }
        if ns.rpc_url.as_ref().is_none_or(RpcUrls::is_empty) {
            continue;
        }
        assets.extend(resolved.assets);
        networks.push(Served {
            entry: NetworkEntry {
                info: resolved.info,
                usdc: resolved.usdc,
                signers: Vec::new(),
            },
            settings: ns.clone(),
            smart_wallets: resolved.smart_wallets,
        });
    }
    Ok((networks, assets))
}

/// `ready.networks` with each name checked against the served networks and written as its v1
/// name.
fn ready_networks(settings: &Settings, served: &[Served]) -> Result<ReadyNetworks, ConfigError> {
    let ReadyNetworks::Only(names) = &settings.ready.networks else {
        return Ok(settings.ready.networks.clone());
    };
    // The served SVM clusters, by v1 name and CAIP-2 id.
    let mut svm = Vec::new();
    for (key, ns) in &settings.svm_networks {
        if ns.rpc_url.as_ref().is_some_and(|u| !u.expose().is_empty()) {
            svm.push(ns.network(key)?);
        }
    }
    names
        .iter()
        .map(|name| {
            x402::network::parse_network(&name.replace('_', "-"))
                .filter(|n| served.iter().any(|s| s.entry.info.chain_id == n.chain_id))
                .map(|n| n.v1_name.to_owned())
                .or_else(|| {
                    let name = name.replace('_', "-");
                    svm.iter()
                        .find(|n| n.v1_name == name || n.caip2 == name)
                        .map(|n| n.v1_name.to_owned())
                })
                .ok_or_else(|| {
                    ConfigError::UnknownNetwork(format!(
                        "ready.networks: {name} is not a served network (it needs an rpc_url)"
                    ))
                })
        })
        .collect::<Result<_, _>>()
        .map(ReadyNetworks::Only)
}

/// Fee payer keys per SVM v1 network name, handed over by the caller (the dev command, tests);
/// they win over the environment and files the configuration names.
pub type SvmFeePayers = HashMap<String, Vec<FeePayer>>;

/// Start every served SVM network (an `svm_networks` entry with an RPC URL): its chain access
/// (bounded, failing over, probed with `getBlockHeight`), fee payers and tokens. A network
/// with no fee payer cannot be served (every payment needs one). When the network asks it,
/// the RPC's genesis hash must be the network's: a node of another cluster is refused at
/// start-up; an RPC that does not answer then is only warned about (it may come up later).
pub async fn start_svm(
    settings: &Settings,
    metrics: &MetricsHandle,
    mut given: SvmFeePayers,
) -> anyhow::Result<Vec<Arc<SvmRuntime>>> {
    let mut runtimes = Vec::new();
    for (key, ns) in &settings.svm_networks {
        let urls = ns.rpc_url.as_ref().map(RpcUrls::expose).unwrap_or_default();
        if urls.is_empty() {
            continue;
        }
        let network = ns.network(key)?;
        let v1 = network.v1_name;
        let fee_payers = match given.remove(v1) {
            Some(keys) => keys,
            None => ns.fee_payers(key)?,
        };
        if fee_payers.is_empty() {
            return Err(ConfigError::Signers {
                network: v1.to_owned(),
                message: "no fee payer key (fee_payer_keys_env or fee_payer_keys_file)".into(),
            }
            .into());
        }
        let chain = ChainAccess::new(
            v1,
            &urls,
            settings.svm_chain_config(ns),
            Some(metrics.rpc()),
        )
        .map_err(|e| ConfigError::Rpc {
            network: v1.to_owned(),
            message: e.to_string(),
        })?;
        let runtime = SvmRuntime::new(
            network,
            chain,
            fee_payers,
            ns.assets(key, network)?,
            ns.limits(),
            ns.confirm_timeout(),
        );
        if let (true, Some(expected)) = (ns.checks_genesis(network), network.genesis_hash) {
            match runtime.rpc.genesis_hash().await {
                Ok(hash) if hash == expected => {}
                Ok(hash) => {
                    return Err(ConfigError::Rpc {
                        network: v1.to_owned(),
                        message: format!(
                            "the RPC serves the cluster with genesis hash {hash}, not {expected}"
                        ),
                    }
                    .into())
                }
                Err(e) => {
                    tracing::warn!(network = v1, error = %e, "SVM genesis hash not checked: the RPC does not answer")
                }
            }
        }
        tracing::info!(
            network = v1,
            fee_payers = ?runtime.fee_payer_keys().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "serving SVM network"
        );
        runtimes.push(Arc::new(runtime));
    }
    futures::future::join_all(runtimes.iter().map(|rt| rt.chain.probe())).await;
    for rt in &runtimes {
        rt.chain.start_probing();
    }
    Ok(runtimes)
}
