//! Liveness (`/health`) and system status (`/api/v1/status`).

use actix_web::{web, HttpResponse};
use sea_orm::ConnectionTrait;
use serde_json::json;

use super::networks::network_kinds;
use crate::startup::AppState;

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

pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let db_healthy = state.db.ping().await.is_ok();
    if !db_healthy {
        tracing::warn!("status: database ping failed");
    }
    super::data(json!({
        "status": if db_healthy { "healthy" } else { "degraded" },
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
