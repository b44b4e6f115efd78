//! Builds the application: database (connect + migrate), secrets, actors, and the actix-web
//! server bound to its own listener (port 0 in tests; the real port is reported).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix::Actor as _;
use actix_web::dev::{Server, ServerHandle, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpRequest, HttpServer};
use alloy::providers::RootProvider;
use alloy::signers::local::PrivateKeySigner;
use anyhow::Context as _;
use facilitator_actors::auth::{AuthConfig, AuthHandle};
use facilitator_actors::chain::{ChainAccess, ChainConfig};
use facilitator_actors::facilitator::{
    system_clock, Clock, Facilitator, FacilitatorConfig, NetworkRuntime, SmartWalletPolicy,
};
use facilitator_actors::fleet::Fleet;
use facilitator_actors::metrics::MetricsHandle;
use facilitator_actors::mirror::{Mirror, MirrorConfig};
use facilitator_actors::registry::{NetworkEntry, NewAsset, RegistryHandle};
use facilitator_actors::settlement::batch::BatchConfig;
use facilitator_actors::settlement::{
    parse_signer_keys, FeePolicy, NetworkSide, ReceiptWatcher, SettlementActor, SettlementRouter,
    SignerStats,
};
use facilitator_actors::{idempotency, ledger, throttle};
use migration::MigratorTrait;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{ConfigError, NetworkSettings, ReadyNetworks, RpcUrls, Settings};
use crate::error::{ApiError, ErrorCode};
use crate::rate_limit::ClientRateLimits;

/// Throttling counters untouched this long (and not locked) are forgotten.
const THROTTLE_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// What every handler can reach.
pub struct AppState {
    pub db: DatabaseConnection,
    pub auth: AuthHandle,
    pub registry: RegistryHandle,
    pub facilitator: Facilitator,
    pub admin_token: SecretString,
    pub metrics: MetricsHandle,
    /// Bearer token for `GET /metrics`; `None` = loopback clients only.
    pub prometheus_token: Option<SecretString>,
    /// The networks `GET /ready` requires up (v1 names when `Only`).
    pub ready_networks: ReadyNetworks,
    pub started: Instant,
    /// Token buckets of client keys on `/verify`, `/settle`, `/supported`.
    pub rate_limits: ClientRateLimits,
    /// How long an idempotency key of `/settle` is remembered.
    pub idempotency_ttl: Duration,
    /// Client IPs come from `X-Forwarded-For` (behind a trusted proxy) or the socket.
    pub trust_forwarded_for: bool,
}

pub struct Application {
    port: u16,
    host: String,
    server: Server,
    state: web::Data<AppState>,
    /// Held while this instance runs on a SQLite file.
    _sqlite_lock: Option<std::fs::File>,
}

/// How long a SQLite writer waits for the write lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connect to the configured database and bring its schema up to date.
pub async fn connect_and_migrate(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let db = connect(settings, pool_size(settings)).await?;
    migration::Migrator::up(&db, None)
        .await
        .context("database migration failed")?;
    Ok(db)
}

/// A connection pool to the configured database.
async fn connect(settings: &Settings, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database_url();
    if let Some(path) = sqlite_file(url) {
        if let Some(dir) = std::path::Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create the directory of {path}"))?;
            }
        }
    }
    let durable = settings.database.durable_commits;
    let cache_size = format!("-{}", settings.database.sqlite_cache_kib.max(64));
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // On every pooled connection (a PRAGMA run once would set only one): WAL lets readers
        // run beside the writer; the busy timeout queues writers behind each other instead of
        // failing them with "database is locked" under load. (synchronous is FULL, unless
        // `database.durable_commits` is off: the ledger row naming a transaction must survive a
        // power cut before it is broadcast.)
        .map_sqlx_sqlite_opts(move |o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                // Each connection's page cache (negative: KiB), bounded for memory.
                .pragma("cache_size", cache_size.clone())
                .synchronous(if durable {
                    sea_orm::sqlx::sqlite::SqliteSynchronous::Full
                } else {
                    sea_orm::sqlx::sqlite::SqliteSynchronous::Normal
                })
        })
        // `database.durable_commits: false` (tests, benchmarks): commits do not wait for the
        // WAL to reach the disk.
        .map_sqlx_postgres_opts(move |o| {
            if durable {
                o
            } else {
                o.options([("synchronous_commit", "off")])
            }
        });
    Database::connect(options)
        .await
        .context("cannot connect to the database (check APP__DATABASE__URL)")
}

