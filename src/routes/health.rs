//! Liveness (`/health`), readiness (`/ready`) and system status (`/api/v1/status`).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use facilitator_actors::chain::NetworkStatus;
use sea_orm::ConnectionTrait;
use serde_json::{json, Map, Value};

use super::networks::network_kinds;
use crate::config::ReadyNetworks;
use crate::error::{ApiError, ErrorCode};
use crate::startup::AppState;

/// A readiness or status check never waits longer than this on the database.
const DB_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process answers. Touches nothing else, so a slow database or a frozen node
/// never gets a live instance restarted.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "healthy",
        "timestamp": chrono::Utc::now().timestamp(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Each network's signers as this instance sees them: whether it holds the lease (drives the
/// key here), whether the key can pay for a settlement, its balance and the floor.
fn with_signers(state: &AppState, mut kinds: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    for kind in &mut kinds {
        let Some(rt) = state
            .facilitator
            .network_runtimes()
            .find(|rt| kind["network"] == rt.entry.info.v1_name)
        else {
            continue;
        };
        let ether = |wei: alloy_primitives::U256| format!("{:.6}", f64::from(wei) / 1e18);
        kind["signers"] = rt
            .router
            .snapshot()
            .into_iter()
            .map(|s| {
                json!({
                    "address": s.address.to_checksum(None),
                    "leased": s.leased,
                    "funded": s.funded,
                    "balance": s.balance_wei.map(ether),
                    "belowFloor": s.balance_wei.is_some_and(|b| b < rt.min_signer_balance),
                    "inFlight": s.in_flight,
                })
            })
            .collect();
    }
    kinds
}

async fn database_answers(state: &AppState) -> bool {
    matches!(
        tokio::time::timeout(DB_PING_TIMEOUT, state.db.ping()).await,
        Ok(Ok(()))
    )
}

pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let db_healthy = database_answers(&state).await;
    if !db_healthy {
        tracing::warn!("status: database ping failed");
    }
    let all_active = state
        .registry
        .networks()
        .iter()
        .all(|n| state.registry.chain_health(n.info.v1_name).status == NetworkStatus::Active);
    super::data(json!({
        "status": if db_healthy && all_active { "healthy" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.started.elapsed().as_secs(),
        "networks": with_signers(&state, network_kinds(&state.registry, false)),
        "database": {
            "status": if db_healthy { "healthy" } else { "unhealthy" },
            "backend": match state.db.get_database_backend() {
                sea_orm::DatabaseBackend::Postgres => "postgresql",
                sea_orm::DatabaseBackend::MySql => "mysql",
                sea_orm::DatabaseBackend::Sqlite => "sqlite",
            },
        },
    }))
}

/// Readiness, for load balancers: 200 while the database answers and the networks
/// `ready.networks` names are up (`active` or `degraded`: some RPC endpoint answers); 503 in
/// the error envelope, saying what is missing, otherwise.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let db_healthy = database_answers(&state).await;
    let mut missing = Vec::new();
    if !db_healthy {
        missing.push("the database does not answer".to_owned());
    }
    let mut networks = Map::new();
    let mut up = Vec::new();
    for n in state.registry.networks() {
        let name = n.info.v1_name;
        let status = state.registry.chain_health(name).status;
        networks.insert(name.to_owned(), Value::from(status.as_str()));
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
    Ok(super::data(json!({
        "status": "ready",
        "database": "healthy",
        "networks": networks,
    })))
}
