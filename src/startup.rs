//! Builds the application, zero-to-production style: [`Application::build`] reads as the list
//! of parts it starts (database, metrics, accounts, networks, facilitator, housekeeping, HTTP
//! server), each built by its own module; the server binds its own listener (port 0 in tests;
//! the real port is reported).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use facilitator_actors::auth::AuthHandle;
use facilitator_actors::facilitator::{system_clock, Clock, Facilitator, FacilitatorConfig};
use facilitator_actors::fleet::Fleet;
use facilitator_actors::metrics::MetricsHandle;
use facilitator_actors::webhooks::ssrf::AllowList;
use facilitator_actors::webhooks::subscriptions::UrlRules;
use sea_orm::DatabaseConnection;

use crate::config::{Secrets, ServerSettings, Settings};
use crate::middleware::{AnswerBound, BodyBounds};
use crate::networks::SignerKeys;
use crate::rate_limit::ClientRateLimits;
use crate::state::AppState;
use crate::{db, error, housekeeping, middleware, networks, routes};

pub struct Application {
    port: u16,
    host: String,
    server: Server,
    state: web::Data<AppState>,
    /// Held while this instance runs on a SQLite file.
    _sqlite_lock: Option<std::fs::File>,
}

/// What a caller can set besides the configuration: the dev command and tests hand signer keys
/// over directly, and tests may move the clock.
#[derive(Default)]
pub struct BuildOptions {
    /// Signer keys per v1 network name; wins over the environment/file.
    pub signer_keys: SignerKeys,
    pub clock: Option<Clock>,
    /// Payment methods served besides the built-in ones.
    pub methods: Vec<std::sync::Arc<dyn facilitator_actors::methods::PaymentMethod>>,
    /// Fee payer keys per SVM v1 network name; win over the environment/file.
    pub svm_fee_payers: networks::SvmFeePayers,
    /// The channels' delegated authorizer key; wins over the environment/file.
    pub channels_authorizer: Option<alloy::signers::local::PrivateKeySigner>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, BuildOptions::default()).await
    }

    pub async fn build_with(settings: Settings, options: BuildOptions) -> anyhow::Result<Self> {
        let secrets = resolve_secrets(&settings)?;
        // SQLite serves one instance: a second one on the same file is refused.
        let sqlite_lock = db::lock_sqlite(&settings).await?;
        let db = db::connect_and_migrate(&settings).await?;
        let shared = db::is_shared(&db);
        let fleet = join_fleet(&db, &settings).await?;
        let metrics = start_metrics(&settings).await?;
        let auth = start_auth(&settings, &secrets, &db).await?;
        let served = networks::start(&settings, &db, &fleet, &metrics, options.signer_keys).await?;
        let svm = networks::start_svm(&settings, &metrics, options.svm_fee_payers).await?;
        let facilitator = Facilitator::new(
            db.clone(),
            fleet,
            served.registry.clone(),
            served.runtimes,
            options.clock.unwrap_or_else(system_clock),
            FacilitatorConfig {
                methods: options.methods,
                svm,
                channels_authorizer: match options.channels_authorizer {
                    Some(key) => Some(key),
                    None => settings.settlement.channels_authorizer()?,
                },
                ..settings.facilitator_config(shared)
            },
            metrics.clone(),
        );
        housekeeping::start(&facilitator, &db, &settings, shared).await;
        let state = web::Data::new(AppState {
            rate_limits: ClientRateLimits::for_limits(&settings.limits, shared.then(|| db.clone())),
            db,
            auth,
            registry: served.registry,
            facilitator,
            admin_token: secrets.admin_token,
            metrics,
            prometheus_token: settings.metrics.prometheus_token.clone(),
            ready_networks: served.ready,
            explorers: served.explorers,
            started: Instant::now(),
            idempotency_ttl: Duration::from_secs(
                settings.settlement.idempotency_ttl_hours.max(24) * 3600,
            ),
            trust_forwarded_for: settings.server.trust_forwarded_for,
            webhook_urls: UrlRules {
                require_https: settings.environment == crate::config::Environment::Production,
                allow: AllowList::new(&settings.webhooks.allow_hosts),
            },
        });
        let (server, port) = serve(&settings.server, state.clone())?;
        Ok(Self {
            port,
            host: settings.server.host.clone(),
            server,
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

/// The secrets, given or (development) generated, saying loudly which were generated.
fn resolve_secrets(settings: &Settings) -> anyhow::Result<Secrets> {
    let secrets = settings.resolve_secrets()?;
    if !secrets.generated.is_empty() {
        tracing::warn!(
            "DEVELOPMENT MODE: generated ephemeral secrets for {} — tokens and client keys \
             will not survive a restart. Set them (and APP__ENVIRONMENT=production) for real use.",
            secrets.generated.join(", ")
        );
    }
    Ok(secrets)
}

/// This instance, registered among those sharing the database (their signer leases).
async fn join_fleet(db: &DatabaseConnection, settings: &Settings) -> anyhow::Result<Fleet> {
    let ttl = Duration::from_secs(settings.fleet.lease_ttl_secs.max(1));
    let fleet = Fleet::join(db.clone(), ttl)
        .await
        .context("cannot register this instance")?;
    if !db::is_shared(db) {
        // Nobody else can be on this file: whatever leases a previous run left are ours.
        db::release_all_leases(db).await?;
    }
    Ok(fleet)
}

/// The metrics actor, writing through its own small pool.
async fn start_metrics(settings: &Settings) -> anyhow::Result<MetricsHandle> {
    Ok(MetricsHandle::start(
        db::connect_for_metrics(settings).await?,
        Duration::from_secs(settings.metrics.flush_interval_secs.max(1)),
    ))
}

/// The accounts actor; on a shared database, changes to keys made through other instances
/// reach its key cache at once.
async fn start_auth(
    settings: &Settings,
    secrets: &Secrets,
    db: &DatabaseConnection,
) -> anyhow::Result<AuthHandle> {
    let auth = AuthHandle::start(db.clone(), settings.auth_config(secrets)).await?;
    if db::is_shared(db) {
        facilitator_actors::key_changes::listen(
            settings.database_url().to_owned(),
            db.clone(),
            auth.clone(),
        )
        .await;
    }
    Ok(auth)
}

/// The HTTP server on its own listener (`server` section), with the envelope handlers and the
/// middleware around the routes; returns it with the port it listens on.
fn serve(server: &ServerSettings, state: web::Data<AppState>) -> anyhow::Result<(Server, u16)> {
    let listener = TcpListener::bind((server.host.as_str(), server.port))
        .with_context(|| format!("cannot listen on {}:{}", server.host, server.port))?;
    let port = listener.local_addr()?.port();
    let body_limit = server.body_limit_bytes;
    let body_bounds = BodyBounds {
        limit: body_limit,
        timeout: Duration::from_secs(server.body_timeout_secs.max(1)),
    };
    let answer_bound = AnswerBound(Duration::from_secs(server.answer_timeout_secs.max(1)));
    let http = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(body_bounds)
            .app_data(answer_bound)
            .app_data(
                web::JsonConfig::default()
                    .limit(body_limit)
                    .error_handler(error::json_error(body_limit)),
            )
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .wrap(from_fn(middleware::bounded_answer))
            .wrap(from_fn(middleware::bounded_body))
            .wrap(ErrorHandlers::new().default_handler(error::envelope_fallback))
            // Outermost: sees the final status of every response, envelope included.
            .wrap(from_fn(middleware::observe))
            .configure(routes::configure)
            .default_service(web::to(routes::not_found))
    })
    .shutdown_timeout(30)
    // Signals are ours (`run_until_stopped`): actix's handler would stop the whole actix
    // system shortly after the server, before the final metrics flush, and it treats SIGINT
    // as a forced stop.
    .disable_signals()
    .listen(listener)?;
    let workers = match server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // actix bounds connections per worker: the configured total, split among them.
    let http = http
        .workers(workers)
        .max_connections(server.max_connections.max(1).div_ceil(workers))
        .client_request_timeout(Duration::from_secs(server.header_timeout_secs.max(1)));
    Ok((http.run(), port))
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