/// `database.max_connections` when set, else 16 on PostgreSQL and 2 on SQLite (SQLite writes
/// one at a time, so a larger pool only costs memory: a page cache and a worker thread per
/// connection).
fn pool_size(settings: &Settings) -> u32 {
    let default = if is_sqlite(settings) { 2 } else { 16 };
    settings.database.max_connections.unwrap_or(default).max(1)
}

fn is_sqlite(settings: &Settings) -> bool {
    settings.database_url().starts_with("sqlite:")
}

fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// What a network's runtime is built from, once the registry exists.
struct PendingRuntime {
    entry: NetworkEntry,
    chain: ChainAccess,
    provider: RootProvider,
    router: SettlementRouter,
    receipt_timeout: Duration,
    replace_after: Duration,
    fees: FeePolicy,
    min_signer_balance: alloy_primitives::U256,
    confirmations: u64,
    smart_wallets: SmartWalletPolicy,
    min_amounts: HashMap<alloy_primitives::Address, alloy_primitives::U256>,
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

/// An exclusive lock on `<file>.lock` beside a SQLite database: one instance per file.
fn lock_sqlite(settings: &Settings) -> anyhow::Result<Option<std::fs::File>> {
    let Some(path) = sqlite_file(settings.database_url()) else {
        return Ok(None);
    };
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the directory of {path}"))?;
        }
    }
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {lock_path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another instance is running on the SQLite database {path}: SQLite serves one \
             instance only; run a fleet on PostgreSQL (APP__DATABASE__URL=postgres://…)"
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {lock_path}"))
        }
    }
}

/// Expire every signer lease (SQLite: this is the only instance).
async fn release_all_leases(db: &DatabaseConnection) -> anyhow::Result<()> {
    use sea_orm::{EntityTrait, QueryFilter};
    entities::signer_lease::Entity::update_many()
        .col_expr(
            entities::signer_lease::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now()),
        )
        .filter(sea_orm::sea_query::Expr::val(1).eq(1))
        .exec(db)
        .await?;
    Ok(())
}

/// Served networks with their settings, and the assets they accept by default.
type ServedNetworks = (
    Vec<(NetworkEntry, NetworkSettings, SmartWalletPolicy)>,
    Vec<NewAsset>,
);

/// Networks with an RPC URL, and the assets they accept by default (their USDC + configured).
/// Every entry is checked (`crate::chains`), served or not; two keys may not be one chain.
fn served_networks(settings: &Settings) -> Result<ServedNetworks, ConfigError> {
    let mut networks: Vec<(NetworkEntry, NetworkSettings, SmartWalletPolicy)> = Vec::new();
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
        networks.push((
            NetworkEntry {
                info: resolved.info,
                usdc: resolved.usdc,
                signers: Vec::new(),
            },
            ns.clone(),
            resolved.smart_wallets,
        ));
    }
    Ok((networks, assets))
}

/// How a network's RPC endpoints are used: the `rpc` section, the network's own timeout.
fn chain_config(settings: &Settings, ns: &NetworkSettings) -> ChainConfig {
    ChainConfig {
        timeout: Duration::from_millis(ns.rpc_timeout_ms.unwrap_or(settings.rpc.timeout_ms).max(1)),
        probe_interval: Duration::from_millis(settings.rpc.probe_interval_ms.max(100)),
        max_head_lag: Duration::from_secs(settings.rpc.max_head_lag_secs),
    }
}

