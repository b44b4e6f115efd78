//! Liveness (`/health`), readiness (`/ready`) and system status (`/api/v1/status`).

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use facilitator_actors::chain::NetworkStatus;
use sea_orm::ConnectionTrait;
use serde::Serialize;
use utoipa::ToSchema;

use super::docs::errors;
use super::networks::{network_kinds, NetworkKind, SignerState};
use super::Data;
use crate::config::ReadyNetworks;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// A readiness or status check never waits longer than this on the database.
const DB_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The answer of `GET /health` (bare, no envelope).
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "healthy")]
    pub status: &'static str,
    /// Unix seconds.
    #[schema(example = 1712345678)]
    pub timestamp: i64,
    #[schema(example = "0.1.0")]
    pub version: &'static str,
}

/// Liveness
///
/// Answers while the process runs; touches nothing else, so a slow database or a frozen node
/// never gets a live instance restarted.
#[utoipa::path(
    get,
    path = "/health",
    tag = "System",
    responses(
        (status = 200, description = "The process runs.", body = Health),
        errors::Internal,
    ),
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "healthy",
        timestamp: chrono::Utc::now().timestamp(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Serialize, ToSchema)]
pub struct DatabaseStatus {
    /// `healthy` or `unhealthy`.
    #[schema(example = "healthy")]
    pub status: &'static str,
    /// `sqlite`, `postgresql` (or `mysql`).
    #[schema(example = "sqlite")]
    pub backend: &'static str,
}

/// The answer of `GET /api/v1/status`.
#[derive(Serialize, ToSchema)]
pub struct SystemStatus {
    /// `healthy`, or `degraded` when the database does not answer or a network is not
    /// `active`.
    #[schema(example = "healthy")]
    pub status: &'static str,
    #[schema(example = "0.1.0")]
    pub version: &'static str,
    /// Seconds since start.
    pub uptime: u64,
    /// One kind per network (x402 v1 names), with its signers as this instance sees them.
    pub networks: Vec<NetworkKind>,
    pub database: DatabaseStatus,
}

/// Each network's signers as this instance sees them: whether it holds the lease (drives the
/// key here), whether the key can pay for a settlement, its balance and the floor.
fn with_signers(state: &AppState, mut kinds: Vec<NetworkKind>) -> Vec<NetworkKind> {
    for kind in &mut kinds {
        let Some(rt) = state
            .facilitator
            .network_runtimes()
            .find(|rt| kind.network == rt.entry.info.v1_name)
        else {
            continue;
        };
        let ether = |wei: alloy_primitives::U256| format!("{:.6}", f64::from(wei) / 1e18);
        kind.signers = Some(
            rt.router
                .snapshot()
                .into_iter()
                .map(|s| SignerState {
                    address: s.address.to_checksum(None),
                    leased: s.leased,
                    funded: s.funded,
                    balance: s.balance_wei.map(ether),
                    below_floor: s.balance_wei.is_some_and(|b| b < rt.min_signer_balance),
                    floor: ether(rt.min_signer_balance),
                    in_flight: s.in_flight,
                })
                .collect(),
        );
    }
    kinds
}

async fn database_answers(state: &AppState) -> bool {
    matches!(
        tokio::time::timeout(DB_PING_TIMEOUT, state.db.ping()).await,
        Ok(Ok(()))
    )
}

/// System status
///
/// Database health, uptime, and the served networks: their status (`active`, `degraded`,
/// `down`), head block and its age, each RPC endpoint's health, and the signers.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "System",
    responses(
        (status = 200, description = "The status.", body = Data<SystemStatus>),
        errors::Internal,
    ),
)]
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let db_healthy = database_answers(&state).await;
    if !db_healthy {
        tracing::warn!("status: database ping failed");
    }
    let all_active = state
        .registry
        .networks()
        .iter()
        .all(|n| state.registry.chain_health(n.info.v1_name).status == NetworkStatus::Active)
        && state
            .facilitator
            .svm_runtimes()
            .iter()
            .all(|rt| rt.chain.health().status == NetworkStatus::Active);
    super::data(SystemStatus {
        status: if db_healthy && all_active {
            "healthy"
        } else {
            "degraded"
        },
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs(),
        networks: with_signers(
            &state,
            network_kinds(&state.registry, state.facilitator.svm_runtimes(), false),
        ),
        database: DatabaseStatus {
            status: if db_healthy { "healthy" } else { "unhealthy" },
            backend: match state.db.get_database_backend() {
                sea_orm::DatabaseBackend::Postgres => "postgresql",
                sea_orm::DatabaseBackend::MySql => "mysql",
                sea_orm::DatabaseBackend::Sqlite => "sqlite",
            },
        },
    })
}

/// The answer of `GET /ready`: the instance can serve.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: &'static str,
    #[schema(example = "healthy")]
    pub database: &'static str,
    /// Every served network's status, by v1 name.
    #[schema(example = json!({"base-sepolia": "active"}))]
    pub networks: BTreeMap<String, NetworkStatus>,
}

/// Readiness
///
/// For load balancers: 200 while the database answers and the networks `ready.networks`
/// names are up (`active` or `degraded`: some RPC endpoint answers); 503 in the error
/// envelope, saying what is missing, otherwise.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "System",
    responses(
        (status = 200, description = "Ready.", body = Data<Ready>),
        (status = 503, description = "`SERVICE_UNAVAILABLE` (`Not ready`): the database does not answer, or a required network is down.", body = ApiError),
        errors::Internal,
    ),
)]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let db_healthy = database_answers(&state).await;
    let mut missing = Vec::new();
    if !db_healthy {
        missing.push("the database does not answer".to_owned());
    }
    let mut networks = BTreeMap::new();
    let mut up = Vec::new();
    // Every served network, EVM and SVM, with its status.
    let evm = state.registry.networks().iter().map(|n| {
        (
            n.info.v1_name,
            state.registry.chain_health(n.info.v1_name).status,
        )
    });
    let svm = state
        .facilitator
        .svm_runtimes()
        .iter()
        .map(|rt| (rt.network.v1_name, rt.chain.health().status));
    for (name, status) in evm.chain(svm) {
        networks.insert(name.to_owned(), status);
        if status != NetworkStatus::Down {
            up.push(name);
        }
    }
    let down = |name: &str| format!("network {name} is down (no RPC endpoint answers)");
    match &state.ready_networks {
        ReadyNetworks::None => {}
        ReadyNetworks::Any => {
            if up.is_empty() && !networks.is_empty() {
                missing.push("no network is up".to_owned());
            }
        }
        ReadyNetworks::All => missing.extend(
            networks
                .keys()
                .filter(|n| !up.contains(&n.as_str()))
                .map(|n| down(n)),
        ),
        ReadyNetworks::Only(required) => missing.extend(
            required
                .iter()
                .filter(|n| !up.contains(&n.as_str()))
                .map(|n| down(n)),
        ),
    }
    if !missing.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "Not ready",
            missing.join("; "),
        ));
    }
    Ok(super::data(Ready {
        status: "ready",
        database: "healthy",
        networks,
    }))
}
