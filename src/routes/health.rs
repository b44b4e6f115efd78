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

pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let db_healthy = state.db.ping().await.is_ok();
    if !db_healthy {
        tracing::warn!("status: database ping failed");
    }
    super::data(json!({
        "status": if db_healthy { "healthy" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.started.elapsed().as_secs(),
        "networks": network_kinds(&state.registry, false),
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