/// `ready.networks` with each name checked against the served networks and written as its v1
/// name.
fn ready_networks(
    settings: &Settings,
    served: &[&'static x402::network::Network],
) -> Result<ReadyNetworks, ConfigError> {
    let ReadyNetworks::Only(names) = &settings.ready.networks else {
        return Ok(settings.ready.networks.clone());
    };
    names
        .iter()
        .map(|name| {
            x402::network::parse_network(&name.replace('_', "-"))
                .filter(|n| served.iter().any(|s| s.chain_id == n.chain_id))
                .map(|n| n.v1_name.to_owned())
                .ok_or_else(|| {
                    ConfigError::UnknownNetwork(format!(
                        "ready.networks: {name} is not a served network (it needs an rpc_url)"
                    ))
                })
        })
        .collect::<Result<_, _>>()
        .map(ReadyNetworks::Only)
}

/// What a caller can set besides the configuration: the dev command and tests hand signer keys
/// over directly, and tests may move the clock.
#[derive(Default)]
pub struct BuildOptions {
    /// Signer keys per v1 network name; wins over the environment/file.
    pub signer_keys: HashMap<String, Vec<PrivateKeySigner>>,
    pub clock: Option<Clock>,
    /// Payment methods served besides the built-in ones.
    pub methods: Vec<std::sync::Arc<dyn facilitator_actors::methods::PaymentMethod>>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, BuildOptions::default()).await
    }

    pub async fn build_with(settings: Settings, mut options: BuildOptions) -> anyhow::Result<Self> {
        let secrets = settings.resolve_secrets()?;
        if !secrets.generated.is_empty() {
            tracing::warn!(
                "DEVELOPMENT MODE: generated ephemeral secrets for {} — tokens and client keys \
                 will not survive a restart. Set them (and APP__ENVIRONMENT=production) for real use.",
                secrets.generated.join(", ")
            );
        }
        // SQLite serves one instance: a second one on the same file is refused (the lock goes
        // with the process, even a killed one).
        let sqlite_lock = lock_sqlite(&settings)?;
        let db = connect_and_migrate(&settings).await?;
        let multi_instance = db.get_database_backend() == sea_orm::DatabaseBackend::Postgres;
        let fleet = Fleet::join(
            db.clone(),
            Duration::from_secs(settings.fleet.lease_ttl_secs.max(1)),
        )
        .await
        .context("cannot register this instance")?;
        if !multi_instance {
            // Nobody else can be on this file: whatever leases a previous run left are ours.
            release_all_leases(&db).await?;
        }
        // The metrics actor writes through its own small pool, opened here on the main
        // runtime: PostgreSQL connections a worker opened die with the worker's runtime at
        // shutdown, and the final flush comes after the workers have stopped.
        let metrics = MetricsHandle::start(
            connect(&settings, if is_sqlite(&settings) { 1 } else { 2 }).await?,
            Duration::from_secs(settings.metrics.flush_interval_secs.max(1)),
        );
        let (networks, assets) = served_networks(&settings)?;
        let ready = ready_networks(
            &settings,
            &networks.iter().map(|(e, _, _)| e.info).collect::<Vec<_>>(),
        )?;
        let auth = AuthHandle::start(
            db.clone(),
            AuthConfig {
                throttles: settings.limits.throttles(),
                jwt_secret: secrets.jwt_secret.clone(),
                client_token_key: secrets.client_token_key.clone(),
                access_ttl: Duration::from_secs(settings.auth.access_token_ttl_secs),
                refresh_ttl: Duration::from_secs(settings.auth.refresh_token_ttl_secs),
                min_password_length: settings.auth.min_password_length,
                caps: settings.limits.account_caps(),
            },
        )
        .await?;
        if multi_instance {
            // Changes to keys made through other instances reach this one's key cache at once.
            facilitator_actors::key_changes::listen(
                settings.database_url().to_owned(),
                db.clone(),
                auth.clone(),
            )
            .await;
        }
        // Signers and their settlement actors, per network.
        let mut entries = Vec::new();
        let mut pending_runtimes = Vec::new();
        for (mut entry, ns, smart_wallets) in networks {
            let v1 = entry.info.v1_name;
            let keys = match options.signer_keys.remove(v1) {
                Some(keys) => keys,
                None => match ns.signer_keys(v1)? {
                    Some(raw) => parse_signer_keys(raw.expose_secret()).map_err(|message| {
                        ConfigError::Signers {
                            network: v1.to_owned(),
                            message,
                        }
                    })?,
                    None => Vec::new(),
                },
            };
            if keys.is_empty() {
                tracing::warn!(
                    network = v1,
                    "no signer keys: this network can verify but not settle"
                );
            }
            let urls = ns.rpc_url.as_ref().map(RpcUrls::expose).unwrap_or_default();
            // Every chain call of this network goes through its endpoints: bounded, failing
            // over, health tracked (actors/src/chain.rs).
            let chain = ChainAccess::new(
                entry.info.v1_name,
                &urls,
                chain_config(&settings, &ns),
                Some(metrics.rpc()),
            )
            .map_err(|e| ConfigError::Rpc {
                network: v1.to_owned(),
                message: e.to_string(),
            })?;
            let provider = chain.provider();
            let policy = FeePolicy {
                max_fee_per_gas_cap: ns
                    .max_fee_per_gas_gwei
                    .map(|g| (g * 1e9) as u128)
                    .unwrap_or(FeePolicy::default().max_fee_per_gas_cap),
                max_gas_per_settlement: ns
                    .max_gas_per_settlement
                    .unwrap_or(FeePolicy::default().max_gas_per_settlement),
                ..FeePolicy::default()
            };
            let side = NetworkSide {
                network: v1,
                chain_id: entry.info.chain_id,
                provider: provider.clone(),
                db: db.clone(),
                policy,
            };
            let actors: Vec<_> = keys
                .into_iter()
                .map(|key| {
                    let address = key.address();
                    let state = Arc::new(SignerStats::default());
                    let actor = SettlementActor::new(&side, key, state.clone(), fleet.holder());
                    (address, actor.start(), state)
                })
                .collect();
            entry.signers = actors.iter().map(|(a, _, _)| *a).collect();
            pending_runtimes.push(PendingRuntime {
                entry: entry.clone(),
                chain,
                provider,
                router: SettlementRouter::new(actors),
                receipt_timeout: Duration::from_secs(ns.receipt_timeout_secs.unwrap_or(20)),
                replace_after: Duration::from_secs(ns.replace_after_secs.unwrap_or(12)),
                fees: policy,
                min_signer_balance: ns.min_signer_balance_wei(),
                confirmations: ns
                    .confirmations
                    .unwrap_or_else(|| default_confirmations(entry.info.chain_id))
                    .max(1),
                smart_wallets,
                min_amounts: crate::chains::min_amounts(v1, entry.usdc, &ns)?,
            });
            entries.push(entry);
        }
        let registry = RegistryHandle::start(
            db.clone(),
            entries,
            assets.clone(),
            settings.limits.max_resources_per_account,
        )
        .await?;
        // Every endpoint's health known before the first request (probes run concurrently,
        // each bounded by its network's timeout), then kept up to date in the background.
        futures::future::join_all(pending_runtimes.iter().map(|p| p.chain.probe())).await;
        for p in &pending_runtimes {
            p.chain.start_probing();
            registry.attach_chain(p.entry.info.v1_name, p.chain.clone());
        }
        if settings.verify.mirror
            && settings.verify.mirror_max_head_age_ms <= settings.rpc.probe_interval_ms
        {
            tracing::warn!(
                "verify.mirror_max_head_age_ms is not above rpc.probe_interval_ms: the mirror \
                 will rarely answer"
            );
        }
        let runtimes: Vec<Arc<NetworkRuntime>> = pending_runtimes
            .into_iter()
            .map(|p| {
                // The state mirror follows the heads this network's probe reads.
                let mirror = settings.verify.mirror.then(|| {
                    let followed = assets
                        .iter()
                        .filter(|a| a.network == p.entry.info.v1_name && a.active)
                        .map(|a| a.address)
                        .collect();
                    let mirror = Mirror::new(
                        p.entry.info.v1_name,
                        followed,
                        MirrorConfig {
                            max_accounts: settings.verify.mirror_accounts,
                            max_head_age: Duration::from_millis(
                                settings.verify.mirror_max_head_age_ms,
                            ),
                        },
                        p.provider.clone(),
                        p.chain.heads(),
                        Some(metrics.rpc()),
                    );
                    mirror.start();
                    mirror
                });
                let watcher = ReceiptWatcher::start(
                    p.provider.clone(),
                    Duration::from_millis(settings.settlement.receipt_poll_ms.max(10)),
                    |_| {},
                );
                Arc::new(NetworkRuntime {
                    entry: p.entry,
                    provider: p.provider,
                    router: p.router,
                    watcher,
                    receipt_timeout: p.receipt_timeout,
                    replace_after: p.replace_after,
                    fees: p.fees,
                    min_signer_balance: p.min_signer_balance,
                    confirmations: p.confirmations,
                    smart_wallets: p.smart_wallets,
                    mirror,
                    min_amounts: p.min_amounts,
                })
            })
            .collect();
        let facilitator = Facilitator::new(
            db.clone(),
            fleet,
            registry.clone(),
            runtimes,
            options.clock.take().unwrap_or_else(system_clock),
            FacilitatorConfig {
                background_watch: Duration::from_secs(settings.settlement.background_watch_secs),
                fleet: multi_instance,
                queue_pickup: Duration::from_secs(settings.fleet.queue_pickup_secs.max(1)),
                funds_poll: Duration::from_secs(settings.fleet.signer_balance_poll_secs.max(1)),
                batch: BatchConfig::enabled(
                    settings.settlement.batch_max,
                    settings.settlement.batch_window_ms,
                    settings.settlement.batch_mirror_precheck,
                ),
                max_signature_bytes: settings.verify.max_signature_bytes,
                methods: std::mem::take(&mut options.methods),
                ..FacilitatorConfig::default()
            },
            metrics.clone(),
        );
        // Our share of the signer leases before the first request, then kept in the
        // background with the signers' balances (and the fleet's queued settles).
        if let Err(e) = facilitator.keep_leases_once().await {
            tracing::warn!(error = %e, "signer leases not taken at start; retrying in the background");
        }
        facilitator.start_fleet_work();
        // The authorizations a previous run took, in memory for verify (until then, and if
        // this fails, verify reads the ledger).
        if let Err(e) = facilitator.load_authorization_index().await {
            tracing::warn!(error = %e, "authorization index not loaded; verify reads the ledger");
        }
        // Rows a previous run left in flight: resolve what the chain already knows.
        match facilitator.reconcile().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(resolved = n, "reconciled in-flight settlements"),
            Err(e) => tracing::warn!(error = %e, "start-up reconciliation incomplete"),
        }
        // And every few minutes: rows whose background watch ran out, abandoned claims; and
        // idempotency keys and throttling counters past their time.
        let periodic = facilitator.clone();
        let housekeeping_db = db.clone();
        let every = Duration::from_secs(settings.settlement.reconcile_interval_secs.max(1));
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match periodic.reconcile().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(resolved = n, "reconciled settlements"),
                    Err(e) => tracing::warn!(error = %e, "periodic reconciliation incomplete"),
                }
                if let Err(e) = idempotency::purge_expired(&housekeeping_db).await {
                    tracing::warn!(error = %e, "expired idempotency keys not purged");
                }
                if let Err(e) = throttle::purge(&housekeeping_db, THROTTLE_MEMORY).await {
                    tracing::warn!(error = %e, "old throttling counters not purged");
                }
                if multi_instance {
                    if let Err(e) = crate::rate_limit::purge_idle(&housekeeping_db).await {
                        tracing::warn!(error = %e, "idle rate-limit states not purged");
                    }
                }
                // Refused payments (nothing sent) keep no row past their time.
                if let Err(e) = ledger::purge_unsent(&housekeeping_db, periodic.now()).await {
                    tracing::warn!(error = %e, "unsent failed settlements not purged");
                }
            }
        });
        // A fleet holds a key to its rate limit together; one instance keeps buckets in memory.
        let default_rate = settings.limits.client_rate_limit_per_second;
        let rate_limits = if multi_instance {
            ClientRateLimits::shared(default_rate, db.clone())
        } else {
            ClientRateLimits::in_memory(default_rate)
        };
        // Free pages back to the system after a burst (glibc keeps them otherwise).
        crate::memory::spawn_trimmer(Duration::from_secs(settings.memory.trim_interval_secs));
        let state = web::Data::new(AppState {
            db,
            auth,
            registry,
            facilitator,
            admin_token: secrets.admin_token.clone(),
            metrics,
            prometheus_token: settings.metrics.prometheus_token.clone(),
            ready_networks: ready,
            started: Instant::now(),
            rate_limits: rate_limits
                .with_account_default(settings.limits.account_rate_limit_per_second),
            idempotency_ttl: Duration::from_secs(
                settings.settlement.idempotency_ttl_hours.max(24) * 3600,
            ),
            trust_forwarded_for: settings.server.trust_forwarded_for,
        });

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| {
                format!(
                    "cannot listen on {}:{}",
                    settings.server.host, settings.server.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let body_limit = settings.server.body_limit_bytes;
        let body_bounds = crate::middleware::BodyBounds {
            limit: body_limit,
            timeout: Duration::from_secs(settings.server.body_timeout_secs.max(1)),
        };
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(body_bounds)
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_limit)
                        .error_handler(json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                .wrap(actix_web::middleware::from_fn(
                    crate::middleware::bounded_body,
                ))
                .wrap(ErrorHandlers::new().default_handler(envelope_fallback))
                // Outermost: sees the final status of every response, envelope included.
                .wrap(actix_web::middleware::from_fn(crate::middleware::observe))
                .configure(crate::routes::configure)
                .default_service(web::to(crate::routes::not_found))
        })
        .shutdown_timeout(30)
        // Signals are ours (`run_until_stopped`): actix's handler would stop the whole actix
        // system shortly after the server, before the final metrics flush, and it treats
        // SIGINT as a forced stop.
        .disable_signals()
        .listen(listener)?;
        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // actix bounds connections per worker: the configured total, split among them.
        server = server
            .workers(workers)
            .max_connections(settings.server.max_connections.max(1).div_ceil(workers))
            .client_request_timeout(Duration::from_secs(
                settings.server.header_timeout_secs.max(1),
            ));
        Ok(Self {
            port,
            host: settings.server.host.clone(),
            server: server.run(),
            state,
            _sqlite_lock: sqlite_lock,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serve until SIGINT or SIGTERM, stop gracefully (no new connections; in-flight requests
    /// finish, up to 30 s), then write the metrics still held in memory.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!("listening on http://{}:{}", self.host, self.port);
        let handle = self.server.handle();
        let signals = actix_web::rt::spawn(async move {
            if let Some(name) = shutdown_signal().await {
                tracing::info!(signal = name, "stopping gracefully");
                handle.stop(true).await;
            }
        });
        let served = self.server.await;
        signals.abort();
        self.state.facilitator.leave_fleet().await;
        match self.state.metrics.flush().await {
            Ok(()) => tracing::info!("metrics flushed; stopped"),
            Err(e) => tracing::error!(error = %e, "final metrics flush failed"),
        }
        served
    }
}

/// The first SIGINT or SIGTERM; `None` if signals cannot be watched.
async fn shutdown_signal() -> Option<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        _ => {
            tracing::error!("cannot watch SIGINT/SIGTERM");
            return None;
        }
    };
    tokio::select! {
        _ = int.recv() => Some("SIGINT"),
        _ = term.recv() => Some("SIGTERM"),
    }
}

