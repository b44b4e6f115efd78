//! Liveness (`/health`) and system status (`/api/v1/status`).

use actix_web::{web, HttpResponse};
use sea_orm::ConnectionTrait;
use serde::Serialize;
use utoipa::ToSchema;

use super::docs::errors;
use super::networks::{network_kinds, NetworkKind};
use super::Data;
use crate::startup::AppState;

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
/// Answers while the process runs; does not touch the database.
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
    /// `healthy`, or `degraded` when the database does not answer.
    #[schema(example = "healthy")]
    pub status: &'static str,
    #[schema(example = "0.1.0")]
    pub version: &'static str,
    /// Seconds since start.
    pub uptime: u64,
    /// One kind per network (x402 v1 names).
    pub networks: Vec<NetworkKind>,
    pub database: DatabaseStatus,
}

/// System status
///
/// Database health, uptime, and the served networks with their latest block.
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
    let db_healthy = state.db.ping().await.is_ok();
    if !db_healthy {
        tracing::warn!("status: database ping failed");
    }
    super::data(SystemStatus {
        status: if db_healthy { "healthy" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs(),
        networks: network_kinds(&state.registry, false),
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