fn json_error(err: JsonPayloadError, req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Content-Type must be application/json",
            "",
        ),
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            "Request body too large",
            format!("limit is {limit} bytes"),
        ),
        JsonPayloadError::Payload(e) => crate::middleware::payload_error(
            e,
            req.app_data::<crate::middleware::BodyBounds>()
                .map(|b| b.limit),
        ),
        JsonPayloadError::Deserialize(e) => ApiError::invalid_request(e.to_string()),
        _ => ApiError::invalid_request("the body could not be read as JSON"),
    };
    api.into()
}

fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::new(
        ErrorCode::InvalidRequest,
        "Invalid query parameters",
        err.to_string(),
    )
    .into()
}

fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::new(
        ErrorCode::InvalidRequest,
        "Invalid path parameter",
        err.to_string(),
    )
    .into()
}

/// Any error response not already in our envelope (actix's own plain-text errors) is
/// rewritten into it, so clients never see a non-JSON error body.
fn envelope_fallback<B: 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = match status.as_u16() {
        400 => ErrorCode::InvalidRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        429 => ErrorCode::TooManyRequests,
        503 => ErrorCode::ServiceUnavailable,
        s if s < 500 => ErrorCode::InvalidRequest,
        _ => ErrorCode::InternalError,
    };
    let message = status.canonical_reason().unwrap_or("Error").to_owned();
    let (req, _) = res.into_parts();
    let body = serde_json::to_string(&ApiError::new(code, message, "")).unwrap_or_default();
    let response = actix_web::HttpResponse::build(status)
        .content_type("application/json")
        .body(body);
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}
